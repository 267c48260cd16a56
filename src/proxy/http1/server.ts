/**
 * The downstream HTTP/1.1 connection: parses requests from the socket, hands each to the listener
 * as a filter-manager stream, and writes responses straight to the socket (Envoy's ServerConnection).
 *
 * One stream at a time: a pipelined next request stays buffered (parser paused) until the current
 * response is complete, which also keeps responses in order.
 */
import { DataBuffer } from '../../filters/data-buffer.ts';
import { HeaderMap } from '../../filters/header-map.ts';
import type { Address, DownstreamTls } from '../../filters/stream-info.ts';
import type { DownstreamCodec, FilterManager } from '../filter-manager.ts';
import type { ByteStream } from '../transport/byte-stream.ts';
import { Http1ParseError, Http1Parser, type Http1Events, type Http1Head } from './parser.ts';
import { reasonPhrase, serializeHeaders, serializeTrailers, writeFramed } from './wire.ts';

/** What a connection needs from its listener. */
export interface Http1StreamHost {
  /** Starts a stream for a parsed request; returns its filter manager (undefined: answered locally). */
  startHttp1Stream(stream: Http1ServerStream, head: Http1Head): FilterManager | undefined;
  /** A connection closed (listener bookkeeping). */
  onHttp1ConnectionClosed(conn: Http1ServerConnection): void;
  /**
   * The client sent something that is not HTTP/1.1 (Envoy's downstream_cx_protocol_error). `status`
   * is the error response the codec writes (undefined when a response had started and the connection
   * is reset); `fm` is the stream of the request being read, if its head had been parsed.
   */
  onHttp1ProtocolError(conn: Http1ServerConnection, err: unknown, status: number | undefined, fm: FilterManager | undefined): void;
}

const CONTINUE_100 = 'HTTP/1.1 100 Continue\r\n\r\n';
const EMPTY: readonly Buffer[] = [];
/** A reason phrase may hold HTAB, SP, VCHAR and obs-text only (RFC 9112 §4); CR/LF would split the response. */
const INVALID_REASON = /[^\t\x20-\x7e\x80-\xff]/;

export interface Http1ServerOptions {
  maxHeaderBytes: number;
  /** Reads are views into a buffer the transport reuses (native transport): body bytes are copied. */
  reusedReadBuffer?: boolean;
}

export class Http1ServerConnection implements Http1Events {
  readonly socket: ByteStream;
  readonly #host: Http1StreamHost;
  readonly #parser: Http1Parser;
  #current: Http1ServerStream | undefined;
  /** Close once the current response is written (Connection: close, HTTP/1.0, drain). */
  closeAfterResponse = false;
  #closed = false;
  #socketPaused = false;
  #readDisabled = false;
  #idleSweeps = 0;
  readonly #copyBody: boolean;
  /** Connection facts, read once (getpeername/getsockname are syscalls). */
  readonly remote: Address;
  readonly local: Address;
  tls: DownstreamTls | undefined;
  sni = '';

