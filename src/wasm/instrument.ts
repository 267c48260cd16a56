/**
 * A small, self-contained Wasm binary rewriter that enforces meshext's per-VM resource limits
 * without help from the engine (see docs/adr-wasm-cpu-budget.md):
 *
 *  - CPU budget: a fuel counter (a new mutable i32 global) is decremented at every `loop` header;
 *    when it reaches zero the code calls a new import `meshext.fuel_check() -> i32`, which either
 *    refills the counter or throws (the plugin took longer than its budget). Loops are the only
 *    way to run unboundedly without recursion, and recursion ends in a stack overflow trap.
 *  - Memory cap: the maximum of the module's memory (defined or imported) is lowered to the cap,
 *    so `memory.grow` past it returns -1 (SDK allocators then abort/trap: a VM failure).
 *
 * Adding a function import shifts every defined function index by one, so every place that names a
 * function index is rewritten: call/return_call/ref.func, exports, start, elements, global inits
 * and the `name` section. Custom sections that point into code bytes (DWARF, branch hints) are
 * dropped. Anything the decoder does not know (GC proposal, memory64) raises
 * UnsupportedWasmFeature, and the caller falls back to running without the CPU budget (logged).
 */

import { FUEL_IMPORT_MODULE, FUEL_IMPORT_NAME } from './abi.ts';

export class UnsupportedWasmFeature extends Error {
  constructor(what: string) {
    super(`cannot instrument module: ${what}`);
    this.name = 'UnsupportedWasmFeature';
  }
}

export interface InstrumentOptions {
  /** Inject the fuel counter (CPU budget). */
  fuel: boolean;
  /** Cap for every memory's maximum, in 64 KiB pages; 0 = leave as is. */
  maxPages: number;
}

export interface InstrumentResult {
  bytes: Uint8Array;
  /** Whether the fuel counter was injected. */
  fuel: boolean;
  /** Loop headers instrumented. */
  loops: number;
}

export { FUEL_IMPORT_MODULE, FUEL_IMPORT_NAME };

class Reader {
  pos: number;
  readonly end: number;
  readonly b: Uint8Array;
  constructor(b: Uint8Array, pos = 0, end = b.length) {
    this.b = b;
    this.pos = pos;
    this.end = end;
  }
  byte(): number {
    if (this.pos >= this.end) throw new UnsupportedWasmFeature('truncated input');
    return this.b[this.pos++]!;
  }
  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const byte = this.byte();
      result += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) break;
      shift += 7;
      if (shift > 35) throw new UnsupportedWasmFeature('bad LEB128');
    }
    return result;
  }
  /** Skips any LEB128 (signed or unsigned, up to 64 bits). */
  skipLeb(): void {
    for (let i = 0; i < 10; i++) if ((this.byte() & 0x80) === 0) return;
    throw new UnsupportedWasmFeature('bad LEB128');
  }
  bytes(n: number): Uint8Array {
    if (this.pos + n > this.end) throw new UnsupportedWasmFeature('truncated input');
    const out = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
}

