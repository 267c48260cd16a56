/**
 * The bootstrap file: meshext's identity, listeners, route tables, clusters and engine options,
 * in a camelCase YAML format (docs/bootstrap.md). Loading reports every problem at once, each as
 * `file:line: path: message`, with the fix in the message, then throws one ConfigError.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, resolve } from 'node:path';
import { Ajv } from 'ajv';
import { ConfigError } from '../errors.ts';
import type { ConfigIssue } from '../errors.ts';
import { bootstrapJsonSchema } from './bootstrap-schema.ts';
import { schemaProblems } from './schema-messages.ts';
import type {
  AdminConfig,
  BootstrapConfig,
  ClusterConfig,
  EndpointConfig,
  HeaderMatcher,
  ListenerConfig,
  ProxyIdentity,
  RouteConfig,
  RouteTableConfig,
  TlsConfig,
  VirtualHostConfig,
} from './types.ts';
import { formatPath, NullLocator, parseYamlDocument } from './yaml-source.ts';
import type { PathSeg, YamlLocator } from './yaml-source.ts';

export { bootstrapJsonSchema };

export const BOOTSTRAP_DEFAULTS = {
  rootNamespace: 'istio-system',
  namespace: 'default',
  workloadName: 'meshext',
  clusterId: 'Kubernetes',
  admin: { address: '127.0.0.1', port: 15000 },
  prometheus: { address: '0.0.0.0', port: 15090 },
  readiness: { address: '0.0.0.0', port: 15021 },
  listenerAddress: '0.0.0.0',
  alpn: ['h2', 'http/1.1'],
  bufferLimitBytes: 1048576,
  connectTimeoutMs: 5000,
  requestTimeoutMs: 15000,
  maxConnections: 1024,
  drainTimeoutMs: 5000,
  lua: { engine: 'auto', memoryLimitBytes: 16 * 1024 * 1024, instructionBudget: 10_000_000, failClosed: false, allowUnsafeLibs: false },
  wasm: { memoryLimitBytes: 256 * 1024 * 1024, cpuBudgetMs: 1000, cacheDir: '~/.cache/meshext/wasm', insecureRegistries: [] as string[], allowLoopbackFetch: false },
} as const;

export interface BootstrapOptions {
  /** Check that TLS files exist (default: true for files and text, false for objects). */
  checkFiles?: boolean;
  /** Receives non-fatal findings. */
  onWarning?: (issue: ConfigIssue) => void;
}

// verbose: error objects carry parentSchema, used to list the known fields of a mapping.
const ajv = new Ajv({ allErrors: true, strict: false, verbose: true });
const validateSchema = ajv.compile(bootstrapJsonSchema);

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const int = (v: unknown): number | undefined => (typeof v === 'number' && Number.isInteger(v) ? v : undefined);
const bool = (v: unknown): boolean | undefined => (typeof v === 'boolean' ? v : undefined);

/** Reads and validates a bootstrap file; relative paths inside it resolve against its directory. */
export function loadBootstrapFile(path: string, opts: BootstrapOptions = {}): BootstrapConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError([{
      file: path, line: 0, path: '', level: 'error',
      message: code === 'ENOENT' ? 'bootstrap file not found; pass an existing file with -c/--config' : `cannot read bootstrap file: ${(err as Error).message}`,
    }]);
  }
  return parseBootstrap(text, path, opts);
}

/** Parses bootstrap YAML (or JSON) text. `file` names it in messages and anchors relative paths. */
export function parseBootstrap(text: string, file: string, opts: BootstrapOptions = {}): BootstrapConfig {
  const doc = parseYamlDocument(text);
  if (doc.errors.length) {
    throw new ConfigError(doc.errors.map((e) => ({ file, line: e.line, path: '', message: `YAML: ${e.message}`, level: 'error' as const })));
  }
  return build(doc.value ?? {}, file, doc.locator, { checkFiles: true, ...opts });
}

/** Validates a bootstrap given as a plain object (tests, the demo). Lines are reported as 0. */
export function parseBootstrapObject(obj: unknown, file = '<embedded>', opts: BootstrapOptions = {}): BootstrapConfig {
  return build(obj, file, new NullLocator(), { checkFiles: false, ...opts });
}

