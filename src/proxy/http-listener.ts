/**
 * An HTTP listener: accepts HTTP/1.1 and HTTP/2 (ALPN over TLS; prior knowledge in cleartext,
 * sniffed from the connection preface as Envoy's codec_type AUTO does), turns each request into a
 * filter-manager stream, and applies the connection manager's header rules (x-forwarded-for,
 * x-forwarded-proto, x-request-id, hop-by-hop removal, Host → :authority).
 *
 * The filter chain is an array of factories swapped atomically on config changes; a stream keeps
 * the array it started with, so reloads never disturb in-flight or keep-alive requests.
 */
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { X509Certificate } from 'node:crypto';
import type { ListenerConfig } from '../config/types.ts';
import { DataBuffer } from '../filters/data-buffer.ts';
import { HeaderMap } from '../filters/header-map.ts';
import { StreamInfo, type Address, type CertificateInfo, type DownstreamTls } from '../filters/stream-info.ts';
import type { HttpFilterFactory, RouteInfo } from '../filters/types.ts';
import { logger } from '../observability/log.ts';
import type { Counter, Gauge, StatsStore } from '../observability/stats.ts';
import { FilterManager, type DownstreamCodec, type StreamContext } from './filter-manager.ts';
import type { RouteTable } from './routes.ts';
import { isHopByHop } from './upstream.ts';
import { newRequestId } from './request-id.ts';
import { tls } from './node-builtins.ts';
import { Http1ParseError, type Http1Head } from './http1/parser.ts';
import { Http1ServerConnection, type Http1ServerStream, type Http1StreamHost } from './http1/server.ts';
import type { ByteStream } from './transport/byte-stream.ts';
import { NativeServer, nativeTransportStatus, type NativeSocket } from './transport/native-socket.ts';

const log = logger('http');

/** What a completed stream leaves for the access log and Istio metrics besides its StreamInfo. */
export interface CompletedStream {
  requestHeaders?: HeaderMap;
  responseHeaders?: HeaderMap;
  responseTrailers?: HeaderMap;
}

/** Called when a stream completes (access log, Istio metrics). */
export type StreamObserver = (si: StreamInfo, facts: CompletedStream) => void;

const NO_FACTS: CompletedStream = {};

/** Envoy's response code details for HTTP/1 codec errors (see Envoy's http1 codec_impl). */
function codecErrorDetails(err: unknown): string {
  if (!(err instanceof Http1ParseError)) return 'http1.codec_error';
  switch (err.code) {
    case 'MESHEXT_ERR_HTTP1_HEADERS_TOO_LARGE':
      return 'http1.headers_too_large';
    case 'MESHEXT_ERR_HTTP1_TRANSFER_ENCODING':
      return 'http1.invalid_transfer_encoding';
    default:
      return 'http1.codec_error';
  }
}

type AnyRequest = http2.Http2ServerRequest;
type AnyResponse = http2.Http2ServerResponse;

interface ListenerStats {
  rqTotal: Counter;
  rqActive: Gauge;
  rq1xx: Counter;
  rq2xx: Counter;
  rq3xx: Counter;
  rq4xx: Counter;
  rq5xx: Counter;
  cxTotal: Counter;
  cxActive: Gauge;
  cxProtocolError: Counter;
}

/** Idle keep-alive HTTP/1.1 connections close after this. */
const H1_IDLE_TIMEOUT_MS = 60_000;
/** Envoy's max_request_headers_kb default (60 KiB); larger heads get 431. */
const MAX_REQUEST_HEADER_BYTES = 60 * 1024;

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/** What the first bytes of a cleartext connection say: HTTP/2 prior knowledge, HTTP/1.x, or not yet. */
function sniffPreface(bytes: Buffer): 'h2' | 'h1' | 'more' {
  const n = Math.min(bytes.length, H2_PREFACE.length);
  if (!bytes.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) return 'h1';
  return n < H2_PREFACE.length ? 'more' : 'h2';
}

/**
 * `Expect: 100-continue` is answered by the proxy itself (the HTTP/1.1 codec and node:http2 send
 * the interim 100 Continue) and not forwarded, as Envoy does with proxy_100_continue off.
 */
