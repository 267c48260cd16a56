/**
 * LuaJIT through our own N-API addon (src/lua/native/luajit.c), linked against the system's
 * libluajit (Debian libluajit2-5.1-dev). Optional: when the addon is not built, createLuajitEngine()
 * returns undefined and says why; build it with `node src/lua/native/build.ts`.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import {
  Multi,
  ResumeStatus,
  type HostFunction,
  type LuaEngine,
  type LuaState,
  type LuaValue,
  type PushValue,
  type ResumeResult,
  type StateOptions,
  type ThreadRef,
} from './engine.ts';

/** Where build.ts puts the addon (under the repo's gitignored build/). */
export const ADDON_PATH = fileURLToPath(new URL('../../build/lua-native/build/Release/meshext_luajit.node', import.meta.url));

interface Addon {
  init(multi: typeof Multi): void;
  newState(memoryLimit: number, budget: boolean, unsafe: boolean): object;
  setHostTable(st: object, name: string, keys: string[], fns: HostFunction[]): void;
  exec(st: object, code: string, chunkName: string, budget: number, trusted: boolean): string | undefined;
  takeEntry(st: object, name: string): void;
  /** [ref, status, used, ...values] */
  start(st: object, args: readonly PushValue[], budget: number): unknown[];
  /** number (used * 2^26 + status * 2^24 + ref) when the run ended without values, else [ref, status, used, ...values] */
  startHook(st: object, a: number, b: number, c: number, d: number, budget: number, prefetched: number): number | unknown[];
  setIo(st: object, io: Uint8Array, queueBytes: number): void;
  /** [status, used, ...values] */
  resume(st: object, ref: number, args: readonly PushValue[], budget: number): unknown[];
  release(st: object, ref: number): void;
  memory(st: object): number;
  gc(st: object): void;
  close(st: object): void;
  version(): string;
}

let addon: Addon | undefined;
const REF_POOLED = 0xffffff;
/** Write-behind queue and prefetch area of each state's shared buffer. */
const IO_QUEUE = 4096;
const IO_BYTES = 8192;
const NO_VALUES: LuaValue[] = [];
let reason = '';
let tried = false;

function loadAddon(): Addon | undefined {
  if (tried) return addon;
  tried = true;
  if (process.env.MESHEXT_LUAJIT === '0') {
    reason = 'disabled by MESHEXT_LUAJIT=0';
    return undefined;
  }
  if (!existsSync(ADDON_PATH)) {
    reason = `the LuaJIT addon is not built (${ADDON_PATH} missing; install libluajit2-5.1-dev and run \`node src/lua/native/build.ts\`)`;
    return undefined;
  }
  try {
    const a = createRequire(import.meta.url)(ADDON_PATH) as Addon;
    a.init(Multi);
    addon = a;
  } catch (e) {
    reason = `the LuaJIT addon failed to load: ${(e as Error).message}`;
  }
  return addon;
}

export function luajitUnavailableReason(): string {
  loadAddon();
  return reason;
}

function result(r: unknown[], off: number): ResumeResult {
  const status = r[off] as ResumeStatus;
  const used = r[off + 1] as number;
  if (status === ResumeStatus.Error) return { status, values: [], error: String(r[off + 2] ?? 'nil'), used };
  return { status, values: r.slice(off + 2) as LuaValue[], error: '', used };
}

class LuajitState implements LuaState {
  readonly #a: Addon;
  readonly #st: object;
  readonly io: Uint8Array;
  readonly ioQueueBytes = IO_QUEUE;
  #closed = false;
  constructor(a: Addon, o: StateOptions) {
    this.#a = a;
    this.#st = a.newState(o.memoryLimitBytes, o.budgetEnabled, o.allowUnsafeLibs);
    this.io = new Uint8Array(IO_BYTES);
    a.setIo(this.#st, this.io, IO_QUEUE);
  }
  exec(code: string, chunkName: string, budget: number, trusted = false): void {
    const e = this.#a.exec(this.#st, code, chunkName, budget, trusted);
    if (e !== undefined) throw new Error(e);
  }
  setHostTable(name: string, fns: Readonly<Record<string, HostFunction>>): void {
    this.#a.setHostTable(this.#st, name, Object.keys(fns), Object.values(fns));
  }
  takeEntry(name: string): void {
    this.#a.takeEntry(this.#st, name);
  }
  start(args: readonly PushValue[], budget: number, prefetched = 0): [ThreadRef, ResumeResult] {
    if (args.length === 4 && typeof args[0] === 'number' && typeof args[1] === 'number' && typeof args[2] === 'number' && typeof args[3] === 'number') {
      const r = this.#a.startHook(this.#st, args[0], args[1], args[2], args[3], budget, prefetched);
      if (typeof r === 'number') {
        const used = Math.floor(r / 67108864);
        const ref = (r - used * 67108864) % 16777216;
        // REF_POOLED: the coroutine ended and the addon pooled it already (no release() needed)
        return [ref === REF_POOLED ? -1 : ref, { status: ResumeStatus.Ok, values: NO_VALUES, error: '', used }];
      }
      return [r[0] as number, result(r, 1)];
    }
    const r = this.#a.start(this.#st, args, budget);
    return [r[0] as number, result(r, 1)];
  }
  startHook(dir: number, cid: number, seg: number, reap: number, budget: number, prefetched: number): number | [ThreadRef, ResumeResult] {
    const r = this.#a.startHook(this.#st, dir, cid, seg, reap, budget, prefetched);
    if (typeof r === 'number') {
      const used = Math.floor(r / 67108864);
      const ref = (r - used * 67108864) % 16777216;
      if (ref === REF_POOLED) return used;
      return [ref, { status: ResumeStatus.Ok, values: NO_VALUES, error: '', used }];
    }
    return [r[0] as number, result(r, 1)];
  }
  resume(thread: ThreadRef, args: readonly PushValue[], budget: number): ResumeResult {
    return result(this.#a.resume(this.#st, thread, args, budget), 0);
  }
  release(thread: ThreadRef): void {
    if (!this.#closed) this.#a.release(this.#st, thread);
  }
  memoryUsed(): number {
    return this.#a.memory(this.#st);
  }
  collect(): void {
    this.#a.gc(this.#st);
  }
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#a.close(this.#st);
  }
}

let engine: LuaEngine | undefined;

export function createLuajitEngine(): LuaEngine | undefined {
  if (engine) return engine;
  const a = loadAddon();
  if (!a) return undefined;
  engine = {
    name: 'luajit',
    version: a.version(),
    compatPrelude: '',
    createState: (o) => new LuajitState(a, o),
  };
  return engine;
}
