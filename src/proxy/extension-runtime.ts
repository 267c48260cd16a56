/**
 * The seam between the proxy and extension engines (Wasm, Lua). A runtime turns a validated
 * TrafficExtension into filter factories for one worker. The proxy orders extensions and places
 * their factories in each listener's chain; runtimes never see the ordering.
 */
import type { BootstrapConfig, ListenerConfig, PullSecret, TrafficExtension } from '../config/types.ts';
import type { HttpFilterFactory, NetworkFilterFactory } from '../filters/types.ts';
import type { StatsStore } from '../observability/stats.ts';
import type { ClusterManager } from './cluster-manager.ts';

/** Worker-scoped services an extension may use. */
export interface WorkerServices {
  readonly workerId: number;
  readonly bootstrap: BootstrapConfig;
  readonly clusters: ClusterManager;
  readonly stats: StatsStore;
  /** Pull secrets found in the extension sources (for module fetching). */
  readonly secrets: readonly PullSecret[];
}

export interface LoadedExtension {
  /** Envoy filter name: `extensions.istio.io/trafficextension/<ns>.<name>`. */
  readonly filterName: string;
  /** The HTTP filter factory for a listener, or null when this extension has no HTTP filter. */
  httpFilterFactory(listener: ListenerConfig): HttpFilterFactory | null;
  /** The network filter factory for a listener, or null. */
  networkFilterFactory(listener: ListenerConfig): NetworkFilterFactory | null;
  /** State for /config_dump (module digest, engine, fail state, ...). */
  describe(): Record<string, unknown>;
  /** The configuration no longer references this extension. */
  release(): void;
}

export interface ExtensionRuntime {
  readonly kind: 'wasm' | 'lua';
  /**
   * Prepares an extension in this worker. Throws ConfigError (with the resource's origin) when the
   * extension cannot be loaded and must be rejected; the proxy then keeps the last good config.
   * Failures that the resource's failStrategy governs (fetch, VM start) are NOT thrown: the returned
   * extension applies the strategy to traffic.
   */
  load(ext: TrafficExtension, services: WorkerServices, previous?: LoadedExtension): Promise<LoadedExtension>;
}

const runtimes = new Map<string, ExtensionRuntime>();

/** Called once by each engine module at import time. */
export function registerRuntime(runtime: ExtensionRuntime): void {
  runtimes.set(runtime.kind, runtime);
}

export function getRuntime(kind: 'wasm' | 'lua'): ExtensionRuntime | undefined {
  return runtimes.get(kind);
}

export function extensionFilterName(ext: TrafficExtension): string {
  return `extensions.istio.io/trafficextension/${ext.metadata.namespace}.${ext.metadata.name}`;
}
