/**
 * The compiled tier's runtime and its LuaState: what the JavaScript made by compiler.ts calls.
 * Lua values are JS values (nil = undefined, strings = byte strings), tables are LuaTable, and
 * the handle objects call the same host-function table as the prelude does on the real engines,
 * with the same (cid, seg) checks, so each handle method keeps one implementation of its effect.
 * The argument checks and error texts mirror the prelude's (prelude.ts), which mirror Envoy's.
 */
import { chunkId, compileLua, luaBytes } from './compiler.ts';
import { SENTINEL } from './prelude.ts';
import {
  LuaScriptError,
  Multi,
  ResumeStatus,
  isLuaTable,
  type HostFunction,
  type LuaEngine,
  type LuaState,
  type LuaValue,
  type PushValue,
  type ResumeResult,
  type ThreadRef,
} from './engine.ts';

/** "No value": what a call that returns nothing yields, distinct from nil in argument lists. */
const NV: unique symbol = Symbol('no value');
type V = unknown;

/** A Lua error raised by compiled code: the message without its position, and the line. */
class LuaError extends Error {
  readonly line: number;
  readonly positioned: boolean;
  constructor(message: string, line: number, positioned = true) {
    super(message);
    this.line = line;
    this.positioned = positioned;
  }
}

export class LuaTable {
  #map: Map<V, V> | undefined;
  /** A table from the host (flat key/value pairs), converted on first need: most are read once. */
  #pairs: readonly unknown[] | undefined;

  static fromPairs(pairs: readonly unknown[]): LuaTable {
    const t = new LuaTable();
    t.#pairs = pairs;
    return t;
  }

  get map(): Map<V, V> {
    let m = this.#map;
    if (m === undefined) {
      m = new Map();
      const p = this.#pairs;
      if (p !== undefined) {
        this.#pairs = undefined;
        for (let i = 0; i + 1 < p.length; i += 2) {
          const v = fromHost(p[i + 1]);
          if (v !== undefined) m.set(fromHost(p[i]), v);
        }
      }
      this.#map = m;
    }
    return m;
  }

  get(k: V): V {
    const p = this.#pairs;
    if (p !== undefined) {
      for (let i = 0; i + 1 < p.length; i += 2) {
        if (p[i] !== k) continue;
        const v = p[i + 1];
        // a nested table must stay the same object on every read: convert the whole table
        if (v !== null && typeof v === 'object') break;
        return v === null ? undefined : v;
      }
      if (typeof k !== 'object' || k === null) {
        let nested = false;
        for (let i = 1; i < p.length; i += 2) if (p[i] !== null && typeof p[i] === 'object') nested = true;
        if (!nested) return undefined;
      }
    }
    return this.map.get(k);
  }

  set(k: V, v: V): void {
    if (v === undefined) this.map.delete(k);
    else this.map.set(k, v);
  }

  /** A border, as `#t` finds one in a table filled in order. */
  length(): number {
    let n = 0;
    while (this.get(n + 1) !== undefined) n++;
    return n;
  }
}

/** Base of the handle objects: every method a script may name exists and fails as Lua would. */
class LObj {
  readonly h: Handle;
  constructor(h: Handle) {
    this.h = h;
  }
}

class Handle extends LObj {
  cid: number;
  seg: number;
  dir = 0;
  readonly host: Host;
  /** A hook is running with this handle (a nested run, if one ever happened, gets its own). */
  busy = false;
  hu: Headers | undefined;
  su: StreamInfo | undefined;
  constructor(cid: number, seg: number, host: Host) {
    super(undefined as unknown as Handle);
    (this as { h: Handle }).h = this;
    this.cid = cid;
    this.seg = seg;
    this.host = host;
  }
}
class Headers extends LObj {}
class StreamInfo extends LObj {
  mu: DynMeta | undefined;
}
class DynMeta extends LObj {}

interface Host {
  canrespond: HostFunction;
  hget: HostFunction;
  hadd: HostFunction;
  hrep: HostFunction;
  hrem: HostFunction;
  dmget: HostFunction;
  dmset: HostFunction;
  log: HostFunction;
}

function typeName(v: V): string {
  if (v === undefined || v === null) return 'nil';
  const t = typeof v;
  if (t === 'boolean' || t === 'number' || t === 'string') return t;
  if (v instanceof LuaTable) return 'table';
  return 'userdata';
}

function one(v: V): V {
  return v === NV ? undefined : v;
}

function truthy(v: V): boolean {
  return v !== undefined && v !== false;
}

