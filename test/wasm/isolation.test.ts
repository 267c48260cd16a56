/**
 * Isolation and failure (traffic-extension.md §4.1 + issue 3 §4): traps, proc_exit, stack
 * overflow, out-of-bounds access, infinite loops (CPU budget) and memory growth (memory cap) fail
 * only their own VM; failStrategy decides what traffic sees; the host keeps serving.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StatsStore } from '../../src/observability/stats.ts';
import { buildWat } from './helpers/build.ts';
import { exchange } from './helpers/driver.ts';
import { factory, plugin, type TestPluginOptions } from './helpers/fixtures.ts';
import { watPlugin, type WatPluginOptions } from './helpers/wat.ts';

async function load(o: WatPluginOptions, extra: TestPluginOptions = {}) {
  return plugin(await buildWat(watPlugin(o)), extra);
}

// Crashes only when the request has no body and header count is odd... keep it simple: crash on
// every request_headers call when the global $armed is 1 (armed by on_configure).
const trapOnHeaders: WatPluginOptions = { bodies: { proxy_on_request_headers: '(unreachable)' } };

test('trap in a stream callback with FAIL_CLOSE: 503 wasm_fail_stream (grpc 14) now and for every later request; other plugins unaffected', async () => {
  const stats = new StatsStore();
  const bad = await load(trapOnHeaders, { stats, name: 'bad' });
  const good = await load({}, { stats, name: 'good' });
  const ex = await exchange(factory(bad));
  assert.equal(ex.upstream, undefined);
  assert.equal(ex.local?.status, 503);
  assert.equal(ex.local?.options?.details, 'wasm_fail_stream');
  assert.equal(ex.local?.options?.grpcStatus, 14);
  assert.equal(bad.state, 'failed');
  assert.match(bad.reason, /proxy_on_request_headers: unreachable/);
  const again = await exchange(factory(bad));
  assert.equal(again.local?.status, 503, 'until the configuration changes');
  assert.ok((await exchange(factory(good))).upstream, 'another plugin keeps working');
  assert.equal(stats.counter('wasm.default.bad.vm_failed').value, 1);
  assert.equal(stats.counter('wasm.default.good.vm_failed').value, 0);
});

test('FAIL_OPEN: the failing stream continues and later streams bypass the plugin', async () => {
  const p = await load(trapOnHeaders, { failStrategy: 'FAIL_OPEN' });
  const ex = await exchange(factory(p));
  assert.ok(ex.upstream, 'stream continued');
  assert.equal(ex.local, undefined);
  const next = await exchange(factory(p));
  assert.equal(next.filter, null);
  assert.ok(next.upstream);
});

test('FAIL_RELOAD: fresh VM for the next request after the backoff; fail closed during it', async () => {
  const stats = new StatsStore();
  // Traps only on its first request: a global counts calls (fresh VMs start at 0 again, so this
  // plugin crashes once per VM: reload must create a NEW instance each time).
  const p = await load(
    {
      extra: '(global $n (mut i32) (i32.const 0))',
      bodies: { proxy_on_request_headers: '(global.set $n (i32.add (global.get $n) (i32.const 1))) (if (i32.eq (global.get $n) (i32.const 2)) (then (unreachable))) (i32.const 0)' },
    },
    { failStrategy: 'FAIL_RELOAD', reloadBackoffBaseMs: 150, stats, name: 'reload' },
  );
  const firstVm = p.vm;
  assert.ok((await exchange(factory(p))).upstream);
  const crash = await exchange(factory(p));
  assert.equal(crash.local?.status, 503, 'the stream that hit the error fails closed');
  const during = await exchange(factory(p));
  assert.equal(during.local?.status, 503, 'within the backoff window');
  await new Promise((r) => setTimeout(r, 200));
  const after = await exchange(factory(p));
  assert.ok(after.upstream, 'fresh VM');
  assert.notEqual(p.vm, firstVm);
  assert.equal(p.state, 'ready');
  assert.equal(stats.counter('wasm.default.reload.vm_reloaded').value, 1);
  assert.equal(stats.counter('wasm.default.reload.vm_created').value, 2);
});

test('CPU budget: an infinite loop in a callback is stopped, counted as a crash, and the host keeps serving', async () => {
  const stats = new StatsStore();
  const loop = await load({ bodies: { proxy_on_request_headers: '(loop $l (br $l)) (i32.const 0)' } }, { cpuBudgetMs: 50, stats, name: 'loop' });
  assert.equal(loop.state, 'ready', loop.reason);
  assert.equal(loop.compiled?.fuel, true);
  const t0 = performance.now();
  const ex = await exchange(factory(loop));
  const took = performance.now() - t0;
  assert.equal(ex.local?.status, 503);
  assert.ok(took < 5000, `stopped after ${took.toFixed(0)} ms`);
  assert.ok(took >= 45, `ran for its budget (${took.toFixed(0)} ms)`);
  assert.equal(loop.vm!.failure?.kind, 'cpu_budget');
  assert.equal(stats.counter('wasm.default.loop.cpu_budget_exceeded').value, 1);
  assert.equal(stats.counter('wasm.default.loop.vm_failed').value, 1);
  const healthy = await load({}, { cpuBudgetMs: 50 });
  assert.ok((await exchange(factory(healthy))).upstream);
});

test('CPU budget: a loop with real work, in a root callback (on_tick) and during start, is stopped too', async () => {
  const work = await load(
    {
      extra: '(global $acc (mut i32) (i32.const 0))',
      bodies: { proxy_on_tick: '(loop $l (global.set $acc (i32.add (global.get $acc) (i32.const 3))) (br_if $l (i32.ne (global.get $acc) (i32.const 1))))', proxy_on_configure: '(drop (call $tick (i32.const 5))) (i32.const 1)' },
    },
    { cpuBudgetMs: 30 },
  );
  assert.equal(work.state, 'ready');
  const deadline = Date.now() + 3000;
  while (work.state === 'ready' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.equal(work.state, 'failed');
  assert.equal(work.vm!.failure?.kind, 'cpu_budget');
  assert.equal((await exchange(factory(work))).local?.status, 503);
  const start = await load({ start: ['_initialize'], extra: '(func $spin (loop $l (br $l))) (start $spin)' }, { cpuBudgetMs: 30 });
  assert.equal(start.state, 'load_failed');
  assert.match(start.reason, /CPU budget/);
});

test('memory cap: memory.grow beyond the cap returns -1 (plugin aborts: VM failure); oversized initial memory is refused', async () => {
  const stats = new StatsStore();
  const grow = await load({ bodies: { proxy_on_request_headers: '(if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then (unreachable))) (i32.const 0)' } }, { maxPages: 4, stats, name: 'grow' });
  assert.equal(grow.state, 'ready', grow.reason);
  for (let i = 0; i < 3; i++) assert.ok((await exchange(factory(grow))).upstream, `grow ${i + 2} pages`);
  assert.equal(grow.vm!.memoryBytes(), 4 * 65536);
  const fourth = await exchange(factory(grow));
  assert.equal(fourth.local?.status, 503);
  assert.equal(grow.state, 'failed');
  assert.equal(grow.vm!.failure?.kind, 'memory');
  assert.equal(stats.counter('wasm.default.grow.memory_limit_exceeded').value, 1);
  assert.ok(grow.vm!.memoryBytes() <= 4 * 65536);
  const big = await load({ memory: { min: 16 } }, { maxPages: 8 });
  assert.equal(big.state, 'load_failed');
  assert.match(big.reason, /above the VM memory cap/);
});

test('hostile plugins: stack overflow, out-of-bounds load, proc_exit(2), trap in on_tick, trap in on_log — each fails only its VM', async () => {
  const cases: Array<[string, WatPluginOptions]> = [
    ['stack overflow', { extra: '(func $rec (param i32) (result i32) (call $rec (i32.add (local.get 0) (i32.const 1))))', bodies: { proxy_on_request_headers: '(call $rec (i32.const 0))' } }],
    ['oob load', { bodies: { proxy_on_request_headers: '(i32.load (i32.const 0x7ffffff0))' } }],
    ['proc_exit', { bodies: { proxy_on_request_headers: '(call $exit (i32.const 2)) (i32.const 0)' } }],
    ['division by zero', { bodies: { proxy_on_request_headers: '(i32.div_u (i32.const 1) (i32.const 0))' } }],
  ];
  for (const [name, o] of cases) {
    const p = await load(o);
    const ex = await exchange(factory(p));
    assert.equal(ex.local?.status, 503, name);
    assert.equal(p.state, 'failed', name);
  }
  const tick = await load({ bodies: { proxy_on_configure: '(drop (call $tick (i32.const 5))) (i32.const 1)', proxy_on_tick: '(unreachable)' } });
  const deadline = Date.now() + 2000;
  while (tick.state === 'ready' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.equal(tick.state, 'failed', 'root callback trap fails the VM');
  assert.match(tick.reason, /proxy_on_tick/);
  const onLog = await load({ bodies: { proxy_on_log: '(unreachable)' } });
  const ex = await exchange(factory(onLog));
  assert.ok(ex.response, 'response already delivered when on_log traps');
  assert.equal(onLog.state, 'failed');
  const healthy = await load({});
  assert.ok((await exchange(factory(healthy))).upstream, 'the host keeps serving');
});

test('a stream paused on the plugin is released when the VM fails elsewhere (trap in on_tick): 503 or, with FAIL_OPEN, continue', async () => {
  const o: WatPluginOptions = {
    bodies: {
      proxy_on_request_headers: '(drop (call $tick (i32.const 10))) (i32.const 1)',
      proxy_on_tick: '(unreachable)',
    },
  };
  const closed = await load(o);
  const ex = await exchange(factory(closed));
  assert.equal(ex.upstream, undefined);
  assert.equal(ex.local?.status, 503);
  assert.equal(ex.local?.options?.details, 'wasm_fail_stream');
  const open = await load(o, { failStrategy: 'FAIL_OPEN' });
  const ex2 = await exchange(factory(open));
  assert.ok(ex2.upstream, 'continued without the plugin');
  assert.equal(ex2.local, undefined);
});
