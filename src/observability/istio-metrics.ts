/**
 * Istio's standard metrics, recorded by the built-in STATS stage when a stream completes:
 * istio_requests_total, istio_request_duration_milliseconds, istio_request_bytes,
 * istio_response_bytes (HTTP) and istio_tcp_connections_opened_total / _closed_total,
 * istio_tcp_sent_bytes_total / _received_bytes_total (TCP), with Istio's label set.
 *
 * Hot path: pre-created counter/histogram handles sit in a small tree of Maps keyed by the parts
 * that vary per request (connection context → destination service → status code → response
 * flags), so a request costs a few Map lookups on short or integer keys and no allocation.
 * Label objects are built only the first time a combination is seen.
 *
 * Cardinality guard: labels derived from request data (the authority used as destination_service
 * when no service is known, peer metadata) are attacker-influenced on a gateway. Once a recorder
 * holds `maxSeries` label sets, new combinations collapse those labels to 'unknown'.
 */
import type { ProxyIdentity, TrafficDirection } from '../config/types.ts';
import type { StreamInfo } from '../filters/stream-info.ts';
import { BYTE_BUCKETS, DEFAULT_BUCKETS, type Counter, type Histogram, type StatsStore } from './stats.ts';

/** Anything with a case-insensitive `get`, e.g. HeaderMap. `names`/`values` (HeaderMap's) give header byte sizes. */
export interface HeaderLike {
  get(name: string): string | undefined;
  readonly names?: readonly string[];
  readonly values?: readonly string[];
}

/** Workload facts about the other side (from Istio's metadata exchange, or mTLS for the principal). */
export interface PeerInfo {
  workload?: string;
  namespace?: string;
  app?: string;
  version?: string;
  cluster?: string;
  principal?: string;
  canonicalService?: string;
  canonicalRevision?: string;
}

export interface IstioRequestFacts {
  requestHeaders?: HeaderLike;
  responseHeaders?: HeaderLike;
  /** gRPC status usually arrives in trailers. */
  responseTrailers?: HeaderLike;
  /**
   * The FQDN of the service the route's cluster targets. Defaults to the service in an Istio-style
   * upstream cluster name (`outbound|80||svc.ns.svc.cluster.local`), else the request authority
   * without its port.
   */
  destinationService?: string;
  /**
   * The peer: the upstream workload for reporter=source, the downstream one for
   * reporter=destination and reporter=waypoint.
   */
  peer?: PeerInfo;
  /** Waypoint proxies only: the destination workload (a waypoint sits between two peers). */
  upstreamPeer?: PeerInfo;
  /** This proxy's own principal (SPIFFE id), when it has one. */
  localPrincipal?: string;
  /** Header sizes, when the caller already knows them (otherwise computed from names/values). */
  requestHeaderBytes?: number;
  responseHeaderBytes?: number;
}

export interface IstioTcpFacts {
  destinationService?: string;
  peer?: PeerInfo;
  upstreamPeer?: PeerInfo;
  localPrincipal?: string;
}

export const ISTIO_REQUEST_LABELS = [
  'reporter',
  'source_workload',
  'source_canonical_service',
  'source_canonical_revision',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_cluster',
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_service',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_service_name',
  'destination_service_namespace',
  'destination_cluster',
  'request_protocol',
  'response_code',
  'grpc_response_status',
  'response_flags',
  'connection_security_policy',
] as const;

const UNKNOWN = 'unknown';

/** gateway and sidecar_outbound proxies sit on the client side of a call; sidecar_inbound on the server side. */
export type Reporter = 'source' | 'destination' | 'waypoint';

export function reporterFor(direction: TrafficDirection | string): 'source' | 'destination' {
  return direction === 'sidecar_inbound' ? 'destination' : 'source';
}

interface Workload {
  workload: string;
  namespace: string;
  app: string;
  version: string;
  cluster: string;
  principal: string;
  canonicalService: string;
  canonicalRevision: string;
}

