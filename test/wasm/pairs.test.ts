/** The pairs codec (spec §3.2): fixtures, round trips, and fuzz-style robustness. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodePairs, encodePairs, encodeBytePairs, utf8Length, encodeStringInto, decodeString } from '../../src/wasm/pairs.ts';

test('encodes the canonical example exactly', () => {
  const b = encodePairs([[':method', 'GET']]);
  assert.deepEqual([...b], [1, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, ...Buffer.from(':method'), 0, ...Buffer.from('GET'), 0]);
  assert.deepEqual(decodePairs(b, 0, b.length), [[':method', 'GET']]);
});

test('empty maps: zero length and a 4-byte zero count both decode to []', () => {
  assert.deepEqual(decodePairs(new Uint8Array(0), 0, 0), []);
  assert.deepEqual(decodePairs(new Uint8Array(4), 0, 4), []);
  assert.deepEqual([...encodePairs([])], [0, 0, 0, 0]);
});

test('round trips random maps, including UTF-8, empty strings and NUL-free binary-ish values', () => {
  const alphabet = ['a', 'Z', '-', ':', 'é', '日', '🙂', ' ', '9'];
  let seed = 42;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const str = () => Array.from({ length: rnd(12) }, () => alphabet[rnd(alphabet.length)]).join('');
  for (let i = 0; i < 500; i++) {
    const pairs = Array.from({ length: rnd(20) }, () => [str(), str()] as [string, string]);
    const b = encodePairs(pairs);
    // decoding from an offset inside a larger buffer
    const big = new Uint8Array(b.length + 10);
    big.set(b, 7);
    assert.deepEqual(decodePairs(big, 7, b.length), pairs);
  }
});

test('malformed input decodes to null, never throws: truncation, trailing bytes, missing NULs, huge counts/sizes', () => {
  const good = encodePairs([['k', 'v'], ['key2', 'value2']]);
  for (let cut = 1; cut < good.length; cut++) assert.equal(decodePairs(good, 0, cut), null, `truncated at ${cut}`);
  const trailing = new Uint8Array(good.length + 1);
  trailing.set(good);
  assert.equal(decodePairs(trailing, 0, trailing.length), null);
  const noNul = good.slice();
  noNul[4 + 16 + 1] = 0x41; // the NUL after the first key
  assert.equal(decodePairs(noNul, 0, noNul.length), null);
  const hugeCount = good.slice();
  new DataView(hugeCount.buffer).setUint32(0, 0xffffffff, true);
  assert.equal(decodePairs(hugeCount, 0, hugeCount.length), null);
  const hugeSize = good.slice();
  new DataView(hugeSize.buffer).setUint32(4, 0xfffffff0, true);
  assert.equal(decodePairs(hugeSize, 0, hugeSize.length), null);
  assert.equal(decodePairs(new Uint8Array(2), 0, 2), null);
  // random garbage
  let seed = 7;
  for (let i = 0; i < 2000; i++) {
    const len = (seed = (seed * 48271) % 0x7fffffff) % 64;
    const b = new Uint8Array(len);
    for (let j = 0; j < len; j++) b[j] = (seed = (seed * 48271) % 0x7fffffff) & (j < 4 ? 0x03 : 0xff);
    const r = decodePairs(b, 0, len);
    assert.ok(r === null || Array.isArray(r));
  }
  // more than 1024 pairs is refused (cpp-host limit)
  const many = encodePairs(Array.from({ length: 1025 }, (_, i) => [`k${i}`, 'v'] as [string, string]));
  assert.equal(decodePairs(many, 0, many.length), null);
});

test('byte pairs (property maps) and string helpers', () => {
  const b = encodeBytePairs([[new Uint8Array([1, 2]), new Uint8Array([])]]);
  assert.equal(b.length, 4 + 8 + 2 + 1 + 0 + 1);
  for (const s of ['', 'ascii', 'héllo', '日本', '🙂x']) {
    assert.equal(utf8Length(s), Buffer.byteLength(s));
    const out = new Uint8Array(utf8Length(s) + 2);
    assert.equal(encodeStringInto(s, out, 1), Buffer.byteLength(s));
    assert.equal(decodeString(out, 1, Buffer.byteLength(s)), s);
  }
  // Lone surrogates (U+FFFD, 3 bytes) and long strings (the native path): the length the host
  // allocates must be exactly what the encoder writes, or it would write past the allocation.
  const long = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36';
  for (const s of ['\ud800é', '\ud800', 'a\udc00b', '\ude42\ud83d', '\ud83d\ude42', long, `${long}\ud800é🙂日`, 'x'.repeat(23) + 'é', 'x'.repeat(24) + 'é']) {
    const n = utf8Length(s);
    assert.equal(n, new TextEncoder().encode(s).length, JSON.stringify(s));
    const out = new Uint8Array(n + 2).fill(0xaa);
    assert.equal(encodeStringInto(s, out, 1), n, JSON.stringify(s));
    assert.equal(out[0], 0xaa);
    assert.equal(out[n + 1], 0xaa, 'nothing written past the length');
  }
});
