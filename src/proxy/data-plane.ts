/**
 * One worker's data plane: its listeners, clusters, stats store, and the extension chains built
 * from TrafficExtension resources. Envoy's worker + listener manager, reduced. The process may
 * run several (one per worker thread); each owns its extension VMs, as Envoy's workers do.
 */
import { createHash } from 'node:crypto';
import type { BootstrapConfig, ExtensionSet, ListenerConfig, Phase, TrafficExtension } from '../config/types.ts';
import { extensionsForListener, indexByNamespace, listenerInfoFor } from '../config/selection.ts';
import { ConfigError, MeshextError, type ConfigIssue } from '../errors.ts';
import type { HttpFilter, HttpFilterFactory, NetworkFilterFactory } from '../filters/types.ts';
import { createAccessLogger, type AccessLogger } from '../observability/access-log.ts';
import { IstioMetrics } from '../observability/istio-metrics.ts';
import { logger } from '../observability/log.ts';
import { StatsStore } from '../observability/stats.ts';
import { loadRuntime } from '../runtimes.ts';
import { extensionFilterName, getRuntime, type LoadedExtension, type WorkerServices } from './extension-runtime.ts';
import type { StreamInfo } from '../filters/stream-info.ts';
import { HttpListener, type CompletedStream, type StreamObserver } from './http-listener.ts';
import { RouterFactory } from './router.ts';
import { RouteTable } from './routes.ts';
import { TcpListener } from './tcp-listener.ts';
import { Clusters } from './upstream.ts';

const log = logger('config');

/** Chain order around the built-in stages (Istio's sidecar/gateway HTTP chain, traffic-extension.md §2.1). */
const PHASE_ORDER: readonly Phase[] = ['AUTHN', 'AUTHZ', 'STATS', 'UNSPECIFIED'];

/** One position in a listener's chain, for /config_dump. */
export interface ChainEntryDump {
  name: string;
  kind: 'extension' | 'builtin';
  phase?: Phase;
  priority?: number | null;
  resource?: { kind: string; name: string; namespace: string; file: string; line: number };
}

export interface ApplyResult {
  /** Issues for extensions that could not be loaded (they are not in the running config). */
  issues: ConfigIssue[];
  /** Filter names now active per listener. */
  chains: Record<string, ChainEntryDump[]>;
}

function resourceKey(ext: TrafficExtension): string {
  return `${ext.metadata.namespace}/${ext.metadata.name}`;
}

/** Content identity of a resource: a change of spec (or resourceVersion/generation) reloads it. */
function resourceHash(ext: TrafficExtension): string {
  return createHash('sha256')
    .update(JSON.stringify([ext.spec, ext.metadata.resourceVersion ?? null, ext.metadata.generation ?? null]))
    .digest('hex');
}

interface LoadedEntry {
  hash: string;
  ext: TrafficExtension;
  loaded: LoadedExtension;
}

/** The Istio standard-metrics stage (istio.stats): records each completed stream. */
class StatsStageFactory implements HttpFilterFactory {
  readonly name = 'istio.stats';
  create(): HttpFilter | null {
    // Recording happens in the listener's stream observer (one call per stream, no per-stream
    // object): the filter position exists so phases are ordered against it in /config_dump.
    return null;
  }
}

export interface DataPlaneOptions {
  workerId?: number;
}

export class DataPlane {
  readonly bootstrap: BootstrapConfig;
  readonly stats = new StatsStore();
  readonly clusters: Clusters;
  readonly workerId: number;
  readonly routeTables = new Map<string, RouteTable>();
  readonly httpListeners: HttpListener[] = [];
  readonly tcpListeners: TcpListener[] = [];
  readonly #router: RouterFactory;
  readonly #statsStage = new StatsStageFactory();
  readonly #istio: IstioMetrics;
  readonly #accessLog: AccessLogger | null;
  /** Extensions loaded in this worker, by namespace/name. */
  #loaded = new Map<string, LoadedEntry>();
  #extensions: ExtensionSet = { extensions: [], secrets: [] };
  /** The accepted extensions indexed by namespace, built once per apply for every listener's selection. */
  #byNamespace: Map<string, TrafficExtension[]> = new Map();
  #chains: Record<string, ChainEntryDump[]> = {};
  #ready = false;

