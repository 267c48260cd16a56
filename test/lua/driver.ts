/**
 * A small stand-in for the filter manager, for unit-testing the Lua filter through the HttpFilter
 * methods: it buffers cumulatively on StopIterationAndBuffer/Watermark (the manager's contract),
 * records local replies, continue*() calls and route-cache clears, and captures the filter's logs.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { DataBuffer } from '../../src/filters/data-buffer.ts';
import { HeaderMap } from '../../src/filters/header-map.ts';
import { StreamInfo } from '../../src/filters/stream-info.ts';
import { DataStatus, TrailersStatus, type HttpFilter, type HttpFilterCallbacks, type LocalReplyOptions, type RouteInfo } from '../../src/filters/types.ts';
import type { ClusterManager, HttpCallHandle, HttpCallRequest, HttpCallResponse } from '../../src/proxy/cluster-manager.ts';
import { StatsStore } from '../../src/observability/stats.ts';
import type { LuaEngine } from '../../src/lua/engine.ts';
import { LuaScript, type LuaFilterStats, type LuaScriptOptions } from '../../src/lua/script.ts';

export interface LogLine {
  level: number;
  msg: string;
}

export class Logs {
  readonly lines: LogLine[] = [];
  readonly logger = pino(
    { level: 'trace', base: undefined, timestamp: false },
    new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        for (const l of chunk.toString().split('\n')) if (l) this.lines.push(JSON.parse(l) as LogLine);
        cb();
      },
    }),
  );
  messages(level?: number): string[] {
    return this.lines.filter((l) => level === undefined || l.level === level).map((l) => l.msg);
  }
  /** `script log: ...` messages only, without the prefix. */
  script(level?: number): string[] {
    return this.messages(level).filter((m) => m.startsWith('script log: ')).map((m) => m.slice(12));
  }
}

export const LEVEL = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, critical: 60 } as const;

/** A scripted cluster manager: answers callouts from a handler, records requests. */
export class FakeClusters implements ClusterManager {
  readonly requests: HttpCallRequest[] = [];
  cancelled = 0;
  clusters = new Set(['cluster', 'upstream']);
  handler: (req: HttpCallRequest) => Promise<HttpCallResponse> = async () => ({ headers: HeaderMap.fromPairs([[':status', '200']]), body: Buffer.from('ok'), trailers: new HeaderMap() });
  has(c: string): boolean {
    return this.clusters.has(c);
  }
  httpCall(req: HttpCallRequest): HttpCallHandle {
    this.requests.push(req);
    let cancel = () => {};
    const promise = new Promise<HttpCallResponse>((resolve, reject) => {
      cancel = () => {
        this.cancelled++;
        reject(new Error('cancelled'));
      };
      this.handler(req).then(resolve, reject);
    });
    promise.catch(() => undefined);
    return { promise, cancel: () => cancel() };
  }
}

export interface Reply {
  status: number;
  body: string;
  options: LocalReplyOptions | undefined;
}

export class FakeStream implements HttpFilterCallbacks {
  readonly streamInfo = new StreamInfo();
  readonly streamId = 1;
  readonly bufferLimit = 1 << 20;
  reqHeaders: HeaderMap | undefined;
  reqTrailers: HeaderMap | undefined;
  respHeaders: HeaderMap | undefined;
  respTrailers: HeaderMap | undefined;
  routeInfo: RouteInfo | undefined;
  replies: Reply[] = [];
  continueDecodingCalls = 0;
  continueEncodingCalls = 0;
  clearRouteCacheCalls = 0;
  decBuf: DataBuffer | undefined;
  encBuf: DataBuffer | undefined;
  /** Whether the last data status asked the manager to keep buffering. */
  #decBuffering = false;
  #encBuffering = false;
  /** LuaHttpFilter, or CompiledLuaFilter (no data or trailer callbacks) for compiled scripts. */
  filter!: HttpFilter;

  requestHeaders() { return this.reqHeaders; }
  requestTrailers() { return this.reqTrailers; }
  responseHeaders() { return this.respHeaders; }
  responseTrailers() { return this.respTrailers; }
  route() { return this.routeInfo; }
  clearRouteCache() { this.clearRouteCacheCalls++; }
  sendLocalReply(status: number, body: string | Buffer, options?: LocalReplyOptions) {
    this.replies.push({ status, body: body.toString(), options });
  }
  resetStream() {}
  continueDecoding() { this.continueDecodingCalls++; }
  continueEncoding() { this.continueEncodingCalls++; }
  decodingBuffer() { return this.decBuf; }
  encodingBuffer() { return this.encBuf; }
  addDecodedData(data: Buffer) { (this.decBuf ??= new DataBuffer()).append(data); }
  addEncodedData(data: Buffer) { (this.encBuf ??= new DataBuffer()).append(data); }
  injectDecodedDataToFilterChain() {}
  injectEncodedDataToFilterChain() {}
  addDecodedTrailers() { return (this.reqTrailers ??= new HeaderMap()); }
  addEncodedTrailers() { return (this.respTrailers ??= new HeaderMap()); }

