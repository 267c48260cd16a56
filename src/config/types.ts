/**
 * The typed shapes of meshext's configuration after validation: the bootstrap file (listeners,
 * routes, clusters, identity) and TrafficExtension resources (extensions.istio.io/v1alpha1).
 * The loaders in this folder produce these; the data plane consumes them.
 */

export type TrafficDirection = 'gateway' | 'sidecar_inbound' | 'sidecar_outbound';

export interface ProxyIdentity {
  /** The proxy's config namespace (where its extensions are looked up first). */
  namespace: string;
  /** Workload labels, matched by `selector.matchLabels`. */
  labels: Record<string, string>;
  /** Gateway API gateway name (the `gateway.networking.k8s.io/gateway-name` label), if any. */
  gatewayName?: string;
  /** True for a waypoint proxy. */
  waypoint?: boolean;
  /** Istio's mesh root namespace (default istio-system). */
  rootNamespace: string;
  /** Node id / workload name for metrics labels. */
  workloadName: string;
  /** Cluster id for metrics labels. */
  clusterId: string;
}

export interface TlsConfig {
  certFile: string;
  keyFile: string;
  caFile?: string;
  /** ALPN protocols offered, in preference order (default ['h2', 'http/1.1']). */
  alpn: string[];
}

export interface ListenerConfig {
  name: string;
  address: string;
  port: number;
  protocol: 'HTTP' | 'TCP';
  direction: TrafficDirection;
  tls?: TlsConfig;
  /** HTTP: name of the route table to use (default: the only one, or 'default'). */
  routeConfig?: string;
  /** TCP: the cluster the TCP proxy forwards to. */
  cluster?: string;
  /** Per-stream buffer limit in bytes (Envoy's per_connection_buffer_limit_bytes, default 1 MiB). */
  bufferLimitBytes: number;
  /** Stats prefix (Envoy's HCM stat_prefix); default the listener name. */
  statPrefix: string;
}

export interface HeaderMatcher {
  name: string;
  exact?: string;
  prefix?: string;
  regex?: string;
  present?: boolean;
  invert?: boolean;
}

export interface RouteMatch {
  prefix?: string;
  path?: string;
  regex?: string;
  methods?: string[];
  headers?: HeaderMatcher[];
}

export interface RouteAction {
  cluster: string;
  /** Overrides the cluster's request timeout for this route (ms; 0 disables). */
  timeoutMs?: number;
  prefixRewrite?: string;
  hostRewrite?: string;
}

export interface DirectResponseAction {
  status: number;
  body?: string;
  headers?: Record<string, string>;
}

export interface RedirectAction {
  /** Status: 301 (default), 302, 303, 307, 308. */
  status: number;
  scheme?: string;
  host?: string;
  port?: number;
  path?: string;
  prefixRewrite?: string;
  stripQuery?: boolean;
}

export interface RouteConfig {
  name: string;
  match: RouteMatch;
  route?: RouteAction;
  directResponse?: DirectResponseAction;
  redirect?: RedirectAction;
  /** Route metadata.filter_metadata (Lua `metadata()` reads its filter's entry). */
  metadata?: Record<string, Record<string, unknown>>;
}

export interface VirtualHostConfig {
  name: string;
  /** Authority patterns: exact, `*.suffix`, `prefix.*`, or `*`. */
  domains: string[];
  routes: RouteConfig[];
}

export interface RouteTableConfig {
  name: string;
  virtualHosts: VirtualHostConfig[];
}

export interface EndpointConfig {
  address: string;
  port: number;
}

export interface ClusterConfig {
  name: string;
  endpoints: EndpointConfig[];
  lbPolicy: 'ROUND_ROBIN';
  connectTimeoutMs: number;
  /** Per-request timeout (Envoy route timeout default 15 s; 0 = none). */
  requestTimeoutMs: number;
  /** Max keep-alive connections per endpoint. */
  maxConnections: number;
  protocol: 'HTTP1' | 'HTTP2';
  /** Upstream TLS. */
  tls?: { sni?: string; caFile?: string; insecureSkipVerify?: boolean };
}

export interface AdminConfig {
  address: string;
  port: number;
}

