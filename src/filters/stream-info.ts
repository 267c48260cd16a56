/**
 * Per-stream (or per-connection) facts shared by every filter, as Envoy's StreamInfo: addresses,
 * protocol, route, timings, byte counts, response code and details, response flags, dynamic
 * metadata (namespaced as Envoy's `filter_metadata`) and filter state.
 */
export interface Address {
  address: string;
  port: number;
}

/** Facts of a certificate, in Envoy's renderings (Lua `downstreamSslConnection()`, Wasm properties). */
export interface CertificateInfo {
  /** RFC 2253 order, as Envoy prints it: `CN=...,O=...`. */
  subject: string;
  commonName: string;
  organizationName: string[];
  issuer: string;
  /** Lower-case hex. */
  serialNumber: string;
  /** Lower-case hex without separators. */
  sha256Digest: string;
  sha1Digest: string;
  uriSans: string[];
  dnsSans: string[];
  /** Seconds since the epoch. */
  validFrom: number;
  expiration: number;
  pem: string;
}

export interface DownstreamTls {
  protocol: string;
  cipher: string;
  peerCertificatePresented: boolean;
  alpn: string;
  /** The client certificate chained to the listener's CA (only meaningful when one was presented). */
  peerCertificateValidated?: boolean;
  /** IANA cipher suite id, e.g. 0x1301 (undefined when not known). */
  cipherId?: number;
  /** Computed on first use: parsing certificates costs more than most requests need. */
  peerCertificate?: () => CertificateInfo | undefined;
  localCertificate?: () => CertificateInfo | undefined;
}

/** Envoy's short response flags, e.g. `UF` upstream connection failure, `NR` no route. */
export const ResponseFlag = {
  NoHealthyUpstream: 'UH',
  UpstreamConnectionFailure: 'UF',
  UpstreamRequestTimeout: 'UT',
  UpstreamRemoteReset: 'UR',
  UpstreamProtocolError: 'UPE',
  NoRouteFound: 'NR',
  DownstreamConnectionTermination: 'DC',
  LocalReset: 'LR',
  RateLimited: 'RL',
  UnauthorizedExternalService: 'UAEX',
  DownstreamProtocolError: 'DPE',
} as const;

/** The global is an accessor that V8 looks up on every use; a module constant is not. */
const performance = globalThis.performance;

/**
 * Wall clock minus monotonic clock (ms), re-read from the wall clock at most once a second: a
 * stream's wall-clock start is then its monotonic start plus this, without a second clock read
 * per stream (clock reads cost ~50 ns each here). Wall-clock steps show within a second.
 */
let wallOffset = 0;
let wallOffsetAt = -Infinity;
const WALL_OFFSET_REFRESH_MS = 1000;

function wallClockAt(mono: number): number {
  if (mono - wallOffsetAt > WALL_OFFSET_REFRESH_MS) {
    wallOffset = Date.now() - mono;
    wallOffsetAt = mono;
  }
  return Math.floor(mono + wallOffset);
}

export class StreamInfo {
  /** Monotonic start, for durations (performance.now() ms). */
  readonly startMono = performance.now();
  /** Wall-clock start, ms since epoch (whole ms, as Date.now()). */
  readonly startTime = wallClockAt(this.startMono);
  protocol: 'HTTP/1.0' | 'HTTP/1.1' | 'HTTP/2' | 'TCP' = 'HTTP/1.1';
  downstreamRemoteAddress: Address | undefined;
  downstreamDirectRemoteAddress: Address | undefined;
  downstreamLocalAddress: Address | undefined;
  /** TLS SNI presented by the client, '' when none. */
  requestedServerName = '';
  /** Downstream TLS facts (undefined for cleartext). */
  downstreamTls: DownstreamTls | undefined;
  upstreamHost: Address | undefined;
  upstreamLocalAddress: Address | undefined;
  upstreamCluster: string | undefined;
  routeName = '';
  listenerName = '';
  /** Traffic direction of the listener: gateway | sidecar_inbound | sidecar_outbound. */
  direction = 'gateway';
  requestId = '';
  responseCode = 0;
  responseCodeDetails = '';
  #responseFlags: Set<string> | undefined;
  /** Envoy's response flags (created on first use: most streams have none). */
  get responseFlags(): Set<string> {
    return (this.#responseFlags ??= new Set<string>());
  }
  bytesReceived = 0;
  bytesSent = 0;
  /** Monotonic timestamps (ms) filled as the stream progresses. */
  lastDownstreamRxByteReceived = 0;
  firstUpstreamTxByteSent = 0;
  firstUpstreamRxByteReceived = 0;
  lastUpstreamRxByteReceived = 0;
  firstDownstreamTxByteSent = 0;
  lastDownstreamTxByteSent = 0;
  /** Envoy's dynamic metadata `filter_metadata`: filter name → struct. */
  get dynamicMetadata(): Map<string, Record<string, unknown>> {
    return (this.#dynamicMetadata ??= new Map());
  }
  #dynamicMetadata: Map<string, Record<string, unknown>> | undefined;
  /** Envoy's filter state: shared by all filters of the stream, keyed by name. */
  get filterState(): Map<string, unknown> {
    return (this.#filterState ??= new Map());
  }
  #filterState: Map<string, unknown> | undefined;
  /**
   * Envoy's shouldDrainConnectionUponCompletion (set by Lua drainConnectionUponCompletion()):
   * HTTP/1.1 answers with `Connection: close`, HTTP/2 sends GOAWAY after this stream.
   */
  drainConnectionUponCompletion = false;
  /** Custom HTTP/1 reason phrase for the response (Lua setHttp1ReasonPhrase); ignored on HTTP/2. */
  http1ReasonPhrase: string | undefined;

  setDynamicMetadata(namespace: string, key: string, value: unknown): void {
    let ns = this.dynamicMetadata.get(namespace);
    if (!ns) {
      ns = {};
      this.dynamicMetadata.set(namespace, ns);
    }
    ns[key] = value;
  }

  /** Envoy's %RESPONSE_FLAGS% rendering: comma-separated short codes, '-' when none. */
  responseFlagsString(): string {
    const f = this.#responseFlags;
    return f === undefined || f.size === 0 ? '-' : [...f].join(',');
  }

  /** Milliseconds since the stream started. */
  durationMs(): number {
    return performance.now() - this.startMono;
  }
}
