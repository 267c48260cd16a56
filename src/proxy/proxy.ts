/**
 * The proxy process: data planes (in this thread, or one per worker thread), the admin,
 * Prometheus and readiness servers, and the extension sources (validated, watched, applied
 * without restart). A rejected resource or file never removes the last good version of it.
 */
import net from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { Worker } from 'node:worker_threads';
import { startAdminServer, startPrometheusServer, startReadinessServer, type AdminSource, type RunningServer } from '../admin/server.ts';
import { loadExtensions } from '../config/extensions.ts';
import type { BootstrapConfig, ExtensionSet, TrafficExtension } from '../config/types.ts';
import { watchExtensions } from '../config/watch.ts';
import { formatIssue, type ConfigIssue } from '../errors.ts';
import { logger } from '../observability/log.ts';
import { mergeSnapshots, type StatsSnapshot } from '../observability/stats.ts';
import { DataPlane, type ApplyResult } from './data-plane.ts';
import { workerEntry } from './stripped-sources.ts';
import type { WorkerReply, WorkerRequest } from './worker.ts';
// Proxy-Wasm shared data/queues are process-wide: workers attach to this thread's store.
import { sharedState } from '../wasm/shared.ts';

const log = logger('main');
export { VERSION } from '../version.ts';
import { VERSION } from '../version.ts';
import { describeTransport } from './transport/native-socket.ts';

/**
 * V8 flags set before the workers start (V8 flags are process-wide; isolates created afterwards
 * take them).
 * - `--expose-gc`: contexts created from now on get gc(): the workers' (worker.ts collects after
 *   loading code); this thread's existing context does not. There is no other way to ask V8 for a
 *   full collection.
 * - `--no-allocation-site-pretenuring`: V8's allocation-site pretenuring put about a third of
 *   meshext processes, at random and usually when load resumed after an idle spell, into a mode
 *   where short-lived request objects are allocated old: every scavenge then copies 20-30 MB
 *   (15-30 ms instead of ~1) and a full GC runs every ~0.5 s, +18-50% CPU per request for minutes
 *   (bench/README.md). Request objects never live long enough to gain from pretenuring.
 *   MESHEXT_V8_PRETENURING=1 keeps V8's default.
 */
export function workerV8Flags(env: NodeJS.ProcessEnv): string[] {
  const flags = ['--expose-gc'];
  if (env.MESHEXT_V8_PRETENURING !== '1') flags.push('--no-allocation-site-pretenuring');
  return flags;
}

export interface ProxyOptions {
  bootstrap: BootstrapConfig;
  /**
   * Worker threads. Omitted: the data plane runs in this thread (library and test use).
   * 0 means one per core, as Envoy's --concurrency.
   */
  concurrency?: number;
  /** Extension files/directories (added to bootstrap.extensions), watched for changes. */
  extensionPaths?: string[];
  /** A fixed extension set instead of files (tests, the demo). */
  extensions?: ExtensionSet;
  /** Start the admin/Prometheus/readiness servers (default true). */
  admin?: boolean;
  /** Watch extension paths (default true when there are paths). */
  watch?: boolean;
  /** Command line, for /server_info. */
  commandLine?: Record<string, unknown>;
  /** Called by the admin `/quitquitquit` after the proxy closed (the CLI exits the process). */
  onQuit?: () => void;
}

/** What one apply produced, for callers and tests. */
export interface ReloadOutcome {
  issues: ConfigIssue[];
  applied: ApplyResult | undefined;
}

