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
