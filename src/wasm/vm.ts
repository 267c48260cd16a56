/**
 * One Proxy-Wasm VM instance: a WebAssembly.Instance plus the host-side state cpp-host keeps in
 * WasmBase/ContextBase — contexts, the current/effective context of the running VM call, deferred
 * "after VM call" actions, timers, callouts, metrics and the failure flag.
 *
 * Every call into the plugin goes through `call()`: it sets the current and effective context,
 * catches any trap/exception (which fails the whole instance, as in cpp-host), restores the previous
 * contexts for nested calls, and runs deferred actions once the outermost call has returned.
 */
import type { HeaderMap } from '../filters/header-map.ts';
import type { DataBuffer } from '../filters/data-buffer.ts';
import type { StreamInfo } from '../filters/stream-info.ts';
import type { RouteInfo } from '../filters/types.ts';
import type { ClusterManager, HttpCallHandle } from '../proxy/cluster-manager.ts';
import type { StatsStore } from '../observability/stats.ts';
import type { ClusterConfig, ProxyIdentity } from '../config/types.ts';
import { logger } from '../observability/log.ts';
import { FUEL_IMPORT_MODULE, FUEL_IMPORT_NAME, Limits, Status, type AbiVersion } from './abi.ts';
import type { CompiledPlugin } from './module.ts';
import { WasmLoadError } from './module.ts';
import { ShortStringCache, encodeStringInto, utf8Length } from './pairs.ts';
import { buildImports, closeGrpcSessions } from './host.ts';
import { ContextTable } from './context-table.ts';
import { sharedState, type SharedState, type QueueReceiver } from './shared.ts';

/** Returned by `call()` when the VM is (or just became) failed. */
export const VM_FAILED = -0x80000000;

export type FailureKind = 'trap' | 'proc_exit' | 'cpu_budget' | 'memory' | 'host_error';

export class ProcExit extends Error {
  readonly code: number;
  constructor(code: number) {
    super(`proc_exit(${code})`);
    this.name = 'ProcExit';
    this.code = code;
  }
}

export class CpuBudgetExceeded extends Error {
  constructor(ms: number) {
    super(`plugin exceeded its CPU budget of ${ms} ms in one callback`);
    this.name = 'CpuBudgetExceeded';
  }
}

/** What a stream context needs from its filter (HTTP or network). Implemented in filter.ts. */
export interface StreamHost {
  readonly kind: 'http' | 'network';
  readonly streamInfo: StreamInfo | undefined;
  /** Header/trailer maps 0..3; `forWrite` may create request/response trailers when allowed. */
  map(type: number, forWrite: boolean): HeaderMap | undefined;
  /** Buffers 0..3. */
  buffer(type: number): DataBuffer | undefined;
  route(): RouteInfo | undefined;
  clearRouteCache(): void;
  /** Status codes as the ABI; the action is applied after the VM call (afterVmCall). */
  continueStream(type: number): number;
  closeStream(type: number): number;
  sendLocalResponse(status: number, details: string, body: Uint8Array, headers: Array<[string, string]>, grpcStatus: number): number;
  /** Applies deferred actions; called when the outermost VM call returned. */
  afterVmCall(): void;
  /** The VM failed outside this stream's own callback (e.g. in on_tick): unblock or fail it. */
  vmFailed(): void;
  /** The stream was failed/closed by the VM going away. */
  readonly connectionId: number;
}

export interface CalloutResponse {
  headers: HeaderMap | undefined;
  trailers: HeaderMap | undefined;
  body: Uint8Array | undefined;
  /** gRPC initial/trailing metadata (maps 4/5). */
  grpcInitial?: HeaderMap | undefined;
  grpcTrailing?: HeaderMap | undefined;
}

export class Context {
  readonly id: number;
  readonly root: RootContext;
  created = false;
  constructor(id: number, root: RootContext | null) {
    this.id = id;
    this.root = root ?? (this as unknown as RootContext);
  }
  isRoot(): this is RootContext {
    return (this as Context) === this.root;
  }
}

export interface PluginSpec {
  /** Plugin name (Envoy PluginConfig.name; Istio `<ns>.<name>`). */
  name: string;
  /** Root id (Istio pluginName). */
  rootId: string;
  /** Plugin configuration bytes (JSON of pluginConfig). */
  configuration: Uint8Array;
}

