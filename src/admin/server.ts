/**
 * The admin server (Envoy's admin API on Istio's 15000), plus the two small listeners Istio
 * exposes next to it: Prometheus scraping (15090, `/stats/prometheus`) and the readiness probe
 * (15021, `/healthz/ready`).
 *
 * The server knows nothing about the data plane: it asks an AdminSource, which the proxy
 * implements (merging worker stats, building the config dump). Endpoint names, query parameters
 * and status codes follow Envoy's so `istioctl proxy-config`, probes and scrapers work unchanged.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { COMPONENTS, getLevels, isLevel, logger, setLevel, type Component, type Level } from '../observability/log.ts';
import type { StatsSnapshot } from '../observability/stats.ts';
import { ConfigDumpError, queryConfigDump } from './config-dump.ts';
import { PROMETHEUS_CONTENT_TYPE, renderJson, renderPrometheusBuffer, renderText, type HistogramBucketsMode, type StatsQuery } from './stats-render.ts';

/** What the admin server reads from the proxy. */
export interface AdminSource {
  /** Stats of every worker, merged (mergeSnapshots). */
  stats(): Promise<StatsSnapshot>;
  /** Envoy-shaped `{configs: [...]}` or any JSON object (treated as one section). */
  configDump(): Promise<unknown>;
  /** True when the proxy is LIVE (config loaded, listeners bound, not draining). */
  isReady(): boolean;
  /**
   * Facts for `/server_info`. Known keys (all optional): `version`, `state` (Envoy's
   * PRE_INITIALIZING | INITIALIZING | LIVE | DRAINING), `command_line_options` (object),
   * `node` (identity), `concurrency`, `hot_restart_version`. Other keys are passed through.
   */
  serverInfo(): Record<string, unknown>;
  /** `/clusters`: Envoy's `{cluster_statuses: [...]}` or a ready-made text. */
  clusters?(): Promise<unknown>;
  /** `/listeners`: Envoy's `{listener_statuses: [...]}` or a ready-made text. */
  listeners?(): Promise<unknown>;
  /** POST `/drain_listeners[?inboundonly][&graceful]` (Istio's pilot-agent calls it on shutdown). */
  drainListeners?(opts: { inboundOnly: boolean; graceful: boolean }): Promise<void>;
  /** POST `/quitquitquit`: drain and exit. Called after the response is sent. */
  quit?(): Promise<void> | void;
  /** POST `/reset_counters`: zero every counter in every worker (StatsStore.resetCounters). */
  resetCounters?(): Promise<void>;
}

export interface AdminServerOptions {
  address: string;
  /** 0 picks a free port (tests). */
  port: number;
  source: AdminSource;
}

export interface RunningServer {
  readonly port: number;
  readonly address: string;
  close(): Promise<void>;
}

class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

type Handler = (req: IncomingMessage, url: URL, res: ServerResponse, source: AdminSource) => Promise<void> | void;

interface Endpoint {
  help: string;
  /** Envoy refuses GET for endpoints that change server state. */
  mutates: boolean;
  handler: Handler;
}

const log = logger('admin');
const processStart = Date.now();

function send(res: ServerResponse, status: number, body: string | Buffer, contentType = 'text/plain; charset=UTF-8'): void {
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': typeof body === 'string' ? Buffer.byteLength(body) : body.length,
    // As Envoy: admin output is never cached and never sniffed into HTML.
    'cache-control': 'no-cache, max-age=0',
    'x-content-type-options': 'nosniff',
  });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, JSON.stringify(value, null, 2) + '\n', 'application/json');
}

function regexParam(url: URL, name: string): RegExp | undefined {
  const src = url.searchParams.get(name);
  if (src === null || src === '') return undefined;
  try {
    return new RegExp(src);
  } catch (err) {
    throw new HttpError(400, `Invalid regex for ${name}: ${(err as Error).message}`);
  }
}

function statsQuery(url: URL): StatsQuery {
  const type = url.searchParams.get('type') ?? undefined;
  if (type !== undefined && !['All', 'Counters', 'Gauges', 'Histograms', 'TextReadouts'].includes(type)) {
    throw new HttpError(400, `invalid type '${type}': expected All, Counters, Gauges, Histograms or TextReadouts`);
  }
  return { filter: regexParam(url, 'filter'), usedOnly: url.searchParams.has('usedonly'), type: type as StatsQuery['type'] };
}

