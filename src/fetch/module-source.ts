/**
 * Glue for the Wasm runtime's `setModuleSource()` seam: a `(wasm, ext, services) => bytes`
 * function backed by one ModuleFetcher per isolate (per worker thread), plus background recovery
 * hooks. Relative paths (a meshext extension, not Istio) are left to a fallback source.
 */
import type { BootstrapConfig, PullSecret, TrafficExtension, WasmConfig } from '../config/types.ts';
import type { StatsStore } from '../observability/stats.ts';
import { createModuleFetcher, fetchContextFor } from './fetcher.ts';
import type { FetchedModule, ModuleFetcher } from './fetcher.ts';
import { fetcherOptionsFrom } from './options.ts';
import { watchUntilAvailable } from './watch.ts';
import type { ModuleWatch, WatchOptions } from './watch.ts';

/** What the source needs from WorkerServices (structural, so src/fetch does not import src/proxy). */
export interface SourceServices {
  readonly bootstrap: Pick<BootstrapConfig, 'wasm'>;
  readonly stats: StatsStore;
  readonly secrets: readonly PullSecret[];
}

export type FetchModuleSource = (wasm: WasmConfig, ext: TrafficExtension, services: SourceServices) => Promise<Uint8Array<ArrayBuffer>>;

const fetchers = new Map<string, Promise<ModuleFetcher>>();

/**
 * The fetcher for this isolate and cache dir, created on first use from the bootstrap and Istio's
 * env knobs. Worker threads each get their own; they share the disk cache safely (atomic files).
 */
export function sharedModuleFetcher(services: SourceServices, env: NodeJS.ProcessEnv = process.env): Promise<ModuleFetcher> {
  const dir = services.bootstrap.wasm.cacheDir;
  let f = fetchers.get(dir);
  if (!f) {
    f = createModuleFetcher(fetcherOptionsFrom(services.bootstrap.wasm, env, services.stats));
    f.catch(() => fetchers.delete(dir));
    fetchers.set(dir, f);
  }
  return f;
}

/** Closes every shared fetcher (process shutdown, tests). */
export async function closeSharedFetchers(): Promise<void> {
  const all = [...fetchers.values()];
  fetchers.clear();
  for (const f of all) await (await f).close().catch(() => {});
}

const isRelativePath = (u: string): boolean => u.startsWith('/') || u.startsWith('./') || u.startsWith('../');

/**
 * A ModuleSource for `setModuleSource()`. `fallback` handles bare/relative paths (pass the
 * runtime's localModuleSource). Throws FetchError on failure; the runtime applies failStrategy.
 */
export function createFetchModuleSource(fallback?: (wasm: WasmConfig, ext: TrafficExtension, services: SourceServices) => Promise<Uint8Array>): FetchModuleSource {
  return async (wasm, ext, services) => {
    if (fallback && isRelativePath(wasm.url)) {
      const b = await fallback(wasm, ext, services);
      return new Uint8Array(b);
    }
    const fetcher = await sharedModuleFetcher(services);
    const m = await fetcher.fetch(wasm, fetchContextFor(ext, services.secrets));
    return m.bytes;
  };
}

/**
 * Background recovery for one extension whose fetch failed: retries with backoff and calls
 * `onAvailable` once with the module. Call `stop()` from LoadedExtension.release().
 */
export async function watchExtensionModule(
  ext: TrafficExtension,
  services: SourceServices,
  onAvailable: (m: FetchedModule) => void | Promise<void>,
  opts: Omit<WatchOptions, 'onAvailable'> = {},
): Promise<ModuleWatch> {
  const fetcher = await sharedModuleFetcher(services);
  return watchUntilAvailable(fetcher, ext.spec.wasm!, fetchContextFor(ext, services.secrets), { ...opts, onAvailable });
}