/**
 * A complete bootstrap with defaults and nothing to serve, optionally overlaid with friendly-format
 * fields, e.g. `defaultBootstrap({ listeners: [{ name: 'http', port: 0 }], ... })`.
 */
export function defaultBootstrap(overrides: Obj = {}): BootstrapConfig {
  return parseBootstrapObject(overrides, '<default>');
}

/** Expands `~/` to the home directory. */
export function expandHome(p: string): string {
  return p === '~' ? homedir() : p.startsWith('~/') ? resolve(homedir(), p.slice(2)) : p;
}

class Issues {
  readonly list: ConfigIssue[] = [];
  readonly warnings: ConfigIssue[] = [];
  readonly file: string;
  readonly loc: YamlLocator;
  constructor(file: string, loc: YamlLocator) {
    this.file = file;
    this.loc = loc;
  }
  error(segs: PathSeg[], message: string): void {
    this.list.push({ file: this.file, line: this.loc.lineOf(segs), path: formatPath(segs), message, level: 'error' });
  }
  warn(segs: PathSeg[], message: string): void {
    this.warnings.push({ file: this.file, line: this.loc.lineOf(segs), path: formatPath(segs), message, level: 'warning' });
  }
}

const endpointStringRe = /^endpoints\[\d+\]$/;

function build(raw: unknown, file: string, loc: YamlLocator, opts: BootstrapOptions): BootstrapConfig {
  const issues = new Issues(file, loc);
  const baseDir = file.startsWith('<') ? process.cwd() : dirname(resolve(file));
  const root: Obj = isObj(raw) ? dropNulls(raw, true) : {};
  if (!isObj(raw) && raw !== undefined && raw !== null) issues.error([], 'the bootstrap must be a YAML mapping (key: value pairs)');
  // Friendly shorthand: `extensions: ./dir` means `extensions: [./dir]`.
  if (typeof root.extensions === 'string') root.extensions = [root.extensions];

  if (!validateSchema(root)) {
    for (const p of schemaProblems(validateSchema.errors, root, 'friendly')) {
      const tail = formatPath(p.segs.slice(-2));
      const message = p.segs[0] === 'clusters' && endpointStringRe.test(tail) && p.message.includes('does not match')
        ? 'must be "host:port" (e.g. "127.0.0.1:8080" or "[::1]:8080") or {address, port}'
        : p.message;
      issues.error(p.segs, message);
    }
  }

  const identity = buildIdentity(root.node, issues);
  const admin = endpoint(root.admin, BOOTSTRAP_DEFAULTS.admin)!;
  const prometheus = root.prometheus === null ? null : endpoint(root.prometheus, BOOTSTRAP_DEFAULTS.prometheus);
  const readiness = root.readiness === null ? null : endpoint(root.readiness, BOOTSTRAP_DEFAULTS.readiness);
  const clusters = buildClusters(root.clusters, issues, baseDir, opts);
  const routeTables = buildRouteTables(root.routeConfigs, issues);
  const listeners = buildListeners(root.listeners, issues, baseDir, opts);
  const explicit = new Set(['admin', 'prometheus', 'readiness'].filter((k) => isObj(root[k])));
  crossCheck(listeners, routeTables, clusters, issues, { admin, prometheus, readiness, explicit });

  const lua = isObj(root.lua) ? root.lua : {};
  const wasm = isObj(root.wasm) ? root.wasm : {};
  const accessLog = root.accessLog === undefined || root.accessLog === null ? null : str(root.accessLog) ?? null;
  const cfg: BootstrapConfig = {
    source: file,
    identity,
    admin: admin ?? { ...BOOTSTRAP_DEFAULTS.admin },
    prometheus: prometheus ?? null,
    readiness: readiness ?? null,
    listeners,
    routeTables,
    clusters,
    extensions: arr(root.extensions).filter((p): p is string => typeof p === 'string').map((p) => resolve(baseDir, expandHome(p))),
    accessLog: accessLog === null || accessLog === 'stdout' ? accessLog : resolve(baseDir, expandHome(accessLog)),
    drainTimeoutMs: int(root.drainTimeoutMs) ?? BOOTSTRAP_DEFAULTS.drainTimeoutMs,
    lua: {
      engine: (str(lua.engine) as BootstrapConfig['lua']['engine'] | undefined) ?? BOOTSTRAP_DEFAULTS.lua.engine,
      memoryLimitBytes: int(lua.memoryLimitBytes) ?? BOOTSTRAP_DEFAULTS.lua.memoryLimitBytes,
      instructionBudget: int(lua.instructionBudget) ?? BOOTSTRAP_DEFAULTS.lua.instructionBudget,
      failClosed: bool(lua.failClosed) ?? BOOTSTRAP_DEFAULTS.lua.failClosed,
      allowUnsafeLibs: bool(lua.allowUnsafeLibs) ?? BOOTSTRAP_DEFAULTS.lua.allowUnsafeLibs,
    },
    wasm: {
      memoryLimitBytes: int(wasm.memoryLimitBytes) ?? BOOTSTRAP_DEFAULTS.wasm.memoryLimitBytes,
      cpuBudgetMs: int(wasm.cpuBudgetMs) ?? BOOTSTRAP_DEFAULTS.wasm.cpuBudgetMs,
      cacheDir: resolve(baseDir, expandHome(str(wasm.cacheDir) ?? BOOTSTRAP_DEFAULTS.wasm.cacheDir)),
      insecureRegistries: arr(wasm.insecureRegistries).filter((x): x is string => typeof x === 'string'),
      allowLoopbackFetch: bool(wasm.allowLoopbackFetch) ?? BOOTSTRAP_DEFAULTS.wasm.allowLoopbackFetch,
    },
  };
  for (const w of issues.warnings) opts.onWarning?.(w);
  if (issues.list.length) {
    issues.list.sort((a, b) => a.line - b.line);
    throw new ConfigError(issues.list);
  }
  return cfg;
}