export interface BootstrapConfig {
  /** Path of the file this came from (for messages), or '<embedded>'. */
  source: string;
  identity: ProxyIdentity;
  admin: AdminConfig;
  /** Prometheus listener (Istio's 15090, `/stats/prometheus`); null disables. */
  prometheus: AdminConfig | null;
  /** Readiness listener (Istio's 15021, `/healthz/ready`); null disables. */
  readiness: AdminConfig | null;
  listeners: ListenerConfig[];
  routeTables: RouteTableConfig[];
  clusters: ClusterConfig[];
  /** Paths of TrafficExtension YAML files or directories to load and watch. */
  extensions: string[];
  /** Access log: 'stdout', a file path, or null for none. */
  accessLog: string | null;
  /** Drain timeout on SIGTERM (ms). */
  drainTimeoutMs: number;
  /** Engine options for extensions. */
  lua: { engine: 'auto' | 'compiled' | 'luajit' | 'wasm'; memoryLimitBytes: number; instructionBudget: number; failClosed: boolean; allowUnsafeLibs: boolean };
  wasm: { memoryLimitBytes: number; cpuBudgetMs: number; cacheDir: string; insecureRegistries: string[]; allowLoopbackFetch: boolean };
}

// ---------------------------------------------------------------- TrafficExtension

export type Phase = 'UNSPECIFIED' | 'AUTHN' | 'AUTHZ' | 'STATS';
export type FailStrategy = 'FAIL_CLOSE' | 'FAIL_OPEN' | 'FAIL_RELOAD';
export type WorkloadMode = 'UNDEFINED' | 'CLIENT' | 'SERVER' | 'CLIENT_AND_SERVER';

export interface ObjectMeta {
  name: string;
  namespace: string;
  creationTimestamp?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface PolicyTargetReference {
  group?: string;
  kind: string;
  name: string;
  namespace?: string;
}

export interface TrafficSelector {
  mode?: WorkloadMode;
  ports?: { number: number }[];
}

export interface EnvVar {
  name: string;
  valueFrom?: 'INLINE' | 'HOST';
  value?: string;
}

export interface WasmConfig {
  url: string;
  sha256?: string;
  imagePullPolicy?: 'UNSPECIFIED_POLICY' | 'IfNotPresent' | 'Always';
  imagePullSecret?: string;
  verificationKey?: string;
  pluginConfig?: Record<string, unknown>;
  pluginName?: string;
  failStrategy?: FailStrategy;
  vmConfig?: { env?: EnvVar[] };
  type?: 'UNSPECIFIED_PLUGIN_TYPE' | 'HTTP' | 'NETWORK';
}

export interface LuaConfig {
  inlineCode: string;
}

export interface TrafficExtensionSpec {
  selector?: { matchLabels?: Record<string, string> };
  targetRefs?: PolicyTargetReference[];
  phase?: Phase;
  priority?: number;
  match?: TrafficSelector[];
  wasm?: WasmConfig;
  lua?: LuaConfig;
}

/** A validated TrafficExtension (native, or translated from a WasmPlugin). */
export interface TrafficExtension {
  apiVersion: 'extensions.istio.io/v1alpha1';
  kind: 'TrafficExtension';
  metadata: ObjectMeta;
  spec: TrafficExtensionSpec;
  /** Where it was read from, for messages and /config_dump. */
  origin: { file: string; line: number; kind: 'TrafficExtension' | 'WasmPlugin' };
  /** Canonical values derived by the loader (traffic-extension.md §8.1); absent on hand-built objects. */
  resolved?: ResolvedExtension;
}

/** What istiod derives from a TrafficExtension before building filters. */
export interface ResolvedExtension {
  /** ECDS/filter name: `extensions.istio.io/trafficextension/<ns>.<name>`. */
  resourceName: string;
  engine: 'wasm' | 'lua';
  /** Lua and HTTP/unspecified wasm go in HTTP chains; `type: NETWORK` wasm in network chains. */
  chain: 'HTTP' | 'NETWORK';
  /** spec.phase, UNSPECIFIED when unset. */
  phase: Phase;
  /** spec.priority, or -2^31 when unset (istiod's sort key; the docs' "defaults to 0" is wrong). */
  priority: number;
  /** wasm.url with `oci://` prefixed when it has no scheme. */
  url?: string;
  /** wasm.imagePullSecret normalised to the extension's namespace (`kubernetes://<ns>/<name>`). */
  pullSecret?: { namespace: string; name: string; resourceName: string };
}

/** A `kubernetes.io/dockerconfigjson` Secret found in the same YAML sources. */
export interface PullSecret {
  name: string;
  namespace: string;
  dockerConfigJson: string;
}

/** Everything the extension sources hold after validation. */
export interface ExtensionSet {
  extensions: TrafficExtension[];
  secrets: PullSecret[];
}