// ------------------------------------------------------------------ handlers

async function handleStats(_req: IncomingMessage, url: URL, res: ServerResponse, source: AdminSource): Promise<void> {
  const q = statsQuery(url);
  const format = url.searchParams.get('format') ?? 'text';
  const hb = (url.searchParams.get('histogram_buckets') ?? 'none') as HistogramBucketsMode;
  if (!['none', 'cumulative', 'disjoint'].includes(hb)) throw new HttpError(400, `invalid histogram_buckets '${hb}': expected none, cumulative or disjoint`);
  const snap = withServerStats(await source.stats(), source);
  switch (format) {
    case 'text':
      return send(res, 200, renderText(snap, q, hb));
    case 'json':
      return sendJson(res, 200, renderJson(snap, q, hb));
    case 'prometheus':
      return send(res, 200, renderPrometheusBuffer(snap, q), PROMETHEUS_CONTENT_TYPE);
    default:
      throw new HttpError(400, `invalid format '${format}': expected text, json or prometheus`);
  }
}

async function handlePrometheus(_req: IncomingMessage, url: URL, res: ServerResponse, source: AdminSource): Promise<void> {
  const q = statsQuery(url);
  send(res, 200, renderPrometheusBuffer(withServerStats(await source.stats(), source), q), PROMETHEUS_CONTENT_TYPE);
}

// Envoy's server.state gauge values.
const STATE_VALUE: Record<string, number> = { LIVE: 0, DRAINING: 1, PRE_INITIALIZING: 2, INITIALIZING: 3 };

/**
 * Adds Envoy's process-level gauges that tools read from `/stats` (Istio's pilot-agent probes
 * `server.state` and `listener_manager.workers_started`; dashboards use `envoy_server_live` and
 * `envoy_server_uptime`). Stats the proxy already reports under these names win.
 */
/** The proxy's own uptime (`uptime_current_epoch: "42s"`) when it reports one, else this module's. */
function uptimeSeconds(info: Record<string, unknown>): number {
  const m = typeof info.uptime_current_epoch === 'string' ? /^(\d+)s$/.exec(info.uptime_current_epoch) : null;
  return m ? Number(m[1]) : Math.floor((Date.now() - processStart) / 1000);
}

function withServerStats(snap: StatsSnapshot, source: AdminSource): StatsSnapshot {
  const state = serverState(source);
  const live = source.isReady();
  const info = source.serverInfo();
  const mem = process.memoryUsage();
  const gauges: [string, number][] = [
    ['server.state', STATE_VALUE[state] ?? 3],
    ['server.live', live ? 1 : 0],
    ['server.uptime', uptimeSeconds(info)],
    ['server.memory_allocated', mem.heapUsed + mem.external],
    ['server.memory_heap_size', mem.heapTotal],
    ['server.memory_physical_size', mem.rss],
    ['listener_manager.workers_started', live ? 1 : 0],
  ];
  if (typeof info.concurrency === 'number') gauges.push(['server.concurrency', info.concurrency]);
  const have = new Set<string>();
  for (const e of snap) if (e.name.startsWith('server.') || e.name.startsWith('listener_manager.')) have.add(e.name);
  const extra = gauges.filter(([n]) => !have.has(n)).map(([name, value]) => ({ kind: 'gauge' as const, name, tags: {}, value }));
  return extra.length ? [...snap, ...extra] : snap;
}

function serverState(source: AdminSource): string {
  const s = source.serverInfo().state;
  if (typeof s === 'string' && s) return s;
  return source.isReady() ? 'LIVE' : 'INITIALIZING';
}

function handleReady(_req: IncomingMessage, _url: URL, res: ServerResponse, source: AdminSource): void {
  if (source.isReady()) return send(res, 200, 'LIVE\n');
  const state = serverState(source);
  send(res, 503, `${state === 'LIVE' ? 'INITIALIZING' : state}\n`);
}

async function handleConfigDump(_req: IncomingMessage, url: URL, res: ServerResponse, source: AdminSource): Promise<void> {
  const q = {
    resource: url.searchParams.get('resource') || undefined,
    mask: url.searchParams.get('mask') || undefined,
    nameRegex: regexParam(url, 'name_regex'),
  };
  const dump = await source.configDump();
  try {
    sendJson(res, 200, queryConfigDump(dump, q));
  } catch (err) {
    if (err instanceof ConfigDumpError) throw new HttpError(err.status, err.message);
    throw err;
  }
}

