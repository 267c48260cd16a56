/**
 * Lua 5.4 in WebAssembly (wasmoon's build), driven through its raw C API exports.
 *
 * wasmoon's own value layer (proxies, automatic conversions) measured 4-16x slower than calling
 * the `_lua_*` exports directly (envoy-lua-api.md §2.3), so only the compiled module is used: one
 * module per thread (its 16 MB linear memory is shared by every state), a state per script with
 * our own allocator (memory cap) and count hook (instruction budget), and host functions added to
 * the wasm function table with addFunction.
 */
import { LuaFactory } from 'wasmoon';
import {
  HOOK_INSTRUCTIONS,
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
  type StateOptions,
  type ThreadRef,
} from './engine.ts';

/* eslint-disable @typescript-eslint/no-explicit-any */
type Ptr = number;
interface Mod {
  HEAPU8: Uint8Array;
  HEAPU32: Uint32Array;
  HEAP32: Int32Array;
  addFunction(fn: (...a: number[]) => number | void, sig: string): number;
  removeFunction(p: number): void;
  _malloc(n: number): Ptr;
  _free(p: Ptr): void;
  _realloc(p: Ptr, n: number): Ptr;
  [k: string]: any;
}

const LUA_REGISTRYINDEX = -1000000 - 1000;
const T_NONE = -1, T_NIL = 0, T_BOOLEAN = 1, T_LIGHTUD = 2, T_NUMBER = 3, T_STRING = 4, T_TABLE = 5, T_FUNCTION = 6, T_USERDATA = 7;
const LUA_MASKCOUNT = 8;
const MAX_DEPTH = 32;
const SCRATCH = 1 << 16;

let modulePromise: Promise<Mod> | undefined;

/**
 * wasmoon's `module._lua_*` functions are emscripten ASSERTIONS wrappers (`L[name].apply(null,
 * arguments)` behind a runtime check) that cost more than the Lua work itself. The instance's raw
 * exports are not published, so they are caught as wasmoon instantiates its module, and bound
 * under the same `_name` keys over the module object (which keeps HEAPU8, addFunction, ...).
 */
async function wasmModule(): Promise<Mod> {
  modulePromise ??= (async () => {
    const wa = WebAssembly as any;
    const orig = wa.instantiate;
    const origStreaming = wa.instantiateStreaming;
    let raw: Record<string, unknown> | undefined;
    const catchExports = (r: any) => {
      const inst = r && 'instance' in r ? r.instance : r;
      if (inst?.exports?.lua_newstate) raw = inst.exports;
      return r;
    };
    wa.instantiate = (...a: unknown[]) => orig.apply(WebAssembly, a).then(catchExports);
    if (origStreaming) wa.instantiateStreaming = (...a: unknown[]) => origStreaming.apply(WebAssembly, a).then(catchExports);
    let module: Mod;
    try {
      module = ((await new LuaFactory().getLuaModule()) as any).module as Mod;
    } finally {
      wa.instantiate = orig;
      wa.instantiateStreaming = origStreaming;
    }
    if (!raw) return module;
    const m = Object.create(module) as Mod;
    for (const [k, v] of Object.entries(raw)) if (typeof v === 'function') (m as any)[`_${k}`] = v;
    return m;
  })();
  return modulePromise;
}

/** Shared per-module helpers: scratch memory and latin1 string moves. */
/** Node's latin1 fast paths (present on every Buffer, missing from @types/node). */
interface Latin1Buffer extends Buffer {
  latin1Slice(start: number, end: number): string;
  latin1Write(s: string, offset: number, length?: number): number;
}

class Heap {
  readonly m: Mod;
  #ab: ArrayBufferLike;
  #buf: Latin1Buffer;
  readonly scratch: Ptr;
  readonly lenPtr: Ptr;
  constructor(m: Mod) {
    this.m = m;
    this.#ab = m.HEAPU8.buffer;
    this.#buf = Buffer.from(m.HEAPU8.buffer as ArrayBuffer) as Latin1Buffer;
    this.scratch = m._malloc(SCRATCH);
    this.lenPtr = m._malloc(8);
  }
  /** The heap as a Buffer (re-made when memory grew, which detaches the old view). */
  buf(): Latin1Buffer {
    // growing the wasm memory detaches the old ArrayBuffer: its views read as empty
    if (this.#buf.byteLength === 0) {
      this.#ab = this.m.HEAPU8.buffer;
      this.#buf = Buffer.from(this.#ab as ArrayBuffer) as Latin1Buffer;
    }
    return this.#buf;
  }
  u32(p: Ptr): number {
    return this.buf().readUInt32LE(p);
  }
  i32(p: Ptr): number {
    return this.buf().readInt32LE(p);
  }
  read(p: Ptr, n: number): string {
    return this.buf().latin1Slice(p, p + n);
  }
}

