/**
 * Builds BootstrapConfig objects for tests without a YAML file: every field has the loader's
 * default, and tests override what they exercise.
 */
import type { BootstrapConfig, ClusterConfig, ListenerConfig, RouteTableConfig } from '../../src/config/types.ts';

export function listener(over: Partial<ListenerConfig> = {}): ListenerConfig {
  return {
    name: 'http',
    address: '127.0.0.1',
    port: 0,
    protocol: 'HTTP',
    direction: 'gateway',
    bufferLimitBytes: 1024 * 1024,
    statPrefix: over.name ?? 'http',
    ...over,
  };
}

export function cluster(name: string, port: number, over: Partial<ClusterConfig> = {}): ClusterConfig {
  return {
    name,
    endpoints: [{ address: '127.0.0.1', port }],
    lbPolicy: 'ROUND_ROBIN',
    connectTimeoutMs: 1000,
    requestTimeoutMs: 15000,
    maxConnections: 64,
    protocol: 'HTTP1',
    ...over,
  };
}

/** One virtual host `*` with a catch-all route to `clusterName`. */
export function routeAll(clusterName: string, over: Partial<RouteTableConfig> = {}): RouteTableConfig {
  return {
    name: 'default',
    virtualHosts: [{ name: 'all', domains: ['*'], routes: [{ name: 'default', match: { prefix: '/' }, route: { cluster: clusterName } }] }],
    ...over,
  };
}

export function bootstrap(over: Partial<BootstrapConfig> = {}): BootstrapConfig {
  return {
    source: '<test>',
    identity: { namespace: 'default', labels: { app: 'test' }, rootNamespace: 'istio-system', workloadName: 'test', clusterId: 'Kubernetes' },
    admin: { address: '127.0.0.1', port: 0 },
    prometheus: null,
    readiness: null,
    listeners: [listener()],
    routeTables: [],
    clusters: [],
    extensions: [],
    accessLog: null,
    drainTimeoutMs: 2000,
    lua: { engine: 'auto', memoryLimitBytes: 16 * 1024 * 1024, instructionBudget: 10_000_000, failClosed: false, allowUnsafeLibs: false },
    wasm: { memoryLimitBytes: 256 * 1024 * 1024, cpuBudgetMs: 1000, cacheDir: '/tmp/meshext-test-cache', insecureRegistries: [], allowLoopbackFetch: true },
    ...over,
  };
}