// Envoy names the warn level `warning`; accept both and print Envoy's.
function parseLevel(v: string): Level | undefined {
  if (v === 'warning') return 'warn';
  return isLevel(v) ? v : undefined;
}
const envoyLevelName = (l: Level): string => (l === 'warn' ? 'warning' : l);

const LOGGING_USAGE =
  'usage: /logging?<name>=<level> (change a single logger)\n' +
  '       /logging?level=<level> (change all loggers)\n' +
  '       /logging?paths=<name>:<level>,<name>:<level> (change several)\n' +
  `levels: trace debug info warning error critical off\n` +
  `loggers: ${COMPONENTS.join(' ')}\n`;

function handleLogging(req: IncomingMessage, url: URL, res: ServerResponse): void {
  const params = [...url.searchParams.entries()].filter(([k]) => k !== 'format');
  if (params.length > 0) {
    if (req.method !== 'POST') throw new HttpError(405, 'This endpoint changes server state: use POST.\n' + LOGGING_USAGE);
    // Validate everything first so a bad request changes nothing.
    const changes: [Component | 'all', Level][] = [];
    for (const [k, v] of params) {
      if (k === 'paths') {
        for (const item of v.split(',').filter(Boolean)) {
          const [name, lvl] = item.split(':');
          const level = parseLevel(lvl ?? '');
          if (!name || !(COMPONENTS as readonly string[]).includes(name) || !level) throw new HttpError(404, `invalid logger or level in paths: '${item}'\n` + LOGGING_USAGE);
          changes.push([name as Component, level]);
        }
        continue;
      }
      const level = parseLevel(v);
      if (!level) throw new HttpError(404, `invalid level '${v}'\n` + LOGGING_USAGE);
      if (k === 'level') changes.push(['all', level]);
      else if ((COMPONENTS as readonly string[]).includes(k)) changes.push([k as Component, level]);
      else throw new HttpError(404, `unknown logger '${k}'\n` + LOGGING_USAGE);
    }
    for (const [c, l] of changes) setLevel(c, l);
    log.info({ changes }, 'log levels changed');
  }
  const levels = getLevels();
  if (url.searchParams.get('format') === 'json') {
    const out: Record<string, string> = {};
    for (const [c, l] of Object.entries(levels)) out[c] = envoyLevelName(l);
    return sendJson(res, 200, { loggers: out });
  }
  let body = 'active loggers:\n';
  for (const c of Object.keys(levels).sort()) body += `  ${c}: ${envoyLevelName(levels[c]!)}\n`;
  send(res, 200, body);
}

function formatUptime(ms: number): string {
  return `${Math.floor(ms / 1000)}s`;
}

function handleServerInfo(_req: IncomingMessage, _url: URL, res: ServerResponse, source: AdminSource): void {
  const info = source.serverInfo();
  const uptime = formatUptime(Date.now() - processStart);
  const options = (typeof info.command_line_options === 'object' && info.command_line_options) || {};
  sendJson(res, 200, {
    version: info.version ?? 'unknown',
    state: serverState(source),
    hot_restart_version: info.hot_restart_version ?? 'disabled',
    uptime_current_epoch: info.uptime_current_epoch ?? uptime,
    uptime_all_epochs: info.uptime_all_epochs ?? uptime,
    node: info.node ?? {},
    ...info,
    // Envoy reports concurrency inside the command-line options; keep both places consistent.
    command_line_options: { ...options, ...(info.concurrency !== undefined ? { concurrency: info.concurrency } : {}) },
  });
}

interface SocketAddress {
  socket_address?: { address?: string; port_value?: number };
}
function addr(a: SocketAddress | undefined): string {
  const s = a?.socket_address;
  if (!s) return '';
  return s.address?.includes(':') ? `[${s.address}]:${s.port_value}` : `${s.address}:${s.port_value}`;
}

