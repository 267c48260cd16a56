/**
 * The per-stream HTTP filter manager: runs decoder filters in chain order and encoder filters in
 * reverse, with Envoy's iteration contract (see src/filters/types.ts for each status).
 *
 * Iteration model (as Envoy's FilterManager, simplified where noted): every frame of a direction
 * (headers, data, trailers) walks the filter list from the first filter; a filter that stops holds
 * the frames that reach it in its own slot (headers flag, buffered body, held trailers) until it
 * returns Continue from a later callback or calls continueDecoding()/continueEncoding(). Filters
 * before a stopped one keep seeing new frames. One deliberate difference from Envoy: a filter that
 * buffers (StopIterationAndBuffer) is called again with the WHOLE buffered body each time a chunk
 * arrives (the Proxy-Wasm host semantics), not with the new chunk alone.
 *
 * The terminal of the decoder chain is the router (a filter that never continues); the terminal of
 * the encoder chain is the downstream codec.
 */
import { DataBuffer } from '../filters/data-buffer.ts';
import { HeaderMap } from '../filters/header-map.ts';
import type { StreamInfo } from '../filters/stream-info.ts';
import {
  DataStatus,
  HeadersStatus,
  TrailersStatus,
  type HttpFilter,
  type HttpFilterCallbacks,
  type HttpFilterFactory,
  type LocalReplyOptions,
  type RouteInfo,
} from '../filters/types.ts';
import { logger } from '../observability/log.ts';

/** The global is an accessor that V8 looks up on every use; a module constant is not. */
const performance = globalThis.performance;

/** Where the encoder chain's output goes: the downstream HTTP/1.1 or HTTP/2 stream. */
export interface DownstreamCodec {
  /** Sends response headers; returns nothing (errors surface as a reset). */
  encodeHeaders(headers: HeaderMap, endStream: boolean): void;
  /** Returns false when the downstream write buffer is above its high watermark. */
  encodeData(data: DataBuffer, endStream: boolean): boolean;
  encodeTrailers(trailers: HeaderMap): void;
  /** Aborts the downstream stream (h1: closes the connection; h2: RST_STREAM). */
  resetStream(): void;
  /** Pauses (true) or resumes (false) reading the request body. */
  readDisable(disable: boolean): void;
}

/** What the filter manager tells the router's upstream request. */
export interface UpstreamControl {
  /** The stream was reset (downstream or locally): cancel the upstream request. */
  onStreamReset(): void;
  /** Downstream flow control changed: pause (true) or resume (false) reading the upstream response. */
  onDownstreamWatermark(above: boolean): void;
}

/** Facts the manager needs from its listener. */
export interface StreamContext {
  readonly bufferLimit: number;
  /** Resolves the route for request headers (cached per stream by the manager). */
  resolveRoute(headers: HeaderMap): RouteInfo | undefined;
  /** Called once when the stream is complete, before filters are destroyed (access log). */
  onStreamComplete(fm: FilterManager): void;
}

const CONTINUE = 0;
const STOP_SINGLE = 1;
const STOP_ALL_BUFFER = 2;
const STOP_ALL_WATERMARK = 3;

const log = logger('filter');

/** Iteration state of one filter in one direction. */
class Slot {
  readonly entry: Entry;
  readonly index: number;
  state = CONTINUE;
  headersContinued = false;
  buffer: DataBuffer | undefined = undefined;
  bufferEnd = false;
  /** The buffering that caused the hold is the watermark kind (flow control, no limit error). */
  watermark = false;
  trailersHeld = false;
  constructor(entry: Entry, index: number) {
    this.entry = entry;
    this.index = index;
  }
}

/** Per-direction state. */
class Direction {
  readonly decode: boolean;
  readonly slots: Slot[];
  headers: HeaderMap | undefined;
  trailers: HeaderMap | undefined;
  /** The last frame of this direction has been received from its source. */
  endReceived = false;
  /** Headers arrived with end of stream (no body, no trailers). */
  headersOnly = false;
  /** Iteration of this direction was aborted (local reply, reset). */
  aborted = false;
  /** The terminal has received the end of this direction. */
  complete = false;
  /** Flow control applied because a watermark buffer is over the limit. */
  readDisabledByBuffer = false;
  constructor(decode: boolean, slots: Slot[]) {
    this.decode = decode;
    this.slots = slots;
  }
}

