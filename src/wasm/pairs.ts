/**
 * The Proxy-Wasm serialized map codec (spec §3.2), strict as cpp-host's pairs_util:
 *   u32 N | N × (u32 keyLen, u32 valueLen) | N × (key NUL value NUL)
 * all little-endian. Anything malformed (short, trailing bytes, missing NUL, too many pairs)
 * decodes to null; callers decide whether that means "empty" (cpp-host) or an error status.
 */
import { Limits } from './abi.ts';

const decoder = new TextDecoder('utf-8', { fatal: false });
const encoder = new TextEncoder();

/** Decodes bytes as UTF-8 with an ASCII fast path (header names/values are almost always ASCII). */
export function decodeString(bytes: Uint8Array, start: number, len: number): string {
  if (len < 48) {
    let s = '';
    const end = start + len;
    for (let i = start; i < end; i++) {
      const c = bytes[i]!;
      if (c >= 0x80) return decoder.decode(bytes.subarray(start, end));
      s += String.fromCharCode(c);
    }
    return s;
  }
  return decoder.decode(bytes.subarray(start, start + len));
}

const CACHE_WIDTH_BITS = 5; // strings up to 32 bytes
const CACHE_SLOT_BITS = 9; // 512 slots

/**
 * Short strings a plugin passes (header names, small values, property paths) repeat on every
 * request: a direct-mapped cache from their bytes to the decoded string spares the decode and its
 * allocations. One cache serves every VM of the isolate (strings are immutable); a miss costs one
 * hash and one copy more than a plain decode. `lower` caches the lower-cased string (header names).
 */
export class ShortStringCache {
  readonly #bytes = new Uint8Array(1 << (CACHE_SLOT_BITS + CACHE_WIDTH_BITS));
  readonly #len = new Int8Array(1 << CACHE_SLOT_BITS).fill(-1);
  readonly #str: string[] = new Array<string>(1 << CACHE_SLOT_BITS).fill('');
  readonly #lower: boolean;

  constructor(lower: boolean) {
    this.#lower = lower;
  }

  get(bytes: Uint8Array, start: number, len: number): string {
    if (len > (1 << CACHE_WIDTH_BITS) || len === 0) return this.#decode(bytes, start, len);
    // Length and three sampled bytes pick the slot; the full compare below decides.
    const h = Math.imul(len ^ (bytes[start]! << 8) ^ (bytes[start + (len >> 1)]! << 16) ^ (bytes[start + len - 1]! << 24), 0x9e3779b1);
    const slot = h >>> (32 - CACHE_SLOT_BITS);
    const at = slot << CACHE_WIDTH_BITS;
    const cache = this.#bytes;
    if (this.#len[slot] === len) {
      let i = 0;
      while (i < len && cache[at + i] === bytes[start + i]) i++;
      if (i === len) return this.#str[slot]!;
    }
    const s = this.#decode(bytes, start, len);
    for (let i = 0; i < len; i++) cache[at + i] = bytes[start + i]!;
    this.#len[slot] = len;
    this.#str[slot] = s;
    return s;
  }

  #decode(bytes: Uint8Array, start: number, len: number): string {
    const s = decodeString(bytes, start, len);
    return this.#lower ? s.toLowerCase() : s;
  }
}

/**
 * From this many UTF-16 units on, Node's native UTF-8 length/encoder beat a JS loop (header values
 * such as user-agent or cookie: ten typical request headers encode ~18% faster); below it the call
 * overhead dominates.
 */
const NATIVE_FROM = 24;

/** UTF-8 byte length of a string, lone surrogates counted as U+FFFD (3 bytes), as TextEncoder writes them. */
export function utf8Length(s: string): number {
  if (s.length >= NATIVE_FROM) return Buffer.byteLength(s, 'utf8');
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** Writes `s` as UTF-8 at `at`; returns bytes written. `out` must have room for utf8Length(s). */
export function encodeStringInto(s: string, out: Uint8Array, at: number): number {
  const len = s.length;
  if (len >= NATIVE_FROM) return encoder.encodeInto(s, out.subarray(at)).written;
  let i = 0;
  // ASCII fast path; fall back to TextEncoder at the first non-ASCII character.
  for (; i < len; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) break;
    out[at + i] = c;
  }
  if (i === len) return len;
  const r = encoder.encodeInto(s.slice(i), out.subarray(at + i));
  return i + r.written;
}

