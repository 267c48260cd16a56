/**
 * Module loading: ABI detection from the export marker, instrumentation for the resource limits,
 * and a compile cache keyed by sha256(bytes) + limits, so each module is compiled once per
 * isolate. A compiled WebAssembly.Module is structured-cloneable: `exportCompiledModules()` /
 * `seedCompiledModule()` let the process's main thread compile once and hand the result to
 * workers (postMessage), which then only instantiate.
 */
import { createHash } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { BroadcastChannel, isMainThread, threadId } from 'node:worker_threads';
import { ABI_MARKERS, type AbiVersion } from './abi.ts';
import { logger } from '../observability/log.ts';

export class WasmLoadError extends Error {
  readonly stage: 'compile' | 'abi' | 'limits' | 'link' | 'start' | 'vm_start' | 'configure' | 'fetch';
  constructor(stage: WasmLoadError['stage'], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WasmLoadError';
    this.stage = stage;
  }
}

export interface CompileOptions {
  /** Inject the CPU-budget fuel counter. */
  cpuBudget: boolean;
  /** Memory cap in 64 KiB pages (0 = none). */
  maxPages: number;
}

export interface CompiledPlugin {
  /** sha256 hex of the original bytes. */
  readonly sha256: string;
  readonly module: WebAssembly.Module;
  readonly abi: AbiVersion;
  /** Exports of the ORIGINAL module (name → kind). */
  readonly exports: ReadonlySet<string>;
  /** Whether the CPU budget is enforced for this module (instrumentation succeeded). */
  readonly fuel: boolean;
  /** Why the CPU budget is not enforced, when it was asked for. */
  readonly fuelUnavailable?: string;
  readonly byteLength: number;
  /** Memory cap applied by instrumentation (pages; 0 = none). */
  readonly maxPages?: number;
  /** How this isolate got it: compiled here, or received from another thread. */
  readonly origin?: 'compiled' | 'shared';
}

const cache = new Map<string, Promise<CompiledPlugin>>();

// ---------------------------------------------------------------------------------------------
// Sharing compiled modules between worker threads. A WebAssembly.Module is structured-cloneable,
// and BroadcastChannel reaches every isolate of the process: the first worker to need a module
// announces it compiles it and broadcasts the result; the others wait for it instead of compiling
// (and a late worker asks whether anyone has it). Races only cost a duplicate compilation.
type Msg =
  | { t: 'compiling'; key: string }
  | { t: 'compiled'; key: string; plugin: Omit<CompiledPlugin, 'exports'> & { exports: string[] } }
  | { t: 'failed'; key: string }
  | { t: 'want'; key: string; from: number };

const remote = new Map<string, { resolve: (p: CompiledPlugin | undefined) => void; promise: Promise<CompiledPlugin | undefined> }>();
/** Keys another thread will compile (it announced so, or it asked first with a lower thread id). */
const deferTo = new Set<string>();
let channel: BroadcastChannel | undefined;

function waiter(key: string) {
  let w = remote.get(key);
  if (!w) {
    let resolve!: (p: CompiledPlugin | undefined) => void;
    const promise = new Promise<CompiledPlugin | undefined>((r) => (resolve = r));
    w = { resolve, promise };
    remote.set(key, w);
  }
  return w;
}

function getChannel(): BroadcastChannel {
  if (channel) return channel;
  const ch = new BroadcastChannel('meshext.wasm.compiled-modules');
  (ch as unknown as { unref?: () => void }).unref?.();
  ch.onmessage = (ev: unknown) => {
    const m = (ev as { data: Msg }).data;
    if (m.t === 'compiling') {
      waiter(m.key);
      deferTo.add(m.key);
    }
    else if (m.t === 'compiled') {
      const plugin: CompiledPlugin = { ...m.plugin, exports: new Set(m.plugin.exports), origin: 'shared' };
      if (!cache.has(m.key)) cache.set(m.key, Promise.resolve(plugin));
      waiter(m.key).resolve(plugin);
    } else if (m.t === 'failed') waiter(m.key).resolve(undefined);
    else if (m.t === 'want') {
      const have = cache.get(m.key);
      if (have) have.then((p) => publish(m.key, p), () => undefined);
      // Two workers asking at once: the lower thread id compiles, the other waits for it.
      if (m.from < threadId) deferTo.add(m.key);
    }
  };
  channel = ch;
  return ch;
}

function publish(key: string, p: CompiledPlugin): void {
  try {
    getChannel().postMessage({ t: 'compiled', key, plugin: { ...p, exports: [...p.exports], origin: undefined } } satisfies Msg);
  } catch {
    // not cloneable in this runtime: every worker compiles for itself
  }
}