/** Lua's tostring() of a number: "%.14g", LuaJIT's spellings of the special values. */
export function fmtNumber(n: number): string {
  // 14 significant digits: integers of up to 14 digits print as they are
  if (Number.isInteger(n) && Math.abs(n) < 1e14) return Object.is(n, -0) ? '-0' : String(n);
  if (n !== n) return 'nan';
  if (n === Infinity) return 'inf';
  if (n === -Infinity) return '-inf';
  const [mant, exps] = n.toExponential(13).split('e') as [string, string];
  const exp = Number(exps);
  if (exp < -4 || exp >= 14) {
    const m = mant.includes('.') ? mant.replace(/0+$/, '').replace(/\.$/, '') : mant;
    const a = Math.abs(exp);
    return `${m}e${exp < 0 ? '-' : '+'}${a < 10 ? '0' : ''}${a}`;
  }
  const f = n.toFixed(13 - exp);
  return f.includes('.') ? f.replace(/0+$/, '').replace(/\.$/, '') : f;
}

/** Lua's string → number conversion (lj_strscan as tonumber and arithmetic use it). */
export function strToNumber(s: string): number | undefined {
  // the common case, plain decimal digits (header values such as x-number: 3), without a regexp
  const n = s.length;
  if (n > 0 && n < 16) {
    let v = 0;
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i) - 48;
      if (c < 0 || c > 9) break;
      v = v * 10 + c;
    }
    if (i === n) return v;
  }
  const t = s.replace(/^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g, '');
  if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t)) return Number(t);
  const special = /^([+-]?)(inf|infinity|nan)$/i.exec(t);
  if (special) return special[2]!.toLowerCase() === 'nan' ? NaN : special[1] === '-' ? -Infinity : Infinity;
  const bin = /^([+-]?)0[bB]([01]+)$/.exec(t);
  if (bin) return (bin[1] === '-' ? -1 : 1) * parseInt(bin[2]!, 2);
  const hex = /^([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?\d+))?$/.exec(t);
  if (hex && (hex[2]!.length > 0 || (hex[3] ?? '').length > 0)) {
    let v = 0;
    for (const c of hex[2]!) v = v * 16 + parseInt(c, 16);
    let scale = 1 / 16;
    for (const c of hex[3] ?? '') {
      v += parseInt(c, 16) * scale;
      scale /= 16;
    }
    if (hex[4] !== undefined) v *= Math.pow(2, Number(hex[4]));
    return hex[1] === '-' ? -v : v;
  }
  return undefined;
}

function tostr(v: V): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return fmtNumber(v);
  if (v === undefined || v === null) return 'nil';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  // addresses differ between runs on every engine; the shape is LuaJIT's
  return `${typeName(v)}: 0x${(0x40000000 + identity(v)).toString(16).padStart(8, '0')}`;
}

const ids = new WeakMap<object, number>();
let nextId = 1;
function identity(v: V): number {
  let id = ids.get(v as object);
  if (id === undefined) {
    id = (nextId++ * 64) % 0x3fffffff;
    ids.set(v as object, id);
  }
  return id;
}

function arithNum(v: V): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') return strToNumber(v);
  return undefined;
}

function arith(op: string, a: V, b: V, line: number, da: string, db: string): number {
  const x = arithNum(a);
  const y = arithNum(b);
  if (x === undefined || y === undefined) {
    const [bad, d] = x === undefined ? [a, da] : [b, db];
    throw new LuaError(describeBad('perform arithmetic on', bad, d), line);
  }
  switch (op) {
    case '+': return x + y;
    case '-': return x - y;
    case '*': return x * y;
    case '/': return x / y;
    case '%': return x - Math.floor(x / y) * y;
    default: return pow(x, y);
  }
}

/** C's pow(): 1 to any power, and -1 to an infinite power, is 1 (JS gives NaN). */
function pow(x: number, y: number): number {
  if (x === 1 || (x === -1 && (y === Infinity || y === -Infinity))) return 1;
  return Math.pow(x, y);
}

function describeBad(verb: string, v: V, desc: string): string {
  return desc ? `attempt to ${verb} ${desc} (a ${typeName(v)} value)` : `attempt to ${verb} a ${typeName(v)} value`;
}

function unm(a: V, line: number, da: string): number {
  const x = arithNum(a);
  if (x === undefined) throw new LuaError(describeBad('perform arithmetic on', a, da), line);
  return -x;
}

