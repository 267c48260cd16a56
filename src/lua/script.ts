/**
 * One Lua script in one worker: the long-lived state (prelude + script run once, as Envoy's
 * per-worker ThreadLocalState), the flat host-function table the prelude calls, and the registry
 * of live hook invocations those functions resolve (cid, seg) against.
 */
import { createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import { DataBuffer } from '../filters/data-buffer.ts';
import { HeaderMap } from '../filters/header-map.ts';
import type { Address } from '../filters/stream-info.ts';
import type { HttpFilterCallbacks } from '../filters/types.ts';
import type { ClusterManager, HttpCallHandle } from '../proxy/cluster-manager.ts';
import type { Counter, StatsStore } from '../observability/stats.ts';
import {
  HOOK_INSTRUCTIONS,
  LuaScriptError,
  Multi,
  isLuaTable,
  type HostFunction,
  type LuaEngine,
  type LuaState,
  type LuaValue,
} from './engine.ts';
import type { CompiledLuaState } from './compiled-engine.ts';
import { CompiledLuaFilter, Direction, LuaHttpFilter, State, luaArray, type LuaStreamFilter } from './filter.ts';
import { COMPAT_LUAJIT, PRELUDE, SANDBOX } from './prelude.ts';

export interface LuaScriptOptions {
  /** Envoy filter config name: `metadata()` reads route filter_metadata under it. */
  filterName: string;
  memoryLimitBytes: number;
  /** Lua VM instructions per hook invocation (0 = unlimited). */
  instructionBudget: number;
  failClosed: boolean;
  allowUnsafeLibs: boolean;
  clusters: ClusterManager | undefined;
  log: Logger;
  /** For handle:stats(): custom stats live under `<statsPrefix>.` */
  stats?: StatsStore;
}

export interface LuaFilterStats {
  executions: Counter;
  errors: Counter;
  /** Scope for handle:stats() (e.g. `http.ingress.lua`). */
  scope: string;
}

/** What a lent Direction points at between hooks: nothing (host calls then fail the seg check). */
const IDLE_FILTER: LuaStreamFilter = { callbacks: undefined as unknown as HttpFilterCallbacks, stats: undefined as unknown as LuaFilterStats };

const DEAD = new Multi([false, 'object used outside of proper scope']);
const CANNOT_MODIFY = new Multi([false, 'header map can no longer be modified']);
const HASHES: Record<string, string> = { sha1: 'sha1', sha224: 'sha224', sha256: 'sha256', sha384: 'sha384', sha512: 'sha512' };
const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
/** Prefetched header keys and metadata namespaces per direction (the prelude's PFK / PFN caps). */
const PF_KEYS = 4;
const PF_NS = 2;
/** Values startHook passes after the entry's four arguments: marker, 4 header values, 2 tables. */
const PF_SLOTS = 1 + PF_KEYS + PF_NS;
/** Write-behind queue ops (prelude q()). */
const Q_HADD = 1;
const Q_HREP = 2;
const Q_HREM = 3;
const Q_DMSET = 4;
/** Recently decoded short queue strings, shared by the worker's scripts (see LuaScript.#text). */
const TEXTS: (string | undefined)[] = new Array<string | undefined>(256).fill(undefined);

function err(msg: string): Multi {
  return new Multi([false, msg]);
}

function fmtAddr(a: Address | undefined): string {
  if (!a) return '';
  return a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** Lua value → protobuf Struct value, with the errors of Envoy's MetadataMapHelper. */
function toStructValue(v: LuaValue): unknown {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object') return v;
  if (!isLuaTable(v)) throw new Error(`unexpected type '${v.luaType}' in dynamicMetadata`);
  const t = v.luaTable;
  let numeric = 0;
  let strings = 0;
  for (let i = 0; i < t.length; i += 2) {
    const k = t[i];
    if (typeof k === 'number' && Number.isInteger(k) && k >= 1) numeric++;
    else if (typeof k === 'string') strings++;
    else throw new Error(`unexpected type ${k === null || k === undefined ? 'nil' : typeof k === 'object' ? (isLuaTable(k) ? 'table' : k.luaType) : typeof k} in table key (only string keys are supported)`);
  }
  if (numeric > 0 && strings > 0) throw new Error('unexpected type number in table key (only string keys are supported)');
  if (numeric > 0) {
    const arr = luaArray(v);
    const out: unknown[] = [];
    for (let i = 0; i < arr.length; i++) out.push(toStructValue(arr[i]));
    return out;
  }
  const out: Record<string, unknown> = {};
  for (let i = 0; i < t.length; i += 2) out[t[i] as string] = toStructValue(t[i + 1]);
  return out;
}

/** A JS string that may hold non-latin1 characters, as the bytes Lua should see (UTF-8). */
function luaText(s: string): string {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return Buffer.from(s, 'utf8').toString('latin1');
  return s;
}

/** Struct values from other filters → Lua-pushable values with UTF-8 strings as bytes. */
function fromStruct(v: unknown, depth = 0): unknown {
  if (typeof v === 'string') return luaText(v);
  if (v === null || typeof v !== 'object' || depth > 32) return v;
  if (Array.isArray(v)) return v.map((x) => fromStruct(x, depth + 1));
  if (v instanceof Uint8Array) return v;
  // as flat pairs: the engines build the table from one array instead of enumerating an object's keys
  const pairs: unknown[] = [];
  for (const k in v as Record<string, unknown>) pairs.push(luaText(k), fromStruct((v as Record<string, unknown>)[k], depth + 1));
  return { luaTable: pairs };
}

/** Lua bytes (latin1 JS string) → JS text: UTF-8 when valid, otherwise the bytes as latin1. */
function jsText(s: string): string {
  let high = false;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) {
      high = true;
      break;
    }
  }
  if (!high) return s;
  const b = Buffer.from(s, 'latin1');
  const t = b.toString('utf8');
  return t.includes('\ufffd') ? s : t;
}