/**
 * The callbacks object of one filter in one stream (Envoy's ActiveStreamFilter).
 */
class Entry implements HttpFilterCallbacks {
  readonly fm: FilterManager;
  readonly name: string;
  filter: HttpFilter = {};
  dec: Slot | undefined;
  enc: Slot | undefined;
  constructor(fm: FilterManager, name: string) {
    this.fm = fm;
    this.name = name;
  }
  get streamInfo(): StreamInfo {
    return this.fm.streamInfo;
  }
  get streamId(): number {
    return this.fm.streamId;
  }
  get bufferLimit(): number {
    return this.fm.ctx.bufferLimit;
  }
  requestHeaders(): HeaderMap | undefined {
    return this.fm.decoder.headers;
  }
  requestTrailers(): HeaderMap | undefined {
    return this.fm.decoder.trailers;
  }
  responseHeaders(): HeaderMap | undefined {
    return this.fm.encoder.headers;
  }
  responseTrailers(): HeaderMap | undefined {
    return this.fm.encoder.trailers;
  }
  route(): RouteInfo | undefined {
    return this.fm.route();
  }
  clearRouteCache(): void {
    this.fm.clearRouteCache();
  }
  sendLocalReply(status: number, body: string | Buffer, options?: LocalReplyOptions): void {
    this.fm.sendLocalReply(status, body, options);
  }
  resetStream(details?: string): void {
    this.fm.resetStream(details ?? 'filter_reset');
  }
  continueDecoding(): void {
    if (this.dec) this.fm.continueIteration(this.fm.decoder, this.dec);
  }
  continueEncoding(): void {
    if (this.enc) this.fm.continueIteration(this.fm.encoder, this.enc);
  }
  decodingBuffer(): DataBuffer | undefined {
    return this.dec?.buffer;
  }
  encodingBuffer(): DataBuffer | undefined {
    return this.enc?.buffer;
  }
  addDecodedData(data: Buffer): void {
    if (!this.dec) return;
    (this.dec.buffer ??= new DataBuffer()).append(data);
  }
  addEncodedData(data: Buffer): void {
    if (!this.enc) return;
    (this.enc.buffer ??= new DataBuffer()).append(data);
  }
  injectDecodedDataToFilterChain(data: DataBuffer, endStream: boolean): void {
    if (this.dec) this.fm.iterateData(this.fm.decoder, this.dec.index + 1, data, endStream);
  }
  injectEncodedDataToFilterChain(data: DataBuffer, endStream: boolean): void {
    if (this.enc) this.fm.iterateData(this.fm.encoder, this.enc.index + 1, data, endStream);
  }
  addDecodedTrailers(): HeaderMap {
    return (this.fm.decoder.trailers ??= new HeaderMap());
  }
  addEncodedTrailers(): HeaderMap {
    return (this.fm.encoder.trailers ??= new HeaderMap());
  }
  /** Starts the response from a decoder filter (used by the router). */
  encodeHeaders(headers: HeaderMap, endStream: boolean): void {
    this.fm.startEncoding(headers, endStream);
  }
  encodeData(data: DataBuffer, endStream: boolean): void {
    this.fm.encodeFromSource(data, endStream);
  }
  encodeTrailers(trailers: HeaderMap): void {
    this.fm.encodeTrailersFromSource(trailers);
  }
}

export type { Entry as FilterEntry };

let nextStreamId = 1;

export class FilterManager {
  readonly streamId = nextStreamId++;
  readonly streamInfo: StreamInfo;
  readonly ctx: StreamContext;
  readonly codec: DownstreamCodec;
  readonly decoder: Direction;
  readonly encoder: Direction;
  readonly entries: Entry[];
  #route: RouteInfo | undefined | null = null;
  /** Depth of filter callbacks in progress (continue*() inside a callback is deferred). */
  #inCallback = 0;
  /** Response headers have entered the encoder chain. */
  #encodeStarted = false;
  /** Response headers were written to the downstream codec. */
  #downstreamHeadersSent = false;
  #localReplySent = false;
  #destroyed = false;
  #completed = false;
  #downstreamAboveWatermark = false;
  /** See startEncoding. */
  #headersNow = 0;
  /** The router's upstream request, once started (an object, not two closures per request). */
  upstream: UpstreamControl | undefined;

