/**
 * A small stand-in for the filter manager, used until the lead's proxy lands and for the micro
 * benchmark: it drives ONE HttpFilter through a request/response with the chain's semantics
 * (StopIterationAndBuffer ⇒ re-call with the cumulative buffer; stop ⇒ wait for continue*(); local
 * replies go through the encoder path of the same filter).
 */
import { DataBuffer } from '../../../src/filters/data-buffer.ts';
import { HeaderMap } from '../../../src/filters/header-map.ts';
import { StreamInfo } from '../../../src/filters/stream-info.ts';
import type { HttpFilter, HttpFilterCallbacks, HttpFilterFactory, LocalReplyOptions, RouteInfo } from '../../../src/filters/types.ts';

let nextStream = 1;

export interface LocalReply {
  status: number;
  body: string;
  options: LocalReplyOptions | undefined;
}

export class FakeStream implements HttpFilterCallbacks {
  readonly streamInfo = new StreamInfo();
  readonly streamId = nextStream++;
  readonly bufferLimit = 1 << 20;
  reqHeaders: HeaderMap | undefined;
  reqTrailers: HeaderMap | undefined;
  respHeaders: HeaderMap | undefined;
  respTrailers: HeaderMap | undefined;
  decBuffer: DataBuffer | undefined;
  encBuffer: DataBuffer | undefined;
  local: LocalReply | undefined;
  reset: string | undefined;
  continued = { decoding: 0, encoding: 0 };
  routeInfo: RouteInfo | undefined = { name: 'r1', cluster: 'backend', filterMetadata: { 'my.ns': { k: 'v' } } };
  #waiters: Array<() => void> = [];

  requestHeaders() { return this.reqHeaders; }
  requestTrailers() { return this.reqTrailers; }
  responseHeaders() { return this.respHeaders; }
  responseTrailers() { return this.respTrailers; }
  route() { return this.routeInfo; }
  clearRouteCache() {}
  sendLocalReply(status: number, body: string | Buffer, options?: LocalReplyOptions) {
    this.local ??= { status, body: body.toString(), options };
    this.#wake();
  }
  resetStream(details?: string) {
    this.reset = details ?? 'reset';
    this.#wake();
  }
  continueDecoding() {
    this.continued.decoding++;
    this.#wake();
  }
  continueEncoding() {
    this.continued.encoding++;
    this.#wake();
  }
  decodingBuffer() { return this.decBuffer; }
  addDecodedData(data: Buffer) { (this.decBuffer ??= new DataBuffer()).append(data); }
  injectDecodedDataToFilterChain() {}
  addDecodedTrailers() { return (this.reqTrailers = new HeaderMap()); }
  encodingBuffer() { return this.encBuffer; }
  addEncodedData(data: Buffer) { (this.encBuffer ??= new DataBuffer()).append(data); }
  injectEncodedDataToFilterChain() {}
  addEncodedTrailers() { return (this.respTrailers = new HeaderMap()); }

  #wake() {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }
  /** Waits until `cond` holds (checked after each continue/local reply/reset), with a timeout. */
  async until(cond: () => boolean, ms = 3000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!cond()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for the filter to continue');
      await new Promise<void>((res) => {
        const t = setTimeout(res, Math.min(left, 50));
        this.#waiters.push(() => {
          clearTimeout(t);
          res();
        });
      });
    }
  }
}

export interface Exchange {
  /** Set when the filter ended the stream early. */
  local?: LocalReply;
  reset?: string;
  /** What reached the "upstream". */
  upstream?: { headers: HeaderMap; body: string; trailers: HeaderMap | undefined };
  /** What reached the client. */
  response?: { headers: HeaderMap; body: string; trailers: HeaderMap | undefined };
  stream: FakeStream;
  filter: HttpFilter | null;
}

export interface RequestSpec {
  headers: Array<[string, string]>;
  body?: string[];
  trailers?: Array<[string, string]>;
}

export interface ResponseSpec {
  headers: Array<[string, string]>;
  body?: string[];
  trailers?: Array<[string, string]>;
}

const DEFAULT_REQ: Array<[string, string]> = [[':method', 'GET'], [':path', '/'], [':authority', 'example.com'], [':scheme', 'http']];