/**
 * A key written with no value (`node:`) reads as null in YAML; treat it as absent. At the top level
 * `prometheus: null`, `readiness: null` and `accessLog: null` keep their meaning (disabled).
 */
function dropNulls(o: Obj, top: boolean): Obj {
  const out: Obj = {};
  for (const [k, v] of Object.entries(o)) {
    if (v === null && !(top && (k === 'prometheus' || k === 'readiness' || k === 'accessLog'))) continue;
    out[k] = isObj(v) ? dropNulls(v, false) : Array.isArray(v) ? v.map((x) => (isObj(x) ? dropNulls(x, false) : x)) : v;
  }
  return out;
}

function endpoint(v: unknown, def: AdminConfig): AdminConfig | null {
  if (!isObj(v)) return { ...def };
  return { address: str(v.address) ?? def.address, port: int(v.port) ?? def.port };
}

function buildIdentity(v: unknown, issues: Issues): ProxyIdentity {
  const n = isObj(v) ? v : {};
  const labels: Record<string, string> = {};
  if (isObj(n.labels)) for (const [k, x] of Object.entries(n.labels)) if (typeof x === 'string') labels[k] = x;
  const waypoint = bool(n.waypoint) ?? false;
  const id: ProxyIdentity = {
    namespace: str(n.namespace) ?? BOOTSTRAP_DEFAULTS.namespace,
    labels,
    rootNamespace: str(n.rootNamespace) ?? BOOTSTRAP_DEFAULTS.rootNamespace,
    workloadName: str(n.workloadName) ?? BOOTSTRAP_DEFAULTS.workloadName,
    clusterId: str(n.clusterId) ?? BOOTSTRAP_DEFAULTS.clusterId,
  };
  // Gateway API gateways and waypoints carry the gateway-name label; accept either spelling.
  const gw = str(n.gatewayName) ?? labels['gateway.networking.k8s.io/gateway-name'] ?? (waypoint ? 'waypoint' : undefined);
  if (gw !== undefined) id.gatewayName = gw;
  if (waypoint) id.waypoint = true;
  const lbl = labels['gateway.networking.k8s.io/gateway-name'];
  if (lbl !== undefined && str(n.gatewayName) !== undefined && lbl !== n.gatewayName) {
    issues.error(['node', 'gatewayName'], `differs from the label gateway.networking.k8s.io/gateway-name (${JSON.stringify(lbl)}); set one of them`);
  }
  return id;
}