function selfWorkload(id: ProxyIdentity, principal: string | undefined): Workload {
  const l = id.labels;
  const app = l['app'] ?? l['app.kubernetes.io/name'];
  const version = l['version'] ?? l['app.kubernetes.io/version'];
  return {
    workload: id.workloadName || UNKNOWN,
    namespace: id.namespace || UNKNOWN,
    app: app ?? UNKNOWN,
    version: version ?? UNKNOWN,
    cluster: id.clusterId || UNKNOWN,
    principal: principal ?? UNKNOWN,
    // Istio's canonical-service defaulting: explicit label, then app name, then workload name.
    canonicalService: l['service.istio.io/canonical-name'] ?? l['app.kubernetes.io/name'] ?? l['app'] ?? (id.workloadName || UNKNOWN),
    canonicalRevision: l['service.istio.io/canonical-revision'] ?? l['app.kubernetes.io/version'] ?? l['version'] ?? 'latest',
  };
}

function peerWorkload(p: PeerInfo | undefined): Workload {
  return {
    workload: p?.workload ?? UNKNOWN,
    namespace: p?.namespace ?? UNKNOWN,
    app: p?.app ?? UNKNOWN,
    version: p?.version ?? UNKNOWN,
    cluster: p?.cluster ?? UNKNOWN,
    principal: p?.principal ?? UNKNOWN,
    canonicalService: p?.canonicalService ?? UNKNOWN,
    canonicalRevision: p?.canonicalRevision ?? UNKNOWN,
  };
}

/** `name.namespace.svc...` splits into Istio's destination_service_name / _namespace. */
function serviceParts(host: string): [string, string] {
  const i = host.indexOf('.');
  if (i < 0) return [host, UNKNOWN];
  const j = host.indexOf('.', i + 1);
  if (j > 0 && host.startsWith('svc', j + 1)) return [host.slice(0, i), host.slice(i + 1, j)];
  return [host, UNKNOWN];
}

function stripPort(authority: string): string {
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    return end > 0 ? authority.slice(0, end + 1) : authority;
  }
  const c = authority.lastIndexOf(':');
  return c > 0 ? authority.slice(0, c) : authority;
}

/** Envoy's HTTP → gRPC status mapping, for gRPC responses that carry no grpc-status. */
function grpcFromHttp(code: number): string {
  switch (code) {
    case 200:
      return '2'; // UNKNOWN: a 200 without grpc-status is a broken gRPC response
    case 400:
      return '13';
    case 401:
      return '16';
    case 403:
      return '7';
    case 404:
      return '12';
    case 429:
    case 502:
    case 503:
    case 504:
      return '14';
    default:
      return '2';
  }
}

function headerBytes(h: HeaderLike | undefined): number {
  if (!h?.names || !h.values) return 0;
  let n = 0;
  for (let i = 0; i < h.names.length; i++) n += h.names[i]!.length + h.values[i]!.length;
  return n;
}

interface RequestSeries {
  requests: Counter;
  duration: Histogram;
  requestBytes: Histogram;
  responseBytes: Histogram;
}

/** service → status key → flags (+ odd gRPC status) → series. */
type HttpContext = Map<string, Map<number, Map<string, RequestSeries>>>;

const GRPC_STATUS_INDEX = new Map<string, number>(Array.from({ length: 17 }, (_, i) => [String(i), i]));

interface TcpSeries {
  opened: Counter;
  closed: Counter;
  sent: Counter;
  received: Counter;
}

const CODE_STRINGS: string[] = Array.from({ length: 600 }, (_, i) => String(i));

export interface IstioMetricsOptions {
  /** Label sets kept per recorder before request-derived labels collapse to 'unknown' (default 10000). */
  maxSeries?: number;
}