  constructor(bootstrap: BootstrapConfig, opts: DataPlaneOptions = {}) {
    this.bootstrap = bootstrap;
    this.workerId = opts.workerId ?? 0;
    this.clusters = new Clusters(bootstrap.clusters);
    this.#router = new RouterFactory(this.clusters, this.stats);
    this.#istio = new IstioMetrics(this.stats, bootstrap.identity);
    this.#accessLog = createAccessLogger(bootstrap.accessLog);
    for (const rt of bootstrap.routeTables) this.routeTables.set(rt.name, new RouteTable(rt));
    const observe: StreamObserver = (si, facts) => this.#onStreamComplete(si, facts);
    for (const l of bootstrap.listeners) {
      if (l.protocol === 'HTTP') {
        const routes = this.#routeTableFor(l);
        this.httpListeners.push(new HttpListener(l, this.#buildHttpChain(l, []), routes, this.stats, observe));
      } else {
        this.tcpListeners.push(new TcpListener(l, [], this.clusters, this.stats, bootstrap.identity));
      }
    }
  }

  /** The router factory that ends every HTTP chain (tests compose chains around it). */
  get routerFactory(): HttpFilterFactory {
    return this.#router;
  }

  get ready(): boolean {
    return this.#ready;
  }

  get services(): WorkerServices {
    return { workerId: this.workerId, bootstrap: this.bootstrap, clusters: this.clusters, stats: this.stats, secrets: this.#extensions.secrets };
  }

  #routeTableFor(l: ListenerConfig): RouteTable | undefined {
    if (l.routeConfig) return this.routeTables.get(l.routeConfig);
    return this.routeTables.values().next().value;
  }

  #onStreamComplete(si: StreamInfo, facts: CompletedStream): void {
    this.#istio.recordRequest(si, facts);
    this.#accessLog?.log(si, facts);
  }

  /** Binds every listener. Fails (and closes what opened) if any port cannot be bound. */
  async start(): Promise<void> {
    try {
      for (const l of this.httpListeners) await l.listen();
      for (const l of this.tcpListeners) await l.listen();
    } catch (err) {
      await this.close();
      throw err;
    }
    this.#ready = true;
  }

  /** Ports actually bound, by listener name (ephemeral ports resolved). */
  ports(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const l of this.httpListeners) out[l.config.name] = l.port;
    for (const l of this.tcpListeners) out[l.config.name] = l.port;
    return out;
  }

  /**
   * Applies a new set of extensions. Each resource is loaded independently: one that fails to load
   * is reported and left out (its previous good version keeps serving if there was one), and the
   * others are applied. Chains are swapped atomically per listener; in-flight streams keep theirs.
   */
  async applyExtensions(set: ExtensionSet): Promise<ApplyResult> {
    const issues: ConfigIssue[] = [];
    const next = new Map<string, LoadedEntry>();
    const services: WorkerServices = { ...this.services, secrets: set.secrets };
    const accepted: TrafficExtension[] = [];
    for (const ext of set.extensions) {
      const key = resourceKey(ext);
      const hash = resourceHash(ext);
      const prev = this.#loaded.get(key);
      if (prev && prev.hash === hash) {
        next.set(key, prev);
        accepted.push(ext);
        continue;
      }
      const kind = ext.spec.wasm ? 'wasm' : 'lua';
      await loadRuntime(kind);
      const runtime = getRuntime(kind);
      if (!runtime) {
        issues.push({
          file: ext.origin.file,
          line: ext.origin.line,
          path: `spec.${kind}`,
          level: 'error',
          message: `${kind} extensions are not supported by this build (no ${kind} runtime registered); the resource is not applied`,
          resource: `TrafficExtension ${ext.metadata.name}.${ext.metadata.namespace}`,
        });
        if (prev) {
          next.set(key, prev);
          accepted.push(prev.ext);
        }
        continue;
      }
      try {
        const loaded = await runtime.load(ext, services, prev?.loaded);
        next.set(key, { hash, ext, loaded });
        accepted.push(ext);
      } catch (err) {
        const located: ConfigIssue[] =
          err instanceof ConfigError
            ? err.issues
            : [
                {
                  file: ext.origin.file,
                  line: ext.origin.line,
                  path: `spec.${kind}`,
                  level: 'error',
                  message: MeshextError.is(err) || err instanceof Error ? err.message : String(err),
                  resource: `TrafficExtension ${ext.metadata.name}.${ext.metadata.namespace}`,
                },
              ];
        issues.push(...located);
        if (prev) {
          // Keep the last good version of this resource serving.
          next.set(key, prev);
          accepted.push(prev.ext);
          issues.push({ ...located[0]!, level: 'warning', message: 'the previous version of this extension keeps serving' });
        }
      }
    }
    // Release what the new config no longer references.
    for (const [key, entry] of this.#loaded) {
      const n = next.get(key);
      if (!n || n.loaded !== entry.loaded) {
        try {
          entry.loaded.release();
        } catch (err) {
          log.warn({ err, extension: key }, 'releasing an extension failed');
        }
      }
    }
    this.#loaded = next;
    this.#extensions = { extensions: accepted, secrets: set.secrets };
    this.#byNamespace = indexByNamespace(accepted);
    const chains: Record<string, ChainEntryDump[]> = {};
    for (const l of this.httpListeners) {
      const ordered = this.#ordered(l.config, 'HTTP');
      const chain = this.#buildHttpChain(l.config, ordered);
      l.setChain(chain);
      chains[l.config.name] = this.#describeChain(l.config, ordered, 'HTTP');
    }
    for (const l of this.tcpListeners) {
      const ordered = this.#ordered(l.config, 'NETWORK');
      const factories: NetworkFilterFactory[] = [];
      for (const { ext } of ordered) {
        const f = this.#loaded.get(resourceKey(ext))?.loaded.networkFilterFactory(l.config);
        if (f) factories.push(f);
      }
      l.setChain(factories);
      chains[l.config.name] = this.#describeChain(l.config, ordered, 'NETWORK');
    }
    this.#chains = chains;
    return { issues, chains };
  }

