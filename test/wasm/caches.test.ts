/**
 * The host's per-request shortcuts, checked against the plain structures they replace: the
 * context table (vs a Map, including long-lived ids, wrap-around probe runs and growth) and the
 * short-string cache (vs a plain decode, including slot collisions and non-ASCII bytes).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ContextTable } from '../../src/wasm/context-table.ts';
import { ShortStringCache, decodeString } from '../../src/wasm/pairs.ts';

function rng(seed: number): () => number {
  return () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32;
  };
}

test('context table: random streams against a Map, with long-lived ids and growth', () => {
  const rand = rng(7);
  const t = new ContextTable<{ id: number; tag: number }>(8);
  const ref = new Map<number, { id: number; tag: number }>();
  let next = 1;
  // Ids a few long-lived contexts hold while thousands of short ones pass by (their home slots
  // collide with the sweeping window again and again).
  for (let i = 0; i < 5; i++) {
    const c = { id: next++, tag: -1 };
    t.set(c);
    ref.set(c.id, c);
  }
  const live: number[] = [];
  for (let op = 0; op < 200_000; op++) {
    const r = rand();
    if (r < 0.5 || live.length === 0) {
      const c = { id: next++, tag: op };
      t.set(c);
      ref.set(c.id, c);
      live.push(c.id);
    } else {
      // Mostly the oldest (streams end roughly in order), sometimes a random one.
      const k = r < 0.9 ? 0 : Math.floor(rand() * live.length);
      const id = live.splice(k, 1)[0]!;
      assert.equal(t.delete(id), true);
      ref.delete(id);
    }
    if (op % 997 === 0) {
      assert.equal(t.size, ref.size);
      for (const [id, c] of ref) assert.equal(t.get(id), c, `id ${id} at op ${op}`);
      assert.equal(t.get(next + 5), undefined);
      assert.equal(t.delete(next + 5), false);
    }
    // Bursts: many concurrent streams make the table grow several times.
    if (op === 100_000) for (let i = 0; i < 3000; i++) {
      const c = { id: next++, tag: op };
      t.set(c);
      ref.set(c.id, c);
      live.push(c.id);
    }
  }
  assert.equal(t.size, ref.size);
  assert.deepEqual(t.values().map((c) => c.id).sort((a, b) => a - b), [...ref.keys()].sort((a, b) => a - b));
  for (const id of [1, 2, 3, 4, 5]) assert.equal(t.get(id)?.tag, -1, 'long-lived contexts survive');
  // Replacing an entry keeps one copy; ids near the u32 limit work too.
  const big = { id: 0xfffffff0, tag: 1 };
  t.set(big);
  t.set({ id: 0xfffffff0, tag: 2 });
  assert.equal(t.get(0xfffffff0)?.tag, 2);
  assert.equal(t.size, ref.size + 1);
  t.clear();
  assert.equal(t.size, 0);
  assert.equal(t.get(1), undefined);
});

test('short-string cache: same answers as a decode, under collisions, evictions and non-ASCII', () => {
  const rand = rng(3);
  const values = new ShortStringCache(false);
  const names = new ShortStringCache(true);
  const mem = new Uint8Array(4096);
  const enc = new TextEncoder();
  const alphabet = ['a', 'b', 'X', '-', ':', 'é', '日', '0', '9'];
  // A small pool so entries repeat (hits) and many share length and sampled bytes (collisions).
  const pool: string[] = [];
  for (let i = 0; i < 3000; i++) {
    let s = '';
    const n = Math.floor(rand() * 14);
    for (let j = 0; j < n; j++) s += alphabet[Math.floor(rand() * alphabet.length)];
    pool.push(s);
  }
  pool.push('x'.repeat(40), 'Y'.repeat(33)); // longer than the cache width: decoded every time
  for (let i = 0; i < 50_000; i++) {
    const s = pool[Math.floor(rand() * pool.length)]!;
    const at = Math.floor(rand() * 1000);
    const n = enc.encodeInto(s, mem.subarray(at)).written;
    assert.equal(values.get(mem, at, n), decodeString(mem, at, n));
    assert.equal(names.get(mem, at, n), decodeString(mem, at, n).toLowerCase());
    // The bytes change under the cache: the next read of the same place must not see the old string.
    mem.fill(0x41, at, at + n);
    assert.equal(values.get(mem, at, n), 'A'.repeat(n));
  }
  // Invalid UTF-8 decodes as a plain decode would (replacement characters), cached or not.
  mem.set([0x78, 0xff, 0x79], 0);
  assert.equal(values.get(mem, 0, 3), decodeString(mem, 0, 3));
  assert.equal(values.get(mem, 0, 3), decodeString(mem, 0, 3));
  assert.equal(values.get(mem, 0, 0), '');
});

test('cached memory views: host calls see memory grown by the allocator and by the plugin itself', async () => {
  const { buildWat } = await import('./helpers/build.ts');
  const { plugin, factory } = await import('./helpers/fixtures.ts');
  const { exchange } = await import('./helpers/driver.ts');
  // malloc grows memory by one page on every call and hands out the new page, so each value the
  // host returns lands beyond the buffer its cached view was made for. on_response_headers grows
  // memory, writes the header name and value into the new page and adds them, then echoes the
  // request value it got back (copied from the allocator's page) as a second header.
  const wat = `(module
    (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
    (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 1024) "x-number")
    (data (i32.const 1040) "x-echo")
    (global $vp (mut i32) (i32.const 0))
    (global $vl (mut i32) (i32.const 0))
    (func (export "malloc") (param $n i32) (result i32)
      (i32.mul (memory.grow (i32.const 1)) (i32.const 65536)))
    (func (export "proxy_abi_version_0_2_1"))
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (drop (call $get (i32.const 0) (i32.const 1024) (i32.const 8) (i32.const 2000) (i32.const 2004)))
      (global.set $vp (i32.load (i32.const 2000)))
      (global.set $vl (i32.load (i32.const 2004)))
      (i32.const 0))
    (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (local $p i32)
      (local.set $p (i32.mul (memory.grow (i32.const 1)) (i32.const 65536)))
      ;; "x-new" = 78 2d 6e 65 77, value "grown" = 67 72 6f 77 6e
      (i64.store (local.get $p) (i64.const 0x6f726777656e2d78))
      (i32.store16 (i32.add (local.get $p) (i32.const 8)) (i32.const 0x6e77))
      (drop (call $add (i32.const 2) (local.get $p) (i32.const 5) (i32.add (local.get $p) (i32.const 5)) (i32.const 5)))
      (drop (call $add (i32.const 2) (i32.const 1040) (i32.const 6) (global.get $vp) (global.get $vl)))
      (i32.const 0)))`;
  const p = await plugin(await buildWat(wat), { cpuBudgetMs: 0, maxPages: 0 });
  assert.equal(p.state, 'ready', p.reason);
  for (const n of ['7', '12345']) {
    const ex = await exchange(factory(p), { headers: [[':method', 'GET'], [':path', '/'], [':authority', 'h'], ['x-number', n]] });
    assert.equal(ex.response?.headers.get('x-new'), 'grown', 'key and value read from a page grown inside the callback');
    assert.equal(ex.response?.headers.get('x-echo'), n, 'value written into a page the allocator had just grown');
  }
  assert.ok(p.vm!.memoryBytes() >= 5 * 65536, 'memory grew on every allocation');
});
