/**
 * Plugins written with the AssemblyScript SDK (@solo-io/proxy-runtime 0.1.8, ABI 0.2.0), built from
 * test/wasm/plugins/as/ by the test itself, run through the WasmHttpFilter.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StatsStore } from '../../src/observability/stats.ts';
import { buildAs } from './helpers/build.ts';
import { exchange } from './helpers/driver.ts';
import { FakeClusters, factory, plugin } from './helpers/fixtures.ts';

// Start every build at once (asc takes ~25 s per plugin; cached afterwards under build/test-plugins).
const built = Object.fromEntries(['headers', 'auth', 'body', 'timer'].map((n) => [n, buildAs(n)])) as Record<string, Promise<Uint8Array>>;
for (const b of Object.values(built)) b.catch(() => undefined);

test('AS headers plugin: reads request headers, mutates both directions, uses its config and a counter', { timeout: 240_000 }, async () => {
  const bytes = await built['headers']!;
  const stats = new StatsStore();
  const logs: Array<[number, string]> = [];
  const p = await plugin(bytes, { rootId: 'headers', config: { greeting: 'hi' }, stats, logs });
  assert.equal(p.state, 'ready', p.reason);
  assert.equal(p.compiled?.abi, '0.2.0');
  assert.equal(p.compiled?.fuel, true, 'the SDK module was instrumented for the CPU budget');
  const ex = await exchange(factory(p), {
    headers: [[':method', 'GET'], [':path', '/x'], [':authority', 'h'], ['x-a', 'one'], ['x-b', 'two'], ['x-remove-me', '1']],
  });
  assert.ok(ex.upstream, 'request reached upstream');
  assert.equal(ex.upstream.headers.get('x-added-by-wasm'), 'yes');
  assert.equal(ex.upstream.headers.get('x-remove-me'), undefined);
  assert.equal(ex.response?.headers.get('x-config'), '{"greeting":"hi"}');
  assert.equal(ex.response?.headers.get('x-seen'), 'one|two');
  assert.equal(stats.counter('wasmcustom.test_plugin_requests_total').value, 1);
  assert.ok(logs.some(([l, m]) => l === 2 && m === 'onLog one|two'), 'on_log ran');
});

test('AS auth plugin: local reply from request headers, from response headers, and after an HTTP callout', { timeout: 240_000 }, async () => {
  const bytes = await built['auth']!;
  const clusters = new FakeClusters();
  const logs: Array<[number, string]> = [];
  const p = await plugin(bytes, { rootId: 'auth', clusters, logs });
  assert.equal(p.state, 'ready', p.reason);
  const f = factory(p);

  // 1. local reply from on_request_headers: never reaches upstream
  const denied = await exchange(f, { headers: [[':method', 'GET'], [':path', '/'], [':authority', 'h'], ['x-deny', '1']] });
  assert.equal(denied.upstream, undefined);
  assert.equal(denied.local?.status, 403);
  assert.equal(denied.local?.body, 'forbidden');
  assert.equal(denied.local?.options?.details, 'denied_by_plugin', 'whitespace in details replaced by _');
  assert.deepEqual(denied.local?.options?.headers, [['x-reason', 'deny header']]);
  assert.equal(denied.local?.options?.grpcStatus, undefined, '-1 means no grpc-status');

  // 2. local reply from on_response_headers
  const upFail = await exchange(f, {}, { headers: [[':status', '200'], ['x-upstream-fail', '1']] });
  assert.ok(upFail.upstream);
  assert.equal(upFail.local?.status, 502);
  assert.equal(upFail.local?.body, 'bad gateway from plugin');

  // 3. callout allowed: paused, resumed on the response, header added from the callout callback
  clusters.auto = (req) => ({ status: req.headers.get(':path') === '/check/ok' ? 200 : 403, body: 'x' });
  const ok = await exchange(f, { headers: [[':method', 'GET'], [':path', '/callout/ok'], [':authority', 'h']] });
  assert.ok(ok.upstream, 'resumed after callout');
  assert.equal(ok.upstream.headers.get('x-auth-status'), '200');
  assert.equal(ok.stream.continued.decoding, 1);
  const call = clusters.calls.at(-1)!;
  assert.equal(call.req.cluster, 'auth');
  assert.equal(call.req.headers.get(':authority'), 'auth');
  assert.equal(call.req.timeoutMs, 1000);
  assert.ok(logs.some(([, m]) => m === 'callout answered 200 headers=1 body=1'), JSON.stringify(logs.slice(-5)));

  // 4. callout denied: local reply from the callout callback (root context + set_effective_context)
  const no = await exchange(f, { headers: [[':method', 'GET'], [':path', '/callout/no'], [':authority', 'h']] });
  assert.equal(no.upstream, undefined);
  assert.equal(no.local?.status, 401);
  assert.equal(no.local?.options?.grpcStatus, 16);
  assert.deepEqual(no.local?.options?.headers, [['x-auth', 'failed']]);
});

test('AS body plugin: cumulative request body buffering, response body, properties', { timeout: 240_000 }, async () => {
  const bytes = await built['body']!;
  const logs: Array<[number, string]> = [];
  const p = await plugin(bytes, { rootId: 'body', logs });
  assert.equal(p.state, 'ready', p.reason);
  const ex = await exchange(
    factory(p),
    { headers: [[':method', 'POST'], [':path', '/upload?x=1'], [':authority', 'h']], body: ['hello ', 'wasm ', 'world'] },
    { body: ['resp', 'onse'] },
  );
  assert.equal(ex.upstream?.body, 'hello wasm world');
  assert.equal(ex.response?.headers.get('x-request-body'), 'hello wasm world/16');
  assert.equal(ex.response?.headers.get('x-body-calls'), '3', 'called once per chunk with the cumulative buffer');
  assert.equal(ex.response?.headers.get('x-path'), '/upload?x=1');
  assert.equal(ex.response?.body, 'response');
  assert.ok(logs.some(([, m]) => m === 'response body: response'));
});

test('AS timer plugin: ticks on the root context, re-armed until cancelled; counter, gauge, histogram', { timeout: 240_000 }, async () => {
  const bytes = await built['timer']!;
  const stats = new StatsStore();
  const logs: Array<[number, string]> = [];
  const p = await plugin(bytes, { rootId: 'timer', stats, logs });
  assert.equal(p.state, 'ready', p.reason);
  const deadline = Date.now() + 3000;
  while (stats.counter('wasmcustom.timer_ticks_total').value < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 120));
  assert.equal(stats.counter('wasmcustom.timer_ticks_total').value, 3, 'exactly 3 ticks, then cancelled');
  assert.equal(stats.gauge('wasmcustom.timer_gauge').value, 30);
  const h = stats.snapshot().find((e) => e.name === 'wasmcustom.timer_hist');
  assert.ok(h && h.kind === 'histogram' && h.count === 3 && h.sum === 21);
  assert.ok(logs.some(([, m]) => m === 'tick 3 at sane'));
  await p.release();
});