const heaps = new WeakMap<Mod, Heap>();

/**
 * The functions this engine calls, in one object literal: one hidden class, so every call site is
 * a monomorphic property load (the module object is in dictionary mode with hundreds of keys).
 */
function fastApi(m: Mod): Mod {
  return {
    HEAPU8: m.HEAPU8,
    HEAPU32: m.HEAPU32,
    HEAP32: m.HEAP32,
    addFunction: m.addFunction.bind(m),
    removeFunction: m.removeFunction.bind(m),
    _free: m._free,
    _luaL_checkstack: m._luaL_checkstack,
    _luaL_loadbufferx: m._luaL_loadbufferx,
    _luaL_openlibs: m._luaL_openlibs,
    _luaL_ref: m._luaL_ref,
    _luaL_unref: m._luaL_unref,
    _lua_absindex: m._lua_absindex,
    _lua_close: m._lua_close,
    _lua_createtable: m._lua_createtable,
    _lua_error: m._lua_error,
    _lua_getglobal: m._lua_getglobal,
    _lua_gettop: m._lua_gettop,
    _lua_newstate: m._lua_newstate,
    _lua_newthread: m._lua_newthread,
    _lua_newuserdatauv: m._lua_newuserdatauv,
    _lua_next: m._lua_next,
    _lua_pcallk: m._lua_pcallk,
    _lua_pushboolean: m._lua_pushboolean,
    _lua_pushcclosure: m._lua_pushcclosure,
    _lua_pushinteger: m._lua_pushinteger,
    _lua_pushlstring: m._lua_pushlstring,
    _lua_pushnil: m._lua_pushnil,
    _lua_pushnumber: m._lua_pushnumber,
    _lua_pushvalue: m._lua_pushvalue,
    _lua_rawgeti: m._lua_rawgeti,
    _lua_rawset: m._lua_rawset,
    _lua_rawseti: m._lua_rawseti,
    _lua_resume: m._lua_resume,
    _lua_setfield: m._lua_setfield,
    _lua_setglobal: m._lua_setglobal,
    _lua_sethook: m._lua_sethook,
    _lua_setmetatable: m._lua_setmetatable,
    _lua_settop: m._lua_settop,
    _lua_toboolean: m._lua_toboolean,
    _lua_tolstring: m._lua_tolstring,
    _lua_tonumberx: m._lua_tonumberx,
    _lua_type: m._lua_type,
    _malloc: m._malloc,
    _realloc: m._realloc,
  } as Mod;
}


class WasmoonState implements LuaState {
  readonly #m: Mod;
  readonly #h: Heap;
  readonly #G: Ptr;
  readonly #fnPtrs: number[] = [];
  readonly #threads = new Map<number, Ptr>();
  #entryRef = 0;
  #entryBig = 0n;
  readonly #pool: number[] = [];
  readonly #poolPtr: Ptr[] = [];
  readonly #reusable = new Set<number>();
  #memUsed = 0;
  #memMax: number;
  /** The cap applies only while Lua runs protected: an allocation error in an unprotected API
   * call would panic and abort the whole shared wasm module. */
  #enforce = false;
  #remaining = Infinity;
  #ticks = 0;
  /** A thread was switched to a per-instruction hook after exceeding its budget. */
  #hot = false;
  #hook = 0;
  #closed = false;

