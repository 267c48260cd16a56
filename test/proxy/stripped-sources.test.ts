/**
 * Workers run from a type-stripped JavaScript copy of the sources (built once in the main thread).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { workerEntry } from '../../src/proxy/stripped-sources.ts';

test('the worker entry is stripped JavaScript whose relative imports point at .js files', () => {
  const entry = fileURLToPath(workerEntry());
  assert.match(entry, /\.meshext-js\/proxy\/worker\.js$/);
  const js = readFileSync(entry, 'utf8');
  assert.doesNotMatch(js, /from '\.{1,2}\/[^']+\.ts'/);
  assert.match(js, /from '\.\/data-plane\.js'/);
  assert.doesNotMatch(js, /: BootstrapConfig/, 'type annotations are gone');
  // Non-TypeScript sources (the LuaJIT addon's C file) are copied beside, at the same depth as src/.
  assert.ok(existsSync(fileURLToPath(new URL('../lua/native/luajit.c', workerEntry()))));
});
