/**
 * Upstream clusters and their connection pools: round-robin endpoint choice, our own HTTP/1.1
 * keep-alive pools (http1/client.ts) and node:http2 sessions for HTTP/2.
 */
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import { Http1Pool } from './http1/client.ts';
import { isHopByHop } from './http1/wire.ts';
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

export { isHopByHop };

function endpointOrigin(ep: EndpointConfig, tls: boolean): string {
  const host = ep.address.includes(':') ? `[${ep.address}]` : ep.address;
  return `${tls ? 'https' : 'http'}://${host}:${ep.port}`;
}

class Endpoint {
  readonly config: EndpointConfig;
  readonly cluster: Cluster;
  #h1: Http1Pool | undefined;
  #h2: http2.ClientHttp2Session | undefined;
  constructor(cluster: Cluster, config: EndpointConfig) {
    this.cluster = cluster;
    this.config = config;
  }

  h1Pool(): Http1Pool {
    if (this.#h1 === undefined) {
      const c = this.cluster.config;
      this.#h1 = new Http1Pool({
        endpoint: this.config,
        host: this.config.address,
        port: this.config.port,
        maxConnections: c.maxConnections,
        connectTimeoutMs: c.connectTimeoutMs,
        tls: c.tls
          ? { rejectUnauthorized: !c.tls.insecureSkipVerify, servername: c.tls.sni, ca: c.tls.caFile ? readFileSync(c.tls.caFile) : undefined }
          : undefined,
      });
    }
    return this.#h1;
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
    const p = this.#h1;
    this.#h1 = undefined;
    const s = this.#h2;
    this.#h2 = undefined;
    s?.close();
    p?.close();
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
    if (isHopByHop(n) && !(n === 'te' && values[i] === 'trailers')) continue;
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
    return endpoint.h1Pool().request(headers, endStream, handler);
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