function fileRef(p: string, segs: PathSeg[], issues: Issues, baseDir: string, opts: BootstrapOptions): string {
  const abs = isAbsolute(p) ? p : resolve(baseDir, expandHome(p));
  if (opts.checkFiles && !existsSync(abs)) issues.error(segs, `file ${JSON.stringify(abs)} does not exist`);
  return abs;
}

function buildListeners(v: unknown, issues: Issues, baseDir: string, opts: BootstrapOptions): ListenerConfig[] {
  const out: ListenerConfig[] = [];
  arr(v).forEach((x, i) => {
    if (!isObj(x)) return;
    const name = str(x.name) ?? `listener_${i}`;
    const l: ListenerConfig = {
      name,
      address: str(x.address) ?? BOOTSTRAP_DEFAULTS.listenerAddress,
      port: int(x.port) ?? 0,
      protocol: x.protocol === 'TCP' ? 'TCP' : 'HTTP',
      direction: (str(x.direction) as ListenerConfig['direction'] | undefined) ?? 'gateway',
      bufferLimitBytes: int(x.bufferLimitBytes) ?? BOOTSTRAP_DEFAULTS.bufferLimitBytes,
      statPrefix: str(x.statPrefix) ?? name,
    };
    if (isObj(x.tls)) {
      const t = x.tls;
      const tls: TlsConfig = {
        certFile: fileRef(str(t.certFile) ?? '', ['listeners', i, 'tls', 'certFile'], issues, baseDir, opts),
        keyFile: fileRef(str(t.keyFile) ?? '', ['listeners', i, 'tls', 'keyFile'], issues, baseDir, opts),
        alpn: Array.isArray(t.alpn) ? t.alpn.filter((a): a is string => typeof a === 'string') : [...BOOTSTRAP_DEFAULTS.alpn],
      };
      if (str(t.caFile)) tls.caFile = fileRef(str(t.caFile)!, ['listeners', i, 'tls', 'caFile'], issues, baseDir, opts);
      l.tls = tls;
    }
    if (str(x.routeConfig)) l.routeConfig = str(x.routeConfig)!;
    if (str(x.cluster)) l.cluster = str(x.cluster)!;
    out.push(l);
  });
  return out;
}

function buildRouteTables(v: unknown, issues: Issues): RouteTableConfig[] {
  const out: RouteTableConfig[] = [];
  arr(v).forEach((rc, i) => {
    if (!isObj(rc)) return;
    const vhosts: VirtualHostConfig[] = [];
    arr(rc.virtualHosts).forEach((vh, j) => {
      if (!isObj(vh)) return;
      const routes: RouteConfig[] = [];
      arr(vh.routes).forEach((r, k) => {
        if (!isObj(r)) return;
        const built = buildRoute(r, ['routeConfigs', i, 'virtualHosts', j, 'routes', k], issues);
        if (built) routes.push(built);
      });
      vhosts.push({ name: str(vh.name) ?? `vhost_${j}`, domains: arr(vh.domains).filter((d): d is string => typeof d === 'string'), routes });
    });
    out.push({ name: str(rc.name) ?? `routes_${i}`, virtualHosts: vhosts });
  });
  return out;
}

function checkRegex(re: string, segs: PathSeg[], issues: Issues): void {
  try {
    new RegExp(re);
  } catch (err) {
    issues.error(segs, (err as Error).message.replace(/^Invalid regular expression: /, 'invalid regular expression: '));
  }
}