function len(a: V, line: number, da: string): number {
  if (typeof a === 'string') return a.length;
  if (a instanceof LuaTable) return a.length();
  throw new LuaError(describeBad('get length of', a, da), line);
}

function concat(a: V, b: V, line: number, da: string, db: string): string {
  const okA = typeof a === 'string' || typeof a === 'number';
  const okB = typeof b === 'string' || typeof b === 'number';
  if (!okA || !okB) {
    const [bad, d] = !okA ? [a, da] : [b, db];
    throw new LuaError(describeBad('concatenate', bad, d), line);
  }
  return tostr(a) + tostr(b);
}

/** Whether a < b may be evaluated in JS (two numbers or two strings); else Lua's error. */
function cmp(a: V, b: V, line: number, swapped = false): boolean {
  const ta = typeof a;
  if (ta === typeof b && (ta === 'number' || ta === 'string')) return true;
  const [x, y] = swapped ? [b, a] : [a, b];
  const tx = typeName(x);
  const ty = typeName(y);
  throw new LuaError(tx === ty ? `attempt to compare two ${tx} values` : `attempt to compare ${tx} with ${ty}`, line);
}

function index(o: V, k: V, line: number, desc: string): V {
  if (o instanceof LuaTable) return o.get(k);
  if (typeof o === 'string' || o instanceof LObj) {
    // a string's or a handle's fields are its methods, which this tier has no values for
    throw new LuaError(`indexing a ${typeName(o)} is not supported by meshext's compiled Lua tier (use engine: luajit)`, line);
  }
  throw new LuaError(describeBad('index', o, desc), line);
}

function setindex(o: V, k: V, v: V, line: number, desc: string): void {
  if (!(o instanceof LuaTable)) throw new LuaError(describeBad('index', o, desc), line);
  if (k === undefined) throw new LuaError('table index is nil', line);
  if (typeof k === 'number' && k !== k) throw new LuaError('table index is NaN', line);
  o.set(k, v);
}

function table(fields: [V, V][]): LuaTable {
  const t = new LuaTable();
  for (const [k, v] of fields) {
    if (v === NV) continue;
    t.set(k, v);
  }
  return t;
}

/** A constructor's computed key, checked where its field is. */
function key(k: V, line: number): V {
  if (k === undefined) throw new LuaError('table index is nil', line);
  if (typeof k === 'number' && k !== k) throw new LuaError('table index is NaN', line);
  return k;
}

// ------------------------------------------------------------------ argument checks (prelude's)
function argType(v: V): string {
  return v === NV ? 'no value' : typeName(v);
}
/**
 * luaL_checkstring. A missing argument reads as "no value" in LuaJIT's string functions, but as
 * nil in the prelude's methods (which receive nil) and in string.len (a fast function): `none`.
 */
function cstr(v: V, i: number, fname: string, line: number, none = 'no value'): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return fmtNumber(v);
  throw new LuaError(`bad argument #${i} to '${fname}' (string expected, got ${v === NV ? none : typeName(v)})`, line);
}
function cnum(v: V, i: number, fname: string, line: number): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' ? strToNumber(v) : undefined;
  if (n === undefined) throw new LuaError(`bad argument #${i} to '${fname}' (number expected, got ${argType(v)})`, line);
  return n;
}
/** A host result of (false, message) raises the message at the script's call. */
function chk(r: PushValue, line: number): PushValue {
  if (r instanceof Multi && r.values[0] === false) throw new LuaError(String(r.values[1]), line);
  return r;
}

function noMethod(o: V, name: string, line: number, desc: string): never {
  if (o === undefined || o === null || typeof o === 'boolean' || typeof o === 'number') throw new LuaError(describeBad('index', o, desc), line);
  const field = o instanceof LuaTable ? o.get(name) : undefined;
  throw new LuaError(`attempt to call method '${name}' (a ${typeName(field)} value)`, line);
}

// ------------------------------------------------------------------ values across the host table
const MAX_DEPTH = 32;
function toHost(v: V, depth = 0): LuaValue {
  if (v instanceof LuaTable) {
    // the Lua engines stop converting nested tables at this depth (a cycle is cut there)
    if (depth >= MAX_DEPTH) return { luaTable: [] };
    const pairs: LuaValue[] = [];
    for (const [k, x] of v.map) pairs.push(toHost(k, depth + 1), toHost(x, depth + 1));
    return { luaTable: pairs };
  }
  if (v instanceof LObj) return { luaType: 'userdata' };
  return v as LuaValue;
}
function fromHost(v: unknown): V {
  if (v === null) return undefined;
  if (typeof v !== 'object' || v === undefined) return v;
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('latin1');
  if (isLuaTable(v as LuaValue)) return LuaTable.fromPairs((v as { luaTable: unknown[] }).luaTable);
  const t = new LuaTable();
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) t.set(i + 1, fromHost(v[i]));
    return t;
  }
  for (const k in v as Record<string, unknown>) t.set(k, fromHost((v as Record<string, unknown>)[k]));
  return t;
}

