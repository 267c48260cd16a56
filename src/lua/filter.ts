/**
 * The Lua HTTP filter: one instance per stream, one coroutine per hook, and an explicit state
 * machine per direction as Envoy's lua_filter.h has (Running, WaitForBodyChunk, WaitForBody,
 * WaitForTrailers, HttpCall, Responded). The coroutine yields to this driver for every blocking
 * call; the driver maps the wait onto filter statuses and resumes from the data callbacks or from
 * the httpCall promise ("yield in Lua, await in JS").
 */
import { DataBuffer } from '../filters/data-buffer.ts';
import { HeaderMap } from '../filters/header-map.ts';
import {
  DataStatus,
  HeadersStatus,
  TrailersStatus,
  type HttpFilter,
  type HttpFilterCallbacks,
} from '../filters/types.ts';
import type { HttpCallHandle, HttpCallResponse } from '../proxy/cluster-manager.ts';
import { ResumeStatus, isLuaTable, type LuaValue, type PushValue, type ResumeResult, type ThreadRef } from './engine.ts';
import { SENTINEL } from './prelude.ts';
import type { LuaFilterStats, LuaScript } from './script.ts';

export const State = {
  Idle: 0,
  Running: 1,
  WaitForBodyChunk: 2,
  WaitForBody: 3,
  WaitForTrailers: 4,
  HttpCall: 5,
  Responded: 6,
  Done: 7,
} as const;
export type State = (typeof State)[keyof typeof State];

/** What a running hook reaches its stream through. */
export interface LuaStreamFilter {
  readonly callbacks: HttpFilterCallbacks;
  readonly stats: LuaFilterStats;
}

/** One direction of one stream: the hook's coroutine and what it waits for. */
export class Direction {
  /** Mutable only for the compiled tier's per-script Directions, lent to one hook at a time. */
  filter: LuaStreamFilter;
  /** 0 request (envoy_on_request), 1 response (envoy_on_response). */
  readonly dir: 0 | 1;
  cid = 0;
  seg = 0;
  thread: ThreadRef = -1;
  state: State = State.Idle;
  headers: HeaderMap | undefined;
  trailers: HeaderMap | undefined;
  headersContinued = false;
  endStream = false;
  dataSeen = false;
  bodyStreamed = false;
  inChunks = false;
  /** We returned a Stop status whose release needs continueDecoding/continueEncoding. */
  stopped = false;
  /** The whole buffered body (the manager hands the cumulative buffer on every call). */
  buffered: DataBuffer | undefined;
  /** body() result: a stream buffer, or a synthetic one made by body(true) on a bodyless stream. */
  body: DataBuffer | undefined;
  bodySynthetic = false;
  chunk: DataBuffer | undefined;
  alwaysWrap = false;
  budgetLeft = 0;
  http: HttpCallHandle | undefined;
  returnDuplicates = false;
  /** Keys imported by importPublicKey in this hook (Envoy keeps them per handle). */
  keys: Map<string, unknown> | undefined;
  /** The coroutine is parked in a yield. */
  suspended = false;
  /** The hook function returned (the prelude marked its handle dead itself). */
  endedOk = false;

  constructor(filter: LuaStreamFilter, dir: 0 | 1) {
    this.filter = filter;
    this.dir = dir;
  }

  get callbacks(): HttpFilterCallbacks {
    return this.filter.callbacks;
  }
}

export class LuaHttpFilter implements HttpFilter {
  readonly script: LuaScript;
  readonly callbacks: HttpFilterCallbacks;
  readonly req: Direction;
  readonly resp: Direction;
  readonly stats: LuaFilterStats;
  destroyed = false;

  constructor(script: LuaScript, callbacks: HttpFilterCallbacks, stats: LuaFilterStats) {
    this.script = script;
    this.callbacks = callbacks;
    this.stats = stats;
    this.req = new Direction(this, 0);
    this.resp = new Direction(this, 1);
  }