function isExpectContinue(v: string): boolean {
  return v.length === 12 && v.toLowerCase() === '100-continue';
}

/** `http(s)://authority/path?query` → authority, path-and-query. */
const ABSOLUTE_URL = /^https?:\/\/([^/?#]+)([^#]*)/i;


export class HttpListener implements StreamContext, Http1StreamHost {
  readonly config: ListenerConfig;
  /** The current chain; replaced as a whole on reloads. */
  chain: readonly HttpFilterFactory[];
  routes: RouteTable | undefined;
  readonly bufferLimit: number;
  #server: net.Server | NativeServer | undefined;
  #h2: http2.Http2Server;
  readonly #sockets = new Set<ByteStream>();
  /** HTTP/1.1 connections (our own codec; see http1/server.ts). */
  readonly #h1Connections = new Set<Http1ServerConnection>();
  readonly #stats: ListenerStats;
  readonly #observer: StreamObserver;
  #activeStreams = 0;
  #draining = false;
  #drainWaiters: (() => void)[] = [];
  #idleSweep: NodeJS.Timeout | undefined;
  readonly #tls: boolean;

  constructor(config: ListenerConfig, chain: readonly HttpFilterFactory[], routes: RouteTable | undefined, stats: StatsStore, observer: StreamObserver) {
    this.config = config;
    this.chain = chain;
    this.routes = routes;
    this.bufferLimit = config.bufferLimitBytes;
    this.#observer = observer;
    const p = `http.${config.statPrefix}.`;
    this.#stats = {
      rqTotal: stats.counter(p + 'downstream_rq_total'),
      rqActive: stats.gauge(p + 'downstream_rq_active'),
      rq1xx: stats.counter(p + 'downstream_rq_1xx'),
      rq2xx: stats.counter(p + 'downstream_rq_2xx'),
      rq3xx: stats.counter(p + 'downstream_rq_3xx'),
      rq4xx: stats.counter(p + 'downstream_rq_4xx'),
      rq5xx: stats.counter(p + 'downstream_rq_5xx'),
      cxTotal: stats.counter(`listener.${config.address}_${config.port}.downstream_cx_total`),
      cxActive: stats.gauge(`listener.${config.address}_${config.port}.downstream_cx_active`),
      cxProtocolError: stats.counter(p + 'downstream_cx_protocol_error'),
    };
    const onRequest = (req: AnyRequest, res: AnyResponse) => this.#onRequest(req, res);
    this.#tls = config.tls !== undefined;
    // HTTP/2 sessions run over sockets this listener accepts (cleartext after sniffing the preface,
    // or TLS after ALPN chose h2); HTTP/1.x goes to our own codec (http1/server.ts).
    this.#h2 = http2.createServer({}, onRequest);
    this.#h2.on('sessionError', (err) => log.debug({ err }, 'HTTP/2 session error'));
  }

  get port(): number {
    const a = this.#server?.address();
    return typeof a === 'object' && a ? a.port : this.config.port;
  }

  resolveRoute(headers: HeaderMap): RouteInfo | undefined {
    return this.routes?.match(headers);
  }

  onStreamComplete(fm: FilterManager): void {
    this.#stats.rqActive.sub(1);
    this.#countResponse(fm.streamInfo.responseCode);
    this.#observer(fm.streamInfo, { requestHeaders: fm.decoder.headers, responseHeaders: fm.encoder.headers, responseTrailers: fm.encoder.trailers });
    if (--this.#activeStreams === 0 && this.#draining) this.#notifyDrained();
  }

  #countResponse(code: number): void {
    const s = this.#stats;
    if (code >= 500) s.rq5xx.inc();
    else if (code >= 400) s.rq4xx.inc();
    else if (code >= 300) s.rq3xx.inc();
    else if (code >= 200) s.rq2xx.inc();
    else s.rq1xx.inc();
  }

  async listen(): Promise<void> {
    // Idle HTTP/1.1 connections close after H1_IDLE_TIMEOUT_MS without a request (see sweepIdle).
    this.#idleSweep = setInterval(() => {
      for (const c of this.#h1Connections) c.sweepIdle();
    }, H1_IDLE_TIMEOUT_MS / 4);
    this.#idleSweep.unref();
    const onSocket = (socket: ByteStream) => {
      this.#stats.cxTotal.inc();
      this.#track(socket);
    };
    let server: net.Server | NativeServer;
    const t = this.config.tls;
    if (t) {
      const h2 = this.#h2;
      const h1Allowed = t.alpn.includes('http/1.1');
      server = tls.createServer({
        cert: readFileSync(t.certFile),
        key: readFileSync(t.keyFile),
        ca: t.caFile ? readFileSync(t.caFile) : undefined,
        // With a CA, ask for client certificates (optional, as Envoy's validation context
        // without require_client_certificate); validity is reported, not enforced.
        requestCert: t.caFile !== undefined,
        rejectUnauthorized: false,
        ALPNProtocols: t.alpn,
      });
      server.on('secureConnection', (socket: TLSSocket) => {
        onSocket(socket);
        socket.setNoDelay(true);
        if (socket.alpnProtocol === 'h2') {
          h2.emit('connection', socket);
        } else if (h1Allowed) {
          const conn = this.#acceptHttp1(socket);
          const servername = (socket as unknown as { servername?: string | false }).servername;
          conn.sni = typeof servername === 'string' ? servername : '';
          conn.tls = tlsFacts(socket);
        } else {
          socket.destroy();
        }
      });
      server.on('tlsClientError', (err) => log.debug({ err }, 'TLS handshake failed'));
    } else if (nativeTransportStatus().native) {
      // Plaintext on the native transport (transport/native-socket.ts): it listens itself, with
      // SO_REUSEPORT as node:net's reusePort.
      this.#server = new NativeServer(this.config.address, this.config.port, 4096, (socket) => {
        onSocket(socket);
        this.#sniffNative(socket);
      });
      return;
    } else {
      const h2 = this.#h2;
      server = net.createServer({ noDelay: true }, (socket) => {
        onSocket(socket);
        // Sniff the HTTP/2 connection preface (Envoy codec AUTO): a client with prior knowledge
        // starts with "PRI * HTTP/2.0"; anything else is HTTP/1.x. Reads that are still a prefix
        // of the preface (a first segment of just "P") wait for more bytes before deciding.
        let seen: Buffer | undefined;
        const sniff = (chunk: Buffer) => {
          const bytes = seen === undefined ? chunk : Buffer.concat([seen, chunk]);
          const verdict = sniffPreface(bytes);
          if (verdict === 'more') {
            seen = bytes;
            return;
          }
          socket.off('data', sniff);
          socket.pause();
          socket.unshift(bytes);
          if (verdict === 'h2') {
            // node:http2 reads what is already buffered on the socket itself (on the next tick);
            // resuming here would flow the preface away to no listener.
            h2.emit('connection', socket);
          } else {
            this.#acceptHttp1(socket);
            socket.resume();
          }
        };
        socket.on('data', sniff);
        socket.once('end', () => {
          // Closed before a decision (e.g. a lone "P"): nothing to serve.
          if (socket.listeners('data').includes(sniff)) socket.destroy();
        });
      });
    }
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.config.address, port: this.config.port, reusePort: true }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  /** Counts a connection as active until it closes, and closes it with the listener. */
  #track(socket: ByteStream): void {
    this.#stats.cxActive.add(1);
    this.#sockets.add(socket);
    socket.once('close', () => {
      this.#sockets.delete(socket);
      this.#stats.cxActive.sub(1);
    });
  }

  /**
   * The preface sniffing of the node:net path, for a native socket: HTTP/1.x stays on it; an
   * HTTP/2 client with prior knowledge is handed to node:http2 on a node:net socket made from the
   * connection's file descriptor, with the bytes read so far put back.
   */
  #sniffNative(socket: NativeSocket): void {
    let seen: Buffer | undefined;
    const sniff = (chunk: Buffer) => {
      const bytes = seen === undefined ? chunk : Buffer.concat([seen, chunk]);
      const verdict = sniffPreface(bytes);
      if (verdict === 'more') {
        seen = Buffer.from(bytes); // the read buffer is reused
        return;
      }
      socket.off('data', sniff);
      if (verdict === 'h1') {
        this.#acceptHttp1(socket, true);
        // The codec's reader is attached now: give it what was read (still valid in this call).
        socket.onBytes(bytes);
        return;
      }
      const kept = Buffer.from(bytes);
      this.#sockets.delete(socket);
      this.#stats.cxActive.sub(1);
      let fd: number;
      try {
        fd = socket.detachFd();
      } catch (err) {
        log.debug({ err }, 'could not hand an HTTP/2 connection to node:http2');
        return;
      }
      const h2Socket = new net.Socket({ fd, readable: true, writable: true });
      h2Socket.setNoDelay(true);
      this.#track(h2Socket);
      h2Socket.pause();
      h2Socket.unshift(kept);
      this.#h2.emit('connection', h2Socket);
    };
    socket.on('data', sniff);
    socket.once('end', () => {
      if (!socket.destroyed && !this.#h1Sockets.has(socket)) socket.destroy();
    });
  }

  readonly #h1Sockets = new WeakSet<ByteStream>();

  #acceptHttp1(socket: ByteStream, reusedReadBuffer = false): Http1ServerConnection {
    this.#h1Sockets.add(socket);
    const conn = new Http1ServerConnection(socket, this, { maxHeaderBytes: MAX_REQUEST_HEADER_BYTES, reusedReadBuffer });
    this.#h1Connections.add(conn);
    if (this.#draining) conn.closeAfterResponse = true;
    return conn;
  }

  onHttp1ConnectionClosed(conn: Http1ServerConnection): void {
    this.#h1Connections.delete(conn);
  }

  onHttp1ProtocolError(conn: Http1ServerConnection, err: unknown, status: number | undefined, fm: FilterManager | undefined): void {
    this.#stats.cxProtocolError.inc();
    log.debug({ err, remote: conn.remote.address }, 'HTTP/1.1 protocol error from the client');
    if (status === undefined) return; // the response had started: the connection is reset instead
    // The codec answers the error itself; like Envoy's local reply for a codec error, it is a
    // request with flag DPE in the stats, the access log and the Istio metrics.
    const details = codecErrorDetails(err);
    if (fm !== undefined) {
      fm.onDownstreamProtocolError(status, details);
      return;
    }
    const si = this.#http1StreamInfo(conn, 1);
    si.responseCode = status;
    si.responseCodeDetails = details;
    si.responseFlags.add('DPE');
    this.#stats.rqTotal.inc();
    this.#countResponse(status);
    this.#observer(si, NO_FACTS);
  }

  #http1StreamInfo(conn: Http1ServerConnection, versionMinor: number): StreamInfo {
    const si = new StreamInfo();
    si.protocol = versionMinor === 0 ? 'HTTP/1.0' : 'HTTP/1.1';
    si.listenerName = this.config.name;
    si.direction = this.config.direction;
    si.downstreamRemoteAddress = conn.remote;
    si.downstreamDirectRemoteAddress = conn.remote;
    si.downstreamLocalAddress = conn.local;
    if (this.#tls) {
      si.requestedServerName = conn.sni;
      si.downstreamTls = conn.tls;
    }
    return si;
  }

  /** Turns a parsed HTTP/1.x request into a filter-manager stream (Envoy's HCM header rules). */
  startHttp1Stream(stream: Http1ServerStream, head: Http1Head): FilterManager | undefined {
    const conn = stream.conn;
    const si = this.#http1StreamInfo(conn, head.versionMinor);
    if (this.#draining) conn.closeAfterResponse = true;
    const scheme = this.#tls ? 'https' : 'http';
    const headers = new HeaderMap();
    const hn = headers.names;
    const hv = headers.values;
    hn.push(':authority', ':path', ':method', ':scheme');
    let authority: string | undefined;
    let path = head.target;
    const names = head.names;
    const values = head.values;
    hv.push('', path, head.method, scheme);
    // Whether the request carries none of the headers the connection manager sets below (the
    // usual case): then they are appended without looking them up.
    let forwarding = false;
    for (let i = 0; i < names.length; i++) {
      const n = names[i]!;
      if (n === 'host') {
        authority ??= values[i]!;
        continue;
      }
      if (n.charCodeAt(0) === 120 /* x */ && (n === 'x-forwarded-for' || n === 'x-forwarded-proto' || n === 'x-request-id')) forwarding = true;
      if (isHopByHop(n) && !(n === 'te' && values[i] === 'trailers')) continue;
      if (n === 'expect' && isExpectContinue(values[i]!)) continue;
      hn.push(n);
      hv.push(values[i]!);
    }
    if (path.charCodeAt(0) !== 47 /* '/' */) {
      // Absolute-form request target (a client using the proxy as its HTTP proxy): Envoy's
      // allow_absolute_url (default on) takes :authority and :path from the URL.
      const m = ABSOLUTE_URL.exec(path);
      if (m) {
        authority = m[1]!;
        const rest = m[2]!;
        path = rest === '' ? '/' : rest.charCodeAt(0) === 63 /* '?' */ ? '/' + rest : rest;
        hv[1] = path;
      }
    }
    if (authority === undefined) {
      if (head.versionMinor === 1) throw new Http1ParseError('missing host header');
      authority = '';
    }
    hv[0] = authority;
    return this.#startStream(headers, si, conn.remote, stream, scheme, head.bodyless, !forwarding);
  }

  /** Connection-manager header rules, then the filter manager; shared by both codecs. */
  #startStream(headers: HeaderMap, si: StreamInfo, remote: Address, codec: DownstreamCodec & { fm: FilterManager | undefined }, scheme: string, endStream: boolean, noForwardingHeaders = false): FilterManager {
    let rid: string | undefined;
    if (noForwardingHeaders) {
      // The same result as the lookups below when none of the three is present.
      rid = newRequestId();
      headers.names.push('x-forwarded-for', 'x-forwarded-proto', 'x-request-id');
      headers.values.push(remote.address, scheme, rid);
    } else {
      const xff = headers.get('x-forwarded-for');
      headers.set('x-forwarded-for', xff ? `${xff}, ${remote.address}` : remote.address);
      if (this.config.direction === 'gateway' || !headers.has('x-forwarded-proto')) headers.set('x-forwarded-proto', scheme);
      rid = headers.get('x-request-id');
      if (!rid) {
        rid = newRequestId();
        headers.add('x-request-id', rid);
      }
    }
    si.requestId = rid;
    const fm = new FilterManager(this, codec, si, this.chain);
    codec.fm = fm;
    this.#activeStreams++;
    this.#stats.rqTotal.inc();
    this.#stats.rqActive.add(1);
    fm.decodeHeaders(headers, endStream);
    return fm;
  }

  /** An HTTP/2 request (node:http2's compatibility API). */
  #onRequest(req: AnyRequest, res: AnyResponse): void {
    if (this.#draining) {
      // Envoy's drain: HTTP/2 sessions get GOAWAY at close().
      res.setHeader('connection', 'close');
    }
    const socket = req.socket as net.Socket;
    const si = new StreamInfo();
    si.protocol = 'HTTP/2';
    si.listenerName = this.config.name;
    si.direction = this.config.direction;
    const remote = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
    si.downstreamRemoteAddress = remote;
    si.downstreamDirectRemoteAddress = remote;
    si.downstreamLocalAddress = { address: socket.localAddress ?? '', port: socket.localPort ?? 0 };
    if (this.#tls) {
      const tls = socket as TLSSocket;
      const servername = (tls as unknown as { servername?: string | false }).servername;
      si.requestedServerName = typeof servername === 'string' ? servername : '';
      si.downstreamTls = tlsFacts(tls);
    }

    const headers = new HeaderMap();
    const scheme = this.#tls ? 'https' : 'http';
    const raw = req.rawHeaders;
    let host: string | undefined;
    let cookie: string | undefined;
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i]!.toLowerCase();
      if (isHopByHop(n) && !(n === 'te' && raw[i + 1] === 'trailers')) continue;
      if (n === 'expect' && isExpectContinue(raw[i + 1]!)) continue;
      if (n === 'host') {
        // The authority travels as :authority; a Host header stands in when it is absent
        // (RFC 9113 §8.3.1), as HTTP/1.1's Host does.
        host ??= raw[i + 1]!;
        continue;
      }
      if (n === 'cookie') {
        // HTTP/2 may split cookies into crumbs; they are joined with "; " into one header
        // (RFC 9113 §8.2.3, as Envoy does), so an HTTP/1.1 upstream gets a single Cookie.
        cookie = cookie === undefined ? raw[i + 1]! : `${cookie}; ${raw[i + 1]!}`;
        continue;
      }
      headers.add(n, raw[i + 1]!);
    }
    if (host !== undefined && !headers.has(':authority')) headers.add(':authority', host);
    if (cookie !== undefined) headers.add('cookie', cookie);
    if (!headers.has(':scheme')) headers.add(':scheme', scheme);

    const endStream = (req as http2.Http2ServerRequest).stream.endAfterHeaders;
    const codec = new NodeCodec(req, res);
    res.on('close', () => {
      if (!codec.finished) codec.fm?.onDownstreamReset();
    });
    const fm = this.#startStream(headers, si, remote, codec, scheme, endStream);
    if (endStream) {
      // Node still emits 'end' on an empty body; nothing to forward.
      req.resume();
      return;
    }
    req.on('data', (chunk: Buffer) => fm.decodeData(new DataBuffer(chunk), false));
    req.on('end', () => {
      const t = req.trailers;
      let hasTrailers = false;
      for (const _ in t) {
        hasTrailers = true;
        break;
      }
      if (hasTrailers) {
        const tm = new HeaderMap();
        const rawT = req.rawTrailers;
        for (let i = 0; i < rawT.length; i += 2) tm.add(rawT[i]!, rawT[i + 1]!);
        fm.decodeTrailers(tm);
      } else {
        fm.decodeData(new DataBuffer(), true);
      }
    });
    req.on('error', () => {});
  }

  /** Swaps the filter chain (new streams only). */
  setChain(chain: readonly HttpFilterFactory[]): void {
    this.chain = chain;
  }

  /** Stops accepting; resolves when in-flight streams finish or the timeout passes. */
  async drain(timeoutMs: number): Promise<void> {
    this.#draining = true;
    this.#server?.close();
    // Idle keep-alive HTTP/1.1 connections close now; busy ones after their response.
    for (const c of this.#h1Connections) c.drain();
    (this.#h2 as http2.Http2Server).close?.();
    if (this.#activeStreams === 0) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, timeoutMs);
      this.#drainWaiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  #notifyDrained(): void {
    const w = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const f of w) f();
  }

  async close(): Promise<void> {
    this.#draining = true;
    if (this.#idleSweep !== undefined) clearInterval(this.#idleSweep);
    const server = this.#server;
    for (const s of this.#sockets) s.destroy();
    if (server) await new Promise<void>((r) => server.close(() => r()));
    (this.#h2 as http2.Http2Server).close?.();
  }
}

/** IANA ids of the suites Node's default TLS configuration negotiates (getCipher() gives names only). */
const CIPHER_IDS: Record<string, number> = {
  TLS_AES_128_GCM_SHA256: 0x1301,
  TLS_AES_256_GCM_SHA384: 0x1302,
  TLS_CHACHA20_POLY1305_SHA256: 0x1303,
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: 0xc02b,
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: 0xc02c,
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: 0xc02f,
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: 0xc030,
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256: 0xcca8,
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: 0xcca9,
};

/** X509Certificate → Envoy's renderings. */
function certificateInfo(x: X509Certificate | undefined): CertificateInfo | undefined {
  if (!x) return undefined;
  const sans = (x.subjectAltName ?? '').split(', ').filter(Boolean);
  const rfc2253 = (name: string) => name.split('\n').filter(Boolean).reverse().join(',');
  const parts = x.subject.split('\n');
  const attr = (key: string) => parts.filter((p) => p.startsWith(`${key}=`)).map((p) => p.slice(key.length + 1));
  return {
    subject: rfc2253(x.subject),
    commonName: attr('CN')[0] ?? '',
    organizationName: attr('O'),
    issuer: rfc2253(x.issuer),
    serialNumber: x.serialNumber.toLowerCase(),
    sha256Digest: x.fingerprint256.replaceAll(':', '').toLowerCase(),
    sha1Digest: x.fingerprint.replaceAll(':', '').toLowerCase(),
    uriSans: sans.filter((s) => s.startsWith('URI:')).map((s) => s.slice(4)),
    dnsSans: sans.filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4)),
    validFrom: Math.floor(Date.parse(x.validFrom) / 1000),
    expiration: Math.floor(Date.parse(x.validTo) / 1000),
    pem: x.toString(),
  };
}

/** TLS facts of a downstream connection; certificates are parsed only when asked for. */
function tlsFacts(tls: TLSSocket): DownstreamTls {
  const cipher = tls.getCipher?.();
  let peer: CertificateInfo | undefined | null = null;
  let local: CertificateInfo | undefined | null = null;
  const peerX509 = tls.getPeerX509Certificate?.();
  return {
    protocol: tls.getProtocol?.() ?? '',
    cipher: cipher?.standardName ?? cipher?.name ?? '',
    cipherId: CIPHER_IDS[cipher?.standardName ?? ''],
    peerCertificatePresented: peerX509 !== undefined,
    peerCertificateValidated: peerX509 !== undefined && tls.authorized,
    alpn: typeof tls.alpnProtocol === 'string' ? tls.alpnProtocol : '',
    peerCertificate: () => (peer === null ? (peer = certificateInfo(peerX509)) : peer),
    localCertificate: () => (local === null ? (local = certificateInfo(tls.getX509Certificate?.())) : local),
  };
}

/** The downstream side of one HTTP/2 stream over node:http2's compatibility API. */
class NodeCodec implements DownstreamCodec {
  fm: FilterManager | undefined;
  finished = false;
  readonly #req: http2.Http2ServerRequest;
  readonly #res: http2.Http2ServerResponse;
  #drainHooked = false;
  constructor(req: AnyRequest, res: AnyResponse) {
    this.#req = req as http2.Http2ServerRequest;
    this.#res = res as http2.Http2ServerResponse;
  }

  encodeHeaders(headers: HeaderMap, endStream: boolean): void {
    const res = this.#res;
    const status = Number(headers.get(':status')) || 200;
    const names = headers.names;
    const values = headers.values;
    const out: Record<string, string | string[]> = {};
    for (let i = 0; i < names.length; i++) {
      const n = names[i]!;
      if (n.charCodeAt(0) === 58 || isHopByHop(n)) continue;
      const prev = out[n];
      if (prev === undefined) out[n] = values[i]!;
      else if (Array.isArray(prev)) prev.push(values[i]!);
      else out[n] = [prev, values[i]!];
    }
    res.writeHead(status, out);
    if (this.fm?.streamInfo.drainConnectionUponCompletion) {
      // Envoy sends GOAWAY after this stream: the session finishes open streams, then closes.
      const session = res.stream.session;
      res.once('finish', () => session?.close());
    }
    if (endStream) this.#end();
  }

  encodeData(data: DataBuffer, endStream: boolean): boolean {
    const res = this.#res;
    let ok = true;
    for (const c of data.chunks()) ok = res.write(c);
    if (endStream) {
      this.#end();
      return true;
    }
    if (!ok && !this.#drainHooked) {
      this.#drainHooked = true;
      res.once('drain', () => {
        this.#drainHooked = false;
        this.fm?.onDownstreamWatermark_(false);
      });
    }
    return ok;
  }

  encodeTrailers(trailers: HeaderMap): void {
    this.#res.addTrailers(trailers.toJoinedObject());
    this.#end();
  }

  #end(): void {
    this.finished = true;
    this.#res.end();
  }

  resetStream(): void {
    this.finished = true;
    const stream = this.#res.stream;
    if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  }

  readDisable(disable: boolean): void {
    if (disable) this.#req.pause();
    else this.#req.resume();
  }
}
