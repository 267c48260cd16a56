/**
 * The router: the last decoder filter (Envoy's envoy.filters.http.router). Picks the route's
 * cluster and endpoint, streams the request upstream with backpressure, and feeds the upstream
 * response into the encoder chain. Local replies and response flags follow Envoy's.
 */
import { DataBuffer } from '../filters/data-buffer.ts';
import type { HeaderMap } from '../filters/header-map.ts';
import { DataStatus, HeadersStatus, TrailersStatus, type HttpFilter, type HttpFilterCallbacks, type HttpFilterFactory } from '../filters/types.ts';
import type { RouteConfig, RouteMatch } from '../config/types.ts';
import type { Counter, StatsStore } from '../observability/stats.ts';
import type { FilterEntry, FilterManager, UpstreamControl } from './filter-manager.ts';
import { Deadlines, type DeadlineEntry, type DeadlineList } from './deadlines.ts';
import type { ResolvedRoute } from './routes.ts';
import type { Cluster, Clusters, UpstreamFailure, UpstreamRequest, UpstreamResponseHandler } from './upstream.ts';

/** The global is an accessor that V8 looks up on every use; a module constant is not. */
const performance = globalThis.performance;

interface ClusterStats {
  rqTotal: Counter;
  rqTimeout: Counter;
  cxConnectFail: Counter;
  rq2xx: Counter;
  rq3xx: Counter;
  rq4xx: Counter;
  rq5xx: Counter;
}

export class RouterFactory implements HttpFilterFactory {
  readonly name = 'envoy.filters.http.router';
  readonly clusters: Clusters;
  readonly #stats: StatsStore;
  readonly #clusterStats = new Map<string, ClusterStats>();
  /** Route timeouts of this worker's streams (one timer per duration, not per request). */
  readonly deadlines = new Deadlines();
  constructor(clusters: Clusters, stats: StatsStore) {
    this.clusters = clusters;
    this.#stats = stats;
  }
  clusterStats(name: string): ClusterStats {
    let s = this.#clusterStats.get(name);
    if (!s) {
      const p = `cluster.${name}.`;
      const st = this.#stats;
      s = {
        rqTotal: st.counter(p + 'upstream_rq_total'),
        rqTimeout: st.counter(p + 'upstream_rq_timeout'),
        cxConnectFail: st.counter(p + 'upstream_cx_connect_fail'),
        rq2xx: st.counter(p + 'upstream_rq_2xx'),
        rq3xx: st.counter(p + 'upstream_rq_3xx'),
        rq4xx: st.counter(p + 'upstream_rq_4xx'),
        rq5xx: st.counter(p + 'upstream_rq_5xx'),
      };
      this.#clusterStats.set(name, s);
    }
    return s;
  }
  create(callbacks: HttpFilterCallbacks): HttpFilter {
    return new Router(this, callbacks as unknown as FilterEntry);
  }
}

/** Envoy's local reply bodies for upstream failures (users grep for these). */
const FAILURE_REPLY: Record<UpstreamFailure, { status: number; flag: string; details: string; body: string }> = {
  connection_failure: { status: 503, flag: 'UF', details: 'upstream_reset_before_response_started{connection_failure}', body: 'upstream connect error or disconnect/reset before headers. reset reason: connection failure' },
  connection_termination: { status: 503, flag: 'UC', details: 'upstream_reset_before_response_started{connection_termination}', body: 'upstream connect error or disconnect/reset before headers. reset reason: connection termination' },
  remote_reset: { status: 503, flag: 'UR', details: 'upstream_reset_before_response_started{remote_reset}', body: 'upstream connect error or disconnect/reset before headers. reset reason: remote reset' },
  remote_refused_stream_reset: { status: 503, flag: 'UR', details: 'upstream_reset_before_response_started{remote_refused_stream_reset}', body: 'upstream connect error or disconnect/reset before headers. reset reason: remote refused stream reset' },
  protocol_error: { status: 502, flag: 'UPE', details: 'upstream_reset_before_response_started{protocol_error}', body: 'upstream connect error or disconnect/reset before headers. reset reason: protocol error' },
  timeout: { status: 504, flag: 'UT', details: 'upstream_response_timeout', body: 'upstream request timeout' },
  overflow: { status: 503, flag: 'UO', details: 'upstream_reset_before_response_started{overflow}', body: 'upstream connect error or disconnect/reset before headers. reset reason: overflow' },
};