  // ------------------------------------------------------------ request path
  decodeHeaders(headers: HeaderMap, endStream: boolean): HeadersStatus {
    return this.#onHeaders(this.req, headers, endStream);
  }
  decodeData(data: DataBuffer, endStream: boolean): DataStatus {
    return this.#onData(this.req, data, endStream);
  }
  decodeTrailers(trailers: HeaderMap): TrailersStatus {
    return this.#onTrailers(this.req, trailers);
  }
  // ------------------------------------------------------------ response path
  encodeHeaders(headers: HeaderMap, endStream: boolean): HeadersStatus {
    return this.#onHeaders(this.resp, headers, endStream);
  }
  encodeData(data: DataBuffer, endStream: boolean): DataStatus {
    return this.#onData(this.resp, data, endStream);
  }
  encodeTrailers(trailers: HeaderMap): TrailersStatus {
    return this.#onTrailers(this.resp, trailers);
  }

  onDestroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    // A reset mid-hook: cancel the callout and never resume the coroutine (Envoy's onReset).
    this.#abandon(this.req);
    this.#abandon(this.resp);
    this.script.filterDone();
  }

  #abandon(d: Direction): void {
    if (d.http !== undefined) {
      d.http.cancel();
      d.http = undefined;
    }
    this.#finish(d, State.Done);
  }

  #onHeaders(d: Direction, headers: HeaderMap, endStream: boolean): HeadersStatus {
    d.headers = headers;
    d.endStream = endStream;
    if (!this.script.hasHook(d.dir) || this.destroyed) {
      d.headersContinued = true;
      return HeadersStatus.Continue;
    }
    this.#start(d);
    switch (d.state) {
      case State.WaitForBody:
      case State.HttpCall:
      case State.Responded:
        d.stopped = true;
        return HeadersStatus.StopIteration;
      default:
        d.headersContinued = true;
        return HeadersStatus.Continue;
    }
  }

  #onData(d: Direction, data: DataBuffer, endStream: boolean): DataStatus {
    d.dataSeen = true;
    if (endStream) d.endStream = true;
    switch (d.state) {
      case State.WaitForBody:
        d.buffered = data;
        if (!endStream) return DataStatus.StopIterationAndBuffer;
        d.body = data;
        this.#resume(d, [1]);
        break;
      case State.WaitForBodyChunk:
        d.chunk = data;
        this.#resume(d, [1]);
        break;
      case State.WaitForTrailers:
        d.bodyStreamed = true;
        if (endStream) this.#resume(d, [undefined]);
        break;
      case State.HttpCall:
        d.buffered = data;
        return DataStatus.StopIterationAndWatermark;
      case State.Responded:
        return DataStatus.StopIterationNoBuffer;
      default:
        d.bodyStreamed = true;
        return DataStatus.Continue;
    }
    switch (d.state as State) {
      case State.WaitForBody:
        return DataStatus.StopIterationAndBuffer;
      case State.HttpCall:
        return DataStatus.StopIterationAndWatermark;
      case State.Responded:
        return DataStatus.StopIterationNoBuffer;
      default:
        // Continue releases the stopped headers too.
        d.stopped = false;
        d.headersContinued = true;
        return DataStatus.Continue;
    }
  }

  #onTrailers(d: Direction, trailers: HeaderMap): TrailersStatus {
    d.endStream = true;
    d.trailers = trailers;
    switch (d.state) {
      case State.WaitForBody:
        d.body = d.buffered ?? this.#streamBuffer(d);
        this.#resumeBody(d);
        break;
      case State.WaitForBodyChunk:
        this.#resume(d, [undefined]);
        break;
      case State.WaitForTrailers:
        this.#resume(d, [1]);
        break;
      case State.HttpCall:
      case State.Responded:
        return TrailersStatus.StopIteration;
      default:
        return TrailersStatus.Continue;
    }
    const st = d.state as State;
    if (st === State.HttpCall || st === State.Responded) return TrailersStatus.StopIteration;
    d.stopped = false;
    d.headersContinued = true;
    return TrailersStatus.Continue;
  }

  #streamBuffer(d: Direction): DataBuffer | undefined {
    return d.dir === 0 ? this.callbacks.decodingBuffer() : this.callbacks.encodingBuffer();
  }

  /** Resumes a body() wait with the complete body (or none / a synthetic empty one). */
  #resumeBody(d: Direction): void {
    if (d.body === undefined && d.alwaysWrap) {
      d.body = new DataBuffer();
      d.bodySynthetic = true;
    }
    this.#resume(d, [d.body !== undefined ? 1 : undefined]);
  }

  #start(d: Direction): void {
    const s = this.script;
    d.cid = s.register(d);
    d.seg = s.nextSegment();
    d.state = State.Running;
    d.budgetLeft = s.budgetTicks;
    this.stats.executions.inc();
    let started: [ThreadRef, ResumeResult];
    try {
      const st = s.state;
      if (st.startHook !== undefined) {
        const r = st.startHook(d.dir, d.cid, d.seg, s.takeReap(), d.budgetLeft, s.prefetch(d));
        if (typeof r === 'number') {
          // the hook returned and its coroutine is pooled already: no result objects to build
          s.flushQueue();
          if (s.budgetTicks > 0) d.budgetLeft -= r;
          d.suspended = false;
          d.endedOk = true;
          this.#finish(d, State.Done);
          return;
        }
        started = r;
      } else started = st.start([d.dir, d.cid, d.seg, s.takeReap()], d.budgetLeft);
    } catch (e) {
      s.flushQueue();
      // an engine failure (closed state, addon error) must not break the stream
      this.#scriptError(d, `lua engine error: ${(e as Error).message}`);
      return;
    }
    d.thread = started[0];
    this.#drive(d, started[1]);
  }

  #resume(d: Direction, values: PushValue[]): void {
    d.state = State.Running;
    let r: ResumeResult;
    try {
      r = this.script.state.resume(d.thread, [d.seg, ...values], Math.max(1, d.budgetLeft));
    } catch (e) {
      this.script.flushQueue();
      d.suspended = false;
      this.#scriptError(d, `lua engine error: ${(e as Error).message}`);
      return;
    }
    this.#drive(d, r);
  }

  /** Runs the coroutine's requests until it waits for something that is not there yet. */
  #drive(d: Direction, r: ResumeResult): void {
    for (;;) {
      // the run's queued writes land before anything else looks at the stream
      this.script.flushQueue();
      if (this.script.budgetTicks > 0) d.budgetLeft -= r.used;
      d.suspended = r.status === ResumeStatus.Yield;
      if (r.status === ResumeStatus.Ok) {
        d.endedOk = true;
        this.#finish(d, State.Done);
        return;
      }
      if (r.status === ResumeStatus.Error) {
        this.#scriptError(d, r.error);
        return;
      }
      const v = r.values;
      if (v[0] !== SENTINEL) {
        this.#scriptError(d, 'script performed an unexpected yield');
        return;
      }
      // the next segment starts now: objects of the last one are dead while the hook waits
      d.seg = this.script.nextSegment();
      const next = this.#op(d, v);
      if (next === undefined) return;
      try {
        r = this.script.state.resume(d.thread, [d.seg, ...next], Math.max(1, d.budgetLeft));
      } catch (e) {
        this.script.flushQueue();
        d.suspended = false;
        this.#scriptError(d, `lua engine error: ${(e as Error).message}`);
        return;
      }
    }
  }

  /** Handles one blocking request. Returns values to resume with at once, or undefined to wait. */
  #op(d: Direction, v: LuaValue[]): PushValue[] | undefined {
    switch (v[1]) {
      case 'body': {
        if (d.inChunks) return [false, 'cannot call body() after body streaming has started'];
        if (d.bodyStreamed) return [false, 'cannot call body() after body has been streamed'];
        d.alwaysWrap = v[2] === true;
        if (d.endStream) {
          d.body = d.buffered ?? (d.dataSeen ? this.#streamBuffer(d) : undefined);
          if (d.body === undefined && d.alwaysWrap) {
            d.body = new DataBuffer();
            d.bodySynthetic = true;
          }
          return [d.body !== undefined ? 1 : undefined];
        }
        d.state = State.WaitForBody;
        return undefined;
      }
      case 'chunk':
        d.inChunks = true;
        if (d.endStream) return [undefined];
        d.state = State.WaitForBodyChunk;
        return undefined;
      case 'trailers':
        if (d.endStream) return [d.trailers !== undefined ? 1 : undefined];
        d.state = State.WaitForTrailers;
        return undefined;
      case 'http':
        return this.#httpCall(d, v);
      case 'respond':
        this.#respond(d, v[2], v[3]);
        return undefined;
      default:
        return [false, `unknown blocking operation ${String(v[1])}`];
    }
  }

  #httpCall(d: Direction, v: LuaValue[]): PushValue[] | undefined {
    const opts = v[6];
    d.returnDuplicates = isLuaTable(opts) && luaField(opts, 'return_duplicate_headers') === true;
    let handle: HttpCallHandle;
    try {
      handle = this.script.httpCall(d, v[2] as string, v[3], v[4] as string | undefined, v[5] as number);
    } catch {
      // Envoy: a synchronous failure of the async client returns the results without a yield.
      return [{ ':status': '503' }, 'upstream failure'];
    }
    d.http = handle;
    d.state = State.HttpCall;
    handle.promise.then(
      (res) => this.#onHttpDone(d, handle, res),
      () => this.#onHttpDone(d, handle, undefined),
    );
    return undefined;
  }

  #onHttpDone(d: Direction, handle: HttpCallHandle, res: HttpCallResponse | undefined): void {
    if (this.destroyed || d.http !== handle || d.state !== State.HttpCall) return;
    d.http = undefined;
    if (res === undefined) {
      this.#resume(d, [{ ':status': '503' }, 'upstream failure']);
    } else {
      const t: Record<string, string | string[]> = {};
      const h = res.headers;
      for (let i = 0; i < h.names.length; i++) {
        const k = h.names[i]!;
        const val = h.values[i]!;
        const prev = t[k];
        if (prev === undefined || !d.returnDuplicates) t[k] = val;
        else if (Array.isArray(prev)) prev.push(val);
        else t[k] = [prev, val];
      }
      this.#resume(d, [t, res.body.length > 0 ? res.body.toString('latin1') : undefined]);
    }
    this.#afterAsync(d);
  }

  /** After a resume outside any filter callback: release the stream if the hook no longer waits. */
  #afterAsync(d: Direction): void {
    if (this.destroyed || !d.stopped) return;
    if (d.state === State.WaitForBody) {
      // Data still reaches us while stopped; if the body is already complete, resume now.
      if (d.endStream) {
        d.body = d.buffered ?? this.#streamBuffer(d);
        this.#resumeBody(d);
        this.#afterAsync(d);
      }
      return;
    }
    if (d.state === State.HttpCall || d.state === State.Responded) return;
    d.stopped = false;
    d.headersContinued = true;
    if (d.dir === 0) this.callbacks.continueDecoding();
    else this.callbacks.continueEncoding();
  }

  #respond(d: Direction, headers: LuaValue, body: LuaValue): void {
    d.state = State.Responded;
    d.stopped = true;
    this.#releaseThread(d); // the coroutine is never resumed for real (Envoy)
    sendLuaReply(this.callbacks, headers, body);
  }

  #scriptError(d: Direction, message: string): void {
    if (scriptErrorClosesStream(this.script, this.stats, this.destroyed, message)) {
      this.#finish(d, State.Responded);
      d.stopped = true;
      this.callbacks.sendLocalReply(500, '', { details: 'lua_script_error' });
      return;
    }
    // Envoy's fail-open: the stream goes on with whatever the script already changed.
    this.#finish(d, State.Done);
  }

  #releaseThread(d: Direction): void {
    if (d.thread >= 0) {
      // An abandoned coroutine (reset, respond()) is never resumed, as in Envoy; the prelude
      // reaps its objects at the next hook entry.
      d.suspended = false;
      this.script.state.release(d.thread);
      d.thread = -1;
    }
    if (d.cid !== 0) {
      // a hook that did not return normally is marked dead in Lua at the next entry
      this.script.unregister(d.cid, !d.endedOk);
      d.cid = 0;
    }
  }

  #finish(d: Direction, state: State): void {
    d.state = state;
    this.#releaseThread(d);
  }
}