function buildRoute(r: Obj, base: PathSeg[], issues: Issues): RouteConfig | null {
  const m = isObj(r.match) ? r.match : { prefix: '/' };
  const specifiers = ['prefix', 'path', 'regex'].filter((k) => m[k] !== undefined);
  if (specifiers.length !== 1) {
    issues.error([...base, 'match'], specifiers.length === 0
      ? 'needs exactly one of prefix, path or regex (use prefix: / to match everything)'
      : `has ${specifiers.join(' and ')}; set exactly one of prefix, path or regex`);
  }
  if (typeof m.regex === 'string') checkRegex(m.regex, [...base, 'match', 'regex'], issues);
  const match: RouteConfig['match'] = {};
  if (str(m.prefix) !== undefined) match.prefix = str(m.prefix)!;
  if (str(m.path) !== undefined) match.path = str(m.path)!;
  if (str(m.regex) !== undefined) match.regex = str(m.regex)!;
  if (Array.isArray(m.methods)) match.methods = m.methods.filter((x): x is string => typeof x === 'string').map((x) => x.toUpperCase());
  if (Array.isArray(m.headers)) {
    match.headers = [];
    m.headers.forEach((h, i) => {
      if (!isObj(h)) return;
      const kinds = ['exact', 'prefix', 'regex', 'present'].filter((k) => h[k] !== undefined);
      if (kinds.length > 1) issues.error([...base, 'match', 'headers', i], `has ${kinds.join(' and ')}; set at most one of exact, prefix, regex, present`);
      if (typeof h.regex === 'string') checkRegex(h.regex, [...base, 'match', 'headers', i, 'regex'], issues);
      const hm: HeaderMatcher = { name: String(h.name ?? '').toLowerCase() };
      for (const k of ['exact', 'prefix', 'regex'] as const) if (typeof h[k] === 'string') hm[k] = h[k] as string;
      // No specifier means "header present", as in Envoy.
      hm.present = kinds.length === 0 ? true : bool(h.present) ?? undefined;
      if (hm.present === undefined) delete hm.present;
      if (bool(h.invert) !== undefined) hm.invert = bool(h.invert)!;
      match.headers!.push(hm);
    });
  }
  const actions = ['route', 'directResponse', 'redirect'].filter((k) => r[k] !== undefined);
  if (actions.length !== 1) {
    issues.error(base, actions.length === 0
      ? 'needs exactly one of route, directResponse or redirect'
      : `has ${actions.join(' and ')}; set exactly one of route, directResponse or redirect`);
  }
  const out: RouteConfig = { name: str(r.name) ?? formatPath(base), match };
  if (isObj(r.route)) {
    const a = r.route;
    out.route = { cluster: str(a.cluster) ?? '' };
    if (int(a.timeoutMs) !== undefined) out.route.timeoutMs = int(a.timeoutMs)!;
    if (str(a.prefixRewrite) !== undefined) out.route.prefixRewrite = str(a.prefixRewrite)!;
    if (str(a.hostRewrite) !== undefined) out.route.hostRewrite = str(a.hostRewrite)!;
  }
  if (isObj(r.directResponse)) {
    const d = r.directResponse;
    out.directResponse = { status: int(d.status) ?? 200 };
    if (str(d.body) !== undefined) out.directResponse.body = str(d.body)!;
    if (isObj(d.headers)) out.directResponse.headers = Object.fromEntries(Object.entries(d.headers).filter(([, x]) => typeof x === 'string')) as Record<string, string>;
  }
  if (isObj(r.redirect)) {
    const d = r.redirect;
    if (d.path !== undefined && d.prefixRewrite !== undefined) issues.error([...base, 'redirect'], 'has path and prefixRewrite; set at most one');
    out.redirect = { status: int(d.status) ?? 301 };
    for (const k of ['scheme', 'host', 'path', 'prefixRewrite'] as const) if (typeof d[k] === 'string') out.redirect[k] = d[k] as string;
    if (int(d.port) !== undefined) out.redirect.port = int(d.port)!;
    if (bool(d.stripQuery) !== undefined) out.redirect.stripQuery = bool(d.stripQuery)!;
  }
  if (isObj(r.metadata)) out.metadata = r.metadata as Record<string, Record<string, unknown>>;
  return out;
}

function parseEndpoint(e: unknown): EndpointConfig | null {
  if (isObj(e)) return typeof e.address === 'string' && typeof e.port === 'number' ? { address: e.address, port: e.port } : null;
  if (typeof e !== 'string') return null;
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):([0-9]+)$/.exec(e);
  if (!m) return null;
  return { address: m[1] ?? m[2]!, port: Number(m[3]) };
}

