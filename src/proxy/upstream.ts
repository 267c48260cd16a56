/**
 * Upstream clusters and their connection pools: round-robin endpoint choice, undici pools for
 * HTTP/1.1 (its low-level dispatch() API: the fastest measured from Node) and node:http2 sessions
 * for HTTP/2 (undici cannot send request trailers, which gRPC-style traffic needs).
 */
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import type { ClusterConfig, EndpointConfig } from '../config/types.ts';
import { DataBuffer } from '../filters/data-buffer.ts';
import { HeaderMap } from '../filters/header-map.ts';
import { ClusterNotFoundError, MeshextError, UpstreamConnectError, UpstreamProtocolError, UpstreamTimeoutError } from '../errors.ts';
import { logger } from '../observability/log.ts';
import type { ClusterManager, HttpCallHandle, HttpCallRequest, HttpCallResponse } from './cluster-manager.ts';

const log = logger('upstream');

/** Why an upstream request failed, in Envoy's terms (drives the local reply and response flags). */
export type UpstreamFailure =
  | 'connection_failure'
  | 'connection_termination'
  | 'protocol_error'
  | 'timeout'
  | 'remote_reset'
  /** HTTP/2 RST_STREAM REFUSED_STREAM: the upstream did not process the request (safe to retry). */
  | 'remote_refused_stream_reset'
  | 'overflow';

/** Receives one upstream response. */
export interface UpstreamResponseHandler {
  onHeaders(headers: HeaderMap, endStream: boolean): void;
  onData(data: DataBuffer, endStream: boolean): void;
  onTrailers(trailers: HeaderMap): void;
  /** The request failed; `responseStarted` tells whether onHeaders was already called. */
  onFailure(reason: UpstreamFailure, err: unknown, responseStarted: boolean): void;
}

/** One request in flight to an upstream endpoint. */
export interface UpstreamRequest {
  /** Writes request body; returns false above the high watermark (wait for onDrain). */
  write(data: DataBuffer): boolean;
  /** Ends the request, optionally with trailers (sent on HTTP/2; dropped on HTTP/1.1, see README). */
  end(trailers?: HeaderMap): void;
  abort(): void;
  /** Pauses/resumes reading the response (downstream flow control). */
  setResponsePaused(paused: boolean): void;
  /** Called when the request body buffer drained below the low watermark. */
  onDrain: (() => void) | undefined;
  /** Address of the endpoint chosen. */
  readonly endpoint: EndpointConfig;
}

/** Headers that describe one hop and never cross the proxy (RFC 9110 §7.6.1, as Envoy strips them). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'http2-settings']);

export function isHopByHop(name: string): boolean {
  return HOP_BY_HOP.has(name);
}

function endpointOrigin(ep: EndpointConfig, tls: boolean): string {
  const host = ep.address.includes(':') ? `[${ep.address}]` : ep.address;
  return `${tls ? 'https' : 'http'}://${host}:${ep.port}`;
}

/** A request body fed by the filter chain, read by undici with backpressure. */
class BodyStream extends Readable {
  drainCb: (() => void) | undefined;
  constructor() {
    super({ highWaterMark: 64 * 1024 });
  }
  override _read(): void {
    this.drainCb?.();
  }
}

const CONNECT_FAILURES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'ECONNREFUSED', 'EHOSTUNREACH', 'ENOTFOUND', 'EADDRNOTAVAIL', 'ENETUNREACH', 'EAI_AGAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'CERT_HAS_EXPIRED', 'SELF_SIGNED_CERT_IN_CHAIN']);

