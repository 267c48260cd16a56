/**
 * Upstream HTTP/1.1: a keep-alive connection pool per endpoint and one exchange per request,
 * written and parsed with our own codec (Envoy's ClientConnection + HTTP/1 conn pool).
 *
 * Replaces undici dispatch() and node:http's Agent on the request path: both cost more in their
 * object/stream layers than the whole rest of a proxied request (see parser.ts), and neither could
 * do everything a proxy needs (undici cannot send request trailers).
 */
import net from 'node:net';
import type { EndpointConfig } from '../../config/types.ts';
import { DataBuffer } from '../../filters/data-buffer.ts';
import { HeaderMap } from '../../filters/header-map.ts';
import { Http1ParseError, Http1Parser, type Http1Events, type Http1Head } from './parser.ts';
import { tls } from '../node-builtins.ts';
import type { ByteStream } from '../transport/byte-stream.ts';
import { connectNative } from '../transport/native-socket.ts';
import { isHopByHop, isWritableHeader, serializeHeaders, serializeTrailers, writeFramed } from './wire.ts';

/** Why an exchange failed, in Envoy's terms (the router maps these to local replies and flags). */
export type Http1Failure = 'connection_failure' | 'connection_termination' | 'protocol_error';

export interface Http1ResponseHandler {
  onHeaders(headers: HeaderMap, endStream: boolean): void;
  onData(data: DataBuffer, endStream: boolean): void;
  onTrailers(trailers: HeaderMap): void;
  onFailure(reason: Http1Failure, err: unknown, responseStarted: boolean): void;
}

export interface Http1PoolOptions {
  /** The endpoint this pool connects to (reported on each exchange). */
  endpoint: EndpointConfig;
  host: string;
  port: number;
  maxConnections: number;
  connectTimeoutMs: number;
  tls?: { servername?: string; ca?: Buffer; rejectUnauthorized: boolean };
}

/** Idle keep-alive connections close after this unless the upstream's Keep-Alive hint is shorter. */
const DEFAULT_IDLE_MS = 4_000;
/** Idle expiry check interval: connections close up to this much before their limit, never after. */
const SWEEP_MS = 250;
/** Methods whose request without a body gets `content-length: 0` (as undici and node:http). */
const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);
/** Requests safe to send again when a reused connection turns out to be closed (RFC 9110 §9.2.2). */
const RETRY_SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);
/** Request-target bytes: visible ASCII and obs-text (SP, CR, LF or controls would split the request line). */
const INVALID_TARGET = /[^\x21-\x7e\x80-\xff]/;
const EMPTY: readonly Buffer[] = [];
/** One read buffer per thread for plain-TCP upstream sockets (reads are consumed synchronously). */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

export class Http1ConnectError extends Error {
  readonly code: string;
  constructor(message: string, code: string, cause?: unknown) {
    super(message, { cause });
    this.name = 'Http1ConnectError';
    this.code = code;
  }
}

export class Http1Pool {
  readonly options: Http1PoolOptions;
  readonly #idle: Http1ClientConnection[] = [];
  readonly #waiting: Http1Exchange[] = [];
  #open = 0;
  #closed = false;
  #sweep: NodeJS.Timeout | undefined;

  constructor(options: Http1PoolOptions) {
    this.options = options;
  }

  /** Connections open (busy and idle). */
  get size(): number {
    return this.#open;
  }

  /** Starts a request; the response arrives on `handler`. */
  request(headers: HeaderMap, endStream: boolean, handler: Http1ResponseHandler): Http1Exchange {
    const ex = new Http1Exchange(this, headers, endStream, handler);
    if (ex.invalidHead) {
      // A filter-set :method/:path/:authority that cannot be written without splitting the request.
      queueMicrotask(() => ex.fail('protocol_error', new Http1ParseError('invalid request line or host for HTTP/1.1', 502), false));
      return ex;
    }
    this.#dispatch(ex);
    return ex;
  }

