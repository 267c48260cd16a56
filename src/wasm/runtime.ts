/**
 * The ExtensionRuntime for `wasm` TrafficExtensions. Importing this module registers it.
 *
 * Module bytes come from `moduleSource` (default: `file://` URLs and plain paths read locally);
 * src/fetch plugs OCI/HTTP in with `setModuleSource()`. Compilation is cached per isolate by
 * sha256 (module.ts); each extension gets its own VM per worker (plugin.ts).
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';
import type { BootstrapConfig, PullSecret, TrafficExtension, WasmConfig } from '../config/types.ts';
import type { StatsStore } from '../observability/stats.ts';
import { extensionFilterName, registerRuntime, type ExtensionRuntime, type LoadedExtension, type WorkerServices } from '../proxy/extension-runtime.ts';
import { Limits } from './abi.ts';
import { compilePlugin, WasmLoadError } from './module.ts';
import { encodeString } from './pairs.ts';
import { WasmPlugin, type PluginOptions } from './plugin.ts';
import type { VmServices } from './vm.ts';

/** What a module source may use from the worker (a structural subset of WorkerServices). */
export interface ModuleSourceServices {
  readonly bootstrap: Pick<BootstrapConfig, 'wasm'>;
  readonly stats: StatsStore;
  readonly secrets: readonly PullSecret[];
}

/** Resolves a WasmConfig to module bytes. Throwing = fetch failure (governed by failStrategy). */
export type ModuleSource = (wasm: WasmConfig, ext: TrafficExtension, services: ModuleSourceServices) => Promise<Uint8Array>;

/** Local files only: `file:///abs/path`, `/abs/path` or a path relative to the extension's file. */
export const localModuleSource: ModuleSource = async (wasm, ext) => {
  const url = wasm.url;
  let path: string;
  if (url.startsWith('file://')) path = fileURLToPath(url);
  else if (url.startsWith('/') || url.startsWith('./') || url.startsWith('../')) path = resolve(ext.origin.file ? resolve(ext.origin.file, '..') : process.cwd(), url);
  else throw new WasmLoadError('fetch', `no module fetcher for '${url}' (only file:// and local paths are built in)`);
  const bytes = await readFile(path);
  if (bytes.length < 8 || bytes.readUInt32BE(0) !== 0x0061736d) throw new WasmLoadError('fetch', `fetched Wasm binary ${path} is invalid (no \\0asm magic)`);
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
};

let moduleSource: ModuleSource | undefined;

/** Installs the module fetcher (src/fetch: oci://, http(s)://, with caching and sha256 checks). */
export function setModuleSource(source: ModuleSource): void {
  moduleSource = source;
}

const isLocal = (url: string) => url.startsWith('file://') || url.startsWith('/') || url.startsWith('./') || url.startsWith('../');

// Default when nobody called setModuleSource(): local files here, every other scheme through
// src/fetch when that module is present (imported lazily: the runtime has no hard dependency).
let remote: Promise<ModuleSource | undefined> | undefined;
function remoteSource(): Promise<ModuleSource | undefined> {
  remote ??= import('../fetch/module-source.ts').then(
    (m: { createFetchModuleSource?: (fallback: ModuleSource) => ModuleSource }) => m.createFetchModuleSource?.(localModuleSource),
    () => undefined,
  );
  return remote;
}

async function fetchModule(wasm: WasmConfig, ext: TrafficExtension, services: ModuleSourceServices): Promise<Uint8Array> {
  if (moduleSource) return moduleSource(wasm, ext, services);
  if (isLocal(wasm.url)) return localModuleSource(wasm, ext, services);
  const r = await remoteSource();
  return (r ?? localModuleSource)(wasm, ext, services);
}

/**
 * Retries a failed remote fetch in the background with backoff (src/fetch's watcher), handing the
 * module over once the registry or server recovers. Beyond Istio, which waits for a config change.
 */
async function startRecovery(ext: TrafficExtension, services: WorkerServices, onModule: (bytes: Uint8Array) => Promise<void>): Promise<{ stop(): void } | undefined> {
  try {
    const m = (await import('../fetch/module-source.ts')) as {
      watchExtensionModule?: (ext: TrafficExtension, services: ModuleSourceServices, cb: (m: { bytes: Uint8Array }) => Promise<void>, opts?: { initialDelayMs?: number; maxDelayMs?: number }) => Promise<{ stop(): void }>;
    };
    if (!m.watchExtensionModule) return undefined;
    return await m.watchExtensionModule(ext, services, (mod) => onModule(mod.bytes), { initialDelayMs: 1000, maxDelayMs: 300_000 });
  } catch {
    return undefined;
  }
}

export interface WasmRuntimeOverrides {
  /** FAIL_RELOAD backoff base in ms (tests). */
  reloadBackoffBaseMs?: number;
  /** Receives plugin log lines (tests). */
  logSink?: (level: number, message: string) => void;
}

const overrides: WasmRuntimeOverrides = {};
export function setWasmRuntimeOverrides(o: WasmRuntimeOverrides): void {
  Object.assign(overrides, o);
}

