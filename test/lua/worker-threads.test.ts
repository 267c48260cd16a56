/**
 * Several worker threads each with their own Lua state (one state per script per worker, as
 * Envoy): the engines must not share per-thread data (the LuaJIT addon keeps its per-env data in
 * N-API instance data).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { getLuajitEngine } from '../../src/lua/engines.ts';

const engines: ('wasm' | 'luajit')[] = ['wasm'];
if (getLuajitEngine()) engines.push('luajit');

for (const engine of engines) {
  test(`three worker threads run their own ${engine} states concurrently`, { timeout: 60_000 }, async () => {
    const results = await Promise.all(
      [0, 1, 2].map(
        () =>
          new Promise<{ last: string; errors: number }>((resolve, reject) => {
            const w = new Worker(new URL('./worker-lua.ts', import.meta.url), { workerData: { engine, n: 3000 } });
            w.once('message', resolve);
            w.once('error', reject);
            w.once('exit', (code) => code !== 0 && reject(new Error(`worker exited with ${code}`)));
          }),
      ),
    );
    for (const r of results) assert.deepEqual(r, { last: '3000', errors: 0 });
  });
}