/**
 * jsText with a memory of its last argument, for call sites that see the same few constants
 * request after request (metadata namespaces and keys): a string constant of the script arrives as
 * the same string each time, so the check is a pointer compare instead of a scan.
 */
function memoJsText(): (s: string) => string {
  let lastIn = '';
  let lastOut = '';
  return (s) => {
    if (s === lastIn) return lastOut;
    lastOut = jsText(s);
    lastIn = s;
    return lastOut;
  };
}

function structFromLua(v: unknown): unknown {
  if (typeof v === 'string') return jsText(v);
  if (Array.isArray(v)) return v.map(structFromLua);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k in v as Record<string, unknown>) out[jsText(k)] = structFromLua((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

/** A prefetch string value (tag 1, u32 length, latin1 bytes). */
function putString(io: Buffer, dv: DataView, o: number, v: string): number {
  const n = v.length;
  io[o] = 1;
  dv.setUint32(o + 1, n, true);
  o += 5;
  if (n < 48) for (let i = 0; i < n; i++) io[o + i] = v.charCodeAt(i);
  else io.write(v, o, n, 'latin1');
  return o + n;
}

/**
 * A namespace of primitives as a prefetch table (tag 5), with fromStruct's conversions (text as
 * UTF-8 bytes, null values absent); anything nested or too big is left to dmget (tag 4, false).
 * `limit` keeps room for the slots still to write.
 */
function putFlatTable(io: Buffer, dv: DataView, o: number, limit: number, t: Record<string, unknown>): number {
  const start = o;
  o += 5;
  let pairs = 0;
  for (const k in t) {
    const v = t[k];
    if (v === null || v === undefined) continue;
    const key = luaText(k);
    if (typeof v === 'string') {
      const s = luaText(v);
      if (o + 10 + key.length + s.length > limit) return notPrefetched(io, start);
      o = putString(io, dv, o, key);
      o = putString(io, dv, o, s);
    } else if (typeof v === 'number' || typeof v === 'boolean') {
      if (o + 14 + key.length > limit) return notPrefetched(io, start);
      o = putString(io, dv, o, key);
      if (typeof v === 'number') {
        io[o] = 2;
        dv.setFloat64(o + 1, v, true);
        o += 9;
      } else io[o++] = v ? 3 : 4;
    } else return notPrefetched(io, start);
    pairs++;
  }
  io[start] = 5;
  dv.setUint32(start + 1, pairs, true);
  return o;
}

function notPrefetched(io: Buffer, at: number): number {
  io[at] = 4;
  return at + 1;
}

function isIpAuthority(host: string): boolean {
  if (isIP(host)) return true;
  const v6 = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(host);
  if (v6) return isIP(v6[1]!) === 6 && (v6[2] === undefined || Number(v6[2]) <= 65535);
  const v4 = /^([^:]+):(\d{1,5})$/.exec(host);
  return v4 !== null && isIP(v4[1]!) === 4 && Number(v4[2]) <= 65535;
}

export class LuaScript {
  readonly engine: LuaEngine;
  readonly state: LuaState;
  readonly options: LuaScriptOptions;
  readonly log: Logger;
  readonly failClosed: boolean;
  /** Budget in hook ticks (HOOK_INSTRUCTIONS instructions each); 0 = unlimited. */
  readonly budgetTicks: number;
  /** Bit 1: envoy_on_request, bit 2: envoy_on_response. */
  readonly hooks: number;
  readonly #ctxs: (Direction | undefined)[] = [undefined];
  readonly #free: number[] = [];
  readonly #reap: number[] = [];
  /** LuaJIT's buffer shared with the prelude (write-behind queue, prefetch); undefined on wasm. */
  readonly #io: Buffer | undefined;
  readonly #dv: DataView | undefined;
  readonly #ioQueue: number;
  /** Header keys as the script wrote them / lowercased, and namespaces raw / as text, per direction. */
  readonly #pfKeys: [string[], string[]] = [[], []];
  readonly #pfKeysLower: [string[], string[]] = [[], []];
  readonly #pfNs: [string[], string[]] = [[], []];
  readonly #pfNsText: [string[], string[]] = [[], []];
  /** The compiled tier's state: hooks run to the end in one call (see CompiledLuaFilter). */
  readonly compiled: boolean;
  /** Per direction, the Direction lent to compiled hooks, registered once (lendDirection). */
  readonly #lent: [Direction | undefined, Direction | undefined] = [undefined, undefined];
  #active = 0;
  #segment = 0;
  #released = false;
  #closed = false;

  /** Loads the script; throws LuaScriptError with Envoy's `script load error: ...` text. */
  constructor(engine: LuaEngine, code: string, options: LuaScriptOptions) {
    this.engine = engine;
    this.options = options;
    this.log = options.log;
    this.failClosed = options.failClosed;
    this.budgetTicks = options.instructionBudget > 0 ? Math.max(1, Math.ceil(options.instructionBudget / HOOK_INSTRUCTIONS)) : 0;
    const state = engine.createState({
      memoryLimitBytes: options.memoryLimitBytes,
      allowUnsafeLibs: options.allowUnsafeLibs,
      budgetEnabled: this.budgetTicks > 0,
    });
    this.state = state;
    const io = state.io;
    this.#io = io ? Buffer.from(io.buffer, io.byteOffset, io.byteLength) : undefined;
    this.#dv = io ? new DataView(io.buffer, io.byteOffset, io.byteLength) : undefined;
    this.#ioQueue = state.ioQueueBytes ?? 0;
    // the compiled tier's state (duck-typed: importing it here would load it in every Lua worker)
    this.compiled = 'loadScript' in state;
    if (this.compiled) {
      const compiled = state as CompiledLuaState;
      // the compiled tier: no prelude or sandbox to run, the hooks call the host table directly
      // unwrapped: a compiled hook runs inside the state's try/catch, where a host function's
      // exception becomes this hook's script error (there is no engine for it to unwind through)
      compiled.setHostTable('__meshext_host', this.#hostTable(false));
      this.hooks = compiled.loadScript(code);
      this.#logMissingHooks();
      return;
    }
    try {
      state.setHostTable('__meshext_host', this.#hostTable());
      if (engine.compatPrelude) state.exec(engine.compatPrelude, '=meshext.compat', 0, true);
      if (engine.name === 'luajit') state.exec(COMPAT_LUAJIT, '=meshext.compat', 0, true);
      state.exec(PRELUDE, '=meshext.prelude', 0, true);
      if (!options.allowUnsafeLibs) state.exec(SANDBOX, '=meshext.sandbox', 0, true);
      try {
        // Envoy names the chunk with the source itself: messages read `[string "..."]:3: ...`.
        state.exec(code, code, this.budgetTicks);
      } catch (e) {
        throw new LuaScriptError(`script load error: ${(e as Error).message}`);
      }
      state.exec('__meshext_capture()', '=meshext.capture', 0, true);
      state.takeEntry('__meshext_entry');
      // The hook mask is read back through a tiny chunk: no getter exists in the engine API.
      let mask = 0;
      state.setHostTable('__meshext_report', { hooks: (m) => { mask = m as number; } });
      state.exec('__meshext_report.hooks(__meshext_hooks) __meshext_report = nil __meshext_hooks = nil', '=meshext.report', 0, true);
      this.hooks = mask;
    } catch (e) {
      state.close();
      throw e;
    }
    this.#logMissingHooks();
  }

  #logMissingHooks(): void {
    if (!(this.hooks & 1)) this.log.info('envoy_on_request() function not found. Lua filter will not hook requests.');
    if (!(this.hooks & 2)) this.log.info('envoy_on_response() function not found. Lua filter will not hook responses.');
  }

  /**
   * A run segment number never used before in this state. Segments are unique (not counted per
   * hook) because the prelude recycles handle tables: a stale object or iterator compares the
   * segment it was made in with its handle's current one, which must never come back.
   */
  nextSegment(): number {
    return ++this.#segment;
  }

  hasHook(dir: 0 | 1): boolean {
    return (this.hooks & (dir === 0 ? 1 : 2)) !== 0;
  }

  createFilter(callbacks: HttpFilterCallbacks, stats: LuaFilterStats): LuaHttpFilter | CompiledLuaFilter | null {
    if (this.hooks === 0 || this.#closed) return null;
    this.#active++;
    return this.compiled ? new CompiledLuaFilter(this, callbacks, stats) : new LuaHttpFilter(this, callbacks, stats);
  }

  /**
   * The Direction a compiled hook of `dir` runs with: the script's own one, registered once, so a
   * stream allocates and registers nothing per hook. A hook started while that one is in use (a
   * host call that re-entered the chain) gets a Direction of its own, as LuaHttpFilter's.
   */
  lendDirection(dir: 0 | 1, filter: LuaStreamFilter, headers: HeaderMap): Direction {
    let d = this.#lent[dir];
    if (d === undefined || d.state === State.Running) {
      const own = new Direction(filter, dir);
      own.cid = this.register(own);
      if (d === undefined) this.#lent[dir] = own;
      d = own;
    }
    d.filter = filter;
    d.headers = headers;
    d.seg = this.nextSegment();
    d.state = State.Running;
    return d;
  }

  /** The compiled hook ended: nothing of the stream stays reachable from the script. */
  returnDirection(d: Direction): void {
    d.state = State.Idle;
    d.headers = undefined;
    d.filter = IDLE_FILTER;
    // a stale (cid, seg) pair can never match again
    d.seg = 0;
    if (d !== this.#lent[d.dir]) this.unregister(d.cid);
  }

  /** A filter's stream ended. */
  filterDone(): void {
    this.#active--;
    if (this.#released && this.#active <= 0) this.close();
  }

  /** The configuration dropped this script: close once in-flight streams are done with it. */
  release(): void {
    this.#released = true;
    if (this.#active <= 0) this.close();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.state.close();
  }

  register(d: Direction): number {
    const cid = this.#free.pop() ?? this.#ctxs.length;
    this.#ctxs[cid] = d;
    return cid;
  }

  /**
   * A hook ended. An abnormal end (error, reset, respond()) leaves its Lua handle looking alive, so
   * its id is held back until the next hook entry has marked it dead (takeReap), then reused.
   */
  unregister(cid: number, abnormal = false): void {
    if (this.#ctxs[cid] === undefined) return;
    this.#ctxs[cid] = undefined;
    if (abnormal) this.#reap.push(cid);
    else this.#free.push(cid);
  }

  /** The next hook id the prelude must mark dead (0 = none); it becomes reusable. */
  takeReap(): number {
    const cid = this.#reap.pop();
    if (cid === undefined) return 0;
    this.#free.push(cid);
    return cid;
  }

  /**
   * hget of the stream's own headers from a live hook: learn the key as the prelude does when the
   * call returns anything but false (same events, so the same order; LuaScript.prefetch checks).
   */
  #learnKey(dir: 0 | 1, key: string): void {
    const l = this.#pfKeys[dir];
    if (l.length >= PF_KEYS || l.includes(key)) return;
    l.push(key);
    this.#pfKeysLower[dir].push(key.toLowerCase());
  }

  #learnNs(dir: 0 | 1, ns: string): void {
    const l = this.#pfNs[dir];
    if (l.length >= PF_NS || l.includes(ns)) return;
    l.push(ns);
    this.#pfNsText[dir].push(jsText(ns));
  }

  /**
   * Before a hook starts: the values of the keys and namespaces its direction learned, written to
   * the shared buffer. Returns the count of values for start() (0: nothing to prefetch).
   */
  prefetch(d: Direction): number {
    const io = this.#io;
    if (io === undefined) return 0;
    const keys = this.#pfKeysLower[d.dir];
    const nss = this.#pfNsText[d.dir];
    if (keys.length === 0 && nss.length === 0) return 0;
    const dv = this.#dv!;
    const end = io.length;
    let o = this.#ioQueue;
    // the marker: how many keys and namespaces JS has learned, which the prelude checks against
    // its own lists (equal unless the two sides ever learned differently: then no prefetch)
    io[o] = 2;
    dv.setFloat64(o + 1, keys.length * 8 + nss.length, true);
    o += 9;
    const m = d.headers;
    for (let i = 0; i < PF_KEYS; i++) {
      const k = keys[i];
      if (k === undefined || m === undefined) {
        io[o++] = 4; // false: not prefetched
        continue;
      }
      const names = m.names;
      let v: string | undefined;
      for (let j = 0; j < names.length; j++) if (names[j] === k) v = v === undefined ? m.values[j]! : `${v},${m.values[j]!}`;
      if (v === undefined) io[o++] = 0;
      else if (o + 5 + v.length + 16 > end) io[o++] = 4;
      else o = putString(io, dv, o, v);
    }
    const dm = nss.length > 0 ? d.filter.callbacks.streamInfo.dynamicMetadata : undefined;
    for (let i = 0; i < PF_NS; i++) {
      const ns = nss[i];
      if (ns === undefined || dm === undefined) {
        io[o++] = 4;
        continue;
      }
      const t = dm.get(ns);
      if (t === undefined) {
        io[o++] = 0;
        continue;
      }
      o = putFlatTable(io, dv, o, end - (PF_NS - i), t);
    }
    return PF_SLOTS;
  }

  /** Applies the prelude's queued writes (after a run, and before any host call). */
  flushQueue(): void {
    const dv = this.#dv;
    if (dv === undefined) return;
    const len = dv.getUint32(0, true);
    if (len === 0) return;
    dv.setUint32(0, 0, true);
    try {
      this.#applyQueue(this.#io!, dv, 4 + len);
    } catch (e) {
      // as a host function's failure: logged, never thrown into the filter chain
      this.log.error({ err: (e as Error).message }, 'lua queued write failed');
    }
  }

  #applyQueue(io: Buffer, dv: DataView, end: number): void {
    let o = 4;
    while (o < end) {
      const op = io[o]!;
      const d = this.#ctxs[dv.getUint32(o + 1, true)];
      o += 5;
      // every value of these ops is a string except the metadata value
      let n = dv.getUint32(o + 1, true);
      const a = this.#text(io, o + 5, n);
      o += 5 + n;
      let b = '';
      if (op !== Q_HREM) {
        n = dv.getUint32(o + 1, true);
        b = this.#text(io, o + 5, n);
        o += 5 + n;
      }
      if (op === Q_DMSET) {
        const tag = io[o]!;
        let v: unknown;
        if (tag === 1) {
          n = dv.getUint32(o + 1, true);
          v = jsText(this.#text(io, o + 5, n));
          o += 5 + n;
        } else if (tag === 2) {
          v = dv.getFloat64(o + 1, true);
          o += 9;
        } else {
          v = tag === 3;
          o += 1;
        }
        d?.filter.callbacks.streamInfo.setDynamicMetadata(jsText(a), jsText(b), v);
        continue;
      }
      const m = d?.headers;
      if (m === undefined) continue;
      // as the host functions do: a request header rewrite re-routes
      if (d!.dir === 0) d!.filter.callbacks.clearRouteCache();
      if (op === Q_HADD) m.add(a, b);
      else if (op === Q_HREP) m.set(a, b);
      else m.remove(a);
    }
  }

  /**
   * Bytes of the queue as a latin1 string. Short ones go through a small cache: header names,
   * namespaces, keys and many values repeat on every request, and a Buffer slice is a C++ call.
   */
  #text(io: Buffer, o: number, n: number): string {
    if (n > 32) return io.toString('latin1', o, o + n);
    let h = n;
    for (let i = 0; i < n; i++) h = (h * 31 + io[o + i]!) | 0;
    const slot = h & 255;
    const c = TEXTS[slot];
    if (c !== undefined && c.length === n) {
      let i = 0;
      while (i < n && c.charCodeAt(i) === io[o + i]) i++;
      if (i === n) return c;
    }
    const t = io.toString('latin1', o, o + n);
    TEXTS[slot] = t;
    return t;
  }

  /** Starts a callout for handle:httpCall(). Throws when the request cannot even be sent. */
  httpCall(d: Direction, cluster: string, headers: LuaValue, body: string | undefined, timeoutMs: number): HttpCallHandle {
    const clusters = this.options.clusters;
    if (!clusters) throw new Error('no cluster manager');
    const map = new HeaderMap();
    if (isLuaTable(headers)) {
      const t = headers.luaTable;
      for (let i = 0; i + 1 < t.length; i += 2) {
        const k = t[i];
        const v = t[i + 1];
        if (typeof k !== 'string') continue;
        if (typeof v === 'string' || typeof v === 'number') map.add(k, String(v));
        else if (isLuaTable(v)) for (const x of luaArray(v)) if (typeof x === 'string' || typeof x === 'number') map.add(k, String(x));
      }
    }
    const bytes = body !== undefined ? Buffer.from(body, 'latin1') : undefined;
    if (bytes !== undefined) map.set('content-length', String(bytes.length));
    void d;
    return clusters.httpCall({ cluster, headers: map, body: bytes, timeoutMs });
  }

  // ------------------------------------------------------------------ host functions
  #hostTable(wrap = true): Record<string, HostFunction> {
    const ctxs = this.#ctxs;
    const log = this.log;
    const opts = this.options;
    const ctx = (cid: LuaValue, seg: LuaValue): Direction | undefined => {
      const d = ctxs[cid as number];
      return d !== undefined && d.seg === seg ? d : undefined;
    };
    const headerMap = (d: Direction, w: LuaValue): HeaderMap | undefined => {
      if (w === 0) return d.headers;
      if (w === 2) return d.trailers;
      return d.filter.callbacks.requestHeaders();
    };
    /** The "modifiable?" check Envoy makes on every mutator call. */
    const writable = (d: Direction, w: LuaValue): HeaderMap | Multi => {
      if (w === 0) {
        if (d.headersContinued || !d.headers) return CANNOT_MODIFY;
        // Header rewrites on the request path re-route (Envoy's clear_route_cache default).
        if (d.dir === 0) d.filter.callbacks.clearRouteCache();
        return d.headers;
      }
      const m = headerMap(d, w);
      return m ?? CANNOT_MODIFY;
    };
    const buffer = (d: Direction, w: LuaValue): DataBuffer | undefined => (w === 0 ? d.body : d.chunk);
    const tls = (d: Direction) => d.filter.callbacks.streamInfo.downstreamTls;
    const io = this.#io;
    const qlen = this.#dv;
    const dmgetNs = memoJsText();
    const dmsetNs = memoJsText();
    const dmsetKey = memoJsText();

    const host: Record<string, HostFunction> = {
      reqheaders: (cid, seg) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        return d.dir === 1 && d.filter.callbacks.requestHeaders() !== undefined;
      },
      hget: (cid, seg, w, key) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        // learned here, before anything can fail: the prelude learns on every answer but false
        if (w === 0 && io !== undefined) this.#learnKey(d.dir, key as string);
        const m = headerMap(d, w);
        if (!m) return undefined;
        const k = (key as string).toLowerCase();
        const names = m.names;
        let out: string | undefined;
        for (let i = 0; i < names.length; i++) {
          if (names[i] === k) out = out === undefined ? m.values[i]! : `${out},${m.values[i]!}`;
        }
        return out;
      },
      hidx: (cid, seg, w, key, idx) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        const m = headerMap(d, w);
        if (!m || (idx as number) < 0) return null;
        return m.getAll(key as string)[idx as number] ?? null;
      },
      hnum: (cid, seg, w, key) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        const m = headerMap(d, w);
        return m ? m.getAll(key as string).length : 0;
      },
      hadd: (cid, seg, w, key, val) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        const m = writable(d, w);
        if (m instanceof Multi) return m;
        m.add(key as string, val as string);
        return undefined;
      },
      hrep: (cid, seg, w, key, val) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        const m = writable(d, w);
        if (m instanceof Multi) return m;
        m.set(key as string, val as string);
        return undefined;
      },
      hrem: (cid, seg, w, key) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        const m = writable(d, w);
        if (m instanceof Multi) return m;
        m.remove(key as string);
        return undefined;
      },
      hpairs: (cid, seg, w) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        const m = headerMap(d, w);
        const flat: string[] = [];
        if (m) for (let i = 0; i < m.names.length; i++) flat.push(m.names[i]!, m.values[i]!);
        return flat;
      },
      hreason: (cid, seg, _w, phrase) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        if (d.dir === 1) d.filter.callbacks.streamInfo.http1ReasonPhrase = phrase as string;
        return undefined;
      },
      blen: (cid, seg, w) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        return buffer(d, w)?.length ?? 0;
      },
      bget: (cid, seg, w, index, length) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        const b = buffer(d, w);
        const i = index as number;
        const n = length as number;
        const size = b?.length ?? 0;
        if (i < 0 || n < 0 || i + n > size) return err('index/length must be >= 0 and (index + length) must be <= buffer size');
        return b ? b.toBuffer().subarray(i, i + n) : '';
      },
      bset: (cid, seg, w, s) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        const bytes = Buffer.from(s as string, 'latin1');
        if (w === 0 && d.bodySynthetic) {
          // body(true) on a bodyless stream: the new body has to enter the stream.
          const cb = d.filter.callbacks;
          if (d.dir === 0) cb.addDecodedData(bytes, false);
          else cb.addEncodedData(bytes, false);
          const real = d.dir === 0 ? cb.decodingBuffer() : cb.encodingBuffer();
          if (real) {
            d.body = real;
            d.bodySynthetic = false;
          } else d.body!.set(bytes);
        } else {
          const b = buffer(d, w);
          if (b) b.set(bytes);
        }
        // Envoy's setBytes also fixes content-length on the stream's headers.
        if (d.headers && !(d.headersContinued && w === 1)) d.headers.set('content-length', String(bytes.length));
        return bytes.length;
      },
      chunks: (cid, seg) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        if (d.dataSeen || d.body !== undefined) return err('cannot call bodyChunks after body processing has begun');
        return true;
      },
      meta: (cid, seg, kind) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        if (kind === 'context' || kind === 'vhost') return null;
        const fm = d.filter.callbacks.route()?.filterMetadata;
        if (!fm) return null;
        const m = fm[opts.filterName] ?? (kind === 'handle' ? fm['envoy.filters.http.lua'] : undefined);
        return m ? fromStruct(m) : null;
      },
      dmget: (cid, seg, ns) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        const m = d.filter.callbacks.streamInfo.dynamicMetadata.get(dmgetNs(ns as string));
        const out = m === undefined ? undefined : fromStruct(m);
        if (io !== undefined) this.#learnNs(d.dir, ns as string);
        return out;
      },
      dmset: (cid, seg, ns, key, value) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        let v: unknown;
        try {
          v = structFromLua(toStructValue(value));
        } catch (e) {
          return err((e as Error).message);
        }
        d.filter.callbacks.streamInfo.setDynamicMetadata(dmsetNs(ns as string), dmsetKey(key as string), v);
        return undefined;
      },
      dmpairs: (cid, seg, conn) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        const out: Record<string, unknown> = {};
        if (conn !== true) for (const [k, v] of d.filter.callbacks.streamInfo.dynamicMetadata) out[luaText(k)] = fromStruct(v);
        return out;
      },
      typedmeta: (cid, seg) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        return null;
      },
      si: (cid, seg, name) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        const si = d.filter.callbacks.streamInfo;
        switch (name) {
          case 'protocol': return si.protocol;
          case 'downstreamLocalAddress':
          case 'downstreamDirectLocalAddress': return fmtAddr(si.downstreamLocalAddress);
          case 'downstreamRemoteAddress': return fmtAddr(si.downstreamRemoteAddress ?? si.downstreamDirectRemoteAddress);
          case 'downstreamDirectRemoteAddress': return fmtAddr(si.downstreamDirectRemoteAddress ?? si.downstreamRemoteAddress);
          case 'requestedServerName': return si.requestedServerName;
          case 'routeName': return si.routeName || d.filter.callbacks.route()?.name || '';
          default: return '';
        }
      },
      fsget: (cid, seg, name, field) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        const v = d.filter.callbacks.streamInfo.filterState.get(name as string);
        if (v === undefined || v === null) return undefined;
        if (field !== undefined && typeof v === 'object') {
          const f = (v as Record<string, unknown>)[field as string];
          return typeof f === 'string' || typeof f === 'number' ? f : undefined;
        }
        if (typeof v === 'string' || typeof v === 'number') return v;
        if (typeof v === 'boolean') return String(v);
        const ser = (v as { serializeAsString?: () => string }).serializeAsString;
        return typeof ser === 'function' ? ser.call(v) : JSON.stringify(v);
      },
      ssl: (cid, seg, name) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        const t = tls(d);
        let v: unknown;
        // Certificates are parsed on first use (StreamInfo caches them per connection).
        const peer = () => t?.peerCertificate?.();
        const local = () => t?.localCertificate?.();
        switch (name) {
          case 'present': v = t !== undefined; break;
          case 'peerCertificatePresented': v = t?.peerCertificatePresented ?? false; break;
          case 'peerCertificateValidated': v = t?.peerCertificateValidated ?? false; break;
          case 'uriSanLocalCertificate': v = local()?.uriSans ?? []; break;
          case 'uriSanPeerCertificate': v = peer()?.uriSans ?? []; break;
          case 'dnsSansLocalCertificate': v = local()?.dnsSans ?? []; break;
          case 'dnsSansPeerCertificate': v = peer()?.dnsSans ?? []; break;
          // Node exposes no certificate policy OIDs.
          case 'oidsPeerCertificate': case 'oidsLocalCertificate': v = []; break;
          case 'validFromPeerCertificate': v = peer()?.validFrom ?? 0; break;
          case 'expirationPeerCertificate': v = peer()?.expiration ?? 0; break;
          case 'sha256PeerCertificateDigest': v = peer()?.sha256Digest ?? ''; break;
          case 'serialNumberPeerCertificate': v = peer()?.serialNumber ?? ''; break;
          case 'issuerPeerCertificate': v = peer()?.issuer ?? ''; break;
          case 'subjectPeerCertificate': v = peer()?.subject ?? ''; break;
          case 'subjectLocalCertificate': v = local()?.subject ?? ''; break;
          case 'urlEncodedPemEncodedPeerCertificate': {
            const pem = peer()?.pem;
            v = pem ? encodeURIComponent(pem) : '';
            break;
          }
          case 'urlEncodedPemEncodedPeerCertificateChain': {
            const pem = peer()?.pem;
            v = pem ? encodeURIComponent(pem) : '';
            break;
          }
          case 'ciphersuiteId': v = t?.cipherId !== undefined ? `0x${t.cipherId.toString(16).padStart(4, '0')}` : '0xffff'; break;
          case 'ciphersuiteString': v = t?.cipher ?? ''; break;
          case 'tlsVersion': v = t?.protocol ?? ''; break;
          case 'parsedSubjectPeerCertificate': {
            const p = peer();
            v = p ? { commonName: p.commonName, organizationName: p.organizationName } : undefined;
            break;
          }
          default: v = '';
        }
        return new Multi([true, v]);
      },
      log: (cid, seg, level, msg) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        const l = LEVELS[level as number] ?? 'info';
        if (log.isLevelEnabled(l)) log[l]('script log: %s', msg as string);
        return undefined;
      },
      b64: (cid, seg, s) => {
        if (!ctx(cid, seg)) return DEAD;
        return Buffer.from(s as string, 'latin1').toString('base64');
      },
      ts: (cid, seg) => {
        if (!ctx(cid, seg)) return DEAD;
        return Date.now();
      },
      tss: (cid, seg, res) => {
        if (!ctx(cid, seg)) return DEAD;
        if (res === 1) return String(Math.floor((performance.timeOrigin + performance.now()) * 1000));
        return String(Date.now());
      },
      importKey: (cid, seg, key, len) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        const der = (key as string).slice(0, Math.max(0, len as number));
        let k: KeyObject | undefined;
        try {
          k = createPublicKey({ key: Buffer.from(der, 'latin1'), format: 'der', type: 'spki' });
        } catch {
          k = undefined;
        }
        (d.keys ??= new Map()).set(der, k);
        return k ? der : null;
      },
      verify: (cid, seg, hash, key, sig, siglen, data, datalen) => {
        const d = ctx(cid, seg);
        if (!d) return new Multi([undefined, 'object used outside of proper scope']);
        const k = d.keys?.get(key as string);
        if (k === undefined) return new Multi([undefined, 'invalid public key']);
        const alg = HASHES[(hash as string).toLowerCase()];
        if (!alg) return new Multi([false, `${hash as string} is not supported.`]);
        const s = Buffer.from((sig as string).slice(0, siglen as number), 'latin1');
        const m = Buffer.from((data as string).slice(0, datalen as number), 'latin1');
        let ok = false;
        try {
          ok = cryptoVerify(alg, m, k as KeyObject, s);
        } catch {
          ok = false;
        }
        return ok ? new Multi([true, null]) : new Multi([false, 'Failed to verify digest. Error code: 0']);
      },
      cluster: (cid, seg, name) => {
        if (!ctx(cid, seg)) return DEAD;
        if (!opts.clusters?.has(name as string)) return err('http call cluster invalid. Must be configured');
        return true;
      },
      async: (cid, seg, cluster, headers, body, timeout) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        try {
          const h = this.httpCall(d, cluster as string, headers, body as string | undefined, timeout as number);
          h.promise.catch(() => undefined);
        } catch {
          // fire-and-forget: a failure is not the script's problem
        }
        return undefined;
      },
      canrespond: (cid, seg) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        if (d.headersContinued) return err('respond() cannot be called if headers have been continued');
        return true;
      },
      crc: (cid, seg) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        if (d.dir === 0) d.filter.callbacks.clearRouteCache();
        return undefined;
      },
      override: (cid, seg, host, strict) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        if (!isIpAuthority(host as string)) return err('host is not a valid IP address');
        if (d.dir === 0) d.filter.callbacks.streamInfo.filterState.set('envoy.upstream.override_host', { host, strict: strict === true });
        return undefined;
      },
      drain: (cid, seg) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        d.filter.callbacks.streamInfo.drainConnectionUponCompletion = true;
        return undefined;
      },
      stat: (cid, seg, kind, name, op, value, unit) => {
        const d = ctx(cid, seg);
        if (!d) return DEAD;
        const store = opts.stats;
        if (!store) return op === 'value' ? 0 : undefined;
        const full = `${d.filter.stats.scope}.${name as string}`;
        const n = typeof value === 'number' ? value : 1;
        if (kind === 'counter') {
          const c = store.counter(full);
          if (op === 'inc') c.inc();
          else if (op === 'add') c.inc(n);
          else if (op === 'value') return c.value;
          return undefined;
        }
        if (kind === 'gauge') {
          const g = store.gauge(full);
          if (op === 'inc') g.add(1);
          else if (op === 'dec') g.sub(1);
          else if (op === 'add') g.add(n);
          else if (op === 'sub') g.sub(n);
          else if (op === 'set') g.set(n);
          else if (op === 'value') return g.value;
          return undefined;
        }
        if (op === 'create' && unit !== undefined && !['ms', 'milliseconds', 'microseconds', 'bytes', 'unspecified'].includes(unit as string)) {
          return err(`invalid histogram unit '${unit as string}'`);
        }
        const h = store.histogram(full);
        if (op === 'recordValue') h.record(n);
        return undefined;
      },
    };
    if (!wrap) return host;
    // Every host function is wrapped once: a JS exception must never unwind through an engine.
    // Writes the prelude queued are applied first, so that the call sees them.
    for (const [k, fn] of Object.entries(host)) {
      host[k] = (a, b, c, d, e, f, g, h) => {
        try {
          if (qlen !== undefined && qlen.getUint32(0, true) !== 0) this.flushQueue();
          return fn(a, b, c, d, e, f, g, h);
        } catch (e) {
          log.error({ err: (e as Error).message }, `lua host function ${k} failed`);
          return err(`internal error in ${k}: ${(e as Error).message}`);
        }
      };
    }
    return host;
  }
}