  constructor(module: Mod, h: Heap, opts: StateOptions) {
    const m = fastApi(module);
    this.#m = m;
    this.#h = h;
    this.#memMax = opts.memoryLimitBytes > 0 ? opts.memoryLimitBytes : Infinity;
    // Our allocator: the memory cap. Refusing an allocation makes Lua raise "not enough memory"
    // and the state stays usable (emergency GC runs first).
    const alloc = m.addFunction((_ud: number, ptr: number, osize: number, nsize: number): number => {
      if (nsize === 0) {
        if (ptr) {
          this.#memUsed -= osize;
          m._free(ptr);
        }
        return 0;
      }
      const delta = ptr ? nsize - osize : nsize;
      if (delta > 0 && this.#enforce && this.#memUsed + delta > this.#memMax) return 0;
      const p = m._realloc(ptr, nsize);
      if (p) this.#memUsed += delta;
      return p;
    }, 'iiiii');
    this.#fnPtrs.push(alloc);
    const G = m._lua_newstate(alloc, 0);
    if (!G) throw new LuaScriptError('cannot create Lua state (not enough memory)');
    this.#G = G;
    m._luaL_openlibs(G);
    // Count hook: threads created from G inherit it (lua_newthread copies hook and count).
    const hook = m.addFunction((L: number): void => {
      this.#ticks++;
      if (--this.#remaining <= 0) {
        // Keep raising at every instruction: a pcall in the script catches one error, the next
        // instruction outside it raises again, so the hook always ends.
        this.#remaining = 1;
        this.#hot = true;
        m._lua_sethook(L, hook, LUA_MASKCOUNT, 1);
        this.#pushString(L, 'instruction budget exceeded');
        m._lua_error(L); // longjmps out through this JS frame (emscripten unwinds with a JS throw)
      }
    }, 'vii');
    this.#fnPtrs.push(hook);
    this.#hook = hook;
    if (opts.budgetEnabled) m._lua_sethook(G, hook, LUA_MASKCOUNT, HOOK_INSTRUCTIONS);
    m._lua_settop(G, 0);
    // Userdata for the prelude's objects: Lua 5.4 has no newproxy().
    this.setHostTable('__meshext_engine', {});
    const newuds = m.addFunction((L: number): number => {
      m._luaL_checkstack(L, 34, 0);
      for (let i = 0; i < 32; i++) m._lua_newuserdatauv(L, 0, 0);
      return 32;
    }, 'ii');
    this.#fnPtrs.push(newuds);
    m._lua_getglobal(G, this.#cstr('__meshext_engine'));
    m._lua_pushcclosure(G, newuds, 0);
    m._lua_setfield(G, -2, this.#cstr('newuds'));
    m._lua_settop(G, 0);
  }

  /** A NUL-terminated copy in the second half of the scratch area (names, short C strings). */
  #cstr(s: string): Ptr {
    const p = this.#h.scratch + SCRATCH / 2;
    const n = this.#h.buf().latin1Write(s, p, SCRATCH / 2 - 1);
    this.#h.buf()[p + n] = 0;
    return p;
  }

  #pushString(L: Ptr, s: string): void {
    const m = this.#m;
    const n = s.length;
    if (n <= SCRATCH / 2) {
      const p = this.#h.scratch;
      this.#h.buf().latin1Write(s, p, n);
      m._lua_pushlstring(L, p, n);
      return;
    }
    const p = m._malloc(n);
    this.#h.buf().latin1Write(s, p, n);
    m._lua_pushlstring(L, p, n);
    m._free(p);
  }

  #pushBytes(L: Ptr, b: Uint8Array): void {
    const m = this.#m;
    const n = b.length;
    const p = n <= SCRATCH / 2 ? this.#h.scratch : m._malloc(n);
    this.#h.buf().set(b, p);
    m._lua_pushlstring(L, p, n);
    if (p !== this.#h.scratch) m._free(p);
  }

  #push(L: Ptr, v: PushValue, depth = 0): void {
    const m = this.#m;
    switch (typeof v) {
      case 'string':
        this.#pushString(L, v);
        return;
      case 'number':
        // Integers go in as Lua integers so that tostring() prints "5" as LuaJIT does, not "5.0".
        if (Number.isSafeInteger(v)) m._lua_pushinteger(L, BigInt(v));
        else m._lua_pushnumber(L, v);
        return;
      case 'boolean':
        m._lua_pushboolean(L, v ? 1 : 0);
        return;
      case 'undefined':
        m._lua_pushnil(L);
        return;
      case 'bigint':
        m._lua_pushinteger(L, v);
        return;
      case 'object':
        break;
      default:
        m._lua_pushnil(L);
        return;
    }
    if (v === null || depth > MAX_DEPTH) {
      m._lua_pushnil(L);
      return;
    }
    if (v instanceof Uint8Array) {
      this.#pushBytes(L, v);
      return;
    }
    m._luaL_checkstack(L, 4, 0);
    if (Array.isArray(v)) {
      m._lua_createtable(L, v.length, 0);
      for (let i = 0; i < v.length; i++) {
        this.#push(L, v[i], depth + 1);
        m._lua_rawseti(L, -2, BigInt(i + 1));
      }
      return;
    }
    if (isLuaTable(v)) {
      const t = v.luaTable;
      m._lua_createtable(L, 0, t.length >> 1);
      for (let i = 0; i + 1 < t.length; i += 2) {
        if (t[i] === undefined || t[i] === null) continue;
        this.#push(L, t[i], depth + 1);
        this.#push(L, t[i + 1], depth + 1);
        m._lua_rawset(L, -3);
      }
      return;
    }
    if (v instanceof Map) {
      m._lua_createtable(L, 0, v.size);
      for (const [k, x] of v) {
        if (k === undefined || k === null) continue;
        this.#push(L, k, depth + 1);
        this.#push(L, x, depth + 1);
        m._lua_rawset(L, -3);
      }
      return;
    }
    m._lua_createtable(L, 0, 4);
    for (const k in v as Record<string, unknown>) {
      this.#pushString(L, k);
      this.#push(L, (v as Record<string, unknown>)[k], depth + 1);
      m._lua_rawset(L, -3);
    }
  }