/** Waits (bounded) for another worker's compilation of `key`; undefined when none arrives. */
async function fromOtherThreads(key: string): Promise<CompiledPlugin | undefined> {
  if (isMainThread) return undefined;
  const ch = getChannel();
  const w = waiter(key);
  if (!deferTo.has(key)) {
    // Nobody announced it: ask whether someone already has it (or is asking at the same time).
    ch.postMessage({ t: 'want', key, from: threadId } satisfies Msg);
    const got = await Promise.race([w.promise, delay(25, undefined, { ref: false })]);
    if (got) return got;
    if (!deferTo.has(key)) {
      remote.delete(key);
      return undefined;
    }
  }
  const got = await Promise.race([w.promise, delay(60_000, undefined, { ref: false })]);
  deferTo.delete(key);
  if (!got) remote.delete(key);
  return got;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Detects the Proxy-Wasm ABI from the export marker; throws WasmLoadError('abi') when absent. */
export function detectAbi(exportNames: Iterable<string>): AbiVersion {
  const names = new Set(exportNames);
  for (const [marker, version] of ABI_MARKERS) if (names.has(marker)) return version;
  const other = [...names].find((n) => n.startsWith('proxy_abi_version_'));
  throw new WasmLoadError(
    'abi',
    other
      ? `unknown Proxy-Wasm ABI version marker '${other}' (supported: 0.1.0, 0.2.0, 0.2.1)`
      : 'missing Proxy-Wasm ABI version: the module exports none of proxy_abi_version_0_1_0, _0_2_0, _0_2_1',
  );
}

function cacheKey(sha: string, opts: CompileOptions): string {
  return `${sha}:${opts.cpuBudget ? 'fuel' : 'nofuel'}:${opts.maxPages}`;
}

/** Compiles (or returns the cached compilation of) a plugin module. */
export function compilePlugin(bytes: Uint8Array, opts: CompileOptions): Promise<CompiledPlugin> {
  const sha = sha256Hex(bytes);
  const key = cacheKey(sha, opts);
  let p = cache.get(key);
  if (!p) {
    p = (async () => {
      const shared = await fromOtherThreads(key);
      if (shared) return shared;
      if (!isMainThread) getChannel().postMessage({ t: 'compiling', key } satisfies Msg);
      try {
        const compiled = await doCompile(bytes, sha, opts);
        if (!isMainThread) publish(key, compiled);
        return compiled;
      } catch (err) {
        if (!isMainThread) getChannel().postMessage({ t: 'failed', key } satisfies Msg);
        throw err;
      }
    })();
    cache.set(key, p);
    // A failed compilation is not cached: the bytes may be fixed by a new config.
    p.catch(() => cache.delete(key));
  }
  return p;
}

async function doCompile(bytes: Uint8Array, sha: string, opts: CompileOptions): Promise<CompiledPlugin> {
  let original: WebAssembly.Module;
  try {
    original = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
  } catch (err) {
    throw new WasmLoadError('compile', `module does not compile: ${(err as Error).message}`, { cause: err });
  }
  const exportNames = WebAssembly.Module.exports(original).map((e) => e.name);
  const abi = detectAbi(exportNames);
  let module = original;
  let fuel = false;
  let fuelUnavailable: string | undefined;
  if (opts.cpuBudget || opts.maxPages > 0) {
    // Imported here, not at the top: with compiled modules shared between threads, most workers
    // never instrument anything and need not carry the rewriter (~60 KiB of heap each).
    const { instrument, MemoryCapError, UnsupportedWasmFeature } = await import('./instrument.ts');
    try {
      const out = instrument(bytes, { fuel: opts.cpuBudget, maxPages: opts.maxPages });
      module = await WebAssembly.compile(out.bytes as Uint8Array<ArrayBuffer>);
      fuel = out.fuel;
    } catch (err) {
      if (err instanceof MemoryCapError) throw new WasmLoadError('limits', err.message, { cause: err });
      // The module itself is valid (it compiled); only our rewriter does not understand it.
      fuelUnavailable = err instanceof UnsupportedWasmFeature ? err.message : `instrumentation failed: ${(err as Error).message}`;
      logger('wasm').warn({ sha256: sha, reason: fuelUnavailable }, 'wasm module runs without CPU budget / memory cap');
      module = original;
    }
  }
  const maxPages = fuelUnavailable === undefined ? opts.maxPages : 0;
  return { sha256: sha, module, abi, exports: new Set(exportNames), fuel, byteLength: bytes.length, maxPages, origin: 'compiled', ...(fuelUnavailable ? { fuelUnavailable } : {}) };
}

/** Compiled modules of this isolate, for posting to workers. */
export async function exportCompiledModules(): Promise<Array<{ key: string; plugin: CompiledPlugin }>> {
  const out: Array<{ key: string; plugin: CompiledPlugin }> = [];
  for (const [key, p] of cache) {
    try {
      out.push({ key, plugin: await p });
    } catch {
      // skip failed entries
    }
  }
  return out;
}

/** Seeds this isolate's cache with a module compiled elsewhere (received through postMessage). */
export function seedCompiledModule(key: string, plugin: CompiledPlugin): void {
  cache.set(key, Promise.resolve({ ...plugin, exports: new Set(plugin.exports) }));
}

/** For tests: forget every cached compilation. */
export function clearModuleCache(): void {
  cache.clear();
}