// ------------------------------------------------------------------ methods
function m_headers(o: V, line: number, desc: string): V {
  if (!(o instanceof Handle)) return noMethod(o, 'headers', line, desc);
  return (o.hu ??= new Headers(o));
}
function m_streamInfo(o: V, line: number, desc: string): V {
  if (!(o instanceof Handle)) return noMethod(o, 'streamInfo', line, desc);
  return (o.su ??= new StreamInfo(o));
}
function m_dynamicMetadata(o: V, line: number, desc: string): V {
  if (!(o instanceof StreamInfo)) return noMethod(o, 'dynamicMetadata', line, desc);
  return (o.mu ??= new DynMeta(o.h));
}
function m_get(o: V, line: number, desc: string, k: V): V {
  if (o instanceof Headers) {
    const h = o.h;
    const v = chk(h.host.hget(h.cid, h.seg, 0, cstr(k, 1, 'get', line, 'nil')), line);
    return v === undefined || v === null ? NV : v;
  }
  if (o instanceof DynMeta) {
    const h = o.h;
    const v = chk(h.host.dmget(h.cid, h.seg, cstr(k, 1, 'get', line, 'nil')), line);
    return v === undefined || v === null ? NV : fromHost(v);
  }
  return noMethod(o, 'get', line, desc);
}
function headerWrite(fn: 'hadd' | 'hrep', name: string) {
  return (o: V, line: number, desc: string, k: V, v: V): V => {
    if (!(o instanceof Headers)) return noMethod(o, name, line, desc);
    const key = cstr(k, 1, name, line, 'nil');
    const val = cstr(v, 2, name, line, 'nil');
    const h = o.h;
    chk(h.host[fn](h.cid, h.seg, 0, key, val), line);
    return NV;
  };
}
function m_remove(o: V, line: number, desc: string, k: V): V {
  if (!(o instanceof Headers)) return noMethod(o, 'remove', line, desc);
  const h = o.h;
  chk(h.host.hrem(h.cid, h.seg, 0, cstr(k, 1, 'remove', line, 'nil')), line);
  return NV;
}
function m_set(o: V, line: number, desc: string, ns: V, k: V, v: V): V {
  if (!(o instanceof DynMeta)) return noMethod(o, 'set', line, desc);
  const n = cstr(ns, 1, 'set', line, 'nil');
  const key = cstr(k, 2, 'set', line, 'nil');
  const h = o.h;
  chk(h.host.dmset(h.cid, h.seg, n, key, toHost(one(v))), line);
  return NV;
}
/** respond() ends the hook: the driver sends the local reply, as after the prelude's yield. */
class Respond {
  readonly headers: LuaValue;
  readonly body: string | undefined;
  constructor(headers: LuaValue, body: string | undefined) {
    this.headers = headers;
    this.body = body;
  }
}
function m_respond(o: V, line: number, desc: string, headers: V, body: V): V {
  if (!(o instanceof Handle)) return noMethod(o, 'respond', line, desc);
  chk(o.host.canrespond(o.cid, o.seg), line);
  if (!(headers instanceof LuaTable)) throw new LuaError(`bad argument #1 to 'respond' (table expected, got ${headers === NV ? 'nil' : typeName(headers)})`, line);
  const b = body === NV || body === undefined ? undefined : cstr(body, 2, 'respond', line, 'nil');
  const st = RUNTIME.g_tonumber(line, headers.get(':status'));
  if (typeof st !== 'number' || st < 200 || st >= 600 || st !== Math.floor(st)) throw new LuaError(':status must be between 200-599', line);
  if (o.dir === 1) throw new LuaError('respond not currently supported in the response path', line);
  throw new Respond(toHost(headers), b);
}