interface Plane {
  apply(set: ExtensionSet): Promise<ApplyResult>;
  stats(): Promise<StatsSnapshot>;
  resetCounters(): Promise<void>;
  configDump(): Promise<unknown>;
  drain(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

class InProcessPlane implements Plane {
  readonly dp: DataPlane;
  constructor(dp: DataPlane) {
    this.dp = dp;
  }
  apply(set: ExtensionSet) {
    return this.dp.applyExtensions(set);
  }
  async stats() {
    return this.dp.stats.snapshot();
  }
  async resetCounters() {
    this.dp.stats.resetCounters();
  }
  async configDump() {
    return this.dp.configDump();
  }
  drain(ms: number) {
    return this.dp.drain(ms);
  }
  close() {
    return this.dp.close();
  }
}

/** A worker request without its id (distributes over the union). */
type WorkerCall = WorkerRequest extends unknown ? (WorkerRequest extends infer R ? (R extends unknown ? Omit<R, 'id'> : never) : never) : never;

class WorkerPlane implements Plane {
  readonly worker: Worker;
  #nextId = 1;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  constructor(worker: Worker) {
    this.worker = worker;
    worker.on('message', (msg: WorkerReply | { type: string }) => {
      if (!('id' in msg)) return;
      const p = this.#pending.get(msg.id);
      if (!p) return;
      this.#pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.value);
      else p.reject(new Error(msg.error));
    });
    worker.on('exit', (code) => {
      for (const p of this.#pending.values()) p.reject(new Error(`worker exited with code ${code}`));
      this.#pending.clear();
    });
  }
  #call<T>(req: WorkerCall): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ ...req, id });
    });
  }
  apply(set: ExtensionSet) {
    return this.#call<ApplyResult>({ type: 'apply', set });
  }
  stats() {
    return this.#call<StatsSnapshot>({ type: 'stats' });
  }
  async resetCounters() {
    await this.#call({ type: 'resetCounters' });
  }
  configDump() {
    return this.#call<unknown>({ type: 'configDump' });
  }
  async drain(timeoutMs: number) {
    await this.#call({ type: 'drain', timeoutMs });
  }
  async close() {
    await this.#call({ type: 'close' }).catch(() => {});
    await this.worker.terminate();
  }
}