  #get(L: Ptr, i: number, depth = 0): LuaValue {
    const m = this.#m;
    switch (m._lua_type(L, i)) {
      case T_NONE:
      case T_NIL:
        return undefined;
      case T_BOOLEAN:
        return m._lua_toboolean(L, i) !== 0;
      case T_NUMBER:
        return m._lua_tonumberx(L, i, 0);
      case T_STRING: {
        const p = m._lua_tolstring(L, i, this.#h.lenPtr);
        return this.#h.read(p, this.#h.u32(this.#h.lenPtr));
      }
      case T_TABLE: {
        if (depth > MAX_DEPTH) return { luaTable: [] };
        const idx = m._lua_absindex(L, i);
        const out: LuaValue[] = [];
        m._luaL_checkstack(L, 4, 0);
        m._lua_pushnil(L);
        while (m._lua_next(L, idx) !== 0) {
          out.push(this.#get(L, -2, depth + 1), this.#get(L, -1, depth + 1));
          m._lua_settop(L, -2);
        }
        return { luaTable: out };
      }
      case T_FUNCTION:
        return { luaType: 'function' };
      case T_USERDATA:
        return { luaType: 'userdata' };
      case T_LIGHTUD:
        return { luaType: 'lightuserdata' };
      default:
        return { luaType: 'thread' };
    }
  }

  setHostTable(name: string, fns: Readonly<Record<string, HostFunction>>): void {
    const m = this.#m;
    const G = this.#G;
    m._lua_createtable(G, 0, Object.keys(fns).length);
    for (const [key, fn] of Object.entries(fns)) {
      const ptr = m.addFunction((L: number): number => this.#call(L, fn), 'ii');
      this.#fnPtrs.push(ptr);
      m._lua_pushcclosure(G, ptr, 0);
      m._lua_setfield(G, -2, this.#cstr(key));
    }
    m._lua_setglobal(G, this.#cstr(name));
  }

  #call(L: Ptr, fn: HostFunction): number {
    const m = this.#m;
    const n = m._lua_gettop(L);
    let r: PushValue;
    try {
      switch (n) {
        case 0: r = fn(); break;
        case 1: r = fn(this.#get(L, 1)); break;
        case 2: r = fn(this.#get(L, 1), this.#get(L, 2)); break;
        case 3: r = fn(this.#get(L, 1), this.#get(L, 2), this.#get(L, 3)); break;
        case 4: r = fn(this.#get(L, 1), this.#get(L, 2), this.#get(L, 3), this.#get(L, 4)); break;
        default: {
          const args: LuaValue[] = [];
          for (let i = 1; i <= n; i++) args.push(this.#get(L, i));
          r = fn(...args);
        }
      }
    } catch (err) {
      // A JS exception must never unwind through wasm frames: turn it into a Lua error here.
      this.#pushString(L, `host error: ${(err as Error)?.message ?? String(err)}`);
      return m._lua_error(L);
    }
    if (r === undefined) return 0;
    const enforce = this.#enforce;
    this.#enforce = false; // pushing results: an allocation error would unwind through JS
    try {
      return this.#pushResult(L, r);
    } finally {
      this.#enforce = enforce;
    }
  }

  #pushResult(L: Ptr, r: PushValue): number {
    const m = this.#m;
    if (r instanceof Multi) {
      m._luaL_checkstack(L, r.values.length + 2, 0);
      for (const v of r.values) this.#push(L, v);
      return r.values.length;
    }
    this.#push(L, r);
    return 1;
  }

  exec(code: string, chunkName: string, budget: number): void {
    const m = this.#m;
    const G = this.#G;
    const buf = Buffer.from(code, 'latin1');
    const nameBuf = Buffer.from(chunkName + '\0', 'latin1');
    const p = m._malloc(buf.length + 1 + nameBuf.length);
    const heap = this.#h.buf();
    heap.set(buf, p);
    heap[p + buf.length] = 0;
    heap.set(nameBuf, p + buf.length + 1);
    const mode = this.#cstr('t'); // text only: bytecode can crash the VM
    let rc = m._luaL_loadbufferx(G, p, buf.length, p + buf.length + 1, mode);
    m._free(p);
    if (rc === 0) {
      this.#remaining = budget > 0 ? budget : Infinity;
      this.#enforce = true;
      rc = m._lua_pcallk(G, 0, 0, 0, 0, 0);
      this.#enforce = false;
      this.#remaining = Infinity;
    }
    if (rc !== 0) {
      const msg = this.#get(G, -1);
      m._lua_settop(G, 0);
      throw new LuaScriptError(typeof msg === 'string' ? msg : 'error object is not a string');
    }
    m._lua_settop(G, 0);
  }

  takeEntry(name: string): void {
    const m = this.#m;
    m._lua_getglobal(this.#G, this.#cstr(name));
    this.#entryRef = m._luaL_ref(this.#G, LUA_REGISTRYINDEX);
    this.#entryBig = BigInt(this.#entryRef);
    m._lua_pushnil(this.#G);
    m._lua_setglobal(this.#G, this.#cstr(name));
  }

  start(args: readonly PushValue[], budget: number): [ThreadRef, ResumeResult] {
    const m = this.#m;
    // A coroutine that returned normally has an empty stack and status OK: Lua 5.4 lets it run a
    // new function, which saves a thread allocation (and its GC) per hook.
    let ref = this.#pool.pop();
    let T: Ptr;
    if (ref !== undefined) {
      T = this.#poolPtr.pop()!;
    } else {
      T = m._lua_newthread(this.#G);
      ref = m._luaL_ref(this.#G, LUA_REGISTRYINDEX) as number; // anchors the thread
    }
    m._lua_rawgeti(T, LUA_REGISTRYINDEX, this.#entryBig);
    const r = this.#run(T, args, budget);
    if (r.status === ResumeStatus.Ok && this.#pool.length < 64) {
      // finished: pooled at once, so the driver has nothing to release (ref -1)
      this.#pool.push(ref);
      this.#poolPtr.push(T);
      return [-1, r];
    }
    this.#threads.set(ref, T);
    if (r.status === ResumeStatus.Ok) this.#reusable.add(ref);
    return [ref, r];
  }

  resume(thread: ThreadRef, args: readonly PushValue[], budget: number): ResumeResult {
    const T = this.#threads.get(thread);
    if (T === undefined) return { status: ResumeStatus.Error, values: [], error: 'coroutine is gone', used: 0 };
    const r = this.#run(T, args, budget);
    if (r.status === ResumeStatus.Ok) this.#reusable.add(thread);
    return r;
  }

  #run(T: Ptr, args: readonly PushValue[], budget: number): ResumeResult {
    const m = this.#m;
    m._luaL_checkstack(T, args.length + 2, 0);
    for (const a of args) this.#push(T, a);
    this.#remaining = budget > 0 ? budget : Infinity;
    if (this.#hot) m._lua_sethook(T, this.#hook, LUA_MASKCOUNT, HOOK_INSTRUCTIONS);
    const t0 = this.#ticks;
    const nresPtr = this.#h.lenPtr + 4;
    this.#enforce = true;
    const rc = m._lua_resume(T, this.#G, args.length, nresPtr);
    this.#enforce = false;
    this.#remaining = Infinity;
    const used = this.#ticks - t0;
    if (rc === 0 || rc === 1) {
      const nres = this.#h.i32(nresPtr);
      const top = m._lua_gettop(T);
      const values: LuaValue[] = [];
      for (let i = top - nres + 1; i <= top; i++) values.push(this.#get(T, i));
      m._lua_settop(T, top - nres);
      return { status: rc === 0 ? ResumeStatus.Ok : ResumeStatus.Yield, values, error: '', used };
    }
    const e = this.#get(T, -1);
    m._lua_settop(T, 0);
    return { status: ResumeStatus.Error, values: [], error: typeof e === 'string' ? e : e === undefined ? 'nil' : 'error object is not a string', used };
  }

  release(thread: ThreadRef): void {
    const T = this.#threads.get(thread);
    if (T === undefined || this.#closed) return;
    this.#threads.delete(thread);
    if (this.#reusable.delete(thread) && this.#pool.length < 64) {
      this.#pool.push(thread);
      this.#poolPtr.push(T);
      return;
    }
    this.#m._luaL_unref(this.#G, LUA_REGISTRYINDEX, thread);
  }

  memoryUsed(): number {
    return this.#memUsed;
  }

  collect(): void {
    // lua_gc is variadic in 5.4 and not exported; a chunk does the same.
    this.exec('collectgarbage()', '=gc', 0);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#m._lua_close(this.#G);
    for (const p of this.#fnPtrs) this.#m.removeFunction(p);
    this.#fnPtrs.length = 0;
  }
}

/** Lua 5.1/LuaJIT globals that Envoy scripts use and Lua 5.4 lacks (envoy-lua-api.md §1.11). */
const COMPAT_54 = String.raw`
unpack = unpack or table.unpack
loadstring = loadstring or load
table.getn = table.getn or function(t) return #t end
table.maxn = table.maxn or function(t)
  local n = 0
  for k in pairs(t) do if type(k) == "number" and k > n then n = k end end
  return n
end
math.pow = math.pow or function(a, b) return a ^ b end
math.ldexp = math.ldexp or function(m, e) return m * 2.0 ^ e end
if not bit then
  -- LuaJIT's BitOp semantics: operands and results are signed 32-bit integers.
  local floor = math.floor
  local function tobit(x)
    x = floor(x) & 0xffffffff
    if x >= 0x80000000 then x = x - 0x100000000 end
    return x
  end
  local function fold(op)
    return function(a, ...)
      local r = tobit(a)
      for i = 1, select("#", ...) do r = op(r, tobit((select(i, ...)))) end
      return tobit(r)
    end
  end
  bit = {
    tobit = tobit,
    band = fold(function(a, b) return a & b end),
    bor = fold(function(a, b) return a | b end),
    bxor = fold(function(a, b) return a ~ b end),
    bnot = function(a) return tobit(~tobit(a)) end,
    lshift = function(a, n) return tobit((tobit(a) & 0xffffffff) << (floor(n) & 31)) end,
    rshift = function(a, n) return tobit((tobit(a) & 0xffffffff) >> (floor(n) & 31)) end,
    arshift = function(a, n) return tobit(tobit(a) >> (floor(n) & 31) | (tobit(a) < 0 and ~(0xffffffff >> (floor(n) & 31)) or 0)) end,
    rol = function(a, n) n = floor(n) & 31; a = tobit(a) & 0xffffffff; return tobit((a << n) | (a >> (32 - n))) end,
    ror = function(a, n) n = floor(n) & 31; a = tobit(a) & 0xffffffff; return tobit((a >> n) | (a << (32 - n))) end,
    bswap = function(a)
      a = tobit(a) & 0xffffffff
      return tobit(((a & 0xff) << 24) | ((a & 0xff00) << 8) | ((a >> 8) & 0xff00) | (a >> 24))
    end,
    tohex = function(a, n)
      n = n or 8
      local up = n < 0
      if up then n = -n end
      local s = string.format(up and "%08X" or "%08x", tobit(a) & 0xffffffff)
      return s:sub(-n)
    end,
  }
end
`;

export async function createWasmoonEngine(): Promise<LuaEngine> {
  const m = await wasmModule();
  let heap = heaps.get(m);
  if (!heap) {
    heap = new Heap(m);
    heaps.set(m, heap);
  }
  const h = heap;
  return {
    name: 'wasmoon',
    version: 'Lua 5.4 (wasmoon)',
    compatPrelude: COMPAT_54,
    createState: (opts) => new WasmoonState(m, h, opts),
  };
}
