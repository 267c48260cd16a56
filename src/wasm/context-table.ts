/**
 * The live contexts of one VM by id (proxy_set_effective_context looks them up; failure and
 * dispose walk them). A Map cost ~70-80 ns per stream for the set + delete pair: ids only grow,
 * so V8's ordered hash table keeps filling with deleted entries and rehashing. Here: open
 * addressing with linear probing, backward-shift deletion (no tombstones), doubled at half load.
 * Ids go through Fibonacci hashing rather than `id & mask`: streams in flight have consecutive ids,
 * which would sit in one contiguous probe run that every deletion has to scan to its end. Keys sit
 * in their own typed array, so probing reads one cache line instead of one object per slot.
 */
export interface Keyed {
  readonly id: number;
}

export class ContextTable<T extends Keyed> {
  /** Context ids (0 = empty slot: ids start at 1). Float64 so ids past 2^32 stay exact. */
  #keys: Float64Array;
  #slots: Array<T | undefined>;
  #mask: number;
  /** 32 - log2(capacity): the hash keeps the top bits of id × 2^32/φ. */
  #shift: number;
  #size = 0;

  constructor(capacity = 64) {
    let cap = 8;
    while (cap < capacity) cap <<= 1;
    this.#keys = new Float64Array(cap);
    this.#slots = new Array<T | undefined>(cap).fill(undefined);
    this.#mask = cap - 1;
    this.#shift = 32 - Math.log2(cap);
  }

  #home(id: number): number {
    return Math.imul(id, 0x9e3779b1) >>> this.#shift;
  }

  get size(): number {
    return this.#size;
  }

  get(id: number): T | undefined {
    const keys = this.#keys;
    const mask = this.#mask;
    for (let i = this.#home(id); ; i = (i + 1) & mask) {
      const k = keys[i]!;
      if (k === id) return this.#slots[i];
      if (k === 0) return undefined;
    }
  }

  /** Adds or replaces the entry for `value.id` (which must not be 0). */
  set(value: T): void {
    if ((this.#size + 1) * 2 > this.#keys.length) this.#grow();
    this.#insert(value);
  }

  delete(id: number): boolean {
    const keys = this.#keys;
    const slots = this.#slots;
    const mask = this.#mask;
    let hole = this.#home(id);
    for (;;) {
      const k = keys[hole]!;
      if (k === id) break;
      if (k === 0) return false;
      hole = (hole + 1) & mask;
    }
    this.#size--;
    // Shift later members of the probe run back so lookups never cross an empty slot early.
    for (let j = (hole + 1) & mask; ; j = (j + 1) & mask) {
      const k = keys[j]!;
      if (k === 0) break;
      const home = this.#home(k);
      // k may move into the hole when its home is not inside the cyclic range (hole, j].
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        keys[hole] = k;
        slots[hole] = slots[j];
        hole = j;
      }
    }
    keys[hole] = 0;
    slots[hole] = undefined;
    return true;
  }

  /** A snapshot of the entries (safe to mutate the table while walking it). */
  values(): T[] {
    const out: T[] = [];
    for (const c of this.#slots) if (c !== undefined) out.push(c);
    return out;
  }

  clear(): void {
    this.#keys.fill(0);
    this.#slots.fill(undefined);
    this.#size = 0;
  }

  #insert(value: T): void {
    const keys = this.#keys;
    const mask = this.#mask;
    const id = value.id;
    for (let i = this.#home(id); ; i = (i + 1) & mask) {
      const k = keys[i]!;
      if (k === 0) {
        keys[i] = id;
        this.#slots[i] = value;
        this.#size++;
        return;
      }
      if (k === id) {
        this.#slots[i] = value;
        return;
      }
    }
  }

  #grow(): void {
    const old = this.#slots;
    const cap = old.length * 2;
    this.#keys = new Float64Array(cap);
    this.#slots = new Array<T | undefined>(cap).fill(undefined);
    this.#mask = cap - 1;
    this.#shift--;
    this.#size = 0;
    for (const c of old) if (c !== undefined) this.#insert(c);
  }
}