/** Records Istio's standard metrics into one worker's StatsStore for one proxy identity. */
export class IstioMetrics {
  readonly #store: StatsStore;
  readonly #identity: ProxyIdentity;
  readonly #maxSeries: number;
  /** Ambient waypoint proxies report as reporter="waypoint" whatever the listener direction. */
  readonly #waypoint: boolean;
  readonly #httpFast: (HttpContext | undefined)[] = [];
  readonly #httpSlow = new Map<string, HttpContext>();
  #httpSeries = 0;
  readonly #tcp = new Map<string, TcpSeries>();
  // Peer objects usually live for a connection; their key is computed once per object.
  readonly #peerKeys = new WeakMap<PeerInfo, string>();
  readonly #self = new Map<string, Workload>();
  readonly #clusterServices = new Map<string, string>();

  constructor(store: StatsStore, identity: ProxyIdentity, opts: IstioMetricsOptions = {}) {
    this.#store = store;
    this.#identity = identity;
    this.#maxSeries = opts.maxSeries ?? 10_000;
    this.#waypoint = identity.waypoint === true;
  }

  /** Number of distinct HTTP + TCP label sets created so far. */
  get seriesCount(): number {
    return this.#httpSeries + this.#tcp.size;
  }

  #peerKey(p: PeerInfo | undefined): string {
    if (!p) return '';
    let k = this.#peerKeys.get(p);
    if (k === undefined) {
      k = `${p.workload}\u0002${p.namespace}\u0002${p.app}\u0002${p.version}\u0002${p.cluster}\u0002${p.principal}\u0002${p.canonicalService}\u0002${p.canonicalRevision}`;
      this.#peerKeys.set(p, k);
    }
    return k;
  }

  /**
   * Istio's cluster names carry the service: `outbound|9080|v1|reviews.default.svc.cluster.local`.
   * Other names say nothing about the service (undefined → the authority is used). Cached per
   * name: cluster names are few and the same string objects on every request.
   */
  #clusterService(cluster: string): string | undefined {
    let v = this.#clusterServices.get(cluster);
    if (v === undefined) {
      const m = /^(?:outbound|inbound)\|\d*\|[^|]*\|(.+)$/.exec(cluster);
      v = m ? m[1]! : '';
      if (this.#clusterServices.size < 10_000) this.#clusterServices.set(cluster, v);
    }
    return v === '' ? undefined : v;
  }

  /**
   * The service named by an authority, remembered for the last authority seen: clients send the
   * same Host on every request, and one string comparison costs less than stripping the port into
   * a new string that the series lookup must then hash.
   */
  #lastAuthority = '';
  #lastAuthorityService = '';
  #authorityService(authority: string): string {
    if (authority !== this.#lastAuthority) {
      this.#lastAuthority = authority;
      this.#lastAuthorityService = stripPort(authority);
    }
    return this.#lastAuthorityService;
  }

  #selfWorkload(principal: string | undefined): Workload {
    const k = principal ?? '';
    let w = this.#self.get(k);
    if (!w) this.#self.set(k, (w = selfWorkload(this.#identity, principal)));
    return w;
  }

  #labels(
    reporter: Reporter,
    service: string,
    peer: PeerInfo | undefined,
    upstreamPeer: PeerInfo | undefined,
    localPrincipal: string | undefined,
    protocol: string,
    policy: string,
    flags: string,
  ): Record<string, string> {
    let src: Workload;
    let dst: Workload;
    if (reporter === 'waypoint') {
      // A waypoint is neither end of the call: both sides are peers.
      src = peerWorkload(peer);
      dst = peerWorkload(upstreamPeer);
    } else {
      const me = this.#selfWorkload(localPrincipal);
      const other = peerWorkload(peer);
      src = reporter === 'source' ? me : other;
      dst = reporter === 'source' ? other : me;
    }
    const [svcName, svcNs] = service === UNKNOWN ? [UNKNOWN, UNKNOWN] : serviceParts(service);
    return {
      reporter,
      source_workload: src.workload,
      source_canonical_service: src.canonicalService,
      source_canonical_revision: src.canonicalRevision,
      source_workload_namespace: src.namespace,
      source_principal: src.principal,
      source_app: src.app,
      source_version: src.version,
      source_cluster: src.cluster,
      destination_workload: dst.workload,
      destination_workload_namespace: dst.namespace,
      destination_principal: dst.principal,
      destination_app: dst.app,
      destination_version: dst.version,
      destination_service: service,
      destination_canonical_service: dst.canonicalService,
      destination_canonical_revision: dst.canonicalRevision,
      destination_service_name: svcName,
      destination_service_namespace: svcNs,
      destination_cluster: dst.cluster,
      request_protocol: protocol,
      response_code: '', // filled by the HTTP caller
      grpc_response_status: '',
      response_flags: flags,
      connection_security_policy: policy,
    };
  }

  // Contexts: the labels that vary per connection (reporter, security policy, principal, peers).
  // Without peers or principal (the common case) they sit in a 9-slot array.
  #httpContext(reporter: Reporter, policy: string, principal: string | undefined, peer: PeerInfo | undefined, upstreamPeer: PeerInfo | undefined): HttpContext {
    if (principal === undefined && peer === undefined && upstreamPeer === undefined) {
      const slot = (reporter === 'source' ? 0 : reporter === 'destination' ? 3 : 6) + (policy === UNKNOWN ? 0 : policy === 'none' ? 1 : 2);
      let ctx = this.#httpFast[slot];
      if (!ctx) this.#httpFast[slot] = ctx = new Map();
      return ctx;
    }
    const key = `${reporter}\u0001${policy}\u0001${principal ?? ''}\u0001${this.#peerKey(peer)}\u0003${this.#peerKey(upstreamPeer)}`;
    let ctx = this.#httpSlow.get(key);
    if (!ctx) this.#httpSlow.set(key, (ctx = new Map()));
    return ctx;
  }

  /** The last request's series and what selected it. */
  #lastContext: HttpContext | undefined;
  #lastService = '';
  #lastStatusKey = -1;
  #lastLeafKey = '';
  #lastSeries: RequestSeries | undefined;

  /** Records one completed HTTP stream. */
  recordRequest(info: StreamInfo, facts: IstioRequestFacts = {}): void {
    const reporter: Reporter = this.#waypoint ? 'waypoint' : reporterFor(info.direction);
    const reqH = facts.requestHeaders;
    let service = facts.destinationService ?? (info.upstreamCluster !== undefined ? this.#clusterService(info.upstreamCluster) : undefined);
    if (service === undefined) {
      const authority = reqH?.get(':authority') ?? reqH?.get('host');
      service = authority ? this.#authorityService(authority) : UNKNOWN;
    }
    const ct = reqH?.get('content-type');
    const grpc = ct !== undefined && ct.startsWith('application/grpc');
    const code = info.responseCode;
    const flags = info.responseFlagsString();
    // Status part of the key as a small integer: code * 32 + (0 = not gRPC, 1 + status for the 17
    // standard gRPC statuses, 31 = anything else, which then also goes into the innermost key).
    let statusKey = code * 32;
    let leafKey = flags;
    let grpcStatus = '';
    if (grpc) {
      grpcStatus = facts.responseTrailers?.get('grpc-status') ?? facts.responseHeaders?.get('grpc-status') ?? grpcFromHttp(code);
      const g = grpcStatus.length <= 2 ? GRPC_STATUS_INDEX.get(grpcStatus) : undefined;
      if (g !== undefined) statusKey += 1 + g;
      else {
        statusKey += 31;
        leafKey = `${flags}\u0001${grpcStatus}`;
      }
    }
    const policy = reporter === 'source' ? UNKNOWN : info.downstreamTls?.peerCertificatePresented ? 'mutual_tls' : 'none';
    const principal = facts.localPrincipal;
    let peer = facts.peer;
    let upstreamPeer = facts.upstreamPeer;

    // Three lookups with short keys whose hashes V8 caches on the string (or SMI keys), instead of
    // one lookup on a long concatenated key that would need flattening and hashing each time.
    let byService = this.#httpContext(reporter, policy, principal, peer, upstreamPeer);
    // Usually the same series as the last request: then no lookup at all.
    if (byService === this.#lastContext && service === this.#lastService && statusKey === this.#lastStatusKey && leafKey === this.#lastLeafKey) {
      this.#record(this.#lastSeries!, info, facts, reqH);
      return;
    }
    this.#lastContext = byService;
    this.#lastService = service;
    this.#lastStatusKey = statusKey;
    this.#lastLeafKey = leafKey;
    let byStatus = byService.get(service);
    let byFlags = byStatus?.get(statusKey);
    let series = byFlags?.get(leafKey);
    if (!series) {
      if (this.seriesCount >= this.#maxSeries) {
        service = UNKNOWN;
        peer = undefined;
        upstreamPeer = undefined;
        byService = this.#httpContext(reporter, policy, principal, peer, upstreamPeer);
        byStatus = byService.get(service);
        byFlags = byStatus?.get(statusKey);
        series = byFlags?.get(leafKey);
      }
      if (!series) {
        const labels = this.#labels(reporter, service, peer, upstreamPeer, principal, grpc ? 'grpc' : 'http', policy, flags);
        labels.response_code = code >= 0 && code < 600 ? CODE_STRINGS[code]! : String(code);
        labels.grpc_response_status = grpcStatus;
        const s = this.#store;
        series = {
          requests: s.counter('istio_requests_total', labels),
          duration: s.histogram('istio_request_duration_milliseconds', labels, DEFAULT_BUCKETS),
          requestBytes: s.histogram('istio_request_bytes', labels, BYTE_BUCKETS),
          responseBytes: s.histogram('istio_response_bytes', labels, BYTE_BUCKETS),
        };
        if (!byStatus) byService.set(service, (byStatus = new Map()));
        if (!byFlags) byStatus.set(statusKey, (byFlags = new Map()));
        byFlags.set(leafKey, series);
        this.#httpSeries++;
      }
    }
    // (After an overflow to 'unknown' the same inputs lead to the same series again.)
    this.#lastSeries = series;
    this.#record(series, info, facts, reqH);
  }

  #record(series: RequestSeries, info: StreamInfo, facts: IstioRequestFacts, reqH: HeaderLike | undefined): void {
    series.requests.inc();
    // Duration is start to last byte sent downstream (Istio's response.duration), or now if unset.
    const end = info.lastDownstreamTxByteSent > 0 ? info.lastDownstreamTxByteSent : performance.now();
    series.duration.record(Math.max(0, end - info.startMono));
    // Istio's request.total_size / response.total_size: header bytes plus body bytes.
    series.requestBytes.record((facts.requestHeaderBytes ?? headerBytes(reqH)) + info.bytesReceived);
    series.responseBytes.record((facts.responseHeaderBytes ?? headerBytes(facts.responseHeaders)) + info.bytesSent);
  }

  #tcpSeries(info: StreamInfo, facts: IstioTcpFacts): TcpSeries {
    const reporter: Reporter = this.#waypoint ? 'waypoint' : reporterFor(info.direction);
    let service = facts.destinationService ?? (info.requestedServerName || info.upstreamCluster || UNKNOWN);
    const flags = info.responseFlagsString();
    const policy = reporter === 'source' ? UNKNOWN : info.downstreamTls?.peerCertificatePresented ? 'mutual_tls' : 'none';
    let peer = facts.peer;
    let upstreamPeer = facts.upstreamPeer;
    const principal = facts.localPrincipal;
    let key = `${reporter}\u0001${service}\u0001${flags}\u0001${policy}\u0001${principal ?? ''}\u0001${this.#peerKey(peer)}\u0003${this.#peerKey(upstreamPeer)}`;
    let series = this.#tcp.get(key);
    if (!series) {
      if (this.seriesCount >= this.#maxSeries) {
        service = UNKNOWN;
        peer = undefined;
        upstreamPeer = undefined;
        key = `${reporter}\u0001${service}\u0001${flags}\u0001${policy}\u0001${principal ?? ''}\u0001\u0003`;
        series = this.#tcp.get(key);
      }
      if (!series) {
        const labels = this.#labels(reporter, service, peer, upstreamPeer, principal, 'tcp', policy, flags);
        // TCP series carry no HTTP status labels.
        delete (labels as Partial<Record<string, string>>).response_code;
        delete (labels as Partial<Record<string, string>>).grpc_response_status;
        const s = this.#store;
        series = {
          opened: s.counter('istio_tcp_connections_opened_total', labels),
          closed: s.counter('istio_tcp_connections_closed_total', labels),
          sent: s.counter('istio_tcp_sent_bytes_total', labels),
          received: s.counter('istio_tcp_received_bytes_total', labels),
        };
        this.#tcp.set(key, series);
      }
    }
    return series;
  }

  /** A TCP connection was accepted; returns the reporter that adds its bytes and its close. */
  openTcp(info: StreamInfo, facts: IstioTcpFacts = {}): IstioTcpConnection {
    this.#tcpSeries(info, facts).opened.inc();
    return new IstioTcpConnection(this, info, facts);
  }

  /** @internal Adds bytes (and optionally the close) under the connection's current labels. */
  _tcpReport(info: StreamInfo, facts: IstioTcpFacts, sent: number, received: number, closed: boolean): void {
    const s = this.#tcpSeries(info, facts);
    if (sent) s.sent.inc(sent);
    if (received) s.received.inc(received);
    if (closed) s.closed.inc();
  }
}