function logMethod(name: string, level: number) {
  return (o: V, line: number, desc: string, msg: V): V => {
    if (!(o instanceof LObj)) return noMethod(o, name, line, desc);
    if (typeof msg !== 'string' && typeof msg !== 'number') throw new LuaError(`bad argument #1 to '${name}' (string expected, got ${msg === NV || msg === undefined ? 'no value' : typeName(msg)})`, line);
    const h = o.h;
    chk(h.host.log(h.cid, h.seg, level, tostr(msg)), line);
    return NV;
  };
}
/** s:name(...) on a string, or the string library's function of that name. */
function stringMethod(name: 'lower' | 'upper' | 'len' | 'sub') {
  const fn = STRING[name];
  return (o: V, line: number, desc: string, a?: V, b?: V): V => {
    // numbers have no string methods in Lua 5.1 (only strings have a metatable)
    if (typeof o !== 'string') return noMethod(o, name, line, desc);
    return fn(line, o, a, b, 1);
  };
}

const STRING = {
  lower: (line: number, s: V) => asciiLower(cstr(s, 1, 'lower', line)),
  upper: (line: number, s: V) => asciiUpper(cstr(s, 1, 'upper', line)),
  len: (line: number, s: V) => cstr(s, 1, 'len', line, 'nil').length,
  /** `shift` 1 for s:sub(...): LuaJIT does not count self in a method call's argument numbers. */
  sub: (line: number, s: V, i?: V, j?: V, shift = 0) => {
    const str = cstr(s, 1, 'sub', line);
    const n = str.length;
    let a = toInt32(cnum(i, 2 - shift, 'sub', line));
    let b = j === NV || j === undefined ? -1 : toInt32(cnum(j, 3 - shift, 'sub', line));
    if (a < 0) a = Math.max(n + a + 1, 1);
    else if (a === 0) a = 1;
    if (b < 0) b = n + b + 1;
    else if (b > n) b = n;
    return a > b ? '' : str.slice(a - 1, b);
  },
};
/** A double to int32 as LuaJIT's lj_num2int does on x86-64 (out of range and NaN: INT_MIN). */
function toInt32(v: number): number {
  return v >= -2147483648 && v < 2147483648 ? Math.trunc(v) : -2147483648;
}
// C's tolower/toupper in the "C" locale touch ASCII letters only
function asciiLower(s: string): string {
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}
function asciiUpper(s: string): string {
  return s.replace(/[a-z]+/g, (m) => m.toUpperCase());
}

/** The object compiled code receives as `R`. */
export const RUNTIME = {
  NV,
  Table: LuaTable,
  pow,
  one,
  t: truthy,
  arith,
  unm,
  len,
  concat,
  cmp,
  index,
  setindex,
  table,
  key,
  m_headers,
  m_streamInfo,
  m_dynamicMetadata,
  m_get,
  m_add: headerWrite('hadd', 'add'),
  m_replace: headerWrite('hrep', 'replace'),
  m_remove,
  m_set,
  m_respond,
  m_logTrace: logMethod('logTrace', 0),
  m_logDebug: logMethod('logDebug', 1),
  m_logInfo: logMethod('logInfo', 2),
  m_logWarn: logMethod('logWarn', 3),
  m_logErr: logMethod('logErr', 4),
  m_logCritical: logMethod('logCritical', 5),
  m_lower: stringMethod('lower'),
  m_upper: stringMethod('upper'),
  m_len: stringMethod('len'),
  m_sub: stringMethod('sub'),
  g_tonumber(line: number, v: V): V {
    if (v === NV) throw new LuaError("bad argument #1 to 'tonumber' (value expected)", line);
    if (typeof v === 'number') return v;
    if (typeof v === 'string') return strToNumber(v);
    return undefined;
  },
  g_tostring(line: number, v: V): V {
    if (v === NV) throw new LuaError("bad argument #1 to 'tostring' (value expected)", line);
    return tostr(v);
  },
  g_type(line: number, v: V): V {
    if (v === NV) throw new LuaError("bad argument #1 to 'type' (value expected)", line);
    return typeName(v);
  },
  string_lower: (line: number, s: V) => STRING.lower(line, s),
  string_upper: (line: number, s: V) => STRING.upper(line, s),
  string_len: (line: number, s: V) => STRING.len(line, s),
  string_sub: (line: number, s: V, i?: V, j?: V) => STRING.sub(line, s, i, j),
  math_floor: (line: number, v: V) => Math.floor(cnum(v, 1, 'floor', line)),
  math_ceil: (line: number, v: V) => Math.ceil(cnum(v, 1, 'ceil', line)),
  math_abs: (line: number, v: V) => Math.abs(cnum(v, 1, 'abs', line)),
};

