/**
 * The seam between the Envoy-facing Lua layer (prelude + host table + filter) and a Lua
 * implementation. Two engines implement it: LuaJIT through our N-API addon (exact Envoy dialect)
 * and Lua 5.4 in WebAssembly through wasmoon's raw C API (needs nothing but npm install).
 *
 * The surface is deliberately tiny and value-based so that both engines cross their boundary the
 * same way: the prelude calls flat host functions with strings/numbers/booleans, blocking methods
 * yield a sentinel to the driver ("yield in Lua, await in JS"), and the driver resumes the
 * coroutine with plain values. No engine-specific proxy objects ever cross.
 *
 * Strings: Lua strings are byte strings. They cross as JS strings in latin1 (one char per byte),
 * which is binary-exact in both directions and is also how Node reads and writes header values.
 */

/** A Lua table read by an engine: flat key/value pairs, keys keep their Lua types. */
export interface LuaTableValue {
  readonly luaTable: LuaValue[];
}

/** A Lua value that has no JS equivalent (function, userdata, thread). */
export interface LuaOpaqueValue {
  readonly luaType: 'function' | 'userdata' | 'thread' | 'lightuserdata';
}

export type LuaValue = undefined | null | boolean | number | string | LuaTableValue | LuaOpaqueValue;

/**
 * Values a host function or the driver may push: primitives, Buffers (pushed as byte strings),
 * arrays (1-based tables), plain objects and Maps (tables), LuaTableValue.
 */
export type PushValue = unknown;

/** Several results from one host function (a JS array alone would be pushed as a table). */
export class Multi {
  readonly values: readonly PushValue[];
  constructor(values: readonly PushValue[]) {
    this.values = values;
  }
}

/**
 * A host function called from Lua. Arguments arrive converted (nil → undefined). Returning
 * undefined pushes NO value (Envoy's "returns nothing"); null pushes nil; a Multi pushes several.
 * Must not throw: engines turn a throw into a Lua error, but the layer above reports errors as
 * values so that the prelude can raise them with the script's line number.
 */
export type HostFunction = (...args: LuaValue[]) => PushValue;

export const ResumeStatus = { Ok: 0, Yield: 1, Error: 2 } as const;
export type ResumeStatus = (typeof ResumeStatus)[keyof typeof ResumeStatus];

export interface ResumeResult {
  status: ResumeStatus;
  /** Returned or yielded values (Ok/Yield). */
  values: LuaValue[];
  /** Error message (Error). */
  error: string;
  /** Instructions counted during this run, in units of the engine's hook granularity. */
  used: number;
}

/** Opaque handle of a coroutine owned by a state. */
export type ThreadRef = number;

export interface StateOptions {
  /** Bytes the state may allocate; 0 = unlimited. */
  memoryLimitBytes: number;
  /** Keep os/io/package/debug/ffi/dofile/loadfile/require. */
  allowUnsafeLibs: boolean;
  /** The instruction budget is enforced (costs LuaJIT its JIT compiler). */
  budgetEnabled: boolean;
}

export class LuaScriptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LuaScriptError';
  }
}

export interface LuaState {
  /**
   * Loads and runs a chunk with Envoy's chunk naming (the source itself). Throws LuaScriptError.
   * `trusted`: meshext's own chunks (prelude, sandbox). On LuaJIT with a budget only those may be
   * JIT-compiled; everything else runs in the interpreter, where the count hook sees it.
   */
  exec(code: string, chunkName: string, budget: number, trusted?: boolean): void;
  /** Installs `fns` as global table `name`. */
  setHostTable(name: string, fns: Readonly<Record<string, HostFunction>>): void;
  /** Moves global function `name` into the registry as the hook entry point and clears it. */
  takeEntry(name: string): void;
  /**
   * Starts the entry function in a new coroutine (lua_newthread, as Envoy does per hook) with
   * `args` and runs it until it returns, errors or yields. `budget` is the count of hook ticks
   * (1 tick = HOOK_INSTRUCTIONS instructions) allowed for this run; 0 = unlimited. The ref is -1
   * when the coroutine already ended and was recycled by the engine (nothing to release).
   */
  start(args: readonly PushValue[], budget: number, prefetched?: number): [ThreadRef, ResumeResult];
  /**
   * LuaJIT only: memory shared with the engine. [0, ioQueueBytes) is the prelude's write-behind
   * queue (first u32: its byte length), the rest carries `prefetched` values that start() passes
   * to the entry function after its four arguments (formats in native/luajit.c).
   */
  readonly io?: Uint8Array;
  readonly ioQueueBytes?: number;
  /**
   * Optional fast form of start() for the hook entry (dir, cid, seg, reap): a number when the
   * coroutine returned nothing and needs no release (the ticks it used), else what start() returns.
   */
  startHook?(dir: number, cid: number, seg: number, reap: number, budget: number, prefetched: number): number | [ThreadRef, ResumeResult];
  resume(thread: ThreadRef, args: readonly PushValue[], budget: number): ResumeResult;
  /** Drops a coroutine (finished, failed, or abandoned after respond()/reset). */
  release(thread: ThreadRef): void;
  /** Bytes currently allocated by the state. */
  memoryUsed(): number;
  /** Full GC cycle. */
  collect(): void;
  close(): void;
}

export interface LuaEngine {
  readonly name: 'luajit' | 'wasmoon' | 'compiled';
  /** What `_VERSION` reports, for docs and describe(). */
  readonly version: string;
  /** Engine-specific Lua compat code run before the Envoy prelude (dialect shims). */
  readonly compatPrelude: string;
  createState(options: StateOptions): LuaState;
}

/** Instructions between two count-hook calls. */
export const HOOK_INSTRUCTIONS = 1000;

export function isLuaTable(v: unknown): v is LuaTableValue {
  return typeof v === 'object' && v !== null && Array.isArray((v as LuaTableValue).luaTable);
}