/** Drives one direction; returns the forwarded body or null if the stream ended early. */
async function direction(
  s: FakeStream,
  dir: 'dec' | 'enc',
  filter: HttpFilter | null,
  headers: HeaderMap,
  body: string[],
  trailers: HeaderMap | undefined,
  done: () => boolean,
): Promise<string | null> {
  const counter = () => (dir === 'dec' ? s.continued.decoding : s.continued.encoding);
  const hasBody = body.length > 0;
  const eosHeaders = !hasBody && !trailers;
  let before = counter();
  const hs = filter ? (dir === 'dec' ? filter.decodeHeaders?.(headers, eosHeaders) : filter.encodeHeaders?.(headers, eosHeaders)) ?? 0 : 0;
  if (done()) return null;
  let headersStopped = hs !== 0;
  let forwarded = '';
  const buf = new DataBuffer();
  if (dir === 'dec') s.decBuffer = buf;
  else s.encBuffer = buf;
  for (let i = 0; i < body.length; i++) {
    buf.append(body[i]!);
    const eos = i === body.length - 1 && !trailers;
    if (headersStopped) {
      if (counter() === before) continue; // still held by headers: keep buffering
      headersStopped = false;
    }
    before = counter();
    const ds = filter ? (dir === 'dec' ? filter.decodeData?.(buf, eos) : filter.encodeData?.(buf, eos)) ?? 0 : 0;
    if (done()) return null;
    if (ds === 0) {
      forwarded += buf.toString();
      buf.clear();
    } else if (ds === 3) {
      buf.clear();
    }
  }
  if (headersStopped || buf.length > 0) {
    // Wait for continue*() for what is held, then forward.
    await s.until(() => counter() > before || done());
    if (done()) return null;
    if (headersStopped && buf.length > 0 && filter) {
      before = counter();
      const ds = dir === 'dec' ? filter.decodeData?.(buf, !trailers) ?? 0 : filter.encodeData?.(buf, !trailers) ?? 0;
      if (done()) return null;
      if (ds !== 0) await s.until(() => counter() > before || done());
      if (done()) return null;
    }
    forwarded += buf.toString();
    buf.clear();
  }
  if (trailers && filter) {
    before = counter();
    const ts = dir === 'dec' ? filter.decodeTrailers?.(trailers) ?? 0 : filter.encodeTrailers?.(trailers) ?? 0;
    if (done()) return null;
    if (ts !== 0) await s.until(() => counter() > before || done());
    if (done()) return null;
  }
  return forwarded;
}

/** Runs a request through `factory`'s filter with an upstream answering `resp`. */
export async function exchange(factory: HttpFilterFactory | { create: HttpFilterFactory['create'] }, req: Partial<RequestSpec> = {}, resp: Partial<ResponseSpec> = {}): Promise<Exchange> {
  const s = new FakeStream();
  s.streamInfo.downstreamRemoteAddress = { address: '127.0.0.1', port: 40000 };
  s.streamInfo.downstreamLocalAddress = { address: '127.0.0.1', port: 8080 };
  const filter = factory.create(s);
  const result: Exchange = { stream: s, filter };
  s.reqHeaders = HeaderMap.fromPairs(req.headers ?? DEFAULT_REQ);
  if (req.trailers) s.reqTrailers = HeaderMap.fromPairs(req.trailers);
  const ended = () => s.local !== undefined || s.reset !== undefined;
  const upBody = await direction(s, 'dec', filter, s.reqHeaders, req.body ?? [], s.reqTrailers, ended);
  let respSpec: ResponseSpec = { headers: resp.headers ?? [[':status', '200']], body: resp.body ?? [], ...(resp.trailers ? { trailers: resp.trailers } : {}) };
  if (upBody !== null) {
    result.upstream = { headers: s.reqHeaders, body: upBody, trailers: s.reqTrailers };
  } else if (s.local) {
    result.local = s.local;
    const hs: Array<[string, string]> = [[':status', String(s.local.status)], ...((s.local.options?.headers ?? []) as Array<[string, string]>)];
    if (s.local.options?.grpcStatus !== undefined) hs.push(['grpc-status', String(s.local.options.grpcStatus)]);
    respSpec = { headers: hs, body: s.local.body ? [s.local.body] : [] };
  }
  if (s.reset !== undefined) {
    result.reset = s.reset;
  } else {
    const localFirst = s.local;
    s.respHeaders = HeaderMap.fromPairs(respSpec.headers);
    if (respSpec.trailers) s.respTrailers = HeaderMap.fromPairs(respSpec.trailers);
    const downBody = await direction(s, 'enc', filter, s.respHeaders, respSpec.body ?? [], s.respTrailers, () => s.reset !== undefined || s.local !== localFirst);
    if (downBody !== null) result.response = { headers: s.respHeaders, body: downBody, trailers: s.respTrailers };
    else if (s.local && s.local !== localFirst) result.local = s.local;
    if (s.reset !== undefined) result.reset = s.reset;
  }
  filter?.log?.();
  filter?.onDestroy?.();
  return result;
}
