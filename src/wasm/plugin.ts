/**
 * One loaded Wasm extension in one worker: owns its VM (one VM per plugin per worker: a crash in one
 * plugin never touches another, see docs/proxy-wasm.md "Differences") and applies the failStrategy
 * (traffic-extension.md §4.1) to every new stream:
 *   FAIL_CLOSE  — after any VM failure, or when the module failed to load: 503 `wasm_fail_stream`
 *                 for every request until the configuration changes.
 *   FAIL_OPEN   — the filter is skipped (factory returns null).
 *   FAIL_RELOAD — a fresh VM from the cached compiled module for the next request, rate-limited by
 *                 an exponential backoff (base 1 s, cap 10 s); fail-closed while waiting. Load
 *                 failures are not runtime errors: they fail closed.
 * A fetch failure mimics istio-agent's RBAC fallback: deny-all (403 `RBAC: access denied`) unless
 * FAIL_OPEN.
 */
import type { FailStrategy } from '../config/types.ts';
import type { HttpFilter, HttpFilterCallbacks, NetworkFilter, NetworkFilterCallbacks } from '../filters/types.ts';
import { logger } from '../observability/log.ts';
import { Limits } from './abi.ts';
import { FailClosedHttpFilter, WasmHttpFilter, WasmNetworkFilter, type FailureHandler } from './filter.ts';
import { WasmLoadError, type CompiledPlugin } from './module.ts';
import { WasmVm, type PluginSpec, type RootContext, type VmServices } from './vm.ts';

const log = logger('wasm');

export interface PluginOptions {
  /** Filter name (for logs and stats). */
  filterName: string;
  /** Stats namespace, e.g. `<ns>.<name>`. */
  statName: string;
  plugin: PluginSpec;
  failStrategy: FailStrategy;
  vmId: string;
  vmConfiguration: Uint8Array;
  env: ReadonlyArray<readonly [string, string]>;
  cpuBudgetMs: number;
  services: VmServices;
  /** FAIL_RELOAD backoff base (default 1 s, Envoy's ReloadConfig default). */
  reloadBackoffBaseMs?: number;
}

export type PluginState = 'ready' | 'failed' | 'load_failed' | 'fetch_failed' | 'released';

export class WasmPlugin implements FailureHandler {
  readonly opts: PluginOptions;
  readonly compiled: CompiledPlugin | undefined;
  vm: WasmVm | undefined;
  root: RootContext | undefined;
  state: PluginState;
  /** Why the plugin is not usable (load/fetch error, or the last VM failure). */
  reason = '';
  #lastCreate = 0;
  #backoffMs: number;
  #nextReloadAt = 0;
  /** Streams currently using a VM of this plugin. */
  #active = 0;
  readonly #counters;

  private constructor(opts: PluginOptions, compiled: CompiledPlugin | undefined, state: PluginState, reason: string) {
    this.opts = opts;
    this.compiled = compiled;
    this.state = state;
    this.reason = reason;
    this.#backoffMs = opts.reloadBackoffBaseMs ?? Limits.reloadBackoffBaseMs;
    const s = opts.services.stats;
    const p = `wasm.${opts.statName}`;
    this.#counters = s
      ? {
          created: s.counter(`${p}.vm_created`),
          failed: s.counter(`${p}.vm_failed`),
          cpu: s.counter(`${p}.cpu_budget_exceeded`),
          memory: s.counter(`${p}.memory_limit_exceeded`),
          reloaded: s.counter(`${p}.vm_reloaded`),
          failClosed: s.counter(`${p}.fail_closed`),
          failOpen: s.counter(`${p}.fail_open`),
          active: s.gauge(`${p}.vm_active`),
        }
      : undefined;
  }

  get failOpen(): boolean {
    return this.opts.failStrategy === 'FAIL_OPEN';
  }

  streamEnded(): void {
    this.#active--;
  }

  /** Streams in flight on this plugin's VM. */
  get activeStreams(): number {
    return this.#active;
  }

  /** Creates the plugin and its first VM. Never throws: failures become the plugin's state. */
  static create(opts: PluginOptions, compiled: CompiledPlugin): WasmPlugin {
    const p = new WasmPlugin(opts, compiled, 'ready', '');
    try {
      p.#startVm();
    } catch (err) {
      p.state = 'load_failed';
      p.reason = (err as Error).message;
      log.error({ plugin: opts.filterName, failStrategy: opts.failStrategy, stage: (err as WasmLoadError).stage }, `wasm plugin failed to load: ${p.reason}${opts.failStrategy === 'FAIL_OPEN' ? ' (FAIL_OPEN: filter bypassed)' : ' (failing closed: 503 wasm_fail_stream)'}`);
    }
    return p;
  }

  /** A plugin whose module could not be obtained or compiled. */
  static failedToLoad(opts: PluginOptions, err: Error, stage: 'fetch' | 'compile'): WasmPlugin {
    const p = new WasmPlugin(opts, undefined, stage === 'fetch' ? 'fetch_failed' : 'load_failed', err.message);
    log.error({ plugin: opts.filterName, failStrategy: opts.failStrategy, stage }, `wasm plugin ${stage === 'fetch' ? 'module fetch' : 'load'} failed: ${err.message}`);
    return p;
  }

