/**
 * Module loading: ABI detection from the export marker, instrumentation for the resource limits,
 * and a compile cache keyed by sha256(bytes) + limits, so each module is compiled once per
 * isolate. A compiled WebAssembly.Module is structured-cloneable: `exportCompiledModules()` /
 * `seedCompiledModule()` let the process's main thread compile once and hand the result to
 * workers (postMessage), which then only instantiate.
 */
import { createHash } from 'node:crypto';
import { ABI_MARKERS, type AbiVersion } from './abi.ts';
import { instrument, MemoryCapError, UnsupportedWasmFeature } from './instrument.ts';
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
    p = doCompile(bytes, sha, opts);
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
  return { sha256: sha, module, abi, exports: new Set(exportNames), fuel, byteLength: bytes.length, ...(fuelUnavailable ? { fuelUnavailable } : {}) };
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
