/**
 * The binary rewriter is imported only by a thread that instruments: a module compiled elsewhere
 * (seeded from another thread) loads without it, so most workers never carry its code.
 */
import assert from 'node:assert/strict';
import { registerHooks } from 'node:module';
import { test } from 'node:test';
import { buildWat } from './helpers/build.ts';

const resolved: string[] = [];
registerHooks({
  resolve(specifier, context, next) {
    resolved.push(specifier);
    return next(specifier, context);
  },
});

const WAT = `(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1")) (func (export "loop") (loop $l (br $l))))`;

test('a seeded module compiles without importing the rewriter; a fresh compilation imports it', async () => {
  const bytes = await buildWat(WAT);
  const { compilePlugin, seedCompiledModule, sha256Hex } = await import('../../src/wasm/module.ts');
  const opts = { cpuBudget: true, maxPages: 16 };
  const sha = sha256Hex(bytes);
  const module = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
  seedCompiledModule(`${sha}:fuel:16`, { sha256: sha, module, abi: '0.2.1', exports: new Set(['memory', 'proxy_abi_version_0_2_1', 'loop']), fuel: true, byteLength: bytes.length, maxPages: 16 });
  const seeded = await compilePlugin(bytes, opts);
  assert.equal(seeded.module, module);
  assert.deepEqual(resolved.filter((s) => s.includes('instrument')), []);
  const fresh = await compilePlugin(bytes, { cpuBudget: true, maxPages: 8 });
  assert.equal(fresh.fuel, true);
  assert.ok(resolved.some((s) => s.includes('instrument')));
});