  constructor(ctx: StreamContext, codec: DownstreamCodec, streamInfo: StreamInfo, factories: readonly HttpFilterFactory[]) {
    this.ctx = ctx;
    this.codec = codec;
    this.streamInfo = streamInfo;
    const entries: Entry[] = [];
    for (const factory of factories) {
      const entry = new Entry(this, factory.name);
      let filter: HttpFilter | null;
      try {
        filter = factory.create(entry);
      } catch (err) {
        log.error({ err, filter: factory.name }, 'filter factory threw; skipping the filter for this stream');
        filter = null;
      }
      if (!filter) continue;
      entry.filter = filter;
      entries.push(entry);
    }
    this.entries = entries;
    const dec: Slot[] = [];
    for (const e of entries) {
      const f = e.filter;
      if (f.decodeHeaders || f.decodeData || f.decodeTrailers) {
        e.dec = new Slot(e, dec.length);
        dec.push(e.dec);
      }
    }
    const enc: Slot[] = [];
    for (let i = entries.length - 1; i >= 0; i--) {
      const e = entries[i]!;
      const f = e.filter;
      if (f.encodeHeaders || f.encodeData || f.encodeTrailers) {
        e.enc = new Slot(e, enc.length);
        enc.push(e.enc);
      }
    }
    this.decoder = new Direction(true, dec);
    this.encoder = new Direction(false, enc);
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  route(): RouteInfo | undefined {
    if (this.#route === null) {
      const h = this.decoder.headers;
      this.#route = h ? this.ctx.resolveRoute(h) : undefined;
      if (this.#route) this.streamInfo.routeName = this.#route.name;
    }
    return this.#route;
  }

  clearRouteCache(): void {
    this.#route = null;
  }

  // ------------------------------------------------------------------ input from the downstream codec

  decodeHeaders(headers: HeaderMap, endStream: boolean): void {
    const d = this.decoder;
    d.headers = headers;
    d.headersOnly = endStream;
    d.endReceived = endStream;
    // A bodyless request ended with its head, parsed moments ago when the stream began.
    if (endStream) this.streamInfo.lastDownstreamRxByteReceived = this.streamInfo.startMono;
    this.iterateHeaders(d, 0, endStream);
  }

  decodeData(data: DataBuffer, endStream: boolean): void {
    const d = this.decoder;
    if (d.aborted || this.#destroyed) return;
    this.streamInfo.bytesReceived += data.length;
    if (endStream) {
      d.endReceived = true;
      this.streamInfo.lastDownstreamRxByteReceived = performance.now();
    }
    this.iterateData(d, 0, data, endStream);
  }

  decodeTrailers(trailers: HeaderMap): void {
    const d = this.decoder;
    if (d.aborted || this.#destroyed) return;
    d.trailers = trailers;
    d.endReceived = true;
    this.streamInfo.lastDownstreamRxByteReceived = performance.now();
    this.iterateTrailers(d, 0);
  }

  /** The downstream went away before the stream completed. */
  onDownstreamReset(): void {
    if (this.#destroyed) return;
    this.streamInfo.responseFlags.add('DC');
    if (!this.streamInfo.responseCodeDetails) this.streamInfo.responseCodeDetails = 'downstream_remote_disconnect';
    this.decoder.aborted = true;
    this.encoder.aborted = true;
    this.upstream?.onStreamReset();
    this.#finish();
  }

  /**
   * The downstream codec rejected the rest of the request and answers it itself with `status`
   * (Envoy's local reply for a codec error: response flag DPE). The upstream request is reset.
   */
  onDownstreamProtocolError(status: number, details: string): void {
    if (this.#destroyed) return;
    const si = this.streamInfo;
    si.responseFlags.add('DPE');
    si.responseCode = status;
    si.responseCodeDetails = details;
    this.decoder.aborted = true;
    this.encoder.aborted = true;
    this.upstream?.onStreamReset();
    this.#finish();
  }

  /** Downstream write buffer crossed its high (true) or low (false) watermark. */
  onDownstreamWatermark_(above: boolean): void {
    if (this.#downstreamAboveWatermark === above) return;
    this.#downstreamAboveWatermark = above;
    this.upstream?.onDownstreamWatermark(above);
  }

  // ------------------------------------------------------------------ input from the router (response source)

  /**
   * Response headers from the source. `now`, when given, is the source's clock reading on receiving
   * them: with no encoder filter in between they reach the codec within the same call, and it
   * serves as firstDownstreamTxByteSent (one clock read fewer per request).
   */
  startEncoding(headers: HeaderMap, endStream: boolean, now = 0): void {
    if (this.#destroyed || this.#localReplySent) return;
    this.#encodeStarted = true;
    const e = this.encoder;
    e.headers = headers;
    e.headersOnly = endStream;
    e.endReceived = endStream;
    const status = Number(headers.get(':status'));
    if (status) this.streamInfo.responseCode = status;
    if (e.slots.length === 0) this.#headersNow = now;
    this.iterateHeaders(e, 0, endStream);
    this.#headersNow = 0;
  }

  encodeFromSource(data: DataBuffer, endStream: boolean): void {
    const e = this.encoder;
    if (e.aborted || this.#destroyed || this.#localReplySent) return;
    if (endStream) e.endReceived = true;
    this.iterateData(e, 0, data, endStream);
  }

  encodeTrailersFromSource(trailers: HeaderMap): void {
    const e = this.encoder;
    if (e.aborted || this.#destroyed || this.#localReplySent) return;
    e.trailers = trailers;
    e.endReceived = true;
    this.iterateTrailers(e, 0);
  }

  // ------------------------------------------------------------------ iteration

  #enter(): void {
    this.#inCallback++;
  }
  #leave(): void {
    this.#inCallback--;
  }

  #filterThrew(slot: Slot, dir: Direction, err: unknown): void {
    log.error({ err, filter: slot.entry.name, direction: dir.decode ? 'decode' : 'encode' }, 'filter callback threw');
    // sendLocalReply picks the right form: through the encoders before the response started,
    // straight to the client once encoding is under way (also when an encoder throws while a
    // local reply passes through it), or a reset after the client has the response headers.
    this.sendLocalReply(500, '', { details: 'filter_exception' });
  }

  /** Walks headers from slot `from`; returns true when they reached the terminal. */
  iterateHeaders(dir: Direction, from: number, endStream: boolean): boolean {
    const slots = dir.slots;
    const headers = dir.headers!;
    for (let i = from; i < slots.length; i++) {
      const slot = slots[i]!;
      const f = slot.entry.filter;
      const method = dir.decode ? f.decodeHeaders : f.encodeHeaders;
      if (method === undefined) {
        slot.headersContinued = true;
        continue;
      }
      let status: HeadersStatus;
      this.#enter();
      try {
        status = method.call(f, headers, endStream);
      } catch (err) {
        this.#leave();
        this.#filterThrew(slot, dir, err);
        return false;
      }
      this.#leave();
      if (dir.aborted || this.#destroyed) return false;
      if (status === HeadersStatus.Continue || status === HeadersStatus.ContinueAndDontEndStream) {
        slot.headersContinued = true;
        const added = slot.buffer;
        if (endStream && added !== undefined && added.length > 0) {
          // Data added while handling end-of-stream headers (Envoy's addEncodedData/addDecodedData
          // in a headers callback) becomes the body: the headers go on without end of stream.
          slot.buffer = undefined;
          dir.headersOnly = false;
          if (!this.iterateHeaders(dir, i + 1, false) && (dir.aborted || this.#destroyed)) return false;
          this.iterateData(dir, i + 1, added, true);
          return false;
        }
        continue;
      }
      slot.state = status === HeadersStatus.StopIteration ? STOP_SINGLE : status === HeadersStatus.StopAllIterationAndBuffer ? STOP_ALL_BUFFER : STOP_ALL_WATERMARK;
      slot.watermark = status === HeadersStatus.StopAllIterationAndWatermark;
      return false;
    }
    if (!dir.decode) this.#writeHeadersDownstream(headers, endStream);
    return true;
  }

  /** Walks a data frame from slot `from`. */
  iterateData(dir: Direction, from: number, data: DataBuffer, endStream: boolean): void {
    const slots = dir.slots;
    for (let i = from; i < slots.length; i++) {
      const slot = slots[i]!;
      const state = slot.state;
      if (state === STOP_ALL_BUFFER || state === STOP_ALL_WATERMARK) {
        this.#hold(dir, slot, data, endStream);
        return;
      }
      const f = slot.entry.filter;
      const method = dir.decode ? f.decodeData : f.encodeData;
      if (method === undefined) {
        if (state === STOP_SINGLE) {
          // A filter holding headers without a data callback keeps holding (Envoy's default
          // pass-through would resume it; holding is what such a filter means).
          this.#hold(dir, slot, data, endStream);
          return;
        }
        continue;
      }
      let payload = data;
      if (state === STOP_SINGLE && slot.buffer !== undefined && slot.buffer !== data) {
        slot.buffer.move(data);
        payload = slot.buffer;
      }
      let status: DataStatus;
      this.#enter();
      try {
        status = method.call(f, payload, endStream);
      } catch (err) {
        this.#leave();
        this.#filterThrew(slot, dir, err);
        return;
      }
      this.#leave();
      if (dir.aborted || this.#destroyed) return;
      if (status === DataStatus.Continue) {
        if (payload === slot.buffer) slot.buffer = undefined;
        if (slot.state !== CONTINUE) {
          slot.state = CONTINUE;
          this.#releaseFlowControl(dir);
          this.#resumeAfter(dir, slot, payload, endStream);
          return;
        }
        data = payload;
        continue;
      }
      slot.state = STOP_SINGLE;
      if (status === DataStatus.StopIterationNoBuffer) return;
      slot.watermark = status === DataStatus.StopIterationAndWatermark;
      if (payload !== slot.buffer) this.#hold(dir, slot, payload, endStream);
      else {
        slot.bufferEnd = endStream;
        this.#checkLimit(dir, slot);
      }
      return;
    }
    if (!dir.decode) this.#writeDataDownstream(data, endStream);
  }

  iterateTrailers(dir: Direction, from: number): void {
    const slots = dir.slots;
    const trailers = dir.trailers!;
    for (let i = from; i < slots.length; i++) {
      const slot = slots[i]!;
      if (slot.state === STOP_ALL_BUFFER || slot.state === STOP_ALL_WATERMARK) {
        slot.trailersHeld = true;
        return;
      }
      const f = slot.entry.filter;
      const method = dir.decode ? f.decodeTrailers : f.encodeTrailers;
      if (method === undefined) {
        if (slot.state === STOP_SINGLE) {
          slot.trailersHeld = true;
          return;
        }
        continue;
      }
      let status: TrailersStatus;
      this.#enter();
      try {
        status = method.call(f, trailers);
      } catch (err) {
        this.#leave();
        this.#filterThrew(slot, dir, err);
        return;
      }
      this.#leave();
      if (dir.aborted || this.#destroyed) return;
      if (status === TrailersStatus.Continue) {
        if (slot.state !== CONTINUE) {
          slot.state = CONTINUE;
          this.#releaseFlowControl(dir);
          // The filter has seen the trailers: resume everything it held, trailers from the next filter.
          slot.trailersHeld = true;
          const buf = slot.buffer;
          slot.buffer = undefined;
          this.#resumeAfter(dir, slot, buf, false);
          return;
        }
        continue;
      }
      slot.state = STOP_SINGLE;
      slot.trailersHeld = true;
      return;
    }
    if (!dir.decode) this.#writeTrailersDownstream(trailers);
  }

  /**
   * A stopped filter continued (by returning Continue or by continue*()): forward what it held —
   * headers if it held them, then its buffered body (given to it first if it stopped all), then
   * held trailers.
   */
  #resumeAfter(dir: Direction, slot: Slot, payload: DataBuffer | undefined, payloadEnd: boolean, fromCurrent = false): void {
    const next = slot.index + 1;
    const trailersHeld = slot.trailersHeld;
    slot.trailersHeld = false;
    if (!slot.headersContinued) {
      slot.headersContinued = true;
      const headersEnd = dir.headersOnly && (payload === undefined || payload.length === 0) && !trailersHeld;
      this.iterateHeaders(dir, next, headersEnd);
      if (dir.aborted || this.#destroyed || headersEnd) return;
    }
    if (payload !== undefined && (payload.length > 0 || payloadEnd)) {
      this.iterateData(dir, fromCurrent ? slot.index : next, payload, payloadEnd && !trailersHeld);
      if (dir.aborted || this.#destroyed) return;
    }
    if (trailersHeld) this.iterateTrailers(dir, fromCurrent ? slot.index : next);
  }

  /** continueDecoding()/continueEncoding() of a filter. */
  continueIteration(dir: Direction, slot: Slot): void {
    if (this.#destroyed || dir.aborted) return;
    if (this.#inCallback > 0) {
      // Re-entrant continue from inside a callback: apply after the current callback returns,
      // as Envoy defers Wasm's continue_stream ("after VM call actions").
      queueMicrotask(() => this.continueIteration(dir, slot));
      return;
    }
    if (slot.state === CONTINUE) return;
    const stoppedAll = slot.state === STOP_ALL_BUFFER || slot.state === STOP_ALL_WATERMARK;
    slot.state = CONTINUE;
    this.#releaseFlowControl(dir);
    const buf = slot.buffer;
    const end = slot.bufferEnd;
    slot.buffer = undefined;
    slot.bufferEnd = false;
    if (stoppedAll) {
      // The filter itself has not seen the held body/trailers yet: give them to it first.
      this.#resumeAfter(dir, slot, buf ?? (end ? new DataBuffer() : undefined), end, true);
    } else {
      this.#resumeAfter(dir, slot, buf, end);
    }
  }

  #hold(dir: Direction, slot: Slot, data: DataBuffer, endStream: boolean): void {
    if (slot.buffer === undefined) slot.buffer = data;
    else if (slot.buffer !== data) slot.buffer.move(data);
    if (endStream) slot.bufferEnd = true;
    this.#checkLimit(dir, slot);
  }

  #checkLimit(dir: Direction, slot: Slot): void {
    const buf = slot.buffer;
    if (buf === undefined || buf.length <= this.ctx.bufferLimit) return;
    if (slot.watermark || slot.state === STOP_ALL_WATERMARK) {
      // Flow control: stop reading from the source of this direction until the filter continues.
      if (!dir.readDisabledByBuffer) {
        dir.readDisabledByBuffer = true;
        if (dir.decode) this.codec.readDisable(true);
        else this.upstream?.onDownstreamWatermark(true);
      }
      return;
    }
    if (dir.decode) {
      this.sendLocalReply(413, 'Payload Too Large', { details: 'request_payload_too_large' });
    } else {
      this.sendLocalReply(500, 'Internal Server Error', { details: 'response_payload_too_large' });
    }
  }

  #releaseFlowControl(dir: Direction): void {
    if (!dir.readDisabledByBuffer) return;
    dir.readDisabledByBuffer = false;
    if (dir.decode) this.codec.readDisable(false);
    else if (!this.#downstreamAboveWatermark) this.upstream?.onDownstreamWatermark(false);
  }

  // ------------------------------------------------------------------ downstream output

  #writeHeadersDownstream(headers: HeaderMap, endStream: boolean): void {
    this.#downstreamHeadersSent = true;
    const si = this.streamInfo;
    si.responseCode = Number(headers.get(':status')) || si.responseCode;
    const now = this.#headersNow;
    this.#headersNow = 0;
    si.firstDownstreamTxByteSent = now > 0 ? now : performance.now();
    this.codec.encodeHeaders(headers, endStream);
    if (endStream) this.#encodeComplete();
  }

  #writeDataDownstream(data: DataBuffer, endStream: boolean): void {
    this.streamInfo.bytesSent += data.length;
    const ok = this.codec.encodeData(data, endStream);
    if (!ok) this.onDownstreamWatermark_(true);
    if (endStream) this.#encodeComplete();
  }

  #writeTrailersDownstream(trailers: HeaderMap): void {
    this.codec.encodeTrailers(trailers);
    this.#encodeComplete();
  }

  #encodeComplete(): void {
    this.encoder.complete = true;
    this.streamInfo.lastDownstreamTxByteSent = performance.now();
    this.#finish();
  }

  // ------------------------------------------------------------------ local replies and resets

  /**
   * Envoy's three cases: response not started → reply through the encoder filters; response
   * headers inside the encoder chain but not sent → reply straight to the codec; headers already
   * sent → reset the stream.
   */
  sendLocalReply(status: number, body: string | Buffer, options?: LocalReplyOptions): void {
    if (this.#destroyed) return;
    const details = options?.details ?? 'local_reply';
    if (this.#downstreamHeadersSent) {
      this.streamInfo.responseCodeDetails = details;
      this.resetStream(details);
      return;
    }
    this.#localReplySent = true;
    this.decoder.aborted = true;
    this.upstream?.onStreamReset();
    const si = this.streamInfo;
    si.responseCode = status;
    si.responseCodeDetails = details;
    for (const e of this.entries) {
      const cb = e.filter.onLocalReply;
      if (cb) {
        try {
          cb.call(e.filter, status, details);
        } catch (err) {
          log.error({ err, filter: e.name }, 'onLocalReply threw');
        }
      }
    }
    const headers = new HeaderMap();
    headers.add(':status', String(status));
    const bodyBuf = typeof body === 'string' ? Buffer.from(body) : body;
    const req = this.decoder.headers;
    const grpc = req?.get('content-type')?.startsWith('application/grpc') ?? false;
    if (grpc) {
      // gRPC clients read status from grpc-status, not :status (Envoy's local reply for gRPC).
      headers.set(':status', '200');
      headers.add('content-type', 'application/grpc');
      headers.add('grpc-status', String(options?.grpcStatus ?? httpToGrpcStatus(status)));
      if (bodyBuf.length) headers.add('grpc-message', encodeURIComponent(bodyBuf.toString()));
    } else if (bodyBuf.length > 0) {
      headers.add('content-length', String(bodyBuf.length));
      headers.add('content-type', 'text/plain');
    } else {
      headers.add('content-length', '0');
    }
    if (options?.headers) for (const [n, v] of options.headers) headers.set(n, v);
    const endAfterHeaders = grpc || bodyBuf.length === 0;
    const e = this.encoder;
    if (!this.#encodeStarted) {
      // Through the encoder chain, from its start.
      this.#encodeStarted = true;
      e.headers = headers;
      e.headersOnly = endAfterHeaders;
      e.endReceived = true;
      this.iterateHeaders(e, 0, endAfterHeaders);
      if (!endAfterHeaders && !e.aborted && !this.#destroyed) {
        this.iterateData(e, 0, new DataBuffer(bodyBuf), true);
      }
      return;
    }
    // Directly to the codec, bypassing filters whose state machines are mid-response.
    e.aborted = true;
    this.#writeHeadersDownstream(headers, endAfterHeaders);
    if (!endAfterHeaders) this.#writeDataDownstream(new DataBuffer(bodyBuf), true);
  }

  /**
   * Resets the stream. `localCause` false: the reset has an upstream cause already flagged (UC, UT,
   * UR...), and Envoy then logs that flag alone, without LR.
   */
  resetStream(details: string, localCause = true): void {
    if (this.#destroyed) return;
    if (!this.streamInfo.responseCodeDetails) this.streamInfo.responseCodeDetails = details;
    if (localCause) this.streamInfo.responseFlags.add('LR');
    this.decoder.aborted = true;
    this.encoder.aborted = true;
    this.upstream?.onStreamReset();
    this.codec.resetStream();
    this.#finish();
  }

  /** Marks the request direction complete from the router's view (upstream got the end). */
  markDecodeComplete(): void {
    this.decoder.complete = true;
  }

  #finish(): void {
    if (this.#completed) return;
    this.#completed = true;
    // Complete after the current call stack unwinds, so the codec has flushed and filters that
    // triggered completion are not destroyed under their own feet.
    queueMicrotask(() => this.#destroy());
  }

  #destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.decoder.aborted = true;
    this.encoder.aborted = true;
    try {
      this.ctx.onStreamComplete(this);
    } catch (err) {
      log.error({ err }, 'stream completion hook threw');
    }
    for (const e of this.entries) {
      const f = e.filter;
      if (f.log) {
        try {
          f.log();
        } catch (err) {
          log.error({ err, filter: e.name }, 'filter log() threw');
        }
      }
    }
    for (const e of this.entries) {
      const f = e.filter;
      if (f.onDestroy) {
        try {
          f.onDestroy();
        } catch (err) {
          log.error({ err, filter: e.name }, 'filter onDestroy() threw');
        }
      }
    }
  }
}

/** HTTP → gRPC status for local replies (Envoy's Grpc::Utility::httpToGrpcStatus). */
export function httpToGrpcStatus(http: number): number {
  switch (http) {
    case 400: return 13;
    case 401: return 16;
    case 403: return 7;
    case 404: return 12;
    case 429: return 14;
    case 502: return 14;
    case 503: return 14;
    case 504: return 14;
    default: return 2;
  }
}