/**
 * A script error, as Envoy handles it: counted and logged; true when the script fails closed and
 * the stream is still there (the caller answers 500 `lua_script_error`), false for fail-open (the
 * stream goes on with whatever the script already changed).
 */
function scriptErrorClosesStream(script: LuaScript, stats: LuaFilterStats, destroyed: boolean, message: string): boolean {
  stats.errors.inc();
  script.log.error('script log: %s', message);
  return script.failClosed && !destroyed;
}

/** respond()'s local reply: `:status` and the other headers of the Lua table, the body as bytes. */
function sendLuaReply(callbacks: HttpFilterCallbacks, headers: LuaValue, body: LuaValue): void {
  const extra: [string, string][] = [];
  let status = 200;
  if (isLuaTable(headers)) {
    const t = headers.luaTable;
    for (let i = 0; i + 1 < t.length; i += 2) {
      const k = t[i];
      const val = t[i + 1];
      if (typeof k !== 'string') continue;
      const key = k.toLowerCase();
      if (key === ':status') {
        status = Number(val);
        continue;
      }
      if (typeof val === 'string' || typeof val === 'number') extra.push([key, String(val)]);
      else if (isLuaTable(val)) for (const x of luaArray(val)) extra.push([key, String(x)]);
    }
  }
  callbacks.sendLocalReply(status, Buffer.from(typeof body === 'string' ? body : '', 'latin1'), {
    headers: extra,
    details: 'lua_response',
  });
}