function classifyUndiciError(err: unknown): UpstreamFailure {
  const code = (err as { code?: string }).code ?? '';
  if (CONNECT_FAILURES.has(code) || code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL')) return 'connection_failure';
  if (code.startsWith('HPE_') || code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' || (err as Error).name === 'HTTPParserError') return 'protocol_error';
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return 'timeout';
  return 'connection_termination';
}

class Endpoint {
  readonly config: EndpointConfig;
  readonly cluster: Cluster;
  #pool: Pool | undefined;
  #h2: http2.ClientHttp2Session | undefined;
  #agent: http.Agent | undefined;
  constructor(cluster: Cluster, config: EndpointConfig) {
    this.cluster = cluster;
    this.config = config;
  }

  pool(): Pool {
    if (!this.#pool) {
      const c = this.cluster.config;
      this.#pool = new Pool(endpointOrigin(this.config, !!c.tls), {
        connections: c.maxConnections,
        connectTimeout: c.connectTimeoutMs,
        headersTimeout: 0,
        bodyTimeout: 0,
        pipelining: 1,
        connect: c.tls
          ? {
              rejectUnauthorized: !c.tls.insecureSkipVerify,
              servername: c.tls.sni,
              ca: c.tls.caFile ? readFileSync(c.tls.caFile) : undefined,
            }
          : undefined,
      });
    }
    return this.#pool;
  }

  /**
   * node:http keep-alive agent for chunked request bodies: undici always ends a chunked body with
   * an empty trailer section, so requests that may carry trailers go through node:http instead.
   */
  chunkedAgent(): http.Agent {
    if (!this.#agent) {
      const c = this.cluster.config;
      const opts = { keepAlive: true, maxSockets: c.maxConnections };
      this.#agent = c.tls
        ? new https.Agent({ ...opts, rejectUnauthorized: !c.tls.insecureSkipVerify, servername: c.tls.sni, ca: c.tls.caFile ? readFileSync(c.tls.caFile) : undefined })
        : new http.Agent(opts);
    }
    return this.#agent;
  }

  h2Session(): http2.ClientHttp2Session {
    const s = this.#h2;
    if (s && !s.closed && !s.destroyed) return s;
    const c = this.cluster.config;
    const session = http2.connect(endpointOrigin(this.config, !!c.tls), {
      ca: c.tls?.caFile ? readFileSync(c.tls.caFile) : undefined,
      servername: c.tls?.sni,
      rejectUnauthorized: c.tls ? !c.tls.insecureSkipVerify : undefined,
    });
    session.on('error', (err) => log.debug({ err, cluster: c.name }, 'upstream HTTP/2 session error'));
    session.on('close', () => {
      if (this.#h2 === session) this.#h2 = undefined;
    });
    // Idle sessions must not keep the process alive.
    session.unref();
    this.#h2 = session;
    return session;
  }

  async close(): Promise<void> {
    const p = this.#pool;
    this.#pool = undefined;
    const s = this.#h2;
    this.#h2 = undefined;
    s?.close();
    this.#agent?.destroy();
    this.#agent = undefined;
    if (p) await p.destroy().catch(() => {});
  }
}

export class Cluster {
  readonly config: ClusterConfig;
  readonly endpoints: Endpoint[];
  #rr = 0;
  constructor(config: ClusterConfig) {
    this.config = config;
    this.endpoints = config.endpoints.map((e) => new Endpoint(this, e));
  }

  pick(): Endpoint | undefined {
    const n = this.endpoints.length;
    if (n === 0) return undefined;
    const ep = this.endpoints[this.#rr % n]!;
    this.#rr = (this.#rr + 1) % n;
    return ep;
  }

  async close(): Promise<void> {
    await Promise.all(this.endpoints.map((e) => e.close()));
  }
}

/** Starts an HTTP/1.1 request through undici's dispatch(). */
function startH1(ep: Endpoint, headers: HeaderMap, endStream: boolean, handler: UpstreamResponseHandler): UpstreamRequest {
  const flat: string[] = [];
  let method = 'GET';
  let path = '/';
  let authority: string | undefined;
  const names = headers.names;
  const values = headers.values;
  for (let i = 0; i < names.length; i++) {
    const n = names[i]!;
    if (n.charCodeAt(0) === 58) {
      if (n === ':method') method = values[i]!;
      else if (n === ':path') path = values[i]!;
      else if (n === ':authority') authority = values[i]!;
      continue;
    }
    if (n === 'host') {
      if (authority === undefined) authority = values[i]!;
      continue;
    }
    // `te: trailers` is the one TE value Envoy forwards (its HCM strips every other directive).
    if (HOP_BY_HOP.has(n) && !(n === 'te' && values[i] === 'trailers')) continue;
    flat.push(n, values[i]!);
  }
  if (authority !== undefined) flat.push('host', authority);
  const body = endStream ? null : new BodyStream();
  let started = false;
  let controller: Dispatcher.DispatchController | undefined;
  let paused = false;
  let done = false;
  const req: UpstreamRequest = {
    endpoint: ep.config,
    onDrain: undefined,
    write(data) {
      if (!body || done) return true;
      let ok = true;
      for (const c of data.chunks()) ok = body.push(c);
      return ok;
    },
    end() {
      // HTTP/1.1 request trailers cannot be sent through undici; they are dropped (documented).
      if (body && !done) body.push(null);
    },
    abort() {
      if (done) return;
      done = true;
      controller?.abort(new MeshextError('MESHEXT_ERR_ABORTED', 'aborted by the proxy'));
      body?.destroy();
    },
    setResponsePaused(p) {
      paused = p;
      if (!controller) return;
      if (p) controller.pause();
      else controller.resume();
    },
  };
  if (body) body.drainCb = () => req.onDrain?.();
  const dispatchHandler: Dispatcher.DispatchHandler = {
    onRequestStart(c) {
      controller = c;
      if (paused) c.pause();
    },
    onResponseStart(_c, statusCode, resHeaders) {
      if (statusCode < 200) return; // 1xx informational responses are not forwarded
      started = true;
      const h = new HeaderMap();
      h.names.push(':status');
      h.values.push(String(statusCode));
      for (const k in resHeaders) {
        const v = resHeaders[k];
        if (HOP_BY_HOP.has(k)) continue;
        if (Array.isArray(v)) for (const x of v) h.add(k, x);
        else if (v !== undefined) h.add(k, v);
      }
      handler.onHeaders(h, false);
    },
    onResponseData(_c, chunk) {
      handler.onData(new DataBuffer(chunk), false);
    },
    onResponseEnd(_c, trailers) {
      done = true;
      let hasTrailers = false;
      for (const _ in trailers) {
        hasTrailers = true;
        break;
      }
      if (hasTrailers) {
        const t = new HeaderMap();
        for (const k in trailers) {
          const v = trailers[k];
          if (Array.isArray(v)) for (const x of v) t.add(k, x);
          else if (v !== undefined) t.add(k, v);
        }
        handler.onData(new DataBuffer(), false);
        handler.onTrailers(t);
      } else {
        handler.onData(new DataBuffer(), true);
      }
    },
    onResponseError(_c, err) {
      if (done) return;
      done = true;
      body?.destroy();
      handler.onFailure(classifyUndiciError(err), err, started);
    },
  };
  ep.pool().dispatch({ path, method, headers: flat, body, blocking: method !== 'HEAD', idempotent: false }, dispatchHandler);
  return req;
}

/**
 * Starts an HTTP/1.1 request with a chunked body through node:http, which can write request
 * trailers (undici cannot). Used only for bodies of unknown length, so the common paths stay on
 * undici's faster dispatch().
 */
function startH1Chunked(ep: Endpoint, headers: HeaderMap, handler: UpstreamResponseHandler, tls: boolean): UpstreamRequest {
  const out: Record<string, string | string[]> = {};
  let method = 'GET';
  let path = '/';
  const names = headers.names;
  const values = headers.values;
  for (let i = 0; i < names.length; i++) {
    const n = names[i]!;
    if (n.charCodeAt(0) === 58) {
      if (n === ':method') method = values[i]!;
      else if (n === ':path') path = values[i]!;
      else if (n === ':authority') out.host = values[i]!;
      continue;
    }
    if (n === 'host') {
      out.host ??= values[i]!;
      continue;
    }
    if (HOP_BY_HOP.has(n) && !(n === 'te' && values[i] === 'trailers')) continue;
    const prev = out[n];
    if (prev === undefined) out[n] = values[i]!;
    else if (Array.isArray(prev)) prev.push(values[i]!);
    else out[n] = [prev, values[i]!];
  }
  let started = false;
  let done = false;
  let response: http.IncomingMessage | undefined;
  let paused = false;
  const fail = (reason: UpstreamFailure, err: unknown) => {
    if (done) return;
    done = true;
    handler.onFailure(reason, err, started);
  };
  const req = (tls ? https : http).request({
    host: ep.config.address,
    port: ep.config.port,
    method,
    path,
    headers: out,
    agent: ep.chunkedAgent(),
    setHost: false,
  });
  const upstream: UpstreamRequest = {
    endpoint: ep.config,
    onDrain: undefined,
    write(data) {
      if (done) return true;
      let ok = true;
      for (const c of data.chunks()) ok = req.write(c);
      return ok;
    },
    end(trailers) {
      if (done) return;
      if (trailers && trailers.size > 0) req.addTrailers(trailers.toJoinedObject());
      req.end();
    },
    abort() {
      if (done) return;
      done = true;
      req.destroy();
    },
    setResponsePaused(p) {
      paused = p;
      if (p) response?.pause();
      else response?.resume();
    },
  };
  req.on('drain', () => upstream.onDrain?.());
  req.on('response', (res) => {
    response = res;
    started = true;
    const h = new HeaderMap();
    h.add(':status', String(res.statusCode ?? 502));
    const raw = res.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i]!.toLowerCase();
      if (!HOP_BY_HOP.has(n)) h.add(n, raw[i + 1]!);
    }
    handler.onHeaders(h, false);
    if (paused) res.pause();
    res.on('data', (chunk: Buffer) => {
      if (!done) handler.onData(new DataBuffer(chunk), false);
    });
    res.on('end', () => {
      if (done) return;
      done = true;
      const rt = res.rawTrailers;
      if (rt.length > 0) {
        const t = new HeaderMap();
        for (let i = 0; i < rt.length; i += 2) t.add(rt[i]!.toLowerCase(), rt[i + 1]!);
        handler.onData(new DataBuffer(), false);
        handler.onTrailers(t);
      } else {
        handler.onData(new DataBuffer(), true);
      }
    });
    res.on('error', (err) => fail('remote_reset', err));
  });
  req.on('error', (err: Error & { code?: string }) => fail(started ? 'remote_reset' : classifyUndiciError(err), err));
  return upstream;
}