export class RootContext extends Context {
  readonly plugin: PluginSpec;
  tickMs = 0;
  timer: NodeJS.Timeout | undefined;
  readonly callouts = new Map<number, { handle: HttpCallHandle | undefined; issuer: StreamContext | undefined; grpc: boolean; stream?: import('node:http2').ClientHttp2Stream }>();
  /** The callout response being delivered right now (maps 4-7, buffers 4/5). */
  calloutResponse: CalloutResponse | undefined;
  /** Set while on_vm_start / on_configure / on_foreign_function runs (buffers 6/7/8). */
  configPhase: 'vm_start' | 'configure' | undefined;
  foreignArgs: Uint8Array | undefined;
  /** proxy_get_status: last callout failure / gRPC close. */
  statusCode = 0;
  statusMessage = '';
  pendingDone = false;
  deleted = false;
  /** set_property on a root context (no stream): kept here. */
  readonly properties = new Map<string, Uint8Array>();
  readonly queueReceiver: QueueReceiver;
  constructor(id: number, plugin: PluginSpec, vm: WasmVm) {
    super(id, null);
    this.plugin = plugin;
    this.queueReceiver = {
      notify: (token: number) => {
        setImmediate(() => vm.deliverQueueReady(this, token));
      },
    };
  }
}

export class StreamContext extends Context {
  readonly host: StreamHost;
  deleted = false;
  /** Queued in vm.afterCall already. */
  afterQueued = false;
  constructor(id: number, root: RootContext, host: StreamHost) {
    super(id, root);
    this.host = host;
  }
}

/** Exports cached at instantiation (missing callbacks are undefined: the host skips them). */
interface Exports {
  memory: WebAssembly.Memory | undefined;
  alloc: ((size: number) => number) | undefined;
  on_context_create?: Function;
  on_vm_start?: Function;
  on_configure?: Function;
  on_tick?: Function;
  on_queue_ready?: Function;
  on_foreign_function?: Function;
  on_done?: Function;
  on_log?: Function;
  on_delete?: Function;
  on_new_connection?: Function;
  on_downstream_data?: Function;
  on_upstream_data?: Function;
  on_downstream_connection_close?: Function;
  on_upstream_connection_close?: Function;
  on_request_headers?: Function;
  on_request_body?: Function;
  on_request_trailers?: Function;
  on_response_headers?: Function;
  on_response_body?: Function;
  on_response_trailers?: Function;
  on_http_call_response?: Function;
  on_grpc_receive_initial_metadata?: Function;
  on_grpc_receive?: Function;
  on_grpc_receive_trailing_metadata?: Function;
  on_grpc_close?: Function;
}

export interface VmServices {
  clusters?: ClusterManager | undefined;
  stats?: StatsStore | undefined;
  identity?: ProxyIdentity | undefined;
  /** Bootstrap clusters (gRPC streams connect to them directly over HTTP/2). */
  clusterConfigs?: readonly ClusterConfig[] | undefined;
  shared?: SharedState | undefined;
  /** Receives every plugin log line (tests, /logging capture). */
  logSink?: ((level: number, message: string) => void) | undefined;
}

export interface VmOptions {
  compiled: CompiledPlugin;
  /** Configured vm_id ('' for Istio): partitions shared data and queues. */
  vmId: string;
  vmConfiguration: Uint8Array;
  env: ReadonlyArray<readonly [string, string]>;
  /** 0 disables the CPU budget. */
  cpuBudgetMs: number;
  /** Label used in logs (the extension's filter name). */
  logName: string;
  services: VmServices;
}

interface MetricEntry {
  type: number;
  name: string;
  inc(n: number): void;
  set(v: number): void;
  record(v: number): void;
  get(): number | undefined;
}

const wasmLog = logger('wasm');

/** Strings read from plugin memory, and header names (lower-cased), shared by every VM. */
const stringCache = new ShortStringCache(false);
const nameCache = new ShortStringCache(true);

export class WasmVm {
  readonly compiled: CompiledPlugin;
  readonly abi: AbiVersion;
  readonly vmId: string;
  readonly vmConfiguration: Uint8Array;
  readonly env: ReadonlyArray<readonly [string, string]>;
  readonly services: VmServices;
  readonly shared: SharedState;
  readonly logName: string;
  readonly cpuBudgetMs: number;
  readonly ex: Exports = { memory: undefined, alloc: undefined };
  readonly exportNames = new Map<Function, string>();

