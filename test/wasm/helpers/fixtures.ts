/** Shared test fixtures: plugin options, fake services, a fake cluster manager. */
import { HeaderMap } from '../../../src/filters/header-map.ts';
import type { ClusterManager, HttpCallRequest, HttpCallResponse } from '../../../src/proxy/cluster-manager.ts';
import { StatsStore } from '../../../src/observability/stats.ts';
import type { FailStrategy } from '../../../src/config/types.ts';
import { loadPlugin } from '../../../src/wasm/runtime.ts';
import type { WasmPlugin } from '../../../src/wasm/plugin.ts';
import { encodeString } from '../../../src/wasm/pairs.ts';
import { SharedState } from '../../../src/wasm/shared.ts';

export interface FakeCall {
  req: HttpCallRequest;
  resolve(r: { status?: number; headers?: Array<[string, string]>; body?: string; trailers?: Array<[string, string]> }): void;
  reject(err: Error): void;
  cancelled: boolean;
}

/** A cluster manager whose calls the test answers by hand (or automatically via `auto`). */
export class FakeClusters implements ClusterManager {
  readonly calls: FakeCall[] = [];
  auto: ((req: HttpCallRequest) => { status?: number; headers?: Array<[string, string]>; body?: string; trailers?: Array<[string, string]> }) | undefined;
  readonly names: Set<string>;
  constructor(names: string[] = ['backend', 'auth']) {
    this.names = new Set(names);
  }
  has(c: string): boolean {
    return this.names.has(c);
  }
  httpCall(req: HttpCallRequest) {
    let res!: (r: HttpCallResponse) => void;
    let rej!: (e: Error) => void;
    const promise = new Promise<HttpCallResponse>((a, b) => {
      res = a;
      rej = b;
    });
    const call: FakeCall = {
      req,
      cancelled: false,
      resolve: (r) => res({ headers: HeaderMap.fromPairs([[':status', String(r.status ?? 200)], ...(r.headers ?? [])]), body: Buffer.from(r.body ?? ''), trailers: HeaderMap.fromPairs(r.trailers ?? []) }),
      reject: (e) => rej(e),
    };
    this.calls.push(call);
    if (this.auto) {
      const a = this.auto(req);
      setImmediate(() => call.resolve(a));
    }
    return { promise, cancel: () => { call.cancelled = true; } };
  }
}

export interface TestPluginOptions {
  config?: string | Record<string, unknown>;
  rootId?: string;
  failStrategy?: FailStrategy;
  cpuBudgetMs?: number;
  maxPages?: number;
  env?: Array<[string, string]>;
  clusters?: ClusterManager;
  stats?: StatsStore;
  vmId?: string;
  shared?: SharedState;
  reloadBackoffBaseMs?: number;
  logs?: Array<[number, string]>;
  name?: string;
}

export async function plugin(bytes: Uint8Array, o: TestPluginOptions = {}): Promise<WasmPlugin> {
  const cfg = typeof o.config === 'string' ? o.config : JSON.stringify(o.config ?? { test: true });
  const logs = o.logs;
  return loadPlugin(
    bytes,
    {
      filterName: `extensions.istio.io/trafficextension/default.${o.name ?? 'test'}`,
      statName: `default.${o.name ?? 'test'}`,
      plugin: { name: `default.${o.name ?? 'test'}`, rootId: o.rootId ?? '', configuration: encodeString(cfg) },
      failStrategy: o.failStrategy ?? 'FAIL_CLOSE',
      vmId: o.vmId ?? '',
      vmConfiguration: encodeString('vm-config'),
      env: o.env ?? [],
      cpuBudgetMs: o.cpuBudgetMs ?? 1000,
      services: {
        clusters: o.clusters ?? new FakeClusters(),
        stats: o.stats ?? new StatsStore(),
        identity: { namespace: 'default', labels: { app: 'demo' }, rootNamespace: 'istio-system', workloadName: 'demo', clusterId: 'Kubernetes' },
        shared: o.shared ?? new SharedState(),
        logSink: logs ? (l, m) => logs.push([l, m]) : undefined,
      },
      ...(o.reloadBackoffBaseMs !== undefined ? { reloadBackoffBaseMs: o.reloadBackoffBaseMs } : {}),
    },
    o.maxPages ?? 4096,
  );
}

export function factory(p: WasmPlugin) {
  return { name: 'wasm', create: (cb: Parameters<WasmPlugin['createHttpFilter']>[0]) => p.createHttpFilter(cb) };
}