  #dispatch(ex: Http1Exchange): void {
    if (this.#closed) {
      queueMicrotask(() => ex.fail('connection_failure', new Http1ConnectError('connection pool closed', 'MESHEXT_ERR_POOL_CLOSED'), false));
      return;
    }
    const conn = this.#idle.pop();
    if (conn !== undefined) {
      conn.assign(ex, true);
    } else if (this.#open < this.options.maxConnections) {
      this.#open++;
      new Http1ClientConnection(this).assign(ex, false);
    } else {
      this.#waiting.push(ex);
    }
  }

  /** Sends `ex` again on a fresh connection (its reused connection was already closed). */
  retry(ex: Http1Exchange): void {
    this.#dispatch(ex);
  }

  /** Removes a queued exchange (aborted before it got a connection). */
  dequeue(ex: Http1Exchange): void {
    const i = this.#waiting.indexOf(ex);
    if (i >= 0) this.#waiting.splice(i, 1);
  }

  /** A connection finished an exchange and may carry another. */
  release(conn: Http1ClientConnection): void {
    const next = this.#waiting.shift();
    if (next !== undefined) {
      conn.assign(next, true);
      return;
    }
    if (this.#closed) {
      conn.socket.destroy();
      return;
    }
    conn.idle();
    this.#idle.push(conn);
    if (this.#sweep === undefined) {
      this.#sweep = setInterval(() => this.#sweepIdle(), SWEEP_MS);
      this.#sweep.unref();
    }
  }

  /** Closes connections idle for (nearly) their idle limit; stops when none is idle. */
  #sweepIdle(): void {
    const now = performance.now();
    for (const c of [...this.#idle]) if (now - c.idleSince + SWEEP_MS > c.idleMs) c.socket.destroy();
    if (this.#idle.length === 0 && this.#sweep !== undefined) {
      clearInterval(this.#sweep);
      this.#sweep = undefined;
    }
  }

  /** A connection closed (idle or busy). */
  closed(conn: Http1ClientConnection): void {
    this.#open--;
    const i = this.#idle.indexOf(conn);
    if (i >= 0) this.#idle.splice(i, 1);
    // Queued requests get a new connection in its place.
    const next = this.#waiting.shift();
    if (next !== undefined) this.#dispatch(next);
  }

  close(): void {
    this.#closed = true;
    if (this.#sweep !== undefined) clearInterval(this.#sweep);
    this.#sweep = undefined;
    for (const c of this.#idle.splice(0)) c.socket.destroy();
    for (const ex of this.#waiting.splice(0)) ex.fail('connection_failure', new Http1ConnectError('connection pool closed', 'MESHEXT_ERR_POOL_CLOSED'), false);
  }
}

class Http1ClientConnection implements Http1Events {
  readonly pool: Http1Pool;
  readonly socket: ByteStream;
  readonly parser: Http1Parser;
  exchange: Http1Exchange | undefined;
  connected = false;
  /** How long this connection may stay idle in the pool (the upstream's Keep-Alive hint, capped). */
  idleMs = DEFAULT_IDLE_MS;
  /** performance.now() when it last went idle. */
  idleSince = 0;
  #error: unknown;
  /** Body chunks are views into READ_BUFFER and must be copied before they leave the callback. */
  readonly #copyBody: boolean;

  constructor(pool: Http1Pool) {
    this.pool = pool;
    const o = pool.options;
    this.parser = new Http1Parser(false, this);
    // Plaintext to an IP address runs on the native transport when it is built (see
    // transport/native-socket.ts); names (DNS) and TLS go through node:net / node:tls.
    const native = o.tls || net.isIP(o.host) === 0 ? undefined : connectNative(o.host, o.port);
    const socket: ByteStream = native ?? (o.tls
      ? tls.connect({
          host: o.host,
          port: o.port,
          servername: o.tls.servername ?? (net.isIP(o.host) ? undefined : o.host),
          ca: o.tls.ca,
          rejectUnauthorized: o.tls.rejectUnauthorized,
          ALPNProtocols: ['http/1.1'],
        })
      : net.connect({
          host: o.host,
          port: o.port,
          noDelay: true,
          // Reads land in one per-thread buffer and go straight to the parser, skipping the
          // Readable stream machinery; body bytes are copied out (receiveBody), heads become strings.
          onread: { buffer: READ_BUFFER, callback: (n: number, buf: Uint8Array) => this.#onRead(n, buf) },
        }));
    this.socket = socket;
    this.#copyBody = !o.tls;
    socket.setNoDelay(true);
    socket.once(o.tls ? 'secureConnect' : 'connect', () => {
      this.connected = true;
      // No socket timeout once connected: Node would re-arm it on every read and write. Idle
      // expiry is the pool's sweep; busy connections are bounded by route timeouts.
      socket.setTimeout(0);
    });
    socket.setTimeout(o.connectTimeoutMs, () => {
      if (!this.connected) socket.destroy(new Http1ConnectError(`connect timeout after ${o.connectTimeoutMs} ms`, 'UND_ERR_CONNECT_TIMEOUT'));
    });
    if (o.tls || native !== undefined) socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) => {
      this.#error ??= err;
    });
    socket.on('end', () => {
      // The upstream half-closed: a close-delimited body ends here; otherwise wait for 'close'.
      if (this.exchange !== undefined && this.parser.readingUntilClose) this.parser.finish();
      socket.end();
    });
    socket.on('close', () => this.#onClose());
  }

  assign(ex: Http1Exchange, reused: boolean): void {
    this.exchange = ex;
    this.socket.ref();
    this.parser.noBodyExpected = ex.method === 'HEAD';
    ex.attach(this, reused);
  }

  /** Back in the pool: idle sockets must not keep the process alive, and expire. */
  idle(): void {
    // The exchange may have paused reads (its downstream was above its watermark) and completed
    // in the same read: an idle connection reads again, or the next exchange on it would never
    // see its response, and an upstream close would go unnoticed.
    if (this.socket.isPaused()) this.socket.resume();
    this.socket.unref();
    this.idleSince = performance.now();
  }

  #onRead(n: number, buf: Uint8Array): boolean {
    this.#onData(Buffer.from(buf.buffer, buf.byteOffset, n));
    return true;
  }

  #onData(chunk: Buffer): void {
    if (this.exchange === undefined) {
      // Bytes nobody asked for: the connection is out of sync.
      this.socket.destroy();
      return;
    }
    try {
      this.parser.execute(chunk);
    } catch (err) {
      const ex = this.exchange;
      this.exchange = undefined;
      this.socket.destroy();
      ex?.fail('protocol_error', err, ex.started);
    }
  }

  #onClose(): void {
    const ex = this.exchange;
    this.exchange = undefined;
    this.pool.closed(this);
    if (ex === undefined || ex.done) return;
    if (!this.connected) {
      ex.fail('connection_failure', this.#error ?? new Http1ConnectError('connection closed while connecting', 'ECONNRESET'), false);
    } else if (!ex.started && ex.retryable()) {
      ex.detach();
      this.pool.retry(ex);
    } else {
      ex.fail('connection_termination', this.#error ?? new Http1ConnectError('upstream closed the connection', 'UND_ERR_SOCKET'), ex.started);
    }
  }

  // ---------------------------------------------------------------- parser events

  onHead(head: Http1Head): void {
    const ex = this.exchange;
    if (ex === undefined) return;
    const keepAliveHint = ex.receiveHead(head);
    if (keepAliveHint > 0) {
      this.idleMs = Math.max(1000, Math.min(DEFAULT_IDLE_MS, keepAliveHint * 1000 - 1000));
    }
  }

  onBody(chunk: Buffer): void {
    this.exchange?.receiveBody(this.#copyBody ? Buffer.from(chunk) : chunk);
  }

  onComplete(trailerNames: string[] | undefined, trailerValues: string[] | undefined): void {
    const ex = this.exchange;
    if (ex === undefined) return;
    this.exchange = undefined;
    const reusable = ex.keepAlive && ex.requestDone && !this.socket.destroyed;
    if (!reusable) this.socket.end();
    ex.receiveComplete(trailerNames, trailerValues);
    if (reusable && !this.socket.destroyed) this.pool.release(this);
  }
}

/** One request/response exchange on an upstream HTTP/1.1 connection. */
export class Http1Exchange {
  readonly pool: Http1Pool;
  readonly endpoint: EndpointConfig;
  readonly method: string;
  /** The method, path or authority cannot go on an HTTP/1.1 wire (the exchange fails instead). */
  readonly invalidHead: boolean;
  readonly #handler: Http1ResponseHandler;
  #conn: Http1ClientConnection | undefined;
  /** The request head, kept until the first write (so head and body go out together). */
  #head: string;
  #chunked: boolean;
  /** Body written before a connection was assigned (queued in the pool). */
  #queuedBody: DataBuffer | undefined;
  #queuedEnd = false;
  #queuedTrailers: HeaderMap | undefined;
  #headWritten = false;
  #flushScheduled = false;
  #reused = false;
  #bodyless: boolean;
  started = false;
  done = false;
  requestDone: boolean;
  keepAlive = true;
  #paused = false;
  onDrain: (() => void) | undefined;

  constructor(pool: Http1Pool, headers: HeaderMap, endStream: boolean, handler: Http1ResponseHandler) {
    this.pool = pool;
    this.endpoint = pool.options.endpoint;
    this.#handler = handler;
    let method = 'GET';
    let path = '/';
    let authority: string | undefined;
    const names = headers.names;
    const values = headers.values;
    for (let i = 0; i < names.length && names[i]!.charCodeAt(0) === 58; i++) {
      const n = names[i]!;
      if (n === ':method') method = values[i]!;
      else if (n === ':path') path = values[i]!;
      else if (n === ':authority') authority = values[i]!;
    }
    if (authority === undefined) authority = headers.get('host');
    this.method = method;
    const { text, contentLength } = serializeHeaders(headers, true, true);
    let framing = '';
    this.#chunked = false;
    if (endStream) {
      if (contentLength === undefined && BODY_METHODS.has(method)) framing = 'content-length: 0\r\n';
    } else if (contentLength === undefined) {
      framing = 'transfer-encoding: chunked\r\n';
      this.#chunked = true;
    }
    this.#bodyless = endStream;
    this.requestDone = endStream;
    this.invalidHead = !isWritableHeader(method, '') || path.length === 0 || INVALID_TARGET.test(path) || (authority !== undefined && !isWritableHeader('host', authority));
    this.#head = `${method} ${path} HTTP/1.1\r\n${authority !== undefined ? `host: ${authority}\r\n` : ''}${text}${framing}\r\n`;
  }

  /** Safe to send again on another connection (nothing of it was processed upstream). */
  retryable(): boolean {
    return this.#reused && this.#bodyless && RETRY_SAFE.has(this.method);
  }

  attach(conn: Http1ClientConnection, reused: boolean): void {
    this.#conn = conn;
    this.#reused = reused;
    this.#headWritten = false;
    if (this.#paused) conn.socket.pause();
    const queued = this.#queuedBody;
    if (queued !== undefined || this.#queuedEnd) {
      this.#queuedBody = undefined;
      if (queued !== undefined) this.#writeBody(queued.chunks(), false);
      if (this.#queuedEnd) this.#endBody(this.#queuedTrailers);
      return;
    }
    if (this.#bodyless) {
      this.#headWritten = true;
      conn.socket.write(this.#head, 'latin1');
      return;
    }
    // The body usually follows in the same tick: hold the head to write both at once.
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => {
        this.#flushScheduled = false;
        if (!this.#headWritten && this.#conn !== undefined && !this.done) {
          this.#headWritten = true;
          this.#conn.socket.write(this.#head, 'latin1');
        }
      });
    }
  }

  /** Detached from a connection that closed before answering (the exchange will be retried). */
  detach(): void {
    this.#conn = undefined;
  }

  #prefix(): string {
    if (this.#headWritten) return '';
    this.#headWritten = true;
    return this.#head;
  }

  #writeBody(chunks: readonly Buffer[], _end: boolean): boolean {
    const conn = this.#conn!;
    let len = 0;
    for (let i = 0; i < chunks.length; i++) len += chunks[i]!.length;
    if (len === 0) return true;
    if (this.#chunked) return writeFramed(conn.socket, `${this.#prefix()}${len.toString(16)}\r\n`, chunks, '\r\n');
    return writeFramed(conn.socket, this.#prefix(), chunks, '');
  }

  #endBody(trailers: HeaderMap | undefined): void {
    const conn = this.#conn!;
    this.requestDone = true;
    const tail = this.#chunked ? `0\r\n${trailers !== undefined ? serializeTrailers(trailers) : ''}\r\n` : '';
    writeFramed(conn.socket, this.#prefix(), EMPTY, tail);
  }

  // ---------------------------------------------------------------- UpstreamRequest-style API

  /** Writes request body; false above the socket's high watermark (wait for onDrain). */
  write(data: DataBuffer): boolean {
    if (this.done || this.requestDone) return true;
    if (this.#conn === undefined) {
      (this.#queuedBody ??= new DataBuffer()).append(data);
      return true;
    }
    const ok = this.#writeBody(data.chunks(), false);
    if (!ok) this.#conn.socket.once('drain', () => this.onDrain?.());
    return ok;
  }

  /** Ends the request body (trailers go out in chunked framing; with a length they are dropped). */
  end(trailers?: HeaderMap): void {
    if (this.done || this.requestDone) return;
    if (this.#conn === undefined) {
      this.#queuedEnd = true;
      this.#queuedTrailers = trailers;
      return;
    }
    this.#endBody(trailers);
  }

  abort(): void {
    if (this.done) return;
    this.done = true;
    const conn = this.#conn;
    this.#conn = undefined;
    if (conn === undefined) this.pool.dequeue(this);
    else {
      conn.exchange = undefined;
      conn.socket.destroy();
    }
  }

  setResponsePaused(paused: boolean): void {
    this.#paused = paused;
    const s = this.#conn?.socket;
    if (s === undefined) return;
    if (paused) s.pause();
    else s.resume();
  }

  // ---------------------------------------------------------------- from the connection

  /** Returns the upstream's Keep-Alive timeout hint in seconds (0 when none). */
  receiveHead(head: Http1Head): number {
    this.started = true;
    this.keepAlive = head.keepAlive;
    const h = new HeaderMap();
    const hn = h.names;
    const hv = h.values;
    hn.push(':status');
    hv.push(String(head.status));
    const names = head.names;
    const values = head.values;
    let hint = 0;
    for (let i = 0; i < names.length; i++) {
      const n = names[i]!;
      if (isHopByHop(n)) {
        if (n === 'keep-alive') {
          const m = /timeout=(\d+)/i.exec(values[i]!);
          if (m) hint = Number(m[1]);
        }
        continue;
      }
      hn.push(n);
      hv.push(values[i]!);
    }
    if (head.bodyless) this.done = true;
    this.#handler.onHeaders(h, head.bodyless);
    return hint;
  }

  receiveBody(chunk: Buffer): void {
    if (!this.done) this.#handler.onData(new DataBuffer(chunk), false);
  }

  receiveComplete(trailerNames: string[] | undefined, trailerValues: string[] | undefined): void {
    if (this.done) return;
    this.done = true;
    this.#conn = undefined;
    if (trailerNames !== undefined && trailerNames.length > 0) {
      const t = new HeaderMap();
      t.names.push(...trailerNames);
      t.values.push(...trailerValues!);
      this.#handler.onTrailers(t);
    } else {
      this.#handler.onData(new DataBuffer(), true);
    }
  }

  fail(reason: Http1Failure, err: unknown, responseStarted: boolean): void {
    if (this.done) return;
    this.done = true;
    this.#conn = undefined;
    if (err instanceof Http1ParseError) reason = 'protocol_error';
    this.#handler.onFailure(reason, err, responseStarted);
  }
}