function buildClusters(v: unknown, issues: Issues, baseDir: string, opts: BootstrapOptions): ClusterConfig[] {
  const out: ClusterConfig[] = [];
  arr(v).forEach((c, i) => {
    if (!isObj(c)) return;
    const endpoints: EndpointConfig[] = [];
    arr(c.endpoints).forEach((e, j) => {
      const ep = parseEndpoint(e);
      if (!ep) return; // the schema already reported it
      if (typeof e === 'string' && ep.port < 1 || ep.port > 65535) issues.error(['clusters', i, 'endpoints', j], `port ${ep.port} is out of range 1..65535`);
      endpoints.push(ep);
    });
    const cl: ClusterConfig = {
      name: str(c.name) ?? `cluster_${i}`,
      endpoints,
      lbPolicy: 'ROUND_ROBIN',
      connectTimeoutMs: int(c.connectTimeoutMs) ?? BOOTSTRAP_DEFAULTS.connectTimeoutMs,
      requestTimeoutMs: int(c.requestTimeoutMs) ?? BOOTSTRAP_DEFAULTS.requestTimeoutMs,
      maxConnections: int(c.maxConnections) ?? BOOTSTRAP_DEFAULTS.maxConnections,
      protocol: c.protocol === 'HTTP2' ? 'HTTP2' : 'HTTP1',
    };
    if (isObj(c.tls)) {
      const t = c.tls;
      cl.tls = {};
      if (str(t.sni)) cl.tls.sni = str(t.sni)!;
      if (str(t.caFile)) cl.tls.caFile = fileRef(str(t.caFile)!, ['clusters', i, 'tls', 'caFile'], issues, baseDir, opts);
      if (bool(t.insecureSkipVerify) !== undefined) cl.tls.insecureSkipVerify = bool(t.insecureSkipVerify)!;
    }
    out.push(cl);
  });
  return out;
}

function duplicates(names: string[], what: string, segOf: (i: number) => PathSeg[], issues: Issues): void {
  const first = new Map<string, number>();
  names.forEach((n, i) => {
    const f = first.get(n);
    if (f === undefined) first.set(n, i);
    else issues.error(segOf(i), `duplicate ${what} name ${JSON.stringify(n)} (first defined at ${formatPath(segOf(f).slice(0, -1))}); names must be unique`);
  });
}

const anyAddress = (a: string): boolean => a === '0.0.0.0' || a === '::' || a === '[::]';

function validDomain(d: string): boolean {
  if (d === '*') return true;
  const stars = d.split('*').length - 1;
  if (stars === 0) return true;
  return stars === 1 && (d.startsWith('*') || d.endsWith('*'));
}