/** Picks free ports for listeners configured with port 0, so every worker binds the same one. */
async function resolveEphemeralPorts(b: BootstrapConfig): Promise<BootstrapConfig> {
  const listeners = [];
  for (const l of b.listeners) {
    if (l.port !== 0) {
      listeners.push(l);
      continue;
    }
    const port = await new Promise<number>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen({ host: l.address, port: 0 }, () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    listeners.push({ ...l, port });
  }
  return { ...b, listeners };
}

function resourceLabel(ext: TrafficExtension): string {
  return `${ext.origin.kind === 'WasmPlugin' ? 'TrafficExtension' : 'TrafficExtension'} ${ext.metadata.name}.${ext.metadata.namespace}`;
}

export class Proxy implements AdminSource {
  readonly bootstrap: BootstrapConfig;
  readonly #planes: Plane[];
  readonly #workers: number;
  #ports: Record<string, number>;
  #servers: RunningServer[] = [];
  #adminPort = 0;
  #state: 'INITIALIZING' | 'LIVE' | 'DRAINING' = 'INITIALIZING';
  #lastGood: ExtensionSet = { extensions: [], secrets: [] };
  #lastApply: ApplyResult | undefined;
  #watcher: { close(): void } | undefined;
  #applyChain: Promise<unknown> = Promise.resolve();
  readonly #startedAt = Date.now();
  readonly #commandLine: Record<string, unknown>;
  #onQuit: (() => void) | undefined;

  private constructor(bootstrap: BootstrapConfig, planes: Plane[], workers: number, ports: Record<string, number>, commandLine: Record<string, unknown>) {
    this.bootstrap = bootstrap;
    this.#planes = planes;
    this.#workers = workers;
    this.#ports = ports;
    this.#commandLine = commandLine;
  }

  static async start(opts: ProxyOptions): Promise<Proxy> {
      let bootstrap = opts.bootstrap;
    const planes: Plane[] = [];
    let ports: Record<string, number> = {};
    let workers = 0;
    if (opts.concurrency === undefined) {
      const dp = new DataPlane(bootstrap, { workerId: 0 });
      await dp.start();
      ports = dp.ports();
      planes.push(new InProcessPlane(dp));
    } else {
      const { availableParallelism } = await import('node:os');
      workers = opts.concurrency === 0 ? availableParallelism() : opts.concurrency;
      bootstrap = await resolveEphemeralPorts(bootstrap);
      for (const flag of workerV8Flags(process.env)) setFlagsFromString(flag);
      const started = await Promise.allSettled(
        Array.from({ length: workers }, (_, workerId) => {
          // wasmShared carries the worker's MessagePort to this thread's Wasm compile service.
          const wasmShared = sharedState.workerHandle();
          const w = new Worker(workerEntry(), { workerData: { bootstrap, workerId, wasmShared }, transferList: [wasmShared.link] });
          return new Promise<WorkerPlane>((resolve, reject) => {
            const onMsg = (msg: { type?: string; ports?: Record<string, number>; error?: string }) => {
              if (msg.type === 'started') {
                w.off('message', onMsg);
                ports = msg.ports ?? ports;
                resolve(new WorkerPlane(w));
              } else if (msg.type === 'startFailed') {
                w.off('message', onMsg);
                void w.terminate();
                reject(new Error(`worker ${workerId} could not start: ${msg.error}`));
              }
            };
            w.on('message', onMsg);
            w.once('error', reject);
          });
        }),
      );
      const failed = started.find((s) => s.status === 'rejected');
      for (const s of started) if (s.status === 'fulfilled') planes.push(s.value);
      if (failed) {
        await Promise.all(planes.map((p) => p.close()));
        throw (failed as PromiseRejectedResult).reason;
      }
    }
    const proxy = new Proxy(bootstrap, planes, workers, ports, opts.commandLine ?? {});
    proxy.#onQuit = opts.onQuit;
    try {
      if (opts.admin !== false) await proxy.#startServers();
      const paths = [...bootstrap.extensions, ...(opts.extensionPaths ?? [])];
      if (opts.extensions) {
        await proxy.applyExtensionSet(opts.extensions, []);
      } else if (paths.length > 0) {
        if (opts.watch !== false) {
          const watcher = watchExtensions(paths, (result) => {
            void proxy.applyExtensionSet(result.set, result.issues);
          });
          proxy.#watcher = watcher;
          await proxy.applyExtensionSet(watcher.current.set, watcher.current.issues);
        } else {
          const r = loadExtensions(paths);
          await proxy.applyExtensionSet(r.set, r.issues);
        }
      }
    } catch (err) {
      await proxy.close();
      throw err;
    }
    proxy.#state = 'LIVE';
    return proxy;
  }

  async #startServers(): Promise<void> {
    const b = this.bootstrap;
    const admin = await startAdminServer({ address: b.admin.address, port: b.admin.port, source: this });
    this.#servers.push(admin);
    this.#adminPort = admin.port;
    if (b.prometheus) this.#servers.push(await startPrometheusServer({ address: b.prometheus.address, port: b.prometheus.port, source: this }));
    if (b.readiness) this.#servers.push(await startReadinessServer({ address: b.readiness.address, port: b.readiness.port, source: this }));
  }

  /** Ports bound by listener name. */
  get ports(): Record<string, number> {
    return this.#ports;
  }

  get adminPort(): number {
    return this.#adminPort;
  }

  /** Ports of the Prometheus and readiness servers, when started. */
  get serverPorts(): number[] {
    return this.#servers.map((s) => s.port);
  }

  /**
   * Applies a loaded extension set. Resources the loader rejected (and every resource of a file
   * that failed to parse) keep their last good version; the rest is applied per resource.
   */
  applyExtensionSet(set: ExtensionSet, loadIssues: ConfigIssue[]): Promise<ReloadOutcome> {
    const run = async (): Promise<ReloadOutcome> => {
      const errors = loadIssues.filter((i) => i.level === 'error');
      const rejectedResources = new Set(errors.filter((i) => i.resource).map((i) => i.resource!));
      const brokenFiles = new Set(errors.filter((i) => !i.resource).map((i) => i.file));
      const merged: TrafficExtension[] = [...set.extensions];
      const present = new Set(set.extensions.map((e) => `${e.metadata.namespace}/${e.metadata.name}`));
      for (const prev of this.#lastGood.extensions) {
        const key = `${prev.metadata.namespace}/${prev.metadata.name}`;
        if (present.has(key)) continue;
        if (rejectedResources.has(resourceLabel(prev)) || brokenFiles.has(prev.origin.file)) {
          merged.push(prev);
          log.warn({ resource: key }, 'keeping the last good version of a resource whose update was rejected');
        }
      }
      for (const i of loadIssues) {
        const line = formatIssue(i);
        if (i.level === 'error') log.error({ resource: i.resource }, `rejected: ${line}`);
        else log.warn({ resource: i.resource }, line);
      }
      const next: ExtensionSet = { extensions: merged, secrets: set.secrets };
      const results = await Promise.all(this.#planes.map((p) => p.apply(next)));
      const applied = results[0];
      if (applied) {
        for (const i of applied.issues) {
          const line = formatIssue(i);
          if (i.level === 'error') log.error({ resource: i.resource }, `extension not loaded: ${line}`);
          else log.warn({ resource: i.resource }, line);
        }
      }
      this.#lastGood = next;
      this.#lastApply = applied;
      return { issues: [...loadIssues, ...(applied?.issues ?? [])], applied };
    };
    const p = this.#applyChain.then(run, run);
    this.#applyChain = p.catch(() => {});
    return p;
  }

  // ------------------------------------------------------------------ AdminSource

  async stats(): Promise<StatsSnapshot> {
    return mergeSnapshots(await Promise.all(this.#planes.map((p) => p.stats())));
  }

  async configDump(): Promise<unknown> {
    const dump = (await this.#planes[0]?.configDump()) as Record<string, unknown> | undefined;
    return { ...dump, workers: this.#workers || 1, lastApplyIssues: this.#lastApply?.issues ?? [] };
  }

  isReady(): boolean {
    return this.#state === 'LIVE';
  }

  serverInfo(): Record<string, unknown> {
    return {
      version: VERSION,
      state: this.#state,
      uptime_current_epoch: `${Math.round((Date.now() - this.#startedAt) / 1000)}s`,
      uptime_all_epochs: `${Math.round((Date.now() - this.#startedAt) / 1000)}s`,
      concurrency: this.#workers || 1,
      node: this.bootstrap.identity,
      // meshext's own key: what plaintext HTTP/1.1 connections run on (see transport/native-socket.ts).
      http1_transport: describeTransport(),
      command_line_options: this.#commandLine,
    };
  }

  async clusters(): Promise<unknown> {
    return {
      cluster_statuses: this.bootstrap.clusters.map((c) => ({
        name: c.name,
        host_statuses: c.endpoints.map((e) => ({ address: { socket_address: { address: e.address, port_value: e.port } }, health_status: { eds_health_status: 'HEALTHY' } })),
      })),
    };
  }

  async listeners(): Promise<unknown> {
    return {
      listener_statuses: this.bootstrap.listeners.map((l) => ({ name: l.name, local_address: { socket_address: { address: l.address, port_value: this.#ports[l.name] ?? l.port } } })),
    };
  }

  async resetCounters(): Promise<void> {
    await Promise.all(this.#planes.map((p) => p.resetCounters()));
  }

  /** Admin `/drain_listeners`: stop accepting (graceful: let in-flight requests finish first). */
  async drainListeners(o: { inboundOnly: boolean; graceful: boolean }): Promise<void> {
    void o.inboundOnly; // every listener drains: meshext does not split inbound and outbound here
    await this.drain(o.graceful ? this.bootstrap.drainTimeoutMs : 0);
  }

  /** Admin `/quitquitquit`: close everything, then tell the owner (the CLI exits). */
  async quit(): Promise<void> {
    setImmediate(() => {
      void this.close().then(() => this.#onQuit?.());
    });
  }

  // ------------------------------------------------------------------ shutdown

  /** Envoy's drain: stop accepting, let in-flight requests finish (up to the timeout). */
  async drain(timeoutMs = this.bootstrap.drainTimeoutMs): Promise<void> {
    this.#state = 'DRAINING';
    this.#watcher?.close();
    await Promise.all(this.#planes.map((p) => p.drain(timeoutMs)));
  }

  async close(): Promise<void> {
    this.#state = 'DRAINING';
    this.#watcher?.close();
    await Promise.all(this.#planes.map((p) => p.close()));
    await Promise.all(this.#servers.map((s) => s.close()));
    this.#servers = [];
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

export function startProxy(opts: ProxyOptions): Promise<Proxy> {
  return Proxy.start(opts);
}