/**
 * One TCP connection's reporting state. Istio reports TCP byte counts periodically and at close;
 * call `report()` on a timer (optional) and `close()` once. Byte counts are read from StreamInfo
 * (bytesSent = to downstream, bytesReceived = from downstream) and reported as deltas.
 */
export class IstioTcpConnection {
  readonly #metrics: IstioMetrics;
  readonly #info: StreamInfo;
  readonly #facts: IstioTcpFacts;
  #sent = 0;
  #received = 0;
  #closed = false;

  constructor(metrics: IstioMetrics, info: StreamInfo, facts: IstioTcpFacts) {
    this.#metrics = metrics;
    this.#info = info;
    this.#facts = facts;
  }

  report(): void {
    if (this.#closed) return;
    this.#flush(false);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#flush(true);
  }

  #flush(closed: boolean): void {
    const sent = this.#info.bytesSent - this.#sent;
    const received = this.#info.bytesReceived - this.#received;
    this.#sent = this.#info.bytesSent;
    this.#received = this.#info.bytesReceived;
    this.#metrics._tcpReport(this.#info, this.#facts, sent, received, closed);
  }
}

// Convenience for callers that hold only a store and an identity: one recorder per pair, kept
// alive exactly as long as both are.
const recorders = new WeakMap<StatsStore, WeakMap<ProxyIdentity, IstioMetrics>>();

export function istioMetricsFor(store: StatsStore, identity: ProxyIdentity): IstioMetrics {
  let byId = recorders.get(store);
  if (!byId) recorders.set(store, (byId = new WeakMap()));
  let m = byId.get(identity);
  if (!m) byId.set(identity, (m = new IstioMetrics(store, identity)));
  return m;
}

/** Records Istio's HTTP metrics for a completed stream (see IstioMetrics.recordRequest). */
export function recordIstioRequest(store: StatsStore, identity: ProxyIdentity, info: StreamInfo, facts?: IstioRequestFacts): void {
  istioMetricsFor(store, identity).recordRequest(info, facts);
}

/** Records a TCP connection open; call `.report()` / `.close()` on the result. */
export function recordIstioTcpOpen(store: StatsStore, identity: ProxyIdentity, info: StreamInfo, facts?: IstioTcpFacts): IstioTcpConnection {
  return istioMetricsFor(store, identity).openTcp(info, facts);
}