class Router implements HttpFilter, UpstreamResponseHandler, UpstreamControl, DeadlineEntry {
  readonly #factory: RouterFactory;
  readonly #cb: FilterEntry;
  readonly #fm: FilterManager;
  #req: UpstreamRequest | undefined;
  #timeoutMs = 0;
  #timerStarted = false;
  dlPrev: DeadlineEntry | undefined = undefined;
  dlNext: DeadlineEntry | undefined = undefined;
  dlAt = 0;
  dlList: DeadlineList | undefined = undefined;
  #responseStarted = false;
  #done = false;
  #cluster: Cluster | undefined;
  #stats: ClusterStats | undefined;
  #upstreamStart = 0;

  constructor(factory: RouterFactory, cb: FilterEntry) {
    this.#factory = factory;
    this.#cb = cb;
    this.#fm = cb.fm;
  }

  decodeHeaders(headers: HeaderMap, endStream: boolean): HeadersStatus {
    const cb = this.#cb;
    const si = cb.streamInfo;
    const route = cb.route() as ResolvedRoute | undefined;
    if (!route) {
      si.responseFlags.add('NR');
      cb.sendLocalReply(404, '', { details: 'route_not_found' });
      return HeadersStatus.StopIteration;
    }
    const rc = route.config;
    if (rc.directResponse) {
      const dr = rc.directResponse;
      cb.sendLocalReply(dr.status, dr.body ?? '', { details: 'direct_response', headers: dr.headers ? Object.entries(dr.headers) : undefined });
      return HeadersStatus.StopIteration;
    }
    if (rc.redirect) {
      cb.sendLocalReply(rc.redirect.status, '', { details: 'direct_response', headers: [['location', redirectLocation(rc.redirect, rc.match, headers)]] });
      return HeadersStatus.StopIteration;
    }
    const action = rc.route!;
    const cluster = this.#factory.clusters.get(action.cluster);
    if (!cluster) {
      si.responseFlags.add('NC');
      cb.sendLocalReply(503, '', { details: 'cluster_not_found' });
      return HeadersStatus.StopIteration;
    }
    const ep = cluster.pick();
    if (!ep) {
      si.responseFlags.add('UH');
      cb.sendLocalReply(503, 'no healthy upstream', { details: 'no_healthy_upstream' });
      return HeadersStatus.StopIteration;
    }
    this.#cluster = cluster;
    this.#stats = this.#factory.clusterStats(cluster.config.name);
    this.#stats.rqTotal.inc();
    si.upstreamCluster = cluster.config.name;
    si.upstreamHost = ep.config;
    if (action.prefixRewrite !== undefined) {
      const p = headers.get(':path') ?? '/';
      const rewritten = rewritePrefix(p, rc.match, action.prefixRewrite);
      if (rewritten !== p) {
        // Envoy keeps the client's path for the upstream and the access log.
        if (!headers.has('x-envoy-original-path')) headers.set('x-envoy-original-path', p);
        headers.set(':path', rewritten);
      }
    }
    if (action.hostRewrite !== undefined) headers.set(':authority', action.hostRewrite);
    this.#timeoutMs = action.timeoutMs ?? cluster.config.requestTimeoutMs;
    const fm = this.#fm;
    fm.upstream = this;
    this.#upstreamStart = performance.now();
    si.firstUpstreamTxByteSent = this.#upstreamStart;
    const req = this.#factory.clusters.startRequest(cluster, ep, headers, endStream, this);
    this.#req = req;
    req.onDrain = () => fm.codec.readDisable(false);
    if (endStream) this.#startTimer(this.#upstreamStart);
    return HeadersStatus.StopIteration;
  }

  decodeData(data: DataBuffer, endStream: boolean): DataStatus {
    const req = this.#req;
    if (req === undefined || this.#done) return DataStatus.StopIterationNoBuffer;
    if (data.length > 0 && !req.write(data)) this.#fm.codec.readDisable(true);
    if (endStream) {
      req.end();
      this.#startTimer(performance.now());
    }
    return DataStatus.StopIterationNoBuffer;
  }

  decodeTrailers(trailers: HeaderMap): TrailersStatus {
    const req = this.#req;
    if (req !== undefined && !this.#done) {
      req.end(trailers);
      this.#startTimer(performance.now());
    }
    return TrailersStatus.StopIteration;
  }

  onDestroy(): void {
    this.#abort();
  }

  // ---------------------------------------------------------------- from the filter manager (UpstreamControl)

  onStreamReset(): void {
    this.#abort();
  }

  onDownstreamWatermark(above: boolean): void {
    this.#req?.setResponsePaused(above);
  }

  #startTimer(now: number): void {
    this.#fm.markDecodeComplete();
    if (this.#timeoutMs > 0 && !this.#timerStarted && !this.#done) {
      this.#timerStarted = true;
      this.#factory.deadlines.list(this.#timeoutMs).add(this, now);
    }
  }

