/**
 * The live contexts of one VM by id (proxy_set_effective_context looks them up; failure and
 * dispose walk them). A Map cost ~70-80 ns per stream for the set + delete pair: ids only grow,
 * so V8's ordered hash table keeps filling with deleted entries and rehashing. Here: open
 * addressing with linear probing, backward-shift deletion (no tombstones), doubled at half load.
 * Ids go through Fibonacci hashing rather than `id & mask`: streams in flight have consecutive ids,
 * which would sit in one contiguous probe run that every deletion has to scan to its end.
 */
export interface Keyed {
  readonly id: number;
}

export class ContextTable<T extends Keyed> {
  #slots: Array<T | undefined>;
  #mask: number;
  /** 32 - log2(capacity): the hash keeps the top bits of id × 2^32/φ. */
  #shift: number;
  #size = 0;

  constructor(capacity = 64) {
    let cap = 8;
    while (cap < capacity) cap <<= 1;
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
    const slots = this.#slots;
    const mask = this.#mask;
    for (let i = this.#home(id); ; i = (i + 1) & mask) {
      const c = slots[i];
      if (c === undefined) return undefined;
      if (c.id === id) return c;
    }
  }

  /** Adds or replaces the entry for `value.id`. */
  set(value: T): void {
    if ((this.#size + 1) * 2 > this.#slots.length) this.#grow();
    this.#insert(value);
  }

  delete(id: number): boolean {
    const slots = this.#slots;
    const mask = this.#mask;
    let hole = this.#home(id);
    for (;;) {
      const c = slots[hole];
      if (c === undefined) return false;
      if (c.id === id) break;
      hole = (hole + 1) & mask;
    }
    this.#size--;
    // Shift later members of the probe run back so lookups never cross an empty slot early.
    for (let j = (hole + 1) & mask; ; j = (j + 1) & mask) {
      const c = slots[j];
      if (c === undefined) break;
      const home = this.#home(c.id);
      // c may move into the hole when its home is not inside the cyclic range (hole, j].
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        slots[hole] = c;
        hole = j;
      }
    }
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
    this.#slots.fill(undefined);
    this.#size = 0;
  }

  #insert(value: T): void {
    const slots = this.#slots;
    const mask = this.#mask;
    const id = value.id;
    for (let i = this.#home(id); ; i = (i + 1) & mask) {
      const c = slots[i];
      if (c === undefined) {
        slots[i] = value;
        this.#size++;
        return;
      }
      if (c.id === id) {
        slots[i] = value;
        return;
      }
    }
  }

  #grow(): void {
    const old = this.#slots;
    this.#slots = new Array<T | undefined>(old.length * 2).fill(undefined);
    this.#mask = this.#slots.length - 1;
    this.#shift--;
    this.#size = 0;
    for (const c of old) if (c !== undefined) this.#insert(c);
  }
}
