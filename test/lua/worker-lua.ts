/** Worker-thread body for worker-threads.test.ts: one Lua state per thread, as the proxy's workers have. */
import { parentPort, workerData } from 'node:worker_threads';
import { getLuajitEngine, getWasmoonEngine } from '../../src/lua/engines.ts';
import { harness } from './driver.ts';

const { engine, n } = workerData as { engine: 'luajit' | 'wasm'; n: number };
const e = engine === 'luajit' ? getLuajitEngine()! : await getWasmoonEngine();
const h = harness(e, 'local c = 0 function envoy_on_request(h) c = c + 1 h:headers():add("count", c) end');
let last = '';
for (let i = 0; i < n; i++) {
  const s = h.stream();
  s.decodeHeaders([[':path', '/']], true);
  last = s.reqHeaders!.get('count')!;
  s.destroy();
}
parentPort!.postMessage({ last, errors: h.errors() });
