/**
 * The data plane's module graph must not load Node's bundled undici or the CA list (src/proxy/node-builtins.ts):
 * an ES import of node:http or node:tls anywhere in it would, at ~1.5 MiB of heap per worker.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';

test('importing the data plane does not load Node\'s bundled undici (an ES import of node:http would)', () => {
  const dataPlane = new URL('../../src/proxy/data-plane.ts', import.meta.url).href;
  const out = execFileSync(
    process.execPath,
    ['--input-type=module', '-e', `await import(${JSON.stringify(dataPlane)}); console.log(JSON.stringify(process.moduleLoadList))`],
    { encoding: 'utf8' },
  );
  const loaded = JSON.parse(out.trim().split('\n').pop()!) as string[];
  assert.ok(loaded.some((m) => m.includes('internal/http2') || m === 'NativeModule http2'), 'the graph was loaded');
  assert.deepEqual(loaded.filter((m) => /undici/.test(m)), [], 'undici internals loaded');
});
