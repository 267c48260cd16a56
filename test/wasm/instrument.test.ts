/**
 * The binary rewriter (CPU budget fuel + memory cap): the output validates, keeps every export,
 * function index, table entry and name, behaves identically, and unsupported features are reported.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { instrument, MemoryCapError, UnsupportedWasmFeature, FUEL_IMPORT_MODULE, FUEL_IMPORT_NAME } from '../../src/wasm/instrument.ts';
import { buildAs, buildWat } from './helpers/build.ts';
import { buildHarness } from './helpers/harness.ts';
import { watPlugin } from './helpers/wat.ts';

const SAMPLE = `(module
  (import "env" "f" (func $imp (param i32) (result i32)))
  (type $t (func (param i32) (result i32)))
  (table 4 funcref)
  (memory (export "memory") 1 100)
  (global $g (mut i32) (i32.const 5))
  (global $fr funcref (ref.func $double))
  (elem (i32.const 0) $double $inc)
  (elem declare func $double)
  (func $double (param i32) (result i32) (i32.mul (local.get 0) (i32.const 2)))
  (func $inc (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
  (func $sum (export "sum") (param $n i32) (result i32) (local $acc i32)
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $acc (i32.add (local.get $acc) (call_indirect (type $t) (local.get $n) (i32.rem_u (local.get $n) (i32.const 2)))))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l)))
    (i32.add (local.get $acc) (call $imp (i32.const 0))))
  (func (export "via_ref") (param i32) (result i32) (call $inc (local.get 0)))
  (func (export "simd") (result i32) (i32x4.extract_lane 2 (i32x4.add (v128.const i32x4 1 2 3 4) (v128.const i32x4 10 20 30 40))))
  (func (export "grow") (result i32) (memory.grow (i32.const 1)))
  (start $startf)
  (func $startf (global.set $g (i32.const 6)))
)`;

async function sample(): Promise<Uint8Array> {
  return buildWat(SAMPLE);
}

test('instrumented module validates and computes the same results; fuel import and name section', async () => {
  const bytes = await sample();
  const out = instrument(bytes, { fuel: true, maxPages: 10 });
  assert.ok(WebAssembly.validate(out.bytes as Uint8Array<ArrayBuffer>));
  assert.equal(out.loops, 1);
  const orig = new WebAssembly.Instance(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>), { env: { f: () => 100 } }).exports as any;
  let checks = 0;
  const mod = new WebAssembly.Module(out.bytes as Uint8Array<ArrayBuffer>);
  assert.ok(WebAssembly.Module.imports(mod).some((i) => i.module === FUEL_IMPORT_MODULE && i.name === FUEL_IMPORT_NAME));
  assert.deepEqual(WebAssembly.Module.exports(mod).map((e) => e.name), WebAssembly.Module.exports(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>)).map((e) => e.name));
  const inst = new WebAssembly.Instance(mod, { env: { f: () => 100 }, [FUEL_IMPORT_MODULE]: { [FUEL_IMPORT_NAME]: () => (checks++, 3) } }).exports as any;
  for (const n of [0, 1, 7, 50]) assert.equal(inst.sum(n), orig.sum(n), `sum(${n})`);
  assert.ok(checks > 10, 'fuel_check called every 3 iterations');
  assert.equal(inst.via_ref(4), 5);
  assert.equal(inst.simd(), 33);
  // memory cap: max lowered from 100 to 10 pages
  for (let i = 1; i < 10; i++) assert.equal(inst.grow(), i);
  assert.equal(inst.grow(), -1, 'grow past the cap fails');
  assert.equal(orig.grow(), 1);
  // a trap inside still names the function (name section remapped)
  const trapMod = await buildWat('(module (func $boom (export "boom") unreachable) (func (export "x") (loop $l (br_if $l (i32.const 0)))))');
  const t = instrument(trapMod, { fuel: true, maxPages: 0 });
  const ti = new WebAssembly.Instance(new WebAssembly.Module(t.bytes as Uint8Array<ArrayBuffer>), { [FUEL_IMPORT_MODULE]: { [FUEL_IMPORT_NAME]: () => 1000 } }).exports as any;
  assert.throws(() => ti.boom(), (e: Error) => /boom/.test(e.stack ?? ''));
});

test('tail-call cycles (return_call) are bounded too: functions containing tail calls check fuel on entry', async () => {
  const bytes = await buildWat(`(module
    (func $a (export "spin") (param i32) (result i32) (return_call $b (i32.add (local.get 0) (i32.const 1))))
    (func $b (param i32) (result i32) (return_call $a (local.get 0)))
    (func (export "plain") (result i32) (i32.const 7)))`);
  const out = instrument(bytes, { fuel: true, maxPages: 0 });
  let checks = 0;
  const inst = new WebAssembly.Instance(new WebAssembly.Module(out.bytes as Uint8Array<ArrayBuffer>), {
    [FUEL_IMPORT_MODULE]: {
      [FUEL_IMPORT_NAME]: () => {
        if (++checks > 50) throw new Error('budget');
        return 100;
      },
    },
  }).exports as any;
  assert.equal(inst.plain(), 7);
  assert.throws(() => inst.spin(0), /budget/);
  assert.ok(checks > 50);
});

test('memory cap only (no fuel) leaves code untouched; initial memory above the cap is refused', async () => {
  const bytes = await sample();
  const out = instrument(bytes, { fuel: false, maxPages: 3 });
  const inst = new WebAssembly.Instance(new WebAssembly.Module(out.bytes as Uint8Array<ArrayBuffer>), { env: { f: () => 1 } }).exports as any;
  assert.equal(inst.grow(), 1);
  assert.equal(inst.grow(), 2);
  assert.equal(inst.grow(), -1);
  assert.throws(() => instrument(bytes, { fuel: false, maxPages: 0.5 as unknown as number }), MemoryCapError);
  const big = await buildWat('(module (memory 20))');
  assert.throws(() => instrument(big, { fuel: true, maxPages: 8 }), MemoryCapError);
});

test('every test plugin (AS SDK, WAT harness, generated plugins) instruments into a valid module', async () => {
  const mods = [await buildHarness(), await buildWat(watPlugin({ start: ['_initialize', 'main'] })), ...(await Promise.all(['headers', 'auth', 'body', 'timer'].map((n) => buildAs(n))))];
  for (const m of mods) {
    const out = instrument(m, { fuel: true, maxPages: 1024 });
    assert.ok(WebAssembly.validate(out.bytes as Uint8Array<ArrayBuffer>));
  }
});

test('rejects what it cannot rewrite: not wasm, truncated, unknown opcodes', () => {
  assert.throws(() => instrument(new Uint8Array([1, 2, 3]), { fuel: true, maxPages: 0 }), UnsupportedWasmFeature);
  // a function body with an unknown opcode 0xff
  const bad = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 4, 1, 0x60, 0, 0, 3, 2, 1, 0, 10, 5, 1, 3, 0, 0xff, 0x0b]);
  assert.throws(() => instrument(bad, { fuel: true, maxPages: 0 }), UnsupportedWasmFeature);
  // truncated everywhere: never anything but UnsupportedWasmFeature
  const ok = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 4, 1, 0x60, 0, 0, 3, 2, 1, 0, 10, 6, 1, 4, 0, 3, 0x40, 0x0b, 0x0b]);
  for (let cut = 9; cut < ok.length; cut++) {
    try {
      instrument(ok.subarray(0, cut), { fuel: true, maxPages: 0 });
    } catch (e) {
      assert.ok(e instanceof UnsupportedWasmFeature, `cut ${cut}: ${(e as Error).message}`);
    }
  }
});