  constructor(socket: ByteStream, host: Http1StreamHost, options: Http1ServerOptions) {
    this.socket = socket;
    this.#copyBody = options.reusedReadBuffer === true;
    this.remote = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
    this.local = { address: socket.localAddress ?? '', port: socket.localPort ?? 0 };
    this.#host = host;
    this.#parser = new Http1Parser(true, this, options.maxHeaderBytes);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('end', () => this.#onEnd());
    socket.on('close', () => this.#onClose());
    socket.on('error', () => {});
    socket.on('drain', () => this.#current?.onDrain());
  }

  /**
   * Called by the listener every quarter of the idle timeout: a connection with no request and no
   * bytes read for four sweeps in a row closes. (A socket timeout would be re-armed by Node on
   * every read and write; two timer refreshes per request cost more than this.)
   */
  sweepIdle(): void {
    if (this.#current !== undefined) {
      this.#idleSweeps = 0;
      return;
    }
    if (++this.#idleSweeps > 4) this.socket.destroy();
  }

  /** True while a request is being served. */
  get busy(): boolean {
    return this.#current !== undefined;
  }

  /** Drain: idle connections close now; busy ones after their response (with Connection: close). */
  drain(): void {
    this.closeAfterResponse = true;
    if (this.#current === undefined) this.socket.end();
  }

  #onData(chunk: Buffer): void {
    this.#idleSweeps = 0;
    // Closing (codec error, Connection: close): bytes the client sends after that are never served.
    if (this.socket.writableEnded) return;
    try {
      this.#parser.execute(chunk);
    } catch (err) {
      this.#onParseError(err);
      return;
    }
    // A pipelined request is buffered while the current response is served: stop reading more.
    // (Only then: pausing and resuming the socket on every request would cost two syscalls.)
    if (this.#parser.hasBuffered && this.#current !== undefined && this.#current.requestComplete && !this.#socketPaused) {
      this.#socketPaused = true;
      this.socket.pause();
    }
  }

  #onEnd(): void {
    // The client half-closed. A request still arriving is incomplete: reset. Otherwise close once
    // the response is out (HTTP/1.1 clients half-close after sending "Connection: close" requests).
    const cur = this.#current;
    if (cur !== undefined && !cur.requestComplete) {
      this.socket.destroy();
      return;
    }
    if (cur === undefined) this.socket.end();
    else this.closeAfterResponse = true;
  }

  #onClose(): void {
    this.#closed = true;
    const cur = this.#current;
    this.#current = undefined;
    if (cur !== undefined && !cur.finished) {
      cur.finished = true;
      cur.fm?.onDownstreamReset();
    }
    this.#host.onHttp1ConnectionClosed(this);
  }

  #onParseError(err: unknown): void {
    const cur = this.#current;
    if (cur !== undefined && cur.headersSent) {
      this.#host.onHttp1ProtocolError(this, err, undefined, cur.fm);
      this.socket.destroy();
      return;
    }
    const status = err instanceof Http1ParseError ? err.status : 400;
    this.#host.onHttp1ProtocolError(this, err, status, cur?.finished === false ? cur.fm : undefined);
    const body = reasonPhrase(status);
    // Envoy answers codec errors locally and closes the connection.
    this.socket.end(`HTTP/1.1 ${status} ${body}\r\ncontent-length: ${body.length}\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n${body}`, 'latin1');
    if (cur !== undefined) {
      cur.finished = true;
      this.#current = undefined;
    }
  }

  // ---------------------------------------------------------------- parser events

  onHead(head: Http1Head): void {
    if (!head.keepAlive) this.closeAfterResponse = true;
    const stream = new Http1ServerStream(this, head);
    // A bodyless request is complete with its head (a direct response answered right away must
    // not count as "sent before the request ended", which would close the connection).
    stream.requestComplete = head.bodyless;
    this.#current = stream;
    if (head.expectContinue && !head.bodyless && head.versionMinor === 1) this.socket.write(CONTINUE_100, 'latin1');
    stream.fm = this.#host.startHttp1Stream(stream, head);
  }

