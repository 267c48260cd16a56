/**
 * Plugins written with the AssemblyScript SDK (@solo-io/proxy-runtime 0.1.8, ABI 0.2.0), built from
 * test/wasm/plugins/as/ by the test itself, run through the WasmHttpFilter.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StatsStore } from '../../src/observability/stats.ts';
import { buildAs } from './helpers/build.ts';
import { exchange } from './helpers/driver.ts';
import { factory, plugin } from './helpers/fixtures.ts';

test('AS headers plugin: reads request headers, mutates both directions, uses its config and a counter', { timeout: 240_000 }, async () => {
  const bytes = await buildAs('headers');
  const stats = new StatsStore();
  const logs: Array<[number, string]> = [];
  const p = await plugin(bytes, { rootId: 'headers', config: { greeting: 'hi' }, stats, logs });
  assert.equal(p.state, 'ready', p.reason);
  assert.equal(p.compiled?.abi, '0.2.0');
  const ex = await exchange(factory(p), {
    headers: [[':method', 'GET'], [':path', '/x'], [':authority', 'h'], ['x-a', 'one'], ['x-b', 'two'], ['x-remove-me', '1']],
  });
  assert.ok(ex.upstream, 'request reached upstream');
  assert.equal(ex.upstream.headers.get('x-added-by-wasm'), 'yes');
  assert.equal(ex.upstream.headers.get('x-remove-me'), undefined);
  assert.equal(ex.response?.headers.get('x-config'), '{"greeting":"hi"}');
  assert.equal(ex.response?.headers.get('x-seen'), 'one|two');
  assert.equal(stats.counter('test_plugin_requests_total').value, 1);
  assert.ok(logs.some(([l, m]) => l === 2 && m === 'onLog one|two'), 'on_log ran');
});