  // ----- manager-like helpers
  decodeHeaders(pairs: [string, string][] | HeaderMap, endStream = false) {
    this.reqHeaders = pairs instanceof HeaderMap ? pairs : HeaderMap.fromPairs(pairs);
    return this.filter.decodeHeaders!(this.reqHeaders, endStream);
  }
  decodeData(chunk: string | Buffer, endStream = false) {
    let buf: DataBuffer;
    if (this.#decBuffering && this.decBuf) {
      this.decBuf.append(chunk);
      buf = this.decBuf;
    } else {
      buf = new DataBuffer(chunk);
    }
    const st = this.filter.decodeData ? this.filter.decodeData(buf, endStream) : DataStatus.Continue;
    this.#decBuffering = st === DataStatus.StopIterationAndBuffer || st === DataStatus.StopIterationAndWatermark;
    if (this.#decBuffering) this.decBuf = buf;
    return { status: st, data: buf };
  }
  decodeTrailers(pairs: [string, string][]) {
    this.reqTrailers = HeaderMap.fromPairs(pairs);
    return this.filter.decodeTrailers ? this.filter.decodeTrailers(this.reqTrailers) : TrailersStatus.Continue;
  }
  encodeHeaders(pairs: [string, string][] | HeaderMap, endStream = false) {
    this.respHeaders = pairs instanceof HeaderMap ? pairs : HeaderMap.fromPairs(pairs);
    return this.filter.encodeHeaders!(this.respHeaders, endStream);
  }
  encodeData(chunk: string | Buffer, endStream = false) {
    let buf: DataBuffer;
    if (this.#encBuffering && this.encBuf) {
      this.encBuf.append(chunk);
      buf = this.encBuf;
    } else {
      buf = new DataBuffer(chunk);
    }
    const st = this.filter.encodeData ? this.filter.encodeData(buf, endStream) : DataStatus.Continue;
    this.#encBuffering = st === DataStatus.StopIterationAndBuffer || st === DataStatus.StopIterationAndWatermark;
    if (this.#encBuffering) this.encBuf = buf;
    return { status: st, data: buf };
  }
  encodeTrailers(pairs: [string, string][]) {
    this.respTrailers = HeaderMap.fromPairs(pairs);
    return this.filter.encodeTrailers ? this.filter.encodeTrailers(this.respTrailers) : TrailersStatus.Continue;
  }
  destroy() {
    this.filter.onDestroy?.();
  }
}

export interface Harness {
  script: LuaScript;
  logs: Logs;
  stats: StatsStore;
  filterStats: LuaFilterStats;
  clusters: FakeClusters;
  stream(): FakeStream;
  errors(): number;
  executions(): number;
  close(): void;
}

export const FILTER_NAME = 'extensions.istio.io/trafficextension/default.test';

export function harness(engine: LuaEngine, code: string, opts: Partial<LuaScriptOptions> = {}): Harness {
  const logs = new Logs();
  const stats = new StatsStore();
  const clusters = new FakeClusters();
  const script = new LuaScript(engine, code, {
    filterName: FILTER_NAME,
    memoryLimitBytes: 32 << 20,
    instructionBudget: 10_000_000,
    failClosed: false,
    allowUnsafeLibs: false,
    clusters,
    log: logs.logger,
    stats,
    ...opts,
  });
  const filterStats: LuaFilterStats = { executions: stats.counter('http.test.lua.executions'), errors: stats.counter('http.test.lua.errors'), scope: 'http.test.lua' };
  return {
    script,
    logs,
    stats,
    filterStats,
    clusters,
    stream() {
      const s = new FakeStream();
      const f = script.createFilter(s, filterStats);
      if (!f) throw new Error('script has no hooks');
      s.filter = f;
      return s;
    },
    errors: () => filterStats.errors.value,
    executions: () => filterStats.executions.value,
    close: () => script.close(),
  };
}

/** Lets promise callbacks (httpCall completions) run. */
export function tick(ms = 0): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