  #ordered(l: ListenerConfig, chain: 'HTTP' | 'NETWORK'): { ext: TrafficExtension; phase: Phase }[] {
    const byPhase = extensionsForListener(this.bootstrap.identity, listenerInfoFor(l, this.bootstrap.identity), chain, this.#byNamespace);
    const out: { ext: TrafficExtension; phase: Phase }[] = [];
    for (const phase of PHASE_ORDER) for (const ext of byPhase[phase] ?? []) out.push({ ext, phase });
    return out;
  }

  #buildHttpChain(l: ListenerConfig, ordered: { ext: TrafficExtension; phase: Phase }[]): HttpFilterFactory[] {
    const chain: HttpFilterFactory[] = [];
    for (const { ext } of ordered) {
      const f = this.#loaded.get(resourceKey(ext))?.loaded.httpFilterFactory(l);
      if (f) chain.push(f);
    }
    // The built-in authn/authz slots hold no filter yet; istio.stats records from the stream
    // observer; the router ends the chain.
    chain.push(this.#router);
    return chain;
  }

  #describeChain(l: ListenerConfig, ordered: { ext: TrafficExtension; phase: Phase }[], chain: 'HTTP' | 'NETWORK'): ChainEntryDump[] {
    const out: ChainEntryDump[] = [];
    const ext = (phase: Phase) => {
      for (const o of ordered) {
        if (o.phase !== phase) continue;
        const e = o.ext;
        out.push({
          name: extensionFilterName(e),
          kind: 'extension',
          phase,
          priority: e.spec.priority ?? null,
          resource: { kind: e.origin.kind, name: e.metadata.name, namespace: e.metadata.namespace, file: e.origin.file, line: e.origin.line },
        });
      }
    };
    ext('AUTHN');
    out.push({ name: chain === 'HTTP' ? 'envoy.filters.http.jwt_authn' : 'authn (no filter)', kind: 'builtin' });
    ext('AUTHZ');
    out.push({ name: chain === 'HTTP' ? 'envoy.filters.http.rbac' : 'envoy.filters.network.rbac', kind: 'builtin' });
    ext('STATS');
    ext('UNSPECIFIED');
    out.push({ name: this.#statsStage.name, kind: 'builtin' });
    out.push({ name: chain === 'HTTP' ? this.#router.name : 'envoy.filters.network.tcp_proxy', kind: 'builtin' });
    void l;
    return out;
  }

  configDump(): Record<string, unknown> {
    const b = this.bootstrap;
    return {
      bootstrap: { source: b.source, node: b.identity, admin: b.admin },
      listeners: b.listeners.map((l) => ({ ...l, boundPort: this.ports()[l.name], chain: this.#chains[l.name] ?? this.#describeChain(l, [], l.protocol === 'HTTP' ? 'HTTP' : 'NETWORK') })),
      routes: b.routeTables,
      clusters: b.clusters,
      extensions: [...this.#loaded.values()].map((e) => ({
        name: extensionFilterName(e.ext),
        resource: e.ext.origin,
        namespace: e.ext.metadata.namespace,
        spec: e.ext.spec,
        state: e.loaded.describe(),
      })),
    };
  }

  /** Stop accepting and wait (up to timeout) for in-flight streams. */
  async drain(timeoutMs: number): Promise<void> {
    this.#ready = false;
    await Promise.all([...this.httpListeners.map((l) => l.drain(timeoutMs)), ...this.tcpListeners.map((l) => l.drain(timeoutMs))]);
  }

  async close(): Promise<void> {
    this.#ready = false;
    await Promise.all([...this.httpListeners.map((l) => l.close()), ...this.tcpListeners.map((l) => l.close())]);
    for (const e of this.#loaded.values()) {
      try {
        e.loaded.release();
      } catch {
        // closing anyway
      }
    }
    this.#loaded.clear();
    await this.clusters.close();
    await this.#accessLog?.close();
  }
}