class Writer {
  buf = new Uint8Array(1024);
  len = 0;
  #grow(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
  byte(v: number): void {
    this.#grow(1);
    this.buf[this.len++] = v;
  }
  u32(v: number): void {
    do {
      let b = v & 0x7f;
      v = Math.floor(v / 128);
      if (v !== 0) b |= 0x80;
      this.byte(b);
    } while (v !== 0);
  }
  bytes(b: Uint8Array): void {
    this.#grow(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  result(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}

function readLimits(r: Reader): { flags: number; min: number; max: number | undefined } {
  const flags = r.byte();
  if (flags > 3) throw new UnsupportedWasmFeature('memory64 or unknown limits');
  const min = r.u32();
  const max = flags & 1 ? r.u32() : undefined;
  return { flags, min, max };
}

function writeCappedLimits(w: Writer, lim: { flags: number; min: number; max: number | undefined }, cap: number): void {
  if (cap > 0 && lim.min > cap) {
    throw new MemoryCapError(lim.min, cap);
  }
  const max = cap > 0 ? Math.min(lim.max ?? cap, cap) : lim.max;
  w.byte(max === undefined ? lim.flags & ~1 : lim.flags | 1);
  w.u32(lim.min);
  if (max !== undefined) w.u32(max);
}

export class MemoryCapError extends Error {
  constructor(minPages: number, capPages: number) {
    super(`module needs ${minPages} pages (${minPages * 64} KiB) of initial memory, above the VM memory cap of ${capPages} pages`);
    this.name = 'MemoryCapError';
  }
}

/** Value type, including typed references (0x63/0x64 + heap type). */
function skipValType(r: Reader): void {
  const t = r.byte();
  if (t === 0x63 || t === 0x64) r.skipLeb();
}

function skipBlockType(r: Reader): void {
  const b = r.b[r.pos]!;
  if (b === 0x40 || b === 0x7f || b === 0x7e || b === 0x7d || b === 0x7c || b === 0x7b || b === 0x70 || b === 0x6f) {
    r.pos++;
    return;
  }
  if (b === 0x63 || b === 0x64) {
    r.pos++;
    r.skipLeb();
    return;
  }
  r.skipLeb(); // type index as s33
}

function skipMemarg(r: Reader): void {
  const align = r.u32();
  if (align & 0x40) r.u32(); // multi-memory: memory index
  r.skipLeb();
}

interface RewriteCtx {
  /** Function index remap threshold: indices ≥ this shift by one. */
  shiftFrom: number;
  fuelGlobal: number;
  fuelFunc: number;
  fuel: boolean;
  loops: number;
  /** Set when the current function body contains a tail call. */
  tailCall: boolean;
}

/**
 * global.get F; i32.eqz; if; call fuel_check; global.set F; end;
 * global.get F; i32.const 1; i32.sub; global.set F
 */
function emitFuelCheck(w: Writer, ctx: RewriteCtx): void {
  w.byte(0x23); w.u32(ctx.fuelGlobal);
  w.byte(0x45);
  w.byte(0x04); w.byte(0x40);
  w.byte(0x10); w.u32(ctx.fuelFunc);
  w.byte(0x24); w.u32(ctx.fuelGlobal);
  w.byte(0x0b);
  w.byte(0x23); w.u32(ctx.fuelGlobal);
  w.byte(0x41); w.byte(0x01);
  w.byte(0x6b);
  w.byte(0x24); w.u32(ctx.fuelGlobal);
}

function remapFunc(idx: number, ctx: RewriteCtx): number {
  return idx >= ctx.shiftFrom ? idx + 1 : idx;
}

/**
 * Copies an instruction sequence from r to w until the `end` that closes depth 0 (inclusive), or
 * until r.end when `untilEnd` is false. Rewrites function indices and injects fuel checks.
 */
function rewriteExpr(r: Reader, w: Writer, ctx: RewriteCtx, stopAtFinalEnd: boolean): void {
  let depth = 0;
  while (r.pos < r.end) {
    const start = r.pos;
    const op = r.byte();
    switch (op) {
      case 0x02: case 0x04: case 0x06: // block, if, try
        skipBlockType(r);
        depth++;
        w.bytes(r.b.subarray(start, r.pos));
        continue;
      case 0x03: // loop: inject the fuel check at the header
        skipBlockType(r);
        depth++;
        w.bytes(r.b.subarray(start, r.pos));
        if (ctx.fuel) {
          ctx.loops++;
          emitFuelCheck(w, ctx);
        }
        continue;
      case 0x1f: { // try_table
        skipBlockType(r);
        const n = r.u32();
        for (let i = 0; i < n; i++) {
          const kind = r.byte();
          if (kind === 0 || kind === 1) r.u32();
          r.u32();
        }
        depth++;
        w.bytes(r.b.subarray(start, r.pos));
        continue;
      }
      case 0x0b: // end
        w.byte(op);
        if (depth === 0 && stopAtFinalEnd) return;
        depth--;
        continue;
      case 0x18: // delegate closes a `try` like `end` does
        r.u32();
        depth--;
        w.bytes(r.b.subarray(start, r.pos));
        continue;
      case 0x10: case 0x12: case 0xd2: { // call, return_call, ref.func
        if (op === 0x12) ctx.tailCall = true;
        const idx = r.u32();
        w.byte(op);
        w.u32(remapFunc(idx, ctx));
        continue;
      }
      default:
        break;
    }
    // Everything else is copied verbatim after skipping its immediates.
    if (op === 0x13 || op === 0x15) ctx.tailCall = true; // return_call_indirect, return_call_ref
    skipImmediates(op, r);
    w.bytes(r.b.subarray(start, r.pos));
  }
  if (stopAtFinalEnd) throw new UnsupportedWasmFeature('expression without end');
}

function skipImmediates(op: number, r: Reader): void {
  if (op <= 0x01 || op === 0x05 || op === 0x0a || op === 0x0f || op === 0x19 || op === 0x1a || op === 0x1b) return;
  if (op >= 0x45 && op <= 0xc4) return; // numeric, incl. sign extension
  switch (op) {
    case 0x07: case 0x08: case 0x09: case 0x0c: case 0x0d: // catch, throw, rethrow, br, br_if
    case 0x14: case 0x15: // call_ref, return_call_ref (type index)
    case 0x20: case 0x21: case 0x22: case 0x23: case 0x24: case 0x25: case 0x26:
    case 0xd5: case 0xd6:
      r.u32();
      return;
    case 0x0e: { // br_table
      const n = r.u32();
      for (let i = 0; i <= n; i++) r.u32();
      return;
    }
    case 0x11: case 0x13: // call_indirect, return_call_indirect
      r.u32();
      r.u32();
      return;
    case 0x1c: { // select t*
      const n = r.u32();
      for (let i = 0; i < n; i++) skipValType(r);
      return;
    }
    case 0x3f: case 0x40:
      r.u32();
      return;
    case 0x41: case 0x42:
      r.skipLeb();
      return;
    case 0x43:
      r.bytes(4);
      return;
    case 0x44:
      r.bytes(8);
      return;
    case 0xd0: { // ref.null heaptype
      r.skipLeb();
      return;
    }
    case 0xd1: case 0xd3: case 0xd4:
      return;
    case 0xfc:
      skipFC(r.u32(), r);
      return;
    case 0xfd:
      skipFD(r.u32(), r);
      return;
    case 0xfe:
      skipFE(r.u32(), r);
      return;
    default:
      break;
  }
  if (op >= 0x28 && op <= 0x3e) {
    skipMemarg(r);
    return;
  }
  throw new UnsupportedWasmFeature(`opcode 0x${op.toString(16)}`);
}

function skipFC(sub: number, r: Reader): void {
  if (sub <= 7) return;
  switch (sub) {
    case 8: r.u32(); r.u32(); return; // memory.init
    case 9: r.u32(); return; // data.drop
    case 10: r.u32(); r.u32(); return; // memory.copy
    case 11: r.u32(); return; // memory.fill
    case 12: r.u32(); r.u32(); return; // table.init
    case 13: r.u32(); return; // elem.drop
    case 14: r.u32(); r.u32(); return; // table.copy
    case 15: case 16: case 17: r.u32(); return; // table.grow/size/fill
    default: throw new UnsupportedWasmFeature(`opcode 0xfc ${sub}`);
  }
}

function skipFD(sub: number, r: Reader): void {
  if (sub <= 11 || sub === 92 || sub === 93) { skipMemarg(r); return; }
  if (sub === 12 || sub === 13) { r.bytes(16); return; }
  if (sub >= 21 && sub <= 34) { r.byte(); return; }
  if (sub >= 84 && sub <= 91) { skipMemarg(r); r.byte(); return; }
  if (sub <= 0x113) return;
  throw new UnsupportedWasmFeature(`opcode 0xfd ${sub}`);
}

function skipFE(sub: number, r: Reader): void {
  if (sub === 3) { r.byte(); return; }
  if (sub <= 2 || (sub >= 0x10 && sub <= 0x4e)) { skipMemarg(r); return; }
  throw new UnsupportedWasmFeature(`opcode 0xfe ${sub}`);
}

function writeName(w: Writer, s: string): void {
  const b = new TextEncoder().encode(s);
  w.u32(b.length);
  w.bytes(b);
}

function readName(r: Reader): string {
  const n = r.u32();
  return new TextDecoder().decode(r.bytes(n));
}

interface Section {
  id: number;
  body: Uint8Array;
  name?: string;
}

function parseSections(bytes: Uint8Array): Section[] {
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new UnsupportedWasmFeature('not a wasm binary');
  }
  if (bytes[4] !== 1 || bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) throw new UnsupportedWasmFeature('unknown binary version');
  const r = new Reader(bytes, 8);
  const out: Section[] = [];
  while (r.pos < r.end) {
    const id = r.byte();
    const size = r.u32();
    const body = r.bytes(size);
    const s: Section = { id, body };
    if (id === 0) s.name = readName(new Reader(body));
    out.push(s);
  }
  return out;
}

function emitSection(w: Writer, id: number, body: Uint8Array): void {
  w.byte(id);
  w.u32(body.length);
  w.bytes(body);
}

/** Only caps memory limits (no code rewrite): cheap, used when the CPU budget is off. */
function capMemoryOnly(sections: Section[], maxPages: number): void {
  for (const s of sections) {
    if (s.id === 5) s.body = rewriteMemorySection(s.body, maxPages);
    else if (s.id === 2) s.body = rewriteImportSection(s.body, maxPages, null).body;
  }
}

function rewriteMemorySection(body: Uint8Array, cap: number): Uint8Array {
  const r = new Reader(body);
  const w = new Writer();
  const n = r.u32();
  w.u32(n);
  for (let i = 0; i < n; i++) writeCappedLimits(w, readLimits(r), cap);
  return w.result().slice();
}

interface ImportInfo {
  body: Uint8Array;
  importedFuncs: number;
  importedGlobals: number;
}

function rewriteImportSection(body: Uint8Array, cap: number, fuelType: number | null): ImportInfo {
  const r = new Reader(body);
  const w = new Writer();
  const n = r.u32();
  w.u32(fuelType === null ? n : n + 1);
  let importedFuncs = 0;
  let importedGlobals = 0;
  for (let i = 0; i < n; i++) {
    const start = r.pos;
    readName(r);
    readName(r);
    const kind = r.byte();
    if (kind === 2) {
      w.bytes(body.subarray(start, r.pos));
      writeCappedLimits(w, readLimits(r), cap);
      continue;
    }
    if (kind === 0) { r.u32(); importedFuncs++; }
    else if (kind === 1) { skipValType(r); readLimits(r); }
    else if (kind === 3) { skipValType(r); r.byte(); importedGlobals++; }
    else if (kind === 4) { r.byte(); r.u32(); }
    else throw new UnsupportedWasmFeature(`import kind ${kind}`);
    w.bytes(body.subarray(start, r.pos));
  }
  if (fuelType !== null) {
    writeName(w, FUEL_IMPORT_MODULE);
    writeName(w, FUEL_IMPORT_NAME);
    w.byte(0);
    w.u32(fuelType);
  }
  return { body: w.result().slice(), importedFuncs, importedGlobals };
}

/** Rewrites `bytes` per `opts`. Throws UnsupportedWasmFeature / MemoryCapError. */
export function instrument(bytes: Uint8Array, opts: InstrumentOptions): InstrumentResult {
  const sections = parseSections(bytes);
  if (!opts.fuel) {
    if (opts.maxPages > 0) capMemoryOnly(sections, opts.maxPages);
    return { bytes: assemble(bytes, sections), fuel: false, loops: 0 };
  }

  // 1. Types: append `() -> i32` for fuel_check.
  let typeSec = sections.find((s) => s.id === 1);
  let typeCount = 0;
  {
    const w = new Writer();
    if (typeSec) {
      const r = new Reader(typeSec.body);
      typeCount = r.u32();
      for (let i = 0; i < typeCount; i++) {
        const form = r.byte();
        if (form !== 0x60) throw new UnsupportedWasmFeature('GC type definitions');
        const np = r.u32();
        for (let j = 0; j < np; j++) skipValType(r);
        const nr = r.u32();
        for (let j = 0; j < nr; j++) skipValType(r);
      }
      w.u32(typeCount + 1);
      w.bytes(typeSec.body.subarray(new Reader(typeSec.body).pos + lebSize(typeSec.body)));
    } else {
      w.u32(1);
    }
    w.bytes(new Uint8Array([0x60, 0x00, 0x01, 0x7f]));
    if (!typeSec) {
      typeSec = { id: 1, body: new Uint8Array() };
      sections.splice(insertIndex(sections, 1), 0, typeSec);
    }
    typeSec.body = w.result().slice();
  }

  // 2. Imports: append meshext.fuel_check; count imported functions/globals; cap memories.
  let importSec = sections.find((s) => s.id === 2);
  if (!importSec) {
    importSec = { id: 2, body: new Uint8Array([0]) };
    sections.splice(insertIndex(sections, 2), 0, importSec);
  }
  const imp = rewriteImportSection(importSec.body, opts.maxPages, typeCount);
  importSec.body = imp.body;

  // 3. Globals: count defined ones, append the fuel counter, remap ref.func in init exprs.
  const ctx: RewriteCtx = { shiftFrom: imp.importedFuncs, fuelFunc: imp.importedFuncs, fuelGlobal: 0, fuel: true, loops: 0, tailCall: false };
  let globalSec = sections.find((s) => s.id === 6);
  if (!globalSec) {
    globalSec = { id: 6, body: new Uint8Array([0]) };
    sections.splice(insertIndex(sections, 6), 0, globalSec);
  }
  {
    const r = new Reader(globalSec.body);
    const w = new Writer();
    const n = r.u32();
    w.u32(n + 1);
    const noFuel: RewriteCtx = { ...ctx, fuel: false };
    for (let i = 0; i < n; i++) {
      const start = r.pos;
      skipValType(r);
      r.byte();
      w.bytes(globalSec.body.subarray(start, r.pos));
      rewriteExpr(r, w, noFuel, true);
    }
    ctx.fuelGlobal = imp.importedGlobals + n;
    // (mut i32) = 0: the first loop iteration calls fuel_check, which starts the clock.
    w.bytes(new Uint8Array([0x7f, 0x01, 0x41, 0x00, 0x0b]));
    globalSec.body = w.result().slice();
  }

  for (const s of sections) {
    switch (s.id) {
      case 5:
        if (opts.maxPages > 0) s.body = rewriteMemorySection(s.body, opts.maxPages);
        break;
      case 7: s.body = rewriteExports(s.body, ctx); break;
      case 8: {
        const w = new Writer();
        w.u32(remapFunc(new Reader(s.body).u32(), ctx));
        s.body = w.result().slice();
        break;
      }
      case 9: s.body = rewriteElements(s.body, ctx); break;
      case 10: s.body = rewriteCode(s.body, ctx); break;
      default: break;
    }
  }
  // Custom sections: fix `name`, drop those that point at code offsets.
  for (let i = sections.length - 1; i >= 0; i--) {
    const s = sections[i]!;
    if (s.id !== 0) continue;
    if (s.name === 'name') {
      try {
        s.body = rewriteNameSection(s.body, ctx);
      } catch {
        sections.splice(i, 1);
      }
    } else if (s.name!.startsWith('.debug') || s.name!.startsWith('metadata.code.') || s.name === 'sourceMappingURL') {
      sections.splice(i, 1);
    }
  }
  return { bytes: assemble(bytes, sections), fuel: true, loops: ctx.loops };
}

function lebSize(b: Uint8Array): number {
  let i = 0;
  while (b[i]! & 0x80) i++;
  return i + 1;
}

/** Where a new section with `id` goes to keep the canonical order (custom sections stay put). */
function insertIndex(sections: Section[], id: number): number {
  const order = [1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11];
  const rank = (x: number) => order.indexOf(x);
  for (let i = 0; i < sections.length; i++) {
    const s = sections[i]!;
    if (s.id !== 0 && rank(s.id) > rank(id)) return i;
  }
  return sections.length;
}

function assemble(original: Uint8Array, sections: Section[]): Uint8Array {
  const w = new Writer();
  w.bytes(original.subarray(0, 8));
  for (const s of sections) {
    if (s.id === 0 && s.name !== undefined && s.body.length === 0) continue;
    emitSection(w, s.id, s.body);
  }
  return w.result().slice();
}

function rewriteExports(body: Uint8Array, ctx: RewriteCtx): Uint8Array {
  const r = new Reader(body);
  const w = new Writer();
  const n = r.u32();
  w.u32(n);
  for (let i = 0; i < n; i++) {
    const start = r.pos;
    readName(r);
    const kind = r.byte();
    w.bytes(body.subarray(start, r.pos));
    const idx = r.u32();
    w.u32(kind === 0 ? remapFunc(idx, ctx) : idx);
  }
  return w.result().slice();
}

function rewriteElements(body: Uint8Array, ctx: RewriteCtx): Uint8Array {
  const r = new Reader(body);
  const w = new Writer();
  const noFuel: RewriteCtx = { ...ctx, fuel: false };
  const n = r.u32();
  w.u32(n);
  for (let i = 0; i < n; i++) {
    const flags = r.u32();
    w.u32(flags);
    if (flags > 7) throw new UnsupportedWasmFeature(`element segment flags ${flags}`);
    if (flags === 2 || flags === 6) w.u32(r.u32()); // table index
    if ((flags & 1) === 0) rewriteExpr(r, w, noFuel, true); // active: offset expr
    if (flags & 4) {
      if (flags !== 4) { const s = r.pos; skipValType(r); w.bytes(body.subarray(s, r.pos)); }
      const m = r.u32();
      w.u32(m);
      for (let j = 0; j < m; j++) rewriteExpr(r, w, noFuel, true);
    } else {
      if (flags !== 0) w.byte(r.byte()); // elemkind
      const m = r.u32();
      w.u32(m);
      for (let j = 0; j < m; j++) w.u32(remapFunc(r.u32(), ctx));
    }
  }
  return w.result().slice();
}

function rewriteCode(body: Uint8Array, ctx: RewriteCtx): Uint8Array {
  const r = new Reader(body);
  const w = new Writer();
  const n = r.u32();
  w.u32(n);
  const fw = new Writer();
  const ew = new Writer();
  for (let i = 0; i < n; i++) {
    const size = r.u32();
    const end = r.pos + size;
    const fr = new Reader(body, r.pos, end);
    fw.len = 0;
    const localStart = fr.pos;
    const groups = fr.u32();
    for (let j = 0; j < groups; j++) {
      fr.u32();
      skipValType(fr);
    }
    const locals = body.subarray(localStart, fr.pos);
    ew.len = 0;
    ctx.tailCall = false;
    rewriteExpr(fr, ew, ctx, true);
    if (fr.pos !== end) throw new UnsupportedWasmFeature('function body size mismatch');
    fw.bytes(locals);
    // A cycle of tail calls never returns and never loops: each function in such a cycle contains
    // a tail call, so those functions check the fuel on entry as loop headers do.
    if (ctx.tailCall) emitFuelCheck(fw, ctx);
    fw.bytes(ew.result());
    w.u32(fw.len);
    w.bytes(fw.result());
    r.pos = end;
  }
  return w.result().slice();
}

function rewriteNameSection(body: Uint8Array, ctx: RewriteCtx): Uint8Array {
  const r = new Reader(body);
  const w = new Writer();
  writeName(w, readName(r));
  while (r.pos < r.end) {
    const id = r.byte();
    const size = r.u32();
    const sub = r.bytes(size);
    if (id !== 1 && id !== 2) {
      w.byte(id);
      w.u32(size);
      w.bytes(sub);
      continue;
    }
    const sr = new Reader(sub);
    const sw = new Writer();
    const n = sr.u32();
    sw.u32(n);
    for (let i = 0; i < n; i++) {
      sw.u32(remapFunc(sr.u32(), ctx));
      if (id === 1) {
        const len = sr.u32();
        sw.u32(len);
        sw.bytes(sr.bytes(len));
      } else {
        const m = sr.u32();
        sw.u32(m);
        for (let j = 0; j < m; j++) {
          sw.u32(sr.u32());
          const len = sr.u32();
          sw.u32(len);
          sw.bytes(sr.bytes(len));
        }
      }
    }
    w.byte(id);
    w.u32(sw.len);
    w.bytes(sw.result());
  }
  return w.result().slice();
}