/** Envoy's text `/clusters`: `cluster::host:port::stat::value` lines. */
function clustersText(v: { cluster_statuses?: unknown }): string | undefined {
  if (!Array.isArray(v.cluster_statuses)) return undefined;
  let out = '';
  for (const c of v.cluster_statuses as { name?: string; host_statuses?: { address?: SocketAddress; stats?: { name: string; value: unknown }[]; health_status?: Record<string, unknown> }[] }[]) {
    const name = c.name ?? '';
    out += `${name}::observability_name::${name}\n`;
    for (const h of c.host_statuses ?? []) {
      const a = addr(h.address);
      for (const s of h.stats ?? []) out += `${name}::${a}::${s.name}::${s.value ?? 0}\n`;
      const hs = h.health_status ?? {};
      const failed = Object.entries(hs).filter(([k, val]) => k.startsWith('failed') && val === true).map(([k]) => k);
      const eds = typeof hs.eds_health_status === 'string' ? hs.eds_health_status : 'HEALTHY';
      out += `${name}::${a}::health_flags::${failed.length ? failed.join('|') : eds === 'HEALTHY' ? 'healthy' : eds.toLowerCase()}\n`;
    }
  }
  return out;
}

/** Envoy's text `/listeners`: `name::address:port` lines. */
function listenersText(v: { listener_statuses?: unknown }): string | undefined {
  if (!Array.isArray(v.listener_statuses)) return undefined;
  return (v.listener_statuses as { name?: string; local_address?: SocketAddress }[]).map((l) => `${l.name ?? ''}::${addr(l.local_address)}\n`).join('');
}

function listing(kind: 'clusters' | 'listeners', text: (v: never) => string | undefined): Handler {
  return async (_req, url, res, source) => {
    const fn = source[kind];
    const value: unknown = fn ? await fn.call(source) : kind === 'clusters' ? { cluster_statuses: [] } : { listener_statuses: [] };
    if (typeof value === 'string') return send(res, 200, value);
    if (url.searchParams.get('format') === 'json' || typeof value !== 'object' || value === null) return sendJson(res, 200, value);
    const t = text(value as never);
    if (t === undefined) return sendJson(res, 200, value);
    send(res, 200, t);
  };
}

/** Envoy's `/memory` for this (admin) thread; Envoy reports uint64s as JSON strings. */
function handleMemory(_req: IncomingMessage, _url: URL, res: ServerResponse): void {
  const m = process.memoryUsage();
  sendJson(res, 200, {
    allocated: String(m.heapUsed + m.external),
    heap_size: String(m.heapTotal),
    pageheap_unmapped: '0',
    pageheap_free: String(Math.max(0, m.heapTotal - m.heapUsed)),
    total_thread_cache: '0',
    total_physical_bytes: String(m.rss),
  });
}

function notSupported(what: string): never {
  throw new HttpError(501, `${what} is not supported by this proxy`);
}

async function handleDrainListeners(_req: IncomingMessage, url: URL, res: ServerResponse, source: AdminSource): Promise<void> {
  if (!source.drainListeners) notSupported('/drain_listeners');
  await source.drainListeners({ inboundOnly: url.searchParams.has('inboundonly'), graceful: url.searchParams.has('graceful') });
  send(res, 200, 'OK\n');
}

function handleQuit(_req: IncomingMessage, _url: URL, res: ServerResponse, source: AdminSource): void {
  if (!source.quit) notSupported('/quitquitquit');
  const quit = source.quit.bind(source);
  // Answer first: quitting closes this server.
  res.once('finish', () => {
    Promise.resolve()
      .then(quit)
      .catch((err: unknown) => log.error({ err }, 'quitquitquit failed'));
  });
  send(res, 200, 'OK\n');
}

async function handleResetCounters(_req: IncomingMessage, _url: URL, res: ServerResponse, source: AdminSource): Promise<void> {
  if (!source.resetCounters) notSupported('/reset_counters');
  await source.resetCounters();
  send(res, 200, 'OK\n');
}

function handleHelp(_req: IncomingMessage, _url: URL, res: ServerResponse): void {
  let body = 'admin commands are:\n';
  for (const [path, e] of Object.entries(ENDPOINTS).sort(([a], [b]) => (a < b ? -1 : 1))) {
    body += `  ${path}: ${e.help}\n`;
  }
  send(res, 200, body);
}

