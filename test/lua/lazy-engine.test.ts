/**
 * The Lua runtime loads only the engine it runs: a LuaJIT worker never imports wasmoon (its glue
 * and engine module cost every worker thread about half a MiB of heap).
 */
import assert from 'node:assert/strict';
import { registerHooks } from 'node:module';
import { test } from 'node:test';

const resolved: string[] = [];
registerHooks({
  resolve(specifier, context, next) {
    resolved.push(specifier);
    return next(specifier, context);
  },
});

test('selecting LuaJIT does not import wasmoon; selecting wasmoon does', async (t) => {
  const { getLuajitEngine, selectEngine } = await import('../../src/lua/engines.ts');
  if (!getLuajitEngine()) return t.skip('the LuaJIT addon is not built');
  const jit = await selectEngine('auto');
  assert.equal(jit.name, 'luajit');
  assert.deepEqual(resolved.filter((s) => s.includes('wasmoon')), []);
  const w = await selectEngine('wasmoon');
  assert.equal(w.name, 'wasmoon');
  assert.ok(resolved.some((s) => s.includes('wasmoon')));
});