/** Starts an HTTP/2 request on the endpoint's shared session. */
function startH2(ep: Endpoint, headers: HeaderMap, endStream: boolean, handler: UpstreamResponseHandler, tls: boolean): UpstreamRequest {
  const out: http2.OutgoingHttpHeaders = {};
  const names = headers.names;
  const values = headers.values;
  for (let i = 0; i < names.length; i++) {
    const n = names[i]!;
    if (n === 'host') {
      if (out[':authority'] === undefined) out[':authority'] = values[i]!;
      continue;
    }
    if (HOP_BY_HOP.has(n) && !(n === 'te' && values[i] === 'trailers')) continue;
    const prev = out[n];
    if (prev === undefined) out[n] = values[i]!;
    else if (Array.isArray(prev)) prev.push(values[i]!);
    else out[n] = [String(prev), values[i]!];
  }
  if (out[':scheme'] === undefined || out[':scheme'] !== (tls ? 'https' : 'http')) out[':scheme'] = tls ? 'https' : 'http';
  let started = false;
  let done = false;
  let pendingTrailers: HeaderMap | undefined;
  let stream: http2.ClientHttp2Stream;
  const req: UpstreamRequest = {
    endpoint: ep.config,
    onDrain: undefined,
    write(data) {
      if (done) return true;
      let ok = true;
      for (const c of data.chunks()) ok = stream.write(c);
      return ok;
    },
    end(trailers) {
      if (done) return;
      pendingTrailers = trailers;
      stream.end();
    },
    abort() {
      if (done) return;
      done = true;
      stream.close(http2.constants.NGHTTP2_CANCEL);
    },
    setResponsePaused(p) {
      if (p) stream.pause();
      else stream.resume();
    },
  };
  const fail = (reason: UpstreamFailure, err: unknown) => {
    if (done) return;
    done = true;
    handler.onFailure(reason, err, started);
  };
  let session: http2.ClientHttp2Session;
  try {
    session = ep.h2Session();
    stream = session.request(out, { endStream, waitForTrailers: !endStream });
  } catch (err) {
    queueMicrotask(() => fail('connection_failure', err));
    return req;
  }
  stream.on('drain', () => req.onDrain?.());
  stream.on('wantTrailers', () => {
    const t: http2.OutgoingHttpHeaders = {};
    if (pendingTrailers) pendingTrailers.forEach((n, v) => (t[n] = v));
    // An empty trailer block makes node end the stream with an empty DATA frame instead.
    stream.sendTrailers(t);
  });
  stream.on('response', (resHeaders, flags) => {
    const status = Number(resHeaders[':status']);
    if (status < 200) return;
    started = true;
    const h = new HeaderMap();
    h.add(':status', String(status));
    for (const k in resHeaders) {
      if (k.charCodeAt(0) === 58) continue;
      const v = resHeaders[k];
      if (Array.isArray(v)) for (const x of v) h.add(k, x);
      else if (v !== undefined) h.add(k, String(v));
    }
    const end = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    if (end) done = true;
    handler.onHeaders(h, end);
  });
  stream.on('data', (chunk: Buffer) => {
    if (!done) handler.onData(new DataBuffer(chunk), false);
  });
  let gotTrailers = false;
  stream.on('trailers', (trailers) => {
    gotTrailers = true;
    const t = new HeaderMap();
    for (const k in trailers) {
      const v = trailers[k];
      if (Array.isArray(v)) for (const x of v) t.add(k, x);
      else if (v !== undefined) t.add(k, String(v));
    }
    done = true;
    handler.onTrailers(t);
  });
  stream.on('end', () => {
    if (done || gotTrailers) return;
    done = true;
    if (started) handler.onData(new DataBuffer(), true);
    else handler.onFailure('protocol_error', new Error('stream ended without response headers'), false);
  });
  stream.on('error', (err: Error & { code?: string }) => {
    const code = err.code ?? '';
    if (code === 'ERR_HTTP2_STREAM_ERROR' && !started) fail(stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM ? 'remote_refused_stream_reset' : 'remote_reset', err);
    else if (code === 'ECONNREFUSED' || code === 'ERR_HTTP2_GOAWAY_SESSION' || code === 'ETIMEDOUT') fail('connection_failure', err);
    else if (code === 'ERR_HTTP2_ERROR' || code === 'ERR_HTTP2_INVALID_HEADER_VALUE') fail('protocol_error', err);
    else fail(started ? 'remote_reset' : 'connection_failure', err);
  });
  stream.on('close', () => {
    if (!done) {
      const code = stream.rstCode;
      fail(started ? 'remote_reset' : code ? 'remote_reset' : 'connection_termination', new Error(`upstream stream closed (code ${code})`));
    }
  });
  return req;
}