  onBody(chunk: Buffer): void {
    const cur = this.#current;
    if (cur !== undefined && !cur.finished) cur.fm?.decodeData(new DataBuffer(this.#copyBody ? Buffer.from(chunk) : chunk), false);
  }

  onComplete(trailerNames: string[] | undefined, trailerValues: string[] | undefined): void {
    const cur = this.#current;
    if (cur === undefined) return;
    cur.requestComplete = true;
    if (!cur.head.bodyless && !cur.finished) {
      if (trailerNames !== undefined && trailerNames.length > 0) {
        const t = new HeaderMap();
        t.names.push(...trailerNames);
        t.values.push(...trailerValues!);
        cur.fm?.decodeTrailers(t);
      } else {
        cur.fm?.decodeData(new DataBuffer(), true);
      }
    }
    // Serve one request at a time: hold the next pipelined request until this response is out.
    if (this.#current === cur && !cur.finished) this.#parser.pause();
  }

  // ---------------------------------------------------------------- from the stream

  /** The response is complete: close, or move on to the next (possibly pipelined) request. */
  streamDone(stream: Http1ServerStream): void {
    if (this.#current !== stream) return;
    this.#current = undefined;
    if (this.#closed) return;
    if (this.closeAfterResponse || !stream.requestComplete) {
      // A response sent before the whole request arrived also closes the connection (as Envoy).
      // Requests pipelined behind this one are not parsed (nor proxied) any more.
      this.#parser.pause();
      this.socket.end();
      return;
    }
    if (this.#socketPaused && !this.#readDisabled) {
      this.#socketPaused = false;
      this.socket.resume();
    }
    try {
      this.#parser.resume();
    } catch (err) {
      this.#onParseError(err);
    }
  }

  setReadDisabled(disabled: boolean): void {
    this.#readDisabled = disabled;
    if (disabled) this.socket.pause();
    else if (!this.#socketPaused) this.socket.resume();
  }
}

/** One request/response on an HTTP/1.1 connection: the filter manager's downstream codec. */
export class Http1ServerStream implements DownstreamCodec {
  readonly conn: Http1ServerConnection;
  readonly head: Http1Head;
  fm: FilterManager | undefined;
  requestComplete = false;
  finished = false;
  headersSent = false;
  /** Reason phrase override (Proxy-Wasm/Lua local replies may set one). */
  #pendingHead = '';
  #chunked = false;
  #noBody = false;
  #aboveWatermark = false;
  #flushScheduled = false;

  constructor(conn: Http1ServerConnection, head: Http1Head) {
    this.conn = conn;
    this.head = head;
  }

  encodeHeaders(headers: HeaderMap, endStream: boolean): void {
    if (this.finished) return;
    this.headersSent = true;
    const status = Number(headers.get(':status')) || 200;
    const si = this.fm?.streamInfo;
    const conn = this.conn;
    if (si?.drainConnectionUponCompletion || !this.requestComplete) conn.closeAfterResponse = true;
    const { text, contentLength } = serializeHeaders(headers, false, false);
    const isHead = this.head.method === 'HEAD';
    const bodyless = status === 204 || status === 304 || (status >= 100 && status < 200);
    this.#noBody = isHead || bodyless;
    let framing = '';
    if (contentLength === undefined && !bodyless) {
      if (endStream) {
        if (!isHead) framing = 'content-length: 0\r\n';
      } else if (isHead) {
        // A HEAD response without a length says nothing about framing.
      } else if (this.head.versionMinor === 1) {
        framing = 'transfer-encoding: chunked\r\n';
        this.#chunked = true;
      } else {
        conn.closeAfterResponse = true; // HTTP/1.0: the body ends with the connection
      }
    }
    if (conn.closeAfterResponse) framing += 'connection: close\r\n';
    else if (this.head.versionMinor === 0) framing += 'connection: keep-alive\r\n';
    const custom = si?.http1ReasonPhrase;
    const reason = custom !== undefined && !INVALID_REASON.test(custom) ? custom : reasonPhrase(status);
    const head = `HTTP/1.1 ${status} ${reason}\r\n${text}${framing}\r\n`;
    if (endStream) {
      this.conn.socket.write(head, 'latin1');
      this.#finish();
      return;
    }
    // Hold the head for a moment: the body usually follows in the same tick and goes in one write.
    this.#pendingHead = head;
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => this.#flushHead());
    }
  }

  #flushHead(): void {
    this.#flushScheduled = false;
    const h = this.#pendingHead;
    if (h.length === 0 || this.finished) return;
    this.#pendingHead = '';
    this.conn.socket.write(h, 'latin1');
  }

  encodeData(data: DataBuffer, endStream: boolean): boolean {
    if (this.finished) return true;
    const head = this.#pendingHead;
    this.#pendingHead = '';
    const socket = this.conn.socket;
    let ok: boolean;
    const len = data.length;
    if (this.#noBody || (len === 0 && !this.#chunked)) {
      ok = writeFramed(socket, head, EMPTY, '');
    } else if (this.#chunked) {
      const prefix = len === 0 ? head : `${head}${len.toString(16)}\r\n`;
      const suffix = len === 0 ? (endStream ? '0\r\n\r\n' : '') : endStream ? '\r\n0\r\n\r\n' : '\r\n';
      ok = writeFramed(socket, prefix, data.chunks(), suffix);
    } else {
      ok = writeFramed(socket, head, data.chunks(), '');
    }
    if (endStream) {
      this.#finish();
      return true;
    }
    if (!ok) this.#aboveWatermark = true;
    return ok;
  }

  encodeTrailers(trailers: HeaderMap): void {
    if (this.finished) return;
    const head = this.#pendingHead;
    this.#pendingHead = '';
    // Trailers exist on the wire only in chunked framing; with a length they are dropped (as Envoy).
    const tail = this.#chunked && !this.#noBody ? `0\r\n${serializeTrailers(trailers)}\r\n` : '';
    writeFramed(this.conn.socket, head, EMPTY, tail);
    this.#finish();
  }

  #finish(): void {
    this.finished = true;
    this.conn.streamDone(this);
  }

  resetStream(): void {
    if (this.finished) return;
    this.finished = true;
    this.conn.socket.destroy();
  }

  readDisable(disable: boolean): void {
    if (!this.finished) this.conn.setReadDisabled(disable);
  }

  onDrain(): void {
    if (!this.#aboveWatermark || this.finished) return;
    this.#aboveWatermark = false;
    this.fm?.onDownstreamWatermark_(false);
  }
}