export function encodeString(s: string): Uint8Array {
  return encoder.encode(s);
}

/** Serialized size of a list of pairs given as parallel arrays. */
export function pairsSize(names: readonly string[], values: readonly string[]): number {
  let n = 4;
  for (let i = 0; i < names.length; i++) n += 8 + utf8Length(names[i]!) + 1 + utf8Length(values[i]!) + 1;
  return n;
}

/**
 * Encodes pairs into `out` at `at` (room for pairsSize bytes must exist). Returns bytes written.
 */
export function encodePairsInto(names: readonly string[], values: readonly string[], out: Uint8Array, at: number): number {
  const n = names.length;
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  dv.setUint32(at, n, true);
  let sizes = at + 4;
  let data = at + 4 + n * 8;
  for (let i = 0; i < n; i++) {
    const kl = encodeStringInto(names[i]!, out, data);
    data += kl;
    out[data++] = 0;
    const vl = encodeStringInto(values[i]!, out, data);
    data += vl;
    out[data++] = 0;
    dv.setUint32(sizes, kl, true);
    dv.setUint32(sizes + 4, vl, true);
    sizes += 8;
  }
  return data - at;
}

export function encodePairs(pairs: Iterable<readonly [string, string]>): Uint8Array {
  const names: string[] = [];
  const values: string[] = [];
  for (const [k, v] of pairs) {
    names.push(k);
    values.push(v);
  }
  const out = new Uint8Array(pairsSize(names, values));
  encodePairsInto(names, values, out, 0);
  return out;
}

/** Binary-safe variant: keys and values as raw bytes (used for properties holding maps/lists). */
export function encodeBytePairs(pairs: ReadonlyArray<readonly [Uint8Array, Uint8Array]>): Uint8Array {
  let size = 4;
  for (const [k, v] of pairs) size += 8 + k.length + v.length + 2;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, pairs.length, true);
  let sizes = 4;
  let data = 4 + pairs.length * 8;
  for (const [k, v] of pairs) {
    dv.setUint32(sizes, k.length, true);
    dv.setUint32(sizes + 4, v.length, true);
    sizes += 8;
    out.set(k, data);
    data += k.length + 1;
    out.set(v, data);
    data += v.length + 1;
  }
  return out;
}

/**
 * Decodes serialized pairs from `bytes[start, start+len)`. Returns null when malformed.
 * An empty input (len 0) is an empty map, as is a 4-byte zero count.
 */
export function decodePairs(bytes: Uint8Array, start: number, len: number): Array<[string, string]> | null {
  if (len === 0) return [];
  if (len < 4 || len > Limits.pairsMaxBytes) return null;
  const dv = new DataView(bytes.buffer, bytes.byteOffset + start, len);
  const n = dv.getUint32(0, true);
  if (n > Limits.pairsMaxCount) return null;
  // Overflow-safe: n ≤ 1024 so n*8 is small.
  let data = 4 + n * 8;
  if (data > len) return null;
  const out: Array<[string, string]> = new Array(n);
  for (let i = 0; i < n; i++) {
    const kl = dv.getUint32(4 + i * 8, true);
    const vl = dv.getUint32(8 + i * 8, true);
    if (kl > len || vl > len) return null;
    if (data + kl + 1 + vl + 1 > len) return null;
    if (bytes[start + data + kl] !== 0) return null;
    const key = decodeString(bytes, start + data, kl);
    data += kl + 1;
    if (bytes[start + data + vl] !== 0) return null;
    const value = decodeString(bytes, start + data, vl);
    data += vl + 1;
    out[i] = [key, value];
  }
  if (data !== len) return null;
  return out;
}