/** VM environment from vmConfig.env (INLINE values, HOST values from our own environment). */
export function vmEnv(wasm: WasmConfig): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const e of wasm.vmConfig?.env ?? []) {
    if (e.name.startsWith('ISTIO_META_')) continue; // stripped by istio-agent
    if (e.valueFrom === 'HOST') {
      const v = process.env[e.name];
      if (v !== undefined) out.push([e.name, v]);
    } else {
      out.push([e.name, e.value ?? '']);
    }
  }
  return out;
}

/** Builds the options of a plugin from its resource and the worker's services. */
export function pluginOptions(ext: TrafficExtension, services: Pick<WorkerServices, 'bootstrap' | 'clusters' | 'stats'>): PluginOptions {
  const wasm = ext.spec.wasm!;
  const filterName = extensionFilterName(ext);
  const configuration = wasm.pluginConfig && Object.keys(wasm.pluginConfig).length > 0 ? encodeString(JSON.stringify(wasm.pluginConfig)) : new Uint8Array(0);
  const vmServices: VmServices = {
    clusters: services.clusters,
    stats: services.stats,
    identity: services.bootstrap.identity,
    clusterConfigs: services.bootstrap.clusters,
    logSink: overrides.logSink,
  };
  return {
    filterName,
    statName: `${ext.metadata.namespace}.${ext.metadata.name}`,
    plugin: { name: `${ext.metadata.namespace}.${ext.metadata.name}`, rootId: wasm.pluginName ?? '', configuration },
    failStrategy: wasm.failStrategy ?? 'FAIL_CLOSE',
    // Istio never sets vm_id: every plugin shares the '' namespace for shared data/queues.
    vmId: '',
    vmConfiguration: new Uint8Array(0),
    env: vmEnv(wasm),
    cpuBudgetMs: services.bootstrap.wasm?.cpuBudgetMs ?? 0,
    services: vmServices,
    ...(overrides.reloadBackoffBaseMs !== undefined ? { reloadBackoffBaseMs: overrides.reloadBackoffBaseMs } : {}),
  };
}

function memoryPages(services: Pick<WorkerServices, 'bootstrap'>): number {
  const bytes = services.bootstrap.wasm?.memoryLimitBytes || Limits.defaultMemoryBytes;
  return Math.max(1, Math.floor(bytes / 65536));
}

/** Loads a plugin from bytes (shared by the runtime and tests). Never throws for plugin faults. */
export async function loadPlugin(bytes: Uint8Array | Error, opts: PluginOptions, maxPages: number): Promise<WasmPlugin> {
  if (bytes instanceof Error) return WasmPlugin.failedToLoad(opts, bytes, 'fetch');
  let compiled;
  try {
    compiled = await compilePlugin(bytes, { cpuBudget: opts.cpuBudgetMs > 0, maxPages });
  } catch (err) {
    return WasmPlugin.failedToLoad(opts, err as Error, 'compile');
  }
  // Per-thread counters, merged by the admin: worker threads should only ever receive modules.
  opts.services.stats?.counter(compiled.origin === 'shared' ? 'wasm.modules_received_from_main_thread' : 'wasm.modules_compiled_here').inc();
  return WasmPlugin.create(opts, compiled);
}

export const wasmRuntime: ExtensionRuntime = {
  kind: 'wasm',
  async load(ext: TrafficExtension, services: WorkerServices): Promise<LoadedExtension> {
    const wasm = ext.spec.wasm;
    if (!wasm) throw new Error(`TrafficExtension ${ext.metadata.namespace}/${ext.metadata.name} has no wasm section`);
    const opts = pluginOptions(ext, services);
    let bytes: Uint8Array | Error;
    try {
      bytes = await fetchModule(wasm, ext, services);
    } catch (err) {
      bytes = err as Error;
    }
    const pages = memoryPages(services);
    // `plugin` is read when each stream starts, so a module that arrives later replaces the
    // fetch-failure placeholder (403 / bypass per failStrategy) without a config change.
    let plugin = await loadPlugin(bytes, opts, pages);
    // The closures below capture this flag, not `bytes`: they would keep the module's bytes alive
    // in every worker (plugins of several MiB exist) long after compilation.
    const fetchFailed = bytes instanceof Error;
    let released = false;
    let watch: { stop(): void } | undefined;
    if (fetchFailed && moduleSource === undefined && !isLocal(wasm.url)) {
      watch = await startRecovery(ext, services, async (recovered) => {
        if (released) return;
        const next = await loadPlugin(recovered, opts, pages);
        if (released) {
          void next.release();
          return;
        }
        const old = plugin;
        plugin = next;
        void old.release();
      });
    }
    const network = wasm.type === 'NETWORK';
    return {
      filterName: opts.filterName,
      httpFilterFactory: () => (network ? null : { name: opts.filterName, create: (cb) => plugin.createHttpFilter(cb) }),
      networkFilterFactory: () => (network ? { name: opts.filterName, create: (cb) => plugin.createNetworkFilter(cb) } : null),
      describe: () => ({ kind: 'wasm', url: wasm.url, recovering: watch !== undefined && fetchFailed, ...plugin.describe() }),
      release: () => {
        released = true;
        watch?.stop();
        void plugin.release();
      },
    };
  },
};

registerRuntime(wasmRuntime);
