/**
 * Module loading: ABI detection from the export marker, instrumentation for the resource limits,
 * and a compile cache keyed by sha256(bytes) + limits. A worker thread with a link to the main
 * thread (link.ts) has the main thread compile: each module is compiled once per process and
 * workers only instantiate (and never load the rewriter). Without a link (the main thread itself,
 * an in-process data plane) it compiles here, once per isolate. `exportCompiledModules()` /
 * `seedCompiledModule()` move compilations between isolates by hand (tests, embedders).
 */
import { createHash } from 'node:crypto';
import { ABI_MARKERS, type AbiVersion } from './abi.ts';
import { callMain, type LinkError } from './link.ts';
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
    p = compileOnMainThread(bytes, opts) ?? doCompile(bytes, sha, opts);
    cache.set(key, p);
    // A failed compilation is not cached: the bytes may be fixed by a new config.
    p.catch(() => cache.delete(key));
  }
  return p;
}

/** What crosses the link: a CompiledPlugin with its export set as an array. */
type WirePlugin = Omit<CompiledPlugin, 'exports' | 'origin'> & { exports: string[] };

/** The main thread's side of a worker's compile request (link.ts). */
export async function serveCompile(arg: unknown): Promise<WirePlugin> {
  const { bytes, opts } = arg as { bytes: Uint8Array; opts: CompileOptions };
  const { exports, origin: _origin, ...rest } = await compilePlugin(bytes, opts);
  return { ...rest, exports: [...exports] };
}

function compileOnMainThread(bytes: Uint8Array, opts: CompileOptions): Promise<CompiledPlugin> | undefined {
  // A view into a larger buffer (a pooled Buffer) would post the whole buffer: send just the module.
  const own = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
  return callMain('compile', { bytes: own, opts })?.then(
    (v) => {
      const w = v as WirePlugin;
      return { ...w, exports: new Set(w.exports), origin: 'shared' as const };
    },
    (e: LinkError) => {
      throw new WasmLoadError((e.stage as WasmLoadError['stage'] | undefined) ?? 'compile', e.message);
    },
  );
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
