/**
 * An ordered, case-insensitive multimap of HTTP headers, as Envoy's HeaderMap.
 *
 * Names are stored lower-cased. Pseudo-headers (`:method`, `:path`, `:authority`, `:scheme`,
 * `:status`) live in the same map, first, as in Envoy and in the Proxy-Wasm pairs encoding.
 * Two parallel arrays instead of an array of tuples: fewer allocations on the hot path.
 */
/** The lower-cased name of #indexOf's last miss (set() appends under it without lower-casing again). */
let missedKey = '';

export class HeaderMap {
  readonly names: string[] = [];
  readonly values: string[] = [];

  static fromPairs(pairs: Iterable<readonly [string, string]>): HeaderMap {
    const map = new HeaderMap();
    for (const [name, value] of pairs) map.add(name, value);
    return map;
  }

  get size(): number {
    return this.names.length;
  }

  /** First value of `name`, or undefined. */
  get(name: string): string | undefined {
    const i = this.#indexOf(name);
    return i < 0 ? undefined : this.values[i];
  }

  /**
   * Index of the first entry named `name` (any case), or -1. Stored names are lower-case and
   * callers mostly pass lower-case literals: the name is looked up as given first, and lower-cased
   * (a builtin call) only when that misses and lower-casing changes it.
   */
  #indexOf(name: string): number {
    const names = this.names;
    for (let i = 0; i < names.length; i++) if (names[i] === name) return i;
    const key = name.toLowerCase();
    missedKey = key;
    if (key === name) return -1;
    for (let i = 0; i < names.length; i++) if (names[i] === key) return i;
    return -1;
  }

  /** Every value of `name`, in order. */
  getAll(name: string): string[] {
    const key = name.toLowerCase();
    const out: string[] = [];
    for (let i = 0; i < this.names.length; i++) if (this.names[i] === key) out.push(this.values[i]!);
    return out;
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  /** Appends a value (a header may repeat). */
  add(name: string, value: string): void {
    this.#append(name.toLowerCase(), value);
  }

  /** add() of a lower-cased name. */
  #append(key: string, value: string): void {
    if (key.charCodeAt(0) === 58 /* ':' */) {
      // Pseudo-headers stay ahead of regular headers, as HTTP/2 requires.
      let at = 0;
      while (at < this.names.length && this.names[at]!.charCodeAt(0) === 58) at++;
      this.names.splice(at, 0, key);
      this.values.splice(at, 0, value);
      return;
    }
    this.names.push(key);
    this.values.push(value);
  }

  /** Replaces every value of `name` with one value (adds it when absent), keeping the first position. */
  set(name: string, value: string): void {
    const first = this.#indexOf(name);
    if (first < 0) {
      this.#append(missedKey, value);
      return;
    }
    const key = this.names[first]!;
    this.values[first] = value;
    for (let i = this.names.length - 1; i > first; i--) {
      if (this.names[i] === key) {
        this.names.splice(i, 1);
        this.values.splice(i, 1);
      }
    }
  }

  /** Removes every value of `name`; returns how many were removed. */
  remove(name: string): number {
    const key = name.toLowerCase();
    let removed = 0;
    for (let i = this.names.length - 1; i >= 0; i--) {
      if (this.names[i] === key) {
        this.names.splice(i, 1);
        this.values.splice(i, 1);
        removed++;
      }
    }
    return removed;
  }

  clear(): void {
    this.names.length = 0;
    this.values.length = 0;
  }

  /** Replaces the whole content (Proxy-Wasm `set_header_map_pairs`). */
  replaceAll(pairs: Iterable<readonly [string, string]>): void {
    this.clear();
    for (const [n, v] of pairs) this.add(n, v);
  }

  forEach(fn: (name: string, value: string) => void): void {
    for (let i = 0; i < this.names.length; i++) fn(this.names[i]!, this.values[i]!);
  }

  *[Symbol.iterator](): IterableIterator<[string, string]> {
    for (let i = 0; i < this.names.length; i++) yield [this.names[i]!, this.values[i]!];
  }

  /** Bytes as Envoy counts them for header size limits: name + value per entry. */
  byteSize(): number {
    let n = 0;
    for (let i = 0; i < this.names.length; i++) n += this.names[i]!.length + this.values[i]!.length;
    return n;
  }

  clone(): HeaderMap {
    const copy = new HeaderMap();
    copy.names.push(...this.names);
    copy.values.push(...this.values);
    return copy;
  }

  /** One string per name, repeated values joined with ", " (node:http2 compatibility-API trailers). */
  toJoinedObject(): Record<string, string> {
    const out: Record<string, string> = {};
    for (let i = 0; i < this.names.length; i++) {
      const k = this.names[i]!;
      const prev = out[k];
      out[k] = prev === undefined ? this.values[i]! : `${prev}, ${this.values[i]!}`;
    }
    return out;
  }

  toObject(): Record<string, string | string[]> {
    const out: Record<string, string | string[]> = {};
    for (let i = 0; i < this.names.length; i++) {
      const k = this.names[i]!;
      const prev = out[k];
      if (prev === undefined) out[k] = this.values[i]!;
      else if (Array.isArray(prev)) prev.push(this.values[i]!);
      else out[k] = [prev, this.values[i]!];
    }
    return out;
  }
}
