/**
 * Micro benchmark (run by hand: `node test/wasm/bench-header-plugin.ts`): the cost per request of
 * a plugin that reads two request headers and adds a response header, driven through
 * WasmHttpFilter without networking (create → decodeHeaders → encodeHeaders → log → destroy).
 * Compares a minimal WAT plugin, the same with the CPU-budget instrumentation, and the
 * AssemblyScript SDK plugin (whose SDK builds debug strings on every callback).
 */
import { HeaderMap } from '../../src/filters/header-map.ts';
import type { HttpFilter } from '../../src/filters/types.ts';
import { buildAs, buildWat } from './helpers/build.ts';
import { FakeStream } from './helpers/driver.ts';
import { plugin } from './helpers/fixtures.ts';

const WAT = `(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (data (i32.const 1024) "x-a")
  (data (i32.const 1032) "x-b")
  (data (i32.const 1040) "x-wasm")
  (data (i32.const 1048) "yes")
  ;; a bump allocator that resets per request (enough for the benchmark)
  (func (export "malloc") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (if (i32.gt_u (global.get $heap) (i32.const 126000)) (then (global.set $heap (i32.const 65536))))
    (local.get $p))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (local $i i32)
    (drop (call $get (i32.const 0) (i32.const 1024) (i32.const 3) (i32.const 2000) (i32.const 2004)))
    (drop (call $get (i32.const 0) (i32.const 1032) (i32.const 3) (i32.const 2008) (i32.const 2012)))
    ;; a small loop so the fuel check is on the measured path
    (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (i32.const 8))))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 2) (i32.const 1040) (i32.const 6) (i32.const 1048) (i32.const 3)))
    (i32.const 0))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)`;

function run(label: string, create: (s: FakeStream) => HttpFilter | null, n: number): number {
  const req = HeaderMap.fromPairs([[':method', 'GET'], [':path', '/'], [':authority', 'h'], [':scheme', 'http'], ['x-a', '1'], ['x-b', '2'], ['user-agent', 'bench']]);
  const once = () => {
    const s = new FakeStream();
    s.reqHeaders = req.clone();
    s.respHeaders = HeaderMap.fromPairs([[':status', '200'], ['content-length', '0']]);
    const f = create(s)!;
    f.decodeHeaders!(s.reqHeaders, true);
    f.encodeHeaders!(s.respHeaders, true);
    f.log!();
    f.onDestroy!();
    if (s.respHeaders.get('x-wasm') !== 'yes' && s.respHeaders.get('x-seen') === undefined) throw new Error(`${label}: plugin did not run`);
  };
  for (let i = 0; i < 20_000; i++) once(); // warm up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) once();
  const us = Number(process.hrtime.bigint() - t0) / 1000 / n;
  // Baseline: the same driver work without a plugin.
  console.log(`${label.padEnd(44)} ${us.toFixed(2)} µs/request`);
  return us;
}

const n = Number(process.argv[2] ?? 200_000);
const wat = await buildWat(WAT);
const plain = await plugin(wat, { cpuBudgetMs: 0, maxPages: 0, name: 'plain' });
const fuel = await plugin(wat, { cpuBudgetMs: 1000, maxPages: 1024, name: 'fuel' });
const as = await plugin(await buildAs('headers'), { rootId: 'headers', cpuBudgetMs: 1000, maxPages: 1024, name: 'as' });
const base = run('driver only (no plugin)', (s) => ({ decodeHeaders: () => 0, encodeHeaders: () => { s.respHeaders!.add('x-wasm', 'yes'); return 0; }, log() {}, onDestroy() {} }), n);
const a = run('WAT plugin, no limits', (s) => plain.createHttpFilter(s), n);
const b = run('WAT plugin, CPU budget + memory cap', (s) => fuel.createHttpFilter(s), n);
const c = run('AssemblyScript SDK plugin (headers.as)', (s) => as.createHttpFilter(s), Math.floor(n / 4));
console.log(`net plugin cost: WAT ${(a - base).toFixed(2)} µs, WAT+limits ${(b - base).toFixed(2)} µs, AS SDK ${(c - base).toFixed(2)} µs`);

// Memory per additional VM (what each extra worker pays for this plugin, beyond Node's own
// per-worker isolate): instantiate the AS plugin 50 more times from the cached compiled module.
const gc = (globalThis as { gc?: () => void }).gc;
gc?.();
const m0 = process.memoryUsage();
const keep = [];
for (let i = 0; i < 50; i++) keep.push(await plugin(await buildAs('headers'), { rootId: 'headers', cpuBudgetMs: 1000, maxPages: 1024, name: `mem${i}` }));
gc?.();
const m1 = process.memoryUsage();
const per = (k: keyof NodeJS.MemoryUsage) => ((m1[k] - m0[k]) / 50 / 1024).toFixed(0);
console.log(`per extra VM of headers.as: rss ${per('rss')} KiB, wasm memory ${(keep[0]!.vm!.memoryBytes() / 1024).toFixed(0)} KiB, JS heap ${per('heapUsed')} KiB${gc ? '' : ' (run with --expose-gc for stable numbers)'}`);
