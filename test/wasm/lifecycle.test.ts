/**
 * Lifecycle (spec §4): ABI detection, start sequence, root/stream callback order for HTTP and TCP,
 * 0.1.0 arities, pause/resume from a root callback with set_effective_context, local reply forcing
 * stop, close_stream, and load/configure failures under each failStrategy.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DataBuffer } from '../../src/filters/data-buffer.ts';
import { StreamInfo } from '../../src/filters/stream-info.ts';
import type { NetworkFilterCallbacks } from '../../src/filters/types.ts';
import { detectAbi, WasmLoadError } from '../../src/wasm/module.ts';
import { buildWat } from './helpers/build.ts';
import { exchange } from './helpers/driver.ts';
import { factory, plugin } from './helpers/fixtures.ts';
import { callbackLog, watPlugin, type WatPluginOptions } from './helpers/wat.ts';

async function load(o: WatPluginOptions, extra: Parameters<typeof plugin>[1] = {}) {
  const logs: Array<[number, string]> = [];
  const p = await plugin(await buildWat(watPlugin(o)), { logs, ...extra });
  return { p, logs };
}

test('ABI detection: 0.1.0, 0.2.0, 0.2.1 accepted; none or unknown refused with a clear error', async () => {
  for (const [marker, abi] of [['proxy_abi_version_0_1_0', '0.1.0'], ['proxy_abi_version_0_2_0', '0.2.0'], ['proxy_abi_version_0_2_1', '0.2.1']] as const) {
    const { p } = await load({ marker, v010: abi === '0.1.0' });
    assert.equal(p.state, 'ready', p.reason);
    assert.equal(p.compiled?.abi, abi);
  }
  const none = await load({ marker: '' });
  assert.equal(none.p.state, 'load_failed');
  assert.match(none.p.reason, /missing Proxy-Wasm ABI version/);
  const unknown = await load({ marker: 'proxy_abi_version_0_x_x' });
  assert.equal(unknown.p.state, 'load_failed');
  assert.match(unknown.p.reason, /unknown Proxy-Wasm ABI version marker 'proxy_abi_version_0_x_x'/);
  assert.throws(() => detectAbi(['memory']), WasmLoadError);
  // a module that is not wasm at all
  const garbage = await plugin(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 0xff]));
  assert.equal(garbage.state, 'load_failed');
  assert.match(garbage.reason, /does not compile/);
});

test('start sequence: _initialize then main; _start; proc_exit(0) in _start is success, non-zero is a start failure', async () => {
  const a = await load({ start: ['_initialize', 'main', '_start'] });
  assert.equal(a.p.state, 'ready');
  assert.deepEqual(callbackLog(a.logs).slice(0, 5), ['initialize', 'main', 'context_create', 'vm_start', 'configure'], '_start is not called when _initialize exists');
  const b = await load({ start: ['_initialize', '__main_void'] });
  assert.deepEqual(callbackLog(b.logs).slice(0, 2), ['initialize', 'main_void']);
  const c = await load({ start: ['_start_exit0'] });
  assert.equal(c.p.state, 'ready', c.p.reason);
  assert.deepEqual(callbackLog(c.logs).slice(0, 2), ['start', 'context_create']);
  const d = await load({ start: ['_start_exit1'] });
  assert.equal(d.p.state, 'load_failed');
  assert.match(d.p.reason, /_start failed: proc_exit\(1\)/);
});

test('HTTP callback order: context_create, headers, body per chunk, trailers, response side, then log, done, delete', async () => {
  const { p, logs } = await load({});
  const start = logs.length;
  const ex = await exchange(factory(p), { headers: [[':method', 'POST'], [':path', '/'], [':authority', 'h']], body: ['a', 'b'], trailers: [['t', '1']] }, { body: ['x'], trailers: [['rt', '1']] });
  assert.ok(ex.response);
  assert.deepEqual(callbackLog(logs.slice(start)), [
    'context_create', 'request_headers', 'request_body', 'request_body', 'request_trailers',
    'response_headers', 'response_body', 'response_trailers', 'log', 'done', 'delete',
  ]);
  // headers-only request: no body callback
  const start2 = logs.length;
  await exchange(factory(p));
  assert.deepEqual(callbackLog(logs.slice(start2)), ['context_create', 'request_headers', 'response_headers', 'log', 'done', 'delete']);
});

test('TCP callback order: context_create, new_connection, data both ways, close, then done, log, delete', async () => {
  const { p, logs } = await load({});
  const closes: string[] = [];
  const cb: NetworkFilterCallbacks = { connectionId: 7, streamInfo: new StreamInfo(), continueReading() {}, close: (_f, d) => closes.push(d ?? ''), writeDownstream() {} };
  const f = p.createNetworkFilter(cb)!;
  const start = logs.length;
  assert.equal(f.onNewConnection!(), 0);
  assert.equal(f.onDownstreamData!(new DataBuffer('ping'), false), 0);
  assert.equal(f.onUpstreamData!(new DataBuffer('pong'), true), 0);
  f.onDownstreamClose!();
  f.onDestroy!();
  assert.deepEqual(callbackLog(logs.slice(start)), ['context_create', 'new_connection', 'downstream_data', 'upstream_data', 'downstream_connection_close', 'done', 'log', 'delete']);
});

test('0.1.0 arities: two-parameter header callbacks run', async () => {
  const { p } = await load({ marker: 'proxy_abi_version_0_1_0', v010: true });
  const ex = await exchange(factory(p));
  assert.ok(ex.response);
});

test('pause from request headers, resume from on_tick via set_effective_context + continue_stream (deferred)', async () => {
  const { p } = await load({
    bodies: {
      // remember the stream id, start a 10 ms timer, Pause
      proxy_on_request_headers: '(global.set $saved (local.get $a0)) (drop (call $tick (i32.const 10))) (i32.const 1)',
      proxy_on_tick: '(drop (call $eff (global.get $saved))) (drop (call $continue (i32.const 0))) (drop (call $tick (i32.const 0)))',
    },
  });
  const t0 = Date.now();
  const ex = await exchange(factory(p), { headers: [[':method', 'POST'], [':path', '/'], [':authority', 'h']], body: ['held'] });
  assert.ok(ex.upstream, 'resumed');
  assert.equal(ex.upstream.body, 'held', 'body held while paused, then forwarded');
  assert.equal(ex.stream.continued.decoding, 1);
  assert.ok(Date.now() - t0 >= 8);
});

test('send_local_response forces stop even when the callback returns Continue; close_stream resets', async () => {
  const reply = await load({
    extra: '(data (i32.const 4000) "teapot")',
    bodies: { proxy_on_request_headers: '(drop (call $reply (i32.const 418) (i32.const 4000) (i32.const 6) (i32.const 4000) (i32.const 6) (i32.const 0) (i32.const 0) (i32.const -1))) (i32.const 0)' },
  });
  const ex = await exchange(factory(reply.p));
  assert.equal(ex.upstream, undefined);
  assert.equal(ex.local?.status, 418);
  assert.equal(ex.local?.body, 'teapot');
  const close = await load({ bodies: { proxy_on_response_headers: '(drop (call $close (i32.const 1))) (i32.const 0)' } });
  const ex2 = await exchange(factory(close.p));
  assert.equal(ex2.reset, 'wasm_close_stream');
});

test('on_vm_start / on_configure returning false: fail closed (503 wasm_fail_stream) or bypass with FAIL_OPEN', async () => {
  const cfg = await load({ bodies: { proxy_on_configure: '(i32.const 0)' } });
  assert.equal(cfg.p.state, 'load_failed');
  assert.match(cfg.p.reason, /proxy_on_configure returned false/);
  const ex = await exchange(factory(cfg.p));
  assert.equal(ex.local?.status, 503);
  assert.equal(ex.local?.options?.details, 'wasm_fail_stream');
  assert.equal(ex.local?.options?.grpcStatus, 14);
  const start = await load({ bodies: { proxy_on_vm_start: '(i32.const 0)' } }, { failStrategy: 'FAIL_OPEN' });
  assert.equal(start.p.state, 'load_failed');
  assert.match(start.p.reason, /proxy_on_vm_start returned false/);
  const ex2 = await exchange(factory(start.p));
  assert.equal(ex2.filter, null, 'FAIL_OPEN: filter skipped');
  assert.ok(ex2.upstream);
  // FAIL_RELOAD does not retry load failures: fail closed
  const reload = await load({ bodies: { proxy_on_configure: '(i32.const 0)' } }, { failStrategy: 'FAIL_RELOAD', reloadBackoffBaseMs: 1 });
  await new Promise((r) => setTimeout(r, 5));
  const ex3 = await exchange(factory(reload.p));
  assert.equal(ex3.local?.status, 503);
});

test('release: new streams skip the plugin, in-flight streams finish on it, then the root shuts down (on_done, on_delete)', async () => {
  const { p, logs } = await load({});
  const { FakeStream } = await import('./helpers/driver.ts');
  const { HeaderMap } = await import('../../src/filters/header-map.ts');
  const s = new FakeStream();
  s.reqHeaders = HeaderMap.fromPairs([[':path', '/']]);
  const inflight = p.createHttpFilter(s)!;
  inflight.decodeHeaders!(s.reqHeaders, true);
  assert.equal(p.activeStreams, 1);
  const released = p.release(5000);
  assert.equal(p.createHttpFilter(new FakeStream()), null, 'released: bypassed');
  const before = callbackLog(logs).length;
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(callbackLog(logs).length, before, 'root not shut down while a stream is in flight');
  s.respHeaders = HeaderMap.fromPairs([[':status', '200']]);
  inflight.encodeHeaders!(s.respHeaders, true);
  inflight.log!();
  inflight.onDestroy!();
  await released;
  assert.deepEqual(callbackLog(logs).slice(-6), ['response_headers', 'log', 'done', 'delete', 'done', 'delete'], 'stream ends, then the root: on_done, on_delete');
  assert.equal(p.vm!.contexts.size, 0);
});