  instance: WebAssembly.Instance | undefined;
  readonly contexts = new ContextTable<Context>();
  #nextContextId = 1;
  /** Context of the VM call running now (null: VM context 0, e.g. during start or allocation). */
  current: Context | null = null;
  effective: Context | null = null;
  depth = 0;
  /** Outermost-call counter, used by the CPU budget to know when a new callback started. */
  epoch = 0;
  #fuelEpoch = -1;
  #callStart = 0;
  readonly afterCall: StreamContext[] = [];
  readonly #deferredRootDeletes: RootContext[] = [];

  failed = false;
  failure: { kind: FailureKind; message: string; function: string } | undefined;
  readonly #failureListeners: Array<(vm: WasmVm) => void> = [];
  /** Set by host functions when a failure cause is known before the exception unwinds. */
  pendingFailureKind: FailureKind | undefined;

  #u8: Uint8Array = new Uint8Array(0);
  #dv: DataView = new DataView(new ArrayBuffer(0));

  /** True while the plugin's allocator runs (see alloc()). */
  allocating = false;
  readonly metrics = new Map<number, MetricEntry>();
  readonly #metricNext = [1, 1, 1];
  #nextCalloutToken = [1, 1, 1];

  #logEnabledCache = -1;

  constructor(opts: VmOptions) {
    this.compiled = opts.compiled;
    this.abi = opts.compiled.abi;
    this.vmId = opts.vmId;
    this.vmConfiguration = opts.vmConfiguration;
    this.env = opts.env;
    this.services = opts.services;
    this.shared = opts.services.shared ?? sharedState;
    this.logName = opts.logName;
    this.cpuBudgetMs = opts.cpuBudgetMs;
  }

  /** Instantiates and runs the start functions. Throws WasmLoadError('link' | 'start'). */
  static create(opts: VmOptions): WasmVm {
    const vm = new WasmVm(opts);
    vm.#instantiate();
    return vm;
  }

