/**
 * JSON-lines access log with the fields of Istio's JSON access log format (Envoy command
 * operators in brackets): start_time, method, path, protocol, response_code, response_flags,
 * response_code_details, connection_termination_details, upstream_transport_failure_reason,
 * bytes_received, bytes_sent, duration, upstream_service_time, x_forwarded_for, user_agent,
 * request_id, authority, upstream_host, upstream_cluster, upstream_local_address,
 * downstream_local_address, downstream_remote_address, requested_server_name, route_name.
 * Unknown values are null, as Envoy's JSON formatter renders a missing value.
 *
 * Lines collect in memory and are written in large asynchronous batches (never a synchronous
 * write per request), with a periodic flush so a quiet proxy's lines still appear within
 * `flushIntervalMs` (Envoy flushes every second), and an explicit flush on shutdown. Each worker
 * thread may own its own logger on the same target: files are opened O_APPEND and every write()
 * holds whole lines, so lines from different workers never interleave mid-line.
 * (pino's SonicBoom was tried first; it measures the byte length of its whole pending buffer on
 * every write, which made a buffered line cost hundreds of µs.)
 */
import { close, fstatSync, mkdirSync, openSync, write } from 'node:fs';
import { dirname } from 'node:path';
import type { Address, StreamInfo } from '../filters/stream-info.ts';
import type { HeaderLike } from './istio-metrics.ts';

export interface AccessLogFacts {
  requestHeaders?: HeaderLike;
  responseHeaders?: HeaderLike;
  /** Envoy's %CONNECTION_TERMINATION_DETAILS%. */
  connectionTerminationDetails?: string;
  /** Envoy's %UPSTREAM_TRANSPORT_FAILURE_REASON%. */
  upstreamTransportFailureReason?: string;
}

/** One access-log record (the JSON object written per line). */
export interface AccessLogEntry {
  start_time: string;
  method: string | null;
  path: string | null;
  protocol: string;
  response_code: number;
  response_flags: string;
  response_code_details: string | null;
  connection_termination_details: string | null;
  upstream_transport_failure_reason: string | null;
  bytes_received: number;
  bytes_sent: number;
  duration: number;
  upstream_service_time: number | null;
  x_forwarded_for: string | null;
  user_agent: string | null;
  request_id: string | null;
  authority: string | null;
  upstream_host: string | null;
  upstream_cluster: string | null;
  upstream_local_address: string | null;
  downstream_local_address: string | null;
  downstream_remote_address: string | null;
  requested_server_name: string | null;
  route_name: string | null;
}