function crossCheck(
  listeners: ListenerConfig[],
  tables: RouteTableConfig[],
  clusters: ClusterConfig[],
  issues: Issues,
  fixed: { admin: AdminConfig | null; prometheus: AdminConfig | null; readiness: AdminConfig | null; explicit: Set<string> },
): void {
  duplicates(listeners.map((l) => l.name), 'listener', (i) => ['listeners', i, 'name'], issues);
  duplicates(tables.map((t) => t.name), 'route config', (i) => ['routeConfigs', i, 'name'], issues);
  duplicates(clusters.map((c) => c.name), 'cluster', (i) => ['clusters', i, 'name'], issues);

  const clusterNames = new Set(clusters.map((c) => c.name));
  const clusterList = clusters.length ? clusters.map((c) => c.name).join(', ') : '(none defined)';
  const tableNames = new Set(tables.map((t) => t.name));

  tables.forEach((t, i) => {
    const seen = new Map<string, string>();
    t.virtualHosts.forEach((vh, j) => {
      vh.domains.forEach((d, k) => {
        const segs: PathSeg[] = ['routeConfigs', i, 'virtualHosts', j, 'domains', k];
        if (!validDomain(d)) issues.error(segs, `invalid domain ${JSON.stringify(d)}: a wildcard is allowed only as the first or last character ("*.example.com", "example.*", "*")`);
        const key = d.toLowerCase();
        const prev = seen.get(key);
        if (prev !== undefined) issues.error(segs, `domain ${JSON.stringify(d)} is already used by virtual host ${JSON.stringify(prev)}; each domain may appear once per route config`);
        else seen.set(key, vh.name);
      });
      vh.routes.forEach((r, k) => {
        if (r.route && r.route.cluster && !clusterNames.has(r.route.cluster)) {
          const segs: PathSeg[] = ['routeConfigs', i, 'virtualHosts', j, 'routes', k];
          issues.error([...segs, 'route', 'cluster'], `cluster ${JSON.stringify(r.route.cluster)} referenced by ${formatPath(segs)} is not defined; add it under clusters: (defined: ${clusterList})`);
        }
      });
    });
  });

  listeners.forEach((l, i) => {
    if (l.protocol === 'TCP') {
      if (l.routeConfig) issues.error(['listeners', i, 'routeConfig'], 'routeConfig is only for HTTP listeners; a TCP listener forwards to its cluster:');
      if (!l.cluster) issues.error(['listeners', i], `TCP listener ${JSON.stringify(l.name)} needs cluster: (the upstream it forwards to; defined: ${clusterList})`);
      else if (!clusterNames.has(l.cluster)) issues.error(['listeners', i, 'cluster'], `cluster ${JSON.stringify(l.cluster)} referenced by listeners[${i}] is not defined; add it under clusters: (defined: ${clusterList})`);
      return;
    }
    if (l.cluster) issues.error(['listeners', i, 'cluster'], 'cluster is only for TCP listeners (protocol: TCP); HTTP listeners route through routeConfig:');
    if (l.routeConfig) {
      if (!tableNames.has(l.routeConfig)) {
        issues.error(['listeners', i, 'routeConfig'], `route config ${JSON.stringify(l.routeConfig)} referenced by listeners[${i}] is not defined; add it under routeConfigs: (defined: ${tables.map((t) => t.name).join(', ') || '(none)'})`);
      }
    } else if (tables.length === 1) {
      l.routeConfig = tables[0]!.name;
    } else if (tableNames.has('default')) {
      l.routeConfig = 'default';
    } else {
      issues.error(['listeners', i], tables.length === 0
        ? `HTTP listener ${JSON.stringify(l.name)} has no routes; add a route table under routeConfigs: (or set protocol: TCP)`
        : `HTTP listener ${JSON.stringify(l.name)} must name its route table with routeConfig: (one of ${tables.map((t) => t.name).join(', ')})`);
    }
  });

  // Ports in use: two sockets on the same port conflict when their addresses are equal or one is a
  // wildcard. Port 0 asks the OS for a free port and never conflicts.
  // Defaults are claimed first so that a clash is reported on the entry the user wrote.
  const used: { what: string; address: string; port: number; byDefault: boolean }[] = [];
  const claim = (what: string, segs: PathSeg[], e: { address: string; port: number } | null, byDefault = false): void => {
    if (!e || e.port === 0) return;
    const clash = used.find((u) => u.port === e.port && (u.address === e.address || anyAddress(u.address) || anyAddress(e.address)));
    if (clash) {
      const hint = !clash.byDefault ? '' : clash.what === 'admin' ? ', its default; set admin.port to move it' : `, its default; set ${clash.what}: to another port or null`;
      issues.error([...segs, 'port'], `port ${e.port} on ${e.address} is already used by ${clash.what} (${clash.address}:${clash.port}${hint}); pick another port`);
    } else {
      used.push({ what, address: e.address, port: e.port, byDefault });
    }
  };
  const fixedOnes = [['admin', fixed.admin], ['prometheus', fixed.prometheus], ['readiness', fixed.readiness]] as const;
  for (const [what, e] of fixedOnes) if (!fixed.explicit.has(what)) claim(what, [what], e, true);
  for (const [what, e] of fixedOnes) if (fixed.explicit.has(what)) claim(what, [what], e);
  listeners.forEach((l, i) => claim(`listener ${JSON.stringify(l.name)}`, ['listeners', i], l));
}