type Hook = ((h: Handle) => void) | undefined;
type Make = (rt: typeof RUNTIME) => [Hook, Hook];

/**
 * Compiled scripts of this thread by source. The same script loaded again (another extension or
 * listener with the same code, a reload) gets new hook closures from the same compiled function:
 * V8 then shares their bytecode, feedback and optimized code instead of compiling each copy, and
 * the parser does not run again. Entries are small (the generated JS); the oldest goes beyond
 * COMPILED_MAX, so scripts replaced by reloads do not pile up.
 */
const COMPILED = new Map<string, { make: Make; hooks: number }>();
const COMPILED_MAX = 256;

/** One script's compiled hooks in one worker: the LuaState the filter drives, without coroutines. */
class CompiledState implements LuaState {
  #host: Host | undefined;
  #hooks: [Hook, Hook] = [undefined, undefined];
  readonly #handles: (Handle | undefined)[] = [undefined, undefined];
  #chunk = '';

  /** Compiles the script; returns its hook mask. Throws LuaScriptError when it is outside the subset. */
  loadScript(code: string): number {
    let c = COMPILED.get(code);
    if (c === undefined) {
      const r = compileLua(code);
      if (!r.ok) throw new LuaScriptError(`script is outside the compiled Lua subset: ${r.reason} (line ${r.line})`);
      c = { make: new Function('R', r.js) as Make, hooks: r.hooks };
      if (COMPILED.size >= COMPILED_MAX) COMPILED.delete(COMPILED.keys().next().value!);
      COMPILED.set(code, c);
    }
    this.#hooks = c.make(RUNTIME);
    this.#chunk = chunkId(luaBytes(code));
    return c.hooks;
  }

  setHostTable(name: string, fns: Readonly<Record<string, HostFunction>>): void {
    if (name === '__meshext_host') this.#host = fns as unknown as Host;
  }

  exec(): void {
    throw new Error('the compiled Lua tier runs no chunks');
  }

  takeEntry(): void {}

  startHook(dir: number, cid: number, seg: number): number | [ThreadRef, ResumeResult] {
    const hook = this.#hooks[dir];
    if (hook === undefined || this.#host === undefined) return 0;
    // Nothing a compiled hook makes outlives it (no upvalue or global writes), so its handle and
    // the objects cached on it are reused run after run instead of allocated.
    let h = this.#handles[dir];
    if (h === undefined || h.busy) {
      h = new Handle(cid, seg, this.#host);
      if (this.#handles[dir] === undefined) this.#handles[dir] = h;
    } else {
      h.cid = cid;
      h.seg = seg;
    }
    h.dir = dir;
    h.busy = true;
    try {
      hook(h);
      return 0;
    } catch (e) {
      // as the prelude's respond() yields to the driver, which then sends the reply
      if (e instanceof Respond) return [-1, { status: ResumeStatus.Yield, values: [SENTINEL, 'respond', e.headers, e.body], error: '', used: 0 }];
      return [-1, { status: ResumeStatus.Error, values: [], error: this.#message(e), used: 0 }];
    } finally {
      h.busy = false;
    }
  }

  #message(e: unknown): string {
    if (e instanceof LuaError) return e.positioned ? `${this.#chunk}:${e.line}: ${e.message}` : e.message;
    // V8's own limits (a string past its maximum length) are Lua's memory error
    if (e instanceof RangeError) return 'not enough memory';
    return `compiled Lua tier internal error: ${(e as Error).message}`;
  }

  start(args: readonly PushValue[]): [ThreadRef, ResumeResult] {
    const r = this.startHook(args[0] as number, args[1] as number, args[2] as number);
    if (typeof r === 'number') return [-1, { status: ResumeStatus.Ok, values: [], error: '', used: 0 }];
    return r;
  }

  resume(): ResumeResult {
    // compiled hooks never yield, so there is nothing to resume
    return { status: ResumeStatus.Error, values: [], error: 'compiled Lua hooks never yield', used: 0 };
  }

  release(): void {}

  memoryUsed(): number {
    return 0;
  }

  collect(): void {}

  close(): void {
    this.#hooks = [undefined, undefined];
  }
}

export interface CompiledLuaState extends LuaState {
  loadScript(code: string): number;
}


export const compiledEngine: LuaEngine = {
  name: 'compiled',
  version: 'Lua 5.1 subset compiled to JavaScript',
  compatPrelude: '',
  // no memory cap or budget to apply: a compiled hook runs each statement at most once
  createState: () => new CompiledState(),
};
