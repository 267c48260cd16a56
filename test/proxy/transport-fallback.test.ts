/**
 * The HTTP/1.1 suites once more on node:net (MESHEXT_TRANSPORT=node), in a child test run: with the
 * native transport built, the other files exercise it, and this keeps the node:net path (TLS-less
 * fallback where the addon is missing) tested too. Skipped when the addon is not built: then every
 * other file already runs on node:net.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { nativeTransportStatus } from '../../src/proxy/transport/native-socket.ts';

const SUITES = ['smoke', 'http1', 'http1-codec', 'headers', 'streaming', 'trailers', 'local-replies', 'drain', 'http2'];
const status = nativeTransportStatus();

test('the HTTP/1.1 suites pass on node:net as well', { skip: status.native ? false : `native transport not in use (${status.reason})`, timeout: 300_000 }, () => {
  const files = SUITES.map((s) => fileURLToPath(new URL(`./${s}.test.ts`, import.meta.url)));
  // Without NODE_TEST_CONTEXT: the child is a test run of its own, not this run's subprocess.
  const { NODE_TEST_CONTEXT: _ctx, ...env } = process.env;
  const r = spawnSync(process.execPath, ['--test', '--test-reporter=tap', ...files], {
    encoding: 'utf8',
    env: { ...env, MESHEXT_TRANSPORT: 'node' },
    timeout: 280_000,
  });
  const summary = r.stdout.split('\n').filter((l) => /^# (tests|pass|fail|cancelled)/.test(l));
  const failures = r.stdout.split('\n').filter((l) => /^\s*not ok/.test(l));
  assert.equal(r.status, 0, `node:net run failed:\n${failures.join('\n')}\n${summary.join('\n')}\n${r.stderr.slice(-2000)}`);
  assert.ok(summary.some((l) => /^# pass [1-9]/.test(l)), summary.join('\n'));
});