  #startVm(): void {
    const o = this.opts;
    this.#lastCreate = Date.now();
    const vm = WasmVm.create({ compiled: this.compiled!, vmId: o.vmId, vmConfiguration: o.vmConfiguration, env: o.env, cpuBudgetMs: o.cpuBudgetMs, logName: o.filterName, services: o.services });
    this.#counters?.created.inc();
    vm.onFailure((v) => this.#onVmFailure(v));
    try {
      this.root = vm.startPlugin(o.plugin);
    } catch (err) {
      vm.dispose();
      throw err;
    }
    this.vm = vm;
    this.state = 'ready';
    this.#counters?.active.set(1);
  }

  #onVmFailure(vm: WasmVm): void {
    if (vm !== this.vm && this.vm !== undefined) return;
    const f = vm.failure!;
    this.#counters?.failed.inc();
    this.#counters?.active.set(0);
    if (f.kind === 'cpu_budget') this.#counters?.cpu.inc();
    if (f.kind === 'memory') this.#counters?.memory.inc();
    this.state = 'failed';
    this.reason = `${f.function}: ${f.message}`;
    if (this.opts.failStrategy === 'FAIL_RELOAD') {
      // Crash loops back off: if the VM lived shorter than the backoff, the backoff doubles.
      const lived = Date.now() - this.#lastCreate;
      const base = this.opts.reloadBackoffBaseMs ?? Limits.reloadBackoffBaseMs;
      if (lived > Limits.reloadBackoffMaxMs) this.#backoffMs = base;
      this.#nextReloadAt = this.#lastCreate + this.#backoffMs;
      this.#backoffMs = Math.min(this.#backoffMs * 2, Math.max(base, Limits.reloadBackoffMaxMs));
    }
    log.error({ plugin: this.opts.filterName, kind: f.kind, failStrategy: this.opts.failStrategy }, `wasm VM failed (${f.kind}): ${this.reason}`);
  }

  /** The VM to use for a new stream, or how to treat the stream. */
  #acquire(): 'vm' | 'bypass' | 'fail_closed' | 'deny' {
    if (this.state === 'ready' && this.vm && !this.vm.failed) return 'vm';
    if (this.state === 'released') return 'bypass';
    if (this.opts.failStrategy === 'FAIL_OPEN') return 'bypass';
    if (this.state === 'fetch_failed') return 'deny';
    if (this.state === 'failed' && this.opts.failStrategy === 'FAIL_RELOAD' && Date.now() >= this.#nextReloadAt) {
      const old = this.vm;
      try {
        this.#startVm();
        old?.dispose();
        this.#counters?.reloaded.inc();
        log.warn({ plugin: this.opts.filterName }, 'wasm VM reloaded (FAIL_RELOAD)');
        return 'vm';
      } catch (err) {
        this.state = 'failed';
        this.reason = (err as Error).message;
        this.#nextReloadAt = Date.now() + this.#backoffMs;
        this.#backoffMs = Math.min(this.#backoffMs * 2, Limits.reloadBackoffMaxMs);
        log.error({ plugin: this.opts.filterName }, `wasm VM reload failed: ${this.reason}`);
      }
    }
    return 'fail_closed';
  }

  createHttpFilter(callbacks: HttpFilterCallbacks): HttpFilter | null {
    const a = this.#acquire();
    if (a === 'vm') {
      this.#active++;
      return new WasmHttpFilter(this.vm!, this.root!, callbacks, this);
    }
    if (a === 'bypass') {
      this.#counters?.failOpen.inc();
      return null;
    }
    this.#counters?.failClosed.inc();
    if (a === 'deny') return new FailClosedHttpFilter(callbacks, 403, 'RBAC: access denied', 'rbac_access_denied_matched_policy[none]');
    return new FailClosedHttpFilter(callbacks);
  }

  createNetworkFilter(callbacks: NetworkFilterCallbacks): NetworkFilter | null {
    const a = this.#acquire();
    if (a === 'vm') {
      this.#active++;
      return new WasmNetworkFilter(this.vm!, this.root!, callbacks, this);
    }
    if (a === 'bypass') return null;
    this.#counters?.failClosed.inc();
    return {
      onNewConnection: () => {
        callbacks.close(true, a === 'deny' ? 'rbac_access_denied_matched_policy[none]' : 'wasm_fail_stream');
        return 1;
      },
    };
  }

  describe(): Record<string, unknown> {
    return {
      engine: 'v8',
      abi: this.compiled?.abi,
      sha256: this.compiled?.sha256,
      state: this.state,
      reason: this.reason || undefined,
      failStrategy: this.opts.failStrategy,
      cpuBudgetMs: this.opts.cpuBudgetMs,
      cpuBudgetEnforced: this.compiled?.fuel ?? false,
      memoryBytes: this.vm?.memoryBytes(),
    };
  }

  /**
   * The configuration dropped this plugin: new streams no longer get it; streams in flight finish
   * on it (up to `drainMs`, as Envoy keeps a plugin alive while streams hold it); then the root
   * context shuts down (on_done / proxy_done / on_delete) and the VM is dropped.
   */
  async release(drainMs = 30_000): Promise<void> {
    if (this.state === 'released') return;
    const vm = this.vm;
    const root = this.root;
    this.state = 'released';
    const deadline = Date.now() + drainMs;
    while (this.#active > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20).unref());
    this.#counters?.active.set(0);
    if (vm && root) await vm.shutdownRoot(root);
    vm?.dispose();
  }
}