export class Clusters implements ClusterManager {
  readonly #clusters = new Map<string, Cluster>();

  constructor(configs: readonly ClusterConfig[]) {
    for (const c of configs) this.#clusters.set(c.name, new Cluster(c));
  }

  get(name: string): Cluster | undefined {
    return this.#clusters.get(name);
  }

  has(name: string): boolean {
    return this.#clusters.has(name);
  }

  names(): string[] {
    return [...this.#clusters.keys()];
  }

  /** Starts a streaming request on a chosen endpoint of `cluster`. */
  startRequest(cluster: Cluster, endpoint: Endpoint, headers: HeaderMap, endStream: boolean, handler: UpstreamResponseHandler): UpstreamRequest {
    if (cluster.config.protocol === 'HTTP2') return startH2(endpoint, headers, endStream, handler, !!cluster.config.tls);
    // A body of unknown length may end with trailers: only node:http can forward those.
    if (!endStream && !headers.has('content-length')) return startH1Chunked(endpoint, headers, handler, !!cluster.config.tls);
    return startH1(endpoint, headers, endStream, handler);
  }

  /** A buffered callout (Proxy-Wasm http_call, Lua httpCall). */
  httpCall(call: HttpCallRequest): HttpCallHandle {
    let cancel = () => {};
    const promise = new Promise<HttpCallResponse>((resolve, reject) => {
      const cluster = this.#clusters.get(call.cluster);
      if (!cluster) {
        reject(new ClusterNotFoundError(call.cluster));
        return;
      }
      const ep = cluster.pick();
      if (!ep) {
        reject(new UpstreamConnectError(call.cluster, new Error('no healthy upstream')));
        return;
      }
      let headers: HeaderMap | undefined;
      const body = new DataBuffer();
      let timer: NodeJS.Timeout | undefined;
      let settled = false;
      const finish = (trailers: HeaderMap) => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        resolve({ headers: headers!, body: body.toBuffer(), trailers });
      };
      const hasBody = call.body !== undefined && call.body.length > 0;
      const h = call.headers.clone();
      if (hasBody && !h.has('content-length')) h.set('content-length', String(call.body!.length));
      const req = this.startRequest(cluster, ep, h, !hasBody && !call.trailers, {
        onHeaders(hs, end) {
          headers = hs;
          if (end) finish(new HeaderMap());
        },
        onData(d, end) {
          body.append(d);
          if (end) finish(new HeaderMap());
        },
        onTrailers(t) {
          finish(t);
        },
        onFailure(reason, err) {
          if (settled) return;
          settled = true;
          if (timer) clearTimeout(timer);
          reject(reason === 'protocol_error' ? new UpstreamProtocolError(call.cluster, err) : new UpstreamConnectError(call.cluster, err));
        },
      });
      if (hasBody) {
        req.write(new DataBuffer(call.body!));
      }
      if (hasBody || call.trailers) req.end(call.trailers);
      if (call.timeoutMs > 0) {
        timer = setTimeout(() => {
          if (settled) return;
          settled = true;
          req.abort();
          reject(new UpstreamTimeoutError(call.cluster, call.timeoutMs));
        }, call.timeoutMs);
      }
      cancel = () => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        req.abort();
        reject(new MeshextError('MESHEXT_ERR_ABORTED', 'callout cancelled'));
      };
    });
    // Callers that cancel without awaiting must not produce unhandled rejections.
    promise.catch(() => {});
    return { promise, cancel: () => cancel() };
  }

  async close(): Promise<void> {
    await Promise.all([...this.#clusters.values()].map((c) => c.close()));
  }
}