  #clearTimer(): void {
    this.dlList?.remove(this);
  }

  #abort(): void {
    this.#clearTimer();
    if (this.#done) return;
    this.#done = true;
    this.#req?.abort();
  }

  onDeadline(): void {
    if (this.#done) return;
    this.#stats?.rqTimeout.inc();
    this.#req?.abort();
    this.#fail('timeout');
  }

  #fail(reason: UpstreamFailure): void {
    this.#done = true;
    this.#clearTimer();
    const cb = this.#cb;
    const r = FAILURE_REPLY[reason];
    cb.streamInfo.responseFlags.add(r.flag);
    if (reason === 'connection_failure') this.#stats?.cxConnectFail.inc();
    if (this.#responseStarted) {
      cb.streamInfo.responseCodeDetails = reason === 'timeout' ? 'upstream_response_timeout' : `upstream_reset_after_response_started{${reason}}`;
      this.#fm.resetStream(cb.streamInfo.responseCodeDetails, false);
      return;
    }
    this.#stats?.rq5xx.inc();
    cb.sendLocalReply(r.status, r.body, { details: r.details });
  }

  // ---------------------------------------------------------------- upstream response

  onHeaders(headers: HeaderMap, endStream: boolean): void {
    if (this.#done) return;
    this.#responseStarted = true;
    const now = performance.now();
    const si = this.#cb.streamInfo;
    si.firstUpstreamRxByteReceived = now;
    const status = Number(headers.get(':status'));
    const s = this.#stats!;
    if (status >= 500) s.rq5xx.inc();
    else if (status >= 400) s.rq4xx.inc();
    else if (status >= 300) s.rq3xx.inc();
    else s.rq2xx.inc();
    headers.set('x-envoy-upstream-service-time', String(Math.round(now - this.#upstreamStart)));
    // Envoy's %RESPONSE_CODE_DETAILS% for a response that came from the upstream.
    si.responseCodeDetails = 'via_upstream';
    if (endStream) this.#complete();
    this.#fm.startEncoding(headers, endStream, now);
  }

  onData(data: DataBuffer, endStream: boolean): void {
    if (this.#done) return;
    if (endStream) this.#complete();
    this.#cb.encodeData(data, endStream);
  }

  onTrailers(trailers: HeaderMap): void {
    if (this.#done) return;
    this.#complete();
    this.#cb.encodeTrailers(trailers);
  }

  onFailure(reason: UpstreamFailure, _err: unknown, responseStarted: boolean): void {
    if (this.#done) return;
    this.#responseStarted = responseStarted || this.#responseStarted;
    this.#fail(reason);
  }

  #complete(): void {
    this.#done = true;
    this.#clearTimer();
    this.#cb.streamInfo.lastUpstreamRxByteReceived = performance.now();
  }
}

/**
 * Envoy's prefix_rewrite: replaces the part of the path the route matched (the prefix of a prefix
 * match, the whole path of an exact match); the query string is kept.
 */
function rewritePrefix(path: string, match: RouteMatch, replacement: string): string {
  let matched: number;
  if (match.prefix !== undefined) matched = match.prefix.length;
  else if (match.path !== undefined) matched = match.path.length;
  else return path;
  return replacement + path.slice(matched);
}

function redirectLocation(r: NonNullable<RouteConfig['redirect']>, match: RouteMatch, headers: HeaderMap): string {
  const scheme = r.scheme ?? headers.get(':scheme') ?? 'http';
  let authority = headers.get(':authority') ?? '';
  if (r.host !== undefined) authority = r.host + (r.port ? `:${r.port}` : '');
  else if (r.port !== undefined) authority = authority.replace(/:\d+$/, '') + `:${r.port}`;
  let path = headers.get(':path') ?? '/';
  if (r.path !== undefined) path = r.path;
  else if (r.prefixRewrite !== undefined) path = rewritePrefix(path, match, r.prefixRewrite);
  if (r.stripQuery) {
    const q = path.indexOf('?');
    if (q >= 0) path = path.slice(0, q);
  }
  return `${scheme}://${authority}${path}`;
}

export { DataBuffer };