/**
 * The filter for scripts of the compiled tier. Their hooks run to the end in one call (they cannot
 * wait for a body, trailers or a callout), so this filter has no per-direction state machine, no
 * data or trailer callbacks (the manager passes those by), and allocates nothing per stream beyond
 * itself: each hook borrows the script's Direction for its direction (LuaScript.lendDirection).
 * What a hook can end with is what LuaHttpFilter does after a run: continue, respond() (a local
 * reply) or a script error (the fail strategy).
 */
export class CompiledLuaFilter implements HttpFilter, LuaStreamFilter {
  readonly script: LuaScript;
  readonly callbacks: HttpFilterCallbacks;
  readonly stats: LuaFilterStats;
  destroyed = false;

  constructor(script: LuaScript, callbacks: HttpFilterCallbacks, stats: LuaFilterStats) {
    this.script = script;
    this.callbacks = callbacks;
    this.stats = stats;
  }

  decodeHeaders(headers: HeaderMap): HeadersStatus {
    return this.#run(0, headers);
  }

  encodeHeaders(headers: HeaderMap): HeadersStatus {
    return this.#run(1, headers);
  }

  onDestroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.script.filterDone();
  }

  #run(dir: 0 | 1, headers: HeaderMap): HeadersStatus {
    const s = this.script;
    if (!s.hasHook(dir) || this.destroyed) return HeadersStatus.Continue;
    const d = s.lendDirection(dir, this, headers);
    this.stats.executions.inc();
    let r: number | [ThreadRef, ResumeResult];
    try {
      r = s.state.startHook!(dir, d.cid, d.seg, 0, 0, 0);
    } catch (e) {
      r = [-1, { status: ResumeStatus.Error, values: [], error: `lua engine error: ${(e as Error).message}`, used: 0 }];
    } finally {
      s.returnDirection(d);
    }
    if (typeof r === 'number') return HeadersStatus.Continue;
    const res = r[1];
    if (res.status === ResumeStatus.Ok) return HeadersStatus.Continue;
    if (res.status === ResumeStatus.Yield && res.values[0] === SENTINEL && res.values[1] === 'respond') {
      sendLuaReply(this.callbacks, res.values[2], res.values[3]);
      return HeadersStatus.StopIteration;
    }
    const message = res.status === ResumeStatus.Error ? res.error : 'script performed an unexpected yield';
    if (!scriptErrorClosesStream(s, this.stats, this.destroyed, message)) return HeadersStatus.Continue;
    this.callbacks.sendLocalReply(500, '', { details: 'lua_script_error' });
    return HeadersStatus.StopIteration;
  }
}

/** Field of a Lua table read by an engine. */
export function luaField(t: { luaTable: LuaValue[] }, key: string): LuaValue {
  const a = t.luaTable;
  for (let i = 0; i + 1 < a.length; i += 2) if (a[i] === key) return a[i + 1];
  return undefined;
}

/** The array part of a Lua table, in index order. */
export function luaArray(t: { luaTable: LuaValue[] }): LuaValue[] {
  const out: LuaValue[] = [];
  const a = t.luaTable;
  for (let i = 0; i + 1 < a.length; i += 2) {
    const k = a[i];
    if (typeof k === 'number' && Number.isInteger(k) && k >= 1) out[k - 1] = a[i + 1];
  }
  return out;
}