function addr(a: Address | undefined): string | null {
  if (!a) return null;
  return a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** Builds the record for a completed stream (exported for tests and for callers with other sinks). */
export function accessLogEntry(info: StreamInfo, facts: AccessLogFacts = {}): AccessLogEntry {
  const req = facts.requestHeaders;
  const resp = facts.responseHeaders;
  const end = info.lastDownstreamTxByteSent > 0 ? info.lastDownstreamTxByteSent : performance.now();
  let ust: number | null = null;
  const ustHeader = resp?.get('x-envoy-upstream-service-time');
  if (ustHeader !== undefined && /^\d+$/.test(ustHeader)) ust = Number(ustHeader);
  else if (info.firstUpstreamTxByteSent > 0 && info.firstUpstreamRxByteReceived > 0) {
    ust = Math.max(0, Math.round(info.firstUpstreamRxByteReceived - info.firstUpstreamTxByteSent));
  }
  return {
    start_time: new Date(info.startTime).toISOString(),
    method: req?.get(':method') ?? null,
    // Envoy logs the path the client sent, before any prefix rewrite.
    path: req?.get('x-envoy-original-path') ?? req?.get(':path') ?? null,
    protocol: info.protocol,
    response_code: info.responseCode,
    response_flags: info.responseFlagsString(),
    response_code_details: info.responseCodeDetails || null,
    connection_termination_details: facts.connectionTerminationDetails ?? null,
    upstream_transport_failure_reason: facts.upstreamTransportFailureReason ?? null,
    bytes_received: info.bytesReceived,
    bytes_sent: info.bytesSent,
    duration: Math.max(0, Math.round(end - info.startMono)),
    upstream_service_time: ust,
    x_forwarded_for: req?.get('x-forwarded-for') ?? null,
    user_agent: req?.get('user-agent') ?? null,
    request_id: info.requestId || req?.get('x-request-id') || null,
    authority: req?.get(':authority') ?? req?.get('host') ?? null,
    upstream_host: addr(info.upstreamHost),
    upstream_cluster: info.upstreamCluster ?? null,
    upstream_local_address: addr(info.upstreamLocalAddress),
    downstream_local_address: addr(info.downstreamLocalAddress),
    downstream_remote_address: addr(info.downstreamRemoteAddress),
    requested_server_name: info.requestedServerName || null,
    route_name: info.routeName || null,
  };
}

/**
 * Istio's default TEXT access-log line (meshConfig.accessLogEncoding: TEXT), field for field:
 * `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE%
 * %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS%
 * "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
 * %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
 * "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER%
 * %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS%
 * %REQUESTED_SERVER_NAME% %ROUTE_NAME%`, with `-` for a missing value as Envoy prints it.
 */
export function formatTextLine(e: AccessLogEntry): string {
  const v = (x: string | number | null): string => (x === null || x === '' ? '-' : clean(String(x)));
  return (
    `[${e.start_time}] "${v(e.method)} ${v(e.path)} ${e.protocol}" ${e.response_code} ${e.response_flags} ${v(e.response_code_details)} ` +
    `${v(e.connection_termination_details)} "${v(e.upstream_transport_failure_reason)}" ${e.bytes_received} ${e.bytes_sent} ${e.duration} ` +
    `${v(e.upstream_service_time)} "${v(e.x_forwarded_for)}" "${v(e.user_agent)}" "${v(e.request_id)}" "${v(e.authority)}" "${v(e.upstream_host)}" ` +
    `${v(e.upstream_cluster)} ${v(e.upstream_local_address)} ${v(e.downstream_local_address)} ${v(e.downstream_remote_address)} ` +
    `${v(e.requested_server_name)} ${v(e.route_name)}`
  );
}

// Header values reach the text line verbatim; a CR/LF from a client must not forge a second line.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/g;
function clean(s: string): string {
  CONTROL.lastIndex = 0;
  return CONTROL.test(s) ? s.replace(CONTROL, '_') : s;
}

export interface AccessLoggerOptions {
  /** 'stdout', 'stderr', or a file path (appended to; parent directories created). */
  target: string;
  /** 'json' (default): one JSON object per line; 'text': Istio's default text format. */
  encoding?: 'json' | 'text';
  /** Bytes collected before a write is issued (default 64 KiB). */
  bufferBytes?: number;
  /** Longest time a line waits in memory (default 1000 ms; 0 disables the timer). */
  flushIntervalMs?: number;
  /** Bytes allowed to pile up while the target is slow; further lines are dropped and counted (default 16 MiB). */
  maxBufferBytes?: number;
}

// A non-blocking stdout pipe answers EAGAIN when the reader is slow; retry after this delay.
const EAGAIN_RETRY_MS = 10;
/** POSIX guarantees at least 512; Linux's is 4096. */
const PIPE_BUF = 4096;

/**
 * End of the next write starting at `offset`: the last line end within `limit` bytes, or (for a
 * single line longer than `limit`) that line's end.
 */
function cutAtLine(buf: Buffer, offset: number, limit: number): number {
  if (buf.length - offset <= limit) return buf.length;
  const nl = buf.lastIndexOf(0x0a, offset + limit - 1);
  if (nl >= offset) return nl + 1;
  const next = buf.indexOf(0x0a, offset + limit);
  return next < 0 ? buf.length : next + 1;
}

export class AccessLogger {
  readonly #fd: number;
  readonly #ownsFd: boolean;
  readonly #text: boolean;
  readonly #bufferBytes: number;
  readonly #maxBufferBytes: number;
  /** Largest write() that stays whole when several writers share the target (see constructor). */
  readonly #atomicLimit: number;
  readonly #timer: NodeJS.Timeout | undefined;
  // Lines waiting for the next write. Their total length is tracked in UTF-16 units, which is
  // close enough to bytes for thresholds and never needs a scan of the buffer.
  #chunks: string[] = [];
  #pending = 0;
  #writing = false;
  #waiters: (() => void)[] = [];
  #closed = false;
  #dropped = 0;
  #written = 0;

  constructor(opts: AccessLoggerOptions) {
    if (opts.target === 'stdout' || opts.target === 'stderr') {
      this.#fd = opts.target === 'stdout' ? 1 : 2;
      this.#ownsFd = false;
    } else {
      // Opened synchronously at construction (startup or reload, never per request) so a bad
      // path fails loudly where the configuration is applied.
      mkdirSync(dirname(opts.target), { recursive: true });
      this.#fd = openSync(opts.target, 'a');
      this.#ownsFd = true;
    }
    // Several workers (and the main thread) may share stdout. On a pipe or socket, as a container's
    // stdout usually is, only writes of at most PIPE_BUF bytes are atomic; larger ones can be
    // interleaved with another writer's mid-line. So pipe writes are cut at line ends below
    // PIPE_BUF. Regular files opened O_APPEND take any size whole.
    let regularFile = false;
    try {
      regularFile = fstatSync(this.#fd).isFile();
    } catch {
      /* unknown target: be conservative */
    }
    this.#atomicLimit = regularFile ? Infinity : PIPE_BUF;
    this.#text = opts.encoding === 'text';
    this.#bufferBytes = opts.bufferBytes ?? 64 * 1024;
    this.#maxBufferBytes = opts.maxBufferBytes ?? 16 * 1024 * 1024;
    const every = opts.flushIntervalMs ?? 1000;
    if (every > 0) {
      this.#timer = setInterval(() => this.#startWrite(), every);
      this.#timer.unref();
    }
  }

  /** Lines accepted (buffered or written). */
  get written(): number {
    return this.#written;
  }

  /** Lines lost because the target could not keep up or failed. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Logs one completed stream. */
  log(info: StreamInfo, facts?: AccessLogFacts): void {
    if (this.#closed) return;
    const entry = accessLogEntry(info, facts);
    this.#push(this.#text ? formatTextLine(entry) + '\n' : JSON.stringify(entry) + '\n');
  }

  /** Writes a prepared record as one JSON line (whatever the encoding). */
  write(entry: AccessLogEntry | Record<string, unknown>): void {
    if (this.#closed) return;
    this.#push(JSON.stringify(entry) + '\n');
  }

  #push(line: string): void {
    if (this.#pending + line.length > this.#maxBufferBytes) {
      this.#dropped++;
      return;
    }
    this.#chunks.push(line);
    this.#pending += line.length;
    this.#written++;
    if (this.#pending >= this.#bufferBytes) this.#startWrite();
  }

  /** Takes everything buffered and writes it (one write() per batch, whole lines only). */
  #startWrite(): void {
    if (this.#writing || this.#pending === 0) return;
    this.#writing = true;
    const lines = this.#chunks.length;
    const buf = Buffer.from(this.#chunks.join(''));
    this.#chunks = [];
    this.#pending = 0;
    this.#writeBuf(buf, 0, lines);
  }

  #writeBuf(buf: Buffer, offset: number, lines: number): void {
    const end = this.#atomicLimit === Infinity ? buf.length : cutAtLine(buf, offset, this.#atomicLimit);
    write(this.#fd, buf, offset, end - offset, null, (err, n) => {
      if (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
          // Kept referenced: a shutdown flush must not be abandoned while the reader catches up.
          setTimeout(() => this.#writeBuf(buf, offset, lines), EAGAIN_RETRY_MS);
          return;
        }
        // A broken target (disk full, closed pipe) must not take the proxy down; the batch is lost.
        this.#dropped += lines;
        this.#done();
        return;
      }
      if (offset + n < buf.length) return this.#writeBuf(buf, offset + n, lines);
      this.#done();
    });
  }

  #done(): void {
    this.#writing = false;
    if (this.#pending >= this.#bufferBytes || (this.#waiters.length > 0 && this.#pending > 0)) {
      this.#startWrite();
      return;
    }
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  /** Writes everything buffered so far; resolves once it reached the target. */
  flush(): Promise<void> {
    if (!this.#writing && this.#pending === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#waiters.push(resolve);
      this.#startWrite();
    });
  }

  /** Flushes and releases the target (stdout/stderr stay open). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.flush();
    if (this.#ownsFd) await new Promise<void>((resolve) => close(this.#fd, () => resolve()));
  }
}

/** The bootstrap's `accessLog` setting: 'stdout', a file path, or null for none. */
export function createAccessLogger(target: string | null, opts: Omit<AccessLoggerOptions, 'target'> = {}): AccessLogger | null {
  return target === null ? null : new AccessLogger({ ...opts, target });
}
