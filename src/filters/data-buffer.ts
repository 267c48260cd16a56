/**
 * A body buffer made of chunks, as Envoy's Buffer::Instance: appending never copies; a flat view is
 * made only when a filter asks for one (and then cached until the next change).
 */
export class DataBuffer {
  #chunks: Buffer[] = [];
  #length = 0;
  #flat: Buffer | null = null;

  constructor(initial?: Buffer | Uint8Array | string) {
    if (initial !== undefined) this.append(initial);
  }

  get length(): number {
    return this.#length;
  }

  append(data: Buffer | Uint8Array | string | DataBuffer): void {
    if (data instanceof DataBuffer) {
      for (const c of data.#chunks) this.#push(c);
      return;
    }
    const buf = typeof data === 'string' ? Buffer.from(data) : Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    this.#push(buf);
  }

  #push(buf: Buffer): void {
    if (buf.length === 0) return;
    this.#chunks.push(buf);
    this.#length += buf.length;
    this.#flat = null;
  }

  prepend(data: Buffer | string): void {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    if (buf.length === 0) return;
    this.#chunks.unshift(buf);
    this.#length += buf.length;
    this.#flat = null;
  }

  /** Moves all of `other` into this buffer, leaving `other` empty. */
  move(other: DataBuffer): void {
    if (other === this) return;
    for (const c of other.#chunks) this.#push(c);
    other.clear();
  }

  /** The whole content as one Buffer (copies once if there are several chunks). */
  toBuffer(): Buffer {
    if (this.#flat) return this.#flat;
    const flat = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#length);
    if (this.#chunks.length > 1) {
      this.#chunks = [flat];
    }
    this.#flat = flat;
    return flat;
  }

  toString(encoding: BufferEncoding = 'utf8'): string {
    return this.toBuffer().toString(encoding);
  }

  /** The chunks, for zero-copy writes to a socket. */
  chunks(): readonly Buffer[] {
    return this.#chunks;
  }

  /** Replaces bytes [start, start+length) with `data` (Proxy-Wasm `set_buffer_bytes` semantics). */
  splice(start: number, length: number, data: Buffer): void {
    const flat = this.toBuffer();
    const s = Math.min(Math.max(0, start), flat.length);
    const e = Math.min(flat.length, s + Math.max(0, length));
    const next = Buffer.concat([flat.subarray(0, s), data, flat.subarray(e)]);
    this.set(next);
  }

  set(data: Buffer | string): void {
    this.clear();
    this.append(data);
  }

  /** Removes `n` bytes from the front. */
  drain(n: number): void {
    if (n >= this.#length) {
      this.clear();
      return;
    }
    const flat = this.toBuffer();
    this.set(flat.subarray(n));
  }

  clear(): void {
    this.#chunks = [];
    this.#length = 0;
    this.#flat = null;
  }
}