  #instantiate(): void {
    const imports = buildImports(this);
    const mod = this.compiled.module;
    if (this.compiled.fuel) {
      (imports[FUEL_IMPORT_MODULE] = {} as WebAssembly.ModuleImports)[FUEL_IMPORT_NAME] = this.#fuelCheck;
    }
    // Imported memory (rare toolchains): create it from the import's limits; the module's limits
    // were already capped by the instrumenter.
    for (const imp of WebAssembly.Module.imports(mod)) {
      if (imp.kind === 'memory') {
        throw new WasmLoadError('link', `module imports its memory (${imp.module}.${imp.name}); meshext requires modules that define and export their memory`);
      }
      if (imp.kind === 'global' || imp.kind === 'table') {
        throw new WasmLoadError('link', `module imports a ${imp.kind} (${imp.module}.${imp.name}), which no Proxy-Wasm host provides`);
      }
      if (imp.kind === 'function' && !(imports[imp.module] && imp.name in (imports[imp.module] as object))) {
        throw new WasmLoadError('link', `missing import ${imp.module}.${imp.name}: not a Proxy-Wasm/WASI host function`);
      }
    }
    this.epoch++;
    this.depth++;
    try {
      this.instance = new WebAssembly.Instance(mod, imports);
    } catch (err) {
      this.depth--;
      if (err instanceof WebAssembly.LinkError) throw new WasmLoadError('link', `link failed: ${err.message}`, { cause: err });
      if (err instanceof ProcExit && err.code === 0) {
        // AssemblyScript start section ending with proc_exit(0): success (instance unavailable though).
        throw new WasmLoadError('start', 'module exited during instantiation', { cause: err });
      }
      throw new WasmLoadError('start', `start section failed: ${describeError(err)}`, { cause: err });
    }
    this.depth--;
    const e = this.instance.exports as Record<string, unknown>;
    const memory = e.memory;
    if (!(memory instanceof WebAssembly.Memory)) throw new WasmLoadError('link', 'module does not export its memory as "memory"');
    this.ex.memory = memory;
    // Spec order: proxy_on_memory_allocate first, then malloc (cpp-host does the opposite, which
    // leaks with TinyGo; see proxy-wasm-abi.md §0.3).
    const alloc = (e.proxy_on_memory_allocate ?? e.malloc) as ((n: number) => number) | undefined;
    if (typeof alloc !== 'function') throw new WasmLoadError('link', 'module exports neither proxy_on_memory_allocate nor malloc');
    this.ex.alloc = alloc;
    const ex = this.ex as unknown as Record<string, Function | undefined>;
    for (const name of Object.keys(e)) {
      const v = e[name];
      if (typeof v !== 'function') continue;
      this.exportNames.set(v as Function, name);
      if (name.startsWith('proxy_on_')) ex[name.slice(6)] = v as Function;
    }
    if (this.abi === '0.1.0') ex.on_foreign_function = undefined;
    // Start: _initialize (+ main / __main_void) else _start; proc_exit(0) there is success.
    const init = e._initialize as Function | undefined;
    const start = e._start as Function | undefined;
    const main = e.main as Function | undefined;
    const mainVoid = e.__main_void as Function | undefined;
    const seq: Array<[Function, number[]]> = [];
    if (typeof init === 'function') {
      seq.push([init, []]);
      if (typeof main === 'function') seq.push([main, [0, 0]]);
      else if (typeof mainVoid === 'function') seq.push([mainVoid, []]);
    } else if (typeof start === 'function') {
      seq.push([start, []]);
    }
    for (const [fn, args] of seq) {
      this.epoch++;
      this.depth++;
      try {
        fn(...args);
      } catch (err) {
        if (err instanceof ProcExit && err.code === 0) continue;
        throw new WasmLoadError('start', `${this.exportNames.get(fn)} failed: ${describeError(err)}`, { cause: err });
      } finally {
        this.depth--;
      }
    }
  }

  readonly #fuelCheck = (): number => {
    const now = performance.now();
    if (this.#fuelEpoch !== this.epoch) {
      this.#fuelEpoch = this.epoch;
      this.#callStart = now;
    } else if (this.cpuBudgetMs > 0 && now - this.#callStart > this.cpuBudgetMs) {
      this.pendingFailureKind = 'cpu_budget';
      throw new CpuBudgetExceeded(this.cpuBudgetMs);
    }
    return Limits.fuelChunk;
  };

  // ------------------------------------------------------------------ contexts

  nextContextId(): number {
    return this.#nextContextId++;
  }

  /**
   * Creates a root context for a plugin and runs on_context_create, on_vm_start and on_configure.
   * Throws WasmLoadError('vm_start' | 'configure') (the VM is then failed too).
   */
  startPlugin(plugin: PluginSpec): RootContext {
    const root = new RootContext(this.nextContextId(), plugin, this);
    this.contexts.set(root);
    if (this.call(this.ex.on_context_create, root, root.id, 0) === VM_FAILED) throw this.#loadFailure('vm_start');
    root.created = true;
    root.configPhase = 'vm_start';
    const ok = this.call(this.ex.on_vm_start, root, root.id, this.vmConfiguration.length);
    root.configPhase = undefined;
    if (ok === VM_FAILED) throw this.#loadFailure('vm_start');
    if (this.ex.on_vm_start && ok === 0) throw new WasmLoadError('vm_start', 'proxy_on_vm_start returned false');
    root.configPhase = 'configure';
    const ok2 = this.call(this.ex.on_configure, root, root.id, plugin.configuration.length);
    root.configPhase = undefined;
    if (ok2 === VM_FAILED) throw this.#loadFailure('configure');
    if (this.ex.on_configure && ok2 === 0) throw new WasmLoadError('configure', 'proxy_on_configure returned false (plugin rejected its configuration)');
    return root;
  }

  #loadFailure(stage: 'vm_start' | 'configure'): WasmLoadError {
    return new WasmLoadError(stage, `${stage === 'vm_start' ? 'proxy_on_vm_start' : 'proxy_on_configure'} failed: ${this.failure?.message ?? 'VM failed'}`);
  }

  /** A stream context; proxy_on_context_create runs lazily (ensureCreated). */
  newStream(root: RootContext, host: StreamHost): StreamContext {
    const ctx = new StreamContext(this.nextContextId(), root, host);
    this.contexts.set(ctx);
    return ctx;
  }

  /** Runs proxy_on_context_create for a stream once. Returns false when the VM failed. */
  ensureCreated(ctx: StreamContext): boolean {
    if (ctx.created) return true;
    ctx.created = true;
    return this.call(this.ex.on_context_create, ctx, ctx.id, ctx.root.id) !== VM_FAILED;
  }

  /** Ends a stream: HTTP on_log → on_done → on_delete; network on_done → on_log → on_delete. */
  finishStream(ctx: StreamContext, http: boolean): void {
    if (ctx.deleted) return;
    if (ctx.created && !this.failed) {
      if (http) {
        this.call(this.ex.on_log, ctx, ctx.id);
        this.call(this.ex.on_done, ctx, ctx.id);
      } else {
        this.call(this.ex.on_done, ctx, ctx.id);
        this.call(this.ex.on_log, ctx, ctx.id);
      }
      this.call(this.ex.on_delete, ctx, ctx.id);
    }
    this.deleteStream(ctx);
  }

  deleteStream(ctx: StreamContext): void {
    ctx.deleted = true;
    this.contexts.delete(ctx.id);
    // Callouts issued by this stream are cancelled: no callback after on_delete (Envoy cancels
    // them on context destruction; SDKs panic on responses for unknown contexts).
    const callouts = ctx.root.callouts;
    if (callouts.size === 0) return;
    for (const [token, c] of callouts) {
      if (c.issuer === ctx) {
        c.handle?.cancel();
        callouts.delete(token);
      }
    }
  }

  // ------------------------------------------------------------------ calls

  /**
   * Calls an export with the given context current. Returns the i32 result (0 for void), or
   * VM_FAILED. Absent callbacks return 0 without a call.
   */
  call(fn: Function | undefined, ctx: Context | null, a?: number, b?: number, c?: number, d?: number, e?: number): number {
    if (this.failed) return VM_FAILED;
    if (fn === undefined) return 0;
    const prevCurrent = this.current;
    const prevEffective = this.effective;
    this.current = ctx;
    this.effective = ctx;
    if (this.depth++ === 0) this.epoch++;
    let r: unknown;
    try {
      r = fn(a, b, c, d, e);
    } catch (err) {
      this.depth--;
      this.current = prevCurrent;
      this.effective = prevEffective;
      this.fail(err, this.exportNames.get(fn) ?? 'unknown');
      return VM_FAILED;
    }
    this.depth--;
    this.current = prevCurrent;
    this.effective = prevEffective;
    if (this.depth === 0 && (this.afterCall.length > 0 || this.#deferredRootDeletes.length > 0)) this.#runAfterCall();
    return typeof r === 'number' ? r : 0;
  }

  /**
   * Variadic form of call() (for callbacks with more than five parameters and for test harnesses
   * that drive exported wrappers of host functions). Returns the raw result or VM_FAILED.
   */
  callArgs(fn: Function, ctx: Context | null, args: readonly unknown[]): unknown {
    if (this.failed) return VM_FAILED;
    const prevCurrent = this.current;
    const prevEffective = this.effective;
    this.current = ctx;
    this.effective = ctx;
    if (this.depth++ === 0) this.epoch++;
    let r: unknown;
    try {
      r = fn(...args);
    } catch (err) {
      this.fail(err, this.exportNames.get(fn) ?? 'unknown');
      r = VM_FAILED;
    } finally {
      this.depth--;
      this.current = prevCurrent;
      this.effective = prevEffective;
    }
    if (this.depth === 0 && (this.afterCall.length > 0 || this.#deferredRootDeletes.length > 0)) this.#runAfterCall();
    return r;
  }

  /** Queues a stream whose host has deferred actions to apply after the outermost VM call. */
  deferFor(ctx: StreamContext): void {
    if (ctx.afterQueued) return;
    ctx.afterQueued = true;
    this.afterCall.push(ctx);
  }

  deferRootDelete(root: RootContext): void {
    this.#deferredRootDeletes.push(root);
  }

  #runAfterCall(): void {
    while (this.afterCall.length > 0) {
      const ctx = this.afterCall.shift()!;
      ctx.afterQueued = false;
      ctx.host.afterVmCall();
    }
    while (this.#deferredRootDeletes.length > 0) {
      const root = this.#deferredRootDeletes.shift()!;
      this.#deleteRoot(root);
    }
  }

  onFailure(listener: (vm: WasmVm) => void): void {
    this.#failureListeners.push(listener);
  }

  /** Marks the instance failed (cpp-host FailState::RuntimeError); no plugin code runs again. */
  fail(err: unknown, fnName: string): void {
    if (this.failed) return;
    this.failed = true;
    let kind: FailureKind = this.pendingFailureKind ?? 'trap';
    if (err instanceof CpuBudgetExceeded) kind = 'cpu_budget';
    else if (err instanceof ProcExit) kind = 'proc_exit';
    // An abort/trap with memory at the cap is (almost surely) an allocation that memory.grow refused.
    const cap = this.compiled.maxPages ?? 0;
    if ((kind === 'trap' || kind === 'proc_exit') && cap > 0 && this.memoryBytes() >= cap * 65536) kind = 'memory';
    const message = describeError(err);
    this.failure = { kind, message, function: fnName };
    wasmLog.error({ plugin: this.logName, function: fnName, kind }, `Function: ${fnName} failed: ${message}`);
    for (const ctx of this.contexts.values()) {
      if (ctx instanceof RootContext) this.#stopRoot(ctx);
      // Streams waiting on this VM (paused for a callout or a timer) would hang: let each apply
      // its failStrategy, on a microtask so no chain code runs inside this catch.
      else if (ctx instanceof StreamContext) queueMicrotask(() => ctx.host.vmFailed());
    }
    for (const l of this.#failureListeners) {
      try {
        l(this);
      } catch (e) {
        wasmLog.error({ err: e }, 'wasm failure listener threw');
      }
    }
  }

  #stopRoot(root: RootContext): void {
    if (root.timer) clearTimeout(root.timer);
    root.timer = undefined;
    root.tickMs = 0;
    for (const c of root.callouts.values()) c.handle?.cancel();
    root.callouts.clear();
    this.shared.forgetReceiver(root.queueReceiver);
  }

  #deleteRoot(root: RootContext): void {
    if (root.deleted) return;
    root.deleted = true;
    if (!this.failed) this.call(this.ex.on_delete, root, root.id);
    this.#stopRoot(root);
    this.contexts.delete(root.id);
  }

  /**
   * Shuts a root context down (§4.13): on_done → true ⇒ on_delete now; false ⇒ wait for proxy_done.
   * Resolves when the root is deleted (or after `graceMs`).
   */
  shutdownRoot(root: RootContext, graceMs = 5000): Promise<void> {
    if (root.deleted) return Promise.resolve();
    if (this.failed) {
      this.#stopRoot(root);
      root.deleted = true;
      this.contexts.delete(root.id);
      return Promise.resolve();
    }
    const r = this.call(this.ex.on_done, root, root.id);
    if (r === VM_FAILED || r !== 0 || this.ex.on_done === undefined) {
      this.#deleteRoot(root);
      return Promise.resolve();
    }
    root.pendingDone = true;
    return new Promise((resolve) => {
      const started = Date.now();
      const poll = setInterval(() => {
        if (root.deleted || this.failed || Date.now() - started > graceMs) {
          clearInterval(poll);
          if (!root.deleted) this.#deleteRoot(root);
          resolve();
        }
      }, 20);
      poll.unref();
    });
  }

  /** Releases everything (timers, callouts, queue registrations). */
  dispose(): void {
    for (const ctx of this.contexts.values()) if (ctx instanceof RootContext) this.#stopRoot(ctx);
    this.contexts.clear();
    closeGrpcSessions(this);
  }

  // ------------------------------------------------------------------ async deliveries (root-owned)

  armTimer(root: RootContext): void {
    if (root.timer) clearTimeout(root.timer);
    root.timer = undefined;
    if (root.tickMs <= 0 || this.failed || root.deleted) return;
    root.timer = setTimeout(() => {
      root.timer = undefined;
      if (this.failed || root.deleted) return;
      this.call(this.ex.on_tick, root, root.id);
      // Re-armed after the tick returns (fixed delay, as Envoy).
      if (root.tickMs > 0 && !root.timer) this.armTimer(root);
    }, root.tickMs);
    root.timer.unref();
  }

  deliverQueueReady(root: RootContext, token: number): void {
    if (this.failed || root.deleted) return;
    this.call(this.ex.on_queue_ready, root, root.id, token);
  }

  nextCalloutToken(kind: 0 | 1 | 2): number {
    // Envoy numbering: low 2 bits = kind (0 HTTP, 1 gRPC call, 2 gRPC stream), step 4; never 0.
    const n = this.#nextCalloutToken[kind]!++;
    return ((n * 4) | kind) >>> 0;
  }

  deliverHttpCallResponse(root: RootContext, token: number, resp: CalloutResponse | undefined, failure?: { code: number; message: string }): void {
    const entry = root.callouts.get(token);
    if (!entry) return; // cancelled
    root.callouts.delete(token);
    if (this.failed || root.deleted) return;
    if (failure) {
      root.statusCode = failure.code;
      root.statusMessage = failure.message;
    } else {
      root.statusCode = 0;
      root.statusMessage = '';
    }
    root.calloutResponse = resp;
    const nh = resp?.headers?.size ?? 0;
    const nb = resp?.body?.length ?? 0;
    const nt = resp?.trailers?.size ?? 0;
    this.call(this.ex.on_http_call_response, root, root.id, token, nh, nb, nt);
    root.calloutResponse = undefined;
  }

  // ------------------------------------------------------------------ metrics

  defineMetric(type: number, name: string): number {
    const stats = this.services.stats;
    // Envoy's custom stat namespace: the admin strips `wasmcustom.` and adds no `envoy_` prefix.
    name = `wasmcustom.${name}`;
    let entry: MetricEntry;
    if (type === 0) {
      const c = stats?.counter(name);
      let local = 0;
      entry = { type, name, inc: (n) => (c ? c.inc(n) : (local += n)), set: (v) => (c ? c.inc(v) : (local += v)), record: (v) => (c ? c.inc(v) : (local += v)), get: () => (c ? c.value : local) };
    } else if (type === 1) {
      const g = stats?.gauge(name);
      let local = 0;
      entry = { type, name, inc: (n) => (g ? g.add(n) : (local += n)), set: (v) => (g ? g.set(v) : (local = v)), record: (v) => (g ? g.set(v) : (local = v)), get: () => (g ? g.value : local) };
    } else {
      const h = stats?.histogram(name);
      entry = { type, name, inc: () => undefined, set: (v) => h?.record(v), record: (v) => h?.record(v), get: () => undefined };
    }
    const id = ((this.#metricNext[type]!++ * 4) | type) >>> 0;
    this.metrics.set(id, entry);
    return id;
  }

  // ------------------------------------------------------------------ logging

  logEnabled(level: number): boolean {
    if (this.services.logSink) return true;
    // pino levels: trace 10, debug 20, info 30, warn 40, error 50, fatal 60.
    return 10 + level * 10 >= (wasmLog.levelVal as number);
  }

  /** Host log level as the ABI's 0..5 (6 = off). */
  hostLogLevel(): number {
    const v = wasmLog.levelVal as number;
    if (v === Infinity) return 6;
    return Math.max(0, Math.min(5, Math.round((v - 10) / 10)));
  }

  pluginLog(level: number, message: string): void {
    const sink = this.services.logSink;
    if (sink) sink(level, message);
    const line = `wasm log ${this.logName}: ${message}`;
    switch (level) {
      case 0: wasmLog.trace(line); break;
      case 1: wasmLog.debug(line); break;
      case 2: wasmLog.info(line); break;
      case 3: wasmLog.warn(line); break;
      case 4: wasmLog.error(line); break;
      default: wasmLog.fatal(line); break;
    }
  }

  // ------------------------------------------------------------------ memory helpers (bounds-checked)

  /** Current memory as bytes; re-derived when memory.grow replaced the buffer. */
  u8(): Uint8Array {
    // memory.grow detaches the previous ArrayBuffer, whose views then read length 0: checking
    // the cached view's length avoids the (measurably slow) memory.buffer getter on every access.
    if (this.#u8.length === 0) {
      const buf = this.ex.memory!.buffer;
      this.#u8 = new Uint8Array(buf);
      this.#dv = new DataView(buf);
    }
    return this.#u8;
  }

  dv(): DataView {
    this.u8();
    return this.#dv;
  }

  inBounds(ptr: number, len: number): boolean {
    return ptr + len <= this.u8().length;
  }

  /** UTF-8 string at (ptr, len) or null when out of bounds. Args may arrive signed: normalised here. */
  readString(ptr: number, len: number): string | null {
    ptr >>>= 0;
    len >>>= 0;
    const m = this.u8();
    if (ptr + len > m.length) return null;
    return stringCache.get(m, ptr, len);
  }

  /** As readString for a header name: lower-cased, as HeaderMap stores names. */
  readHeaderName(ptr: number, len: number): string | null {
    ptr >>>= 0;
    len >>>= 0;
    const m = this.u8();
    if (ptr + len > m.length) return null;
    return nameCache.get(m, ptr, len);
  }

  /** A copy of (ptr, len), or null when out of bounds. */
  readBytes(ptr: number, len: number): Uint8Array | null {
    ptr >>>= 0;
    len >>>= 0;
    const m = this.u8();
    if (ptr + len > m.length) return null;
    return m.slice(ptr, ptr + len);
  }

  writeU32(ptr: number, v: number): boolean {
    ptr >>>= 0;
    const dv = this.dv();
    if (ptr + 4 > dv.byteLength) return false;
    dv.setUint32(ptr, v >>> 0, true);
    return true;
  }

  writeU64(ptr: number, v: bigint): boolean {
    ptr >>>= 0;
    const dv = this.dv();
    if (ptr + 8 > dv.byteLength) return false;
    dv.setBigUint64(ptr, BigInt.asUintN(64, v), true);
    return true;
  }

  /**
   * Allocates `size` (> 0) bytes in the plugin. Returns the pointer, or 0 when the allocator failed
   * or returned memory outside the instance.
   */
  alloc(size: number): number {
    // While the plugin's allocator runs, maps and buffers are unavailable to it (cpp-host restricts
    // hostcalls there): a hostile allocator must not change what the host is about to copy.
    this.allocating = true;
    let p: number;
    try {
      p = this.ex.alloc!(size) >>> 0;
    } finally {
      this.allocating = false;
    }
    if (p === 0 || p + size > this.u8().length) return 0;
    return p;
  }

  /** Copies bytes into a fresh allocation and writes (ptr, len) at the out-pointers. */
  returnBytes(bytes: Uint8Array, ptrPtr: number, lenPtr: number): number {
    ptrPtr >>>= 0;
    lenPtr >>>= 0;
    if (!this.inBounds(ptrPtr, 4) || !this.inBounds(lenPtr, 4)) return Status.InvalidMemoryAccess;
    if (bytes.length === 0) {
      // Never a 0-byte allocation (the Go SDKs' allocator panics on it).
      this.writeU32(ptrPtr, 0);
      this.writeU32(lenPtr, 0);
      return Status.Ok;
    }
    const p = this.alloc(bytes.length);
    if (p === 0) return Status.InvalidMemoryAccess;
    this.u8().set(bytes, p);
    if (!this.writeU32(ptrPtr, p) || !this.writeU32(lenPtr, bytes.length)) return Status.InvalidMemoryAccess;
    return Status.Ok;
  }

  /** As returnBytes for a string, encoding straight into plugin memory. */
  returnString(s: string, ptrPtr: number, lenPtr: number): number {
    ptrPtr >>>= 0;
    lenPtr >>>= 0;
    if (!this.inBounds(ptrPtr, 4) || !this.inBounds(lenPtr, 4)) return Status.InvalidMemoryAccess;
    const n = utf8Length(s);
    if (n === 0) {
      this.writeU32(ptrPtr, 0);
      this.writeU32(lenPtr, 0);
      return Status.Ok;
    }
    const p = this.alloc(n);
    if (p === 0) return Status.InvalidMemoryAccess;
    encodeStringInto(s, this.u8(), p);
    const dv = this.#dv;
    dv.setUint32(ptrPtr, p, true);
    dv.setUint32(lenPtr, n, true);
    return Status.Ok;
  }

  /** Memory currently used by the instance, in bytes. */
  memoryBytes(): number {
    return this.ex.memory?.buffer.byteLength ?? 0;
  }
}

export function describeError(err: unknown): string {
  if (err instanceof ProcExit) return `proc_exit(${err.code})`;
  if (err instanceof Error) return err.message;
  return String(err);
}
