/**
 * A C plugin (clang-19 + wasi-libc, ABI 0.2.1) built by the test: the host calls the AS SDK does
 * not make, plus real wasi-libc start-up (`_initialize`), stdio and environment. Skipped when the
 * Debian toolchain (clang-19, lld-19, wasi-libc) is not installed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StatsStore } from '../../src/observability/stats.ts';
import { SharedState } from '../../src/wasm/shared.ts';
import { buildC, haveClang } from './helpers/build.ts';
import { exchange } from './helpers/driver.ts';
import { factory, plugin } from './helpers/fixtures.ts';

const toolchain = await haveClang();

test('C plugin (ABI 0.2.1): buffers, shared data CAS, queues, foreign functions, properties, WASI', { skip: !toolchain && 'clang-19/wasi-libc not installed', timeout: 120_000 }, async () => {
  const bytes = await buildC('abi021', ['malloc']);
  const logs: Array<[number, string]> = [];
  const shared = new SharedState();
  const p = await plugin(bytes, { logs, shared, env: [['GREETING', 'hello-c']], stats: new StatsStore() });
  assert.equal(p.state, 'ready', p.reason);
  assert.equal(p.compiled?.abi, '0.2.1');
  assert.ok(logs.some(([l, m]) => l === 2 && m === 'vm config: vm-config'), 'printf → fd_write → log; VM configuration buffer');
  const f = factory(p);
  const ex = await exchange(f, { headers: [[':method', 'POST'], [':path', '/c/path'], [':authority', 'h']], body: ['hello ', 'c'] });
  assert.ok(ex.upstream, JSON.stringify(ex.local));
  assert.equal(ex.upstream.body, '<HELLO C>', 'replace + prepend + append through set_buffer_bytes');
  assert.equal(ex.upstream.headers.get('x-prop-path'), '/c/path');
  assert.equal(ex.upstream.headers.get('x-hits'), '1');
  assert.equal(ex.upstream.headers.get('x-map-size'), String(':methodPOST:path/c/path:authorityh'.length));
  assert.equal(ex.response?.headers.get('x-greeting'), 'hello-c');
  assert.match(ex.response!.headers.get('x-log-level')!, /^[0-6]$/);
  assert.match(ex.response!.headers.get('x-compress')!, /^0:\d+$/);
  assert.equal(ex.response?.headers.get('x-unknown-ff'), '1', 'unknown foreign function ⇒ NOT_FOUND');
  await new Promise((r) => setImmediate(r)); // queue notifications run on a later tick
  const ex2 = await exchange(f, { headers: [[':method', 'GET'], [':path', '/second'], [':authority', 'h']] });
  assert.equal(ex2.upstream?.headers.get('x-hits'), '2', 'shared counter with CAS');
  assert.equal(ex2.response?.headers.get('x-queue'), '/c/path', 'on_queue_ready delivered between requests');
  assert.equal(p.vm!.failed, false);
});