const ENDPOINTS: Record<string, Endpoint> = {
  '/': { help: 'this list of admin commands', mutates: false, handler: handleHelp },
  '/help': { help: 'print out list of admin commands', mutates: false, handler: handleHelp },
  '/ready': { help: 'print server state, return 200 if LIVE, otherwise return 503', mutates: false, handler: handleReady },
  '/stats': {
    help: 'print server stats; params: filter=<regex>, format=text|json|prometheus, usedonly, type=Counters|Gauges|Histograms, histogram_buckets=cumulative|disjoint',
    mutates: false,
    handler: handleStats,
  },
  '/stats/prometheus': { help: 'print server stats in prometheus format; params: filter=<regex>, usedonly', mutates: false, handler: handlePrometheus },
  '/config_dump': { help: 'dump current configs; params: resource=<field>, mask=<paths,...>, name_regex=<regex>', mutates: false, handler: handleConfigDump },
  '/logging': {
    help: 'query/change logging levels; POST ?level=<level> for all loggers, ?<logger>=<level> for one, ?paths=<logger>:<level>,...',
    mutates: false, // GET lists; the handler itself insists on POST when levels change.
    handler: handleLogging,
  },
  '/server_info': { help: 'print server version/status information', mutates: false, handler: handleServerInfo },
  '/clusters': { help: 'upstream cluster status; params: format=json', mutates: false, handler: listing('clusters', clustersText) },
  '/listeners': { help: 'print listener info; params: format=json', mutates: false, handler: listing('listeners', listenersText) },
  '/memory': { help: 'print current allocation/heap usage (admin thread)', mutates: false, handler: handleMemory },
  '/drain_listeners': { help: 'drain listeners (POST); params: inboundonly, graceful', mutates: true, handler: handleDrainListeners },
  '/quitquitquit': { help: 'drain and exit the server (POST)', mutates: true, handler: handleQuit },
  '/reset_counters': { help: 'reset all counters to zero (POST)', mutates: true, handler: handleResetCounters },
};

// ------------------------------------------------------------------ servers

function listen(server: Server, address: string, port: number, what: string): Promise<RunningServer> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, address, () => {
      server.off('error', reject);
      const bound = (server.address() as AddressInfo).port;
      log.info({ address, port: bound }, `${what} listening`);
      resolve({
        port: bound,
        address,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            // Keep-alive scrapers and probes would otherwise hold close() open.
            server.closeAllConnections();
          }),
      });
    });
  });
}

function dispatch(endpoints: Record<string, Endpoint>, source: AdminSource) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://admin');
    } catch {
      return send(res, 400, 'bad request target\n');
    }
    const ep = Object.hasOwn(endpoints, url.pathname) ? endpoints[url.pathname] : undefined;
    if (!ep) return send(res, 404, `invalid path: ${url.pathname}\n`);
    const method = req.method ?? 'GET';
    if (method !== 'GET' && method !== 'HEAD' && method !== 'POST') return send(res, 405, 'method not allowed\n');
    if (ep.mutates && method !== 'POST') return send(res, 405, 'This endpoint changes server state: use POST.\n');
    // Request bodies are never used; drain them so keep-alive connections stay usable.
    req.resume();
    Promise.resolve()
      .then(() => ep.handler(req, url, res, source))
      .catch((err: unknown) => {
        if (res.headersSent) {
          res.destroy();
          return;
        }
        if (err instanceof HttpError) return send(res, err.status, err.message.endsWith('\n') ? err.message : err.message + '\n');
        log.error({ err, path: url.pathname }, 'admin handler failed');
        send(res, 500, `internal error: ${(err as Error)?.message ?? String(err)}\n`);
      });
  };
}

/** Envoy's admin API. */
export function startAdminServer(opts: AdminServerOptions): Promise<RunningServer> {
  return listen(createServer(dispatch(ENDPOINTS, opts.source)), opts.address, opts.port, 'admin');
}

/** Istio's 15090: only `/stats/prometheus`, for scrapers that must not reach the admin API. */
export function startPrometheusServer(opts: AdminServerOptions): Promise<RunningServer> {
  const eps: Record<string, Endpoint> = { '/stats/prometheus': ENDPOINTS['/stats/prometheus']! };
  return listen(createServer(dispatch(eps, opts.source)), opts.address, opts.port, 'prometheus');
}

/** Istio's 15021: `/healthz/ready`, 200 when ready, 503 otherwise. */
export function startReadinessServer(opts: AdminServerOptions): Promise<RunningServer> {
  const eps: Record<string, Endpoint> = {
    '/healthz/ready': {
      help: 'readiness probe',
      mutates: false,
      handler: (_req, _url, res, source) => (source.isReady() ? send(res, 200, '') : send(res, 503, `${serverState(source)}\n`)),
    },
  };
  return listen(createServer(dispatch(eps, opts.source)), opts.address, opts.port, 'readiness');
}
