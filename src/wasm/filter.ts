/**
 * The Wasm filters: WasmHttpFilter maps the filter chain's calls onto Proxy-Wasm stream callbacks
 * (spec §4.3) and the callbacks' results onto chain statuses (§2.7); WasmNetworkFilter does the
 * same for L4. Both implement StreamHost, the side the host functions act on. Actions the plugin
 * requests during a VM call (continue, local reply, close) are recorded and applied after the call
 * returns, as Envoy's "after VM call actions".
 */
import type { DataBuffer } from '../filters/data-buffer.ts';
import type { HeaderMap } from '../filters/header-map.ts';
import type { StreamInfo } from '../filters/stream-info.ts';
import {
  DataStatus,
  HeadersStatus,
  NetworkFilterStatus,
  TrailersStatus,
  type HttpFilter,
  type HttpFilterCallbacks,
  type NetworkFilter,
  type NetworkFilterCallbacks,
  type RouteInfo,
} from '../filters/types.ts';
import { PeerType, Status } from './abi.ts';
import { VM_FAILED, type RootContext, type StreamContext, type StreamHost, type WasmVm } from './vm.ts';

/** What a filter needs from its plugin to handle a VM failure (policy lives in plugin.ts). */
export interface FailureHandler {
  /** True when the plugin is FAIL_OPEN (the stream continues without the plugin). */
  readonly failOpen: boolean;
  /** A stream using the plugin's VM ended (lets a released plugin wait for in-flight streams). */
  streamEnded?(): void;
}

const REQ = 1;
const RESP = 2;

const WS = /\s/g;

export class WasmHttpFilter implements HttpFilter, StreamHost {
  readonly kind = 'http' as const;
  readonly #vm: WasmVm;
  readonly #cb: HttpFilterCallbacks;
  readonly #policy: FailureHandler;
  readonly ctx: StreamContext;
  /** Direction of the callback running now (0 = none): actions then apply on return. */
  #inCb = 0;
  #curBody: DataBuffer | undefined;
  #curBodyDir = 0;
  #curEos = false;
  #continueReq = false;
  #continueResp = false;
  #stoppedReq = false;
  #stoppedResp = false;
  #close = false;
  #local: { status: number; details: string; body: Uint8Array; headers: Array<[string, string]>; grpc: number } | undefined;
  /** The plugin is out of the way: after fail-open or after the fail-closed reply was sent. */
  #bypass = false;
  #logged = false;
  #destroyed = false;

  constructor(vm: WasmVm, root: RootContext, callbacks: HttpFilterCallbacks, policy: FailureHandler) {
    this.#vm = vm;
    this.#cb = callbacks;
    this.#policy = policy;
    this.ctx = vm.newStream(root, this);
  }

  // ------------------------------------------------------------ StreamHost
  get streamInfo(): StreamInfo {
    return this.#cb.streamInfo;
  }
  get connectionId(): number {
    return this.#cb.streamId;
  }

  map(type: number, forWrite: boolean): HeaderMap | undefined {
    const cb = this.#cb;
    switch (type) {
      case 0: return cb.requestHeaders();
      case 1: {
        const t = cb.requestTrailers();
        if (t || !forWrite) return t;
        // Trailers may be added from the last request body callback (Envoy addDecodedTrailers).
        return this.#inCb === REQ && this.#curBodyDir === REQ && this.#curEos ? cb.addDecodedTrailers() : undefined;
      }
      case 2: return cb.responseHeaders();
      case 3: {
        const t = cb.responseTrailers();
        if (t || !forWrite) return t;
        return this.#inCb === RESP && this.#curBodyDir === RESP && this.#curEos ? cb.addEncodedTrailers() : undefined;
      }
      default: return undefined;
    }
  }

  buffer(type: number): DataBuffer | undefined {
    if (type === 0) return this.#curBodyDir === REQ ? this.#curBody : this.#cb.decodingBuffer();
    if (type === 1) return this.#curBodyDir === RESP ? this.#curBody : this.#cb.encodingBuffer();
    return undefined;
  }

  route(): RouteInfo | undefined {
    return this.#cb.route();
  }
  clearRouteCache(): void {
    this.#cb.clearRouteCache();
  }

  continueStream(type: number): number {
    if (type === 0) this.#continueReq = true;
    else if (type === 1) this.#continueResp = true;
    else return Status.BadArgument;
    this.#vm.deferFor(this.ctx);
    return Status.Ok;
  }

  closeStream(type: number): number {
    if (type > 1) return Status.BadArgument;
    this.#close = true;
    this.#vm.deferFor(this.ctx);
    return Status.Ok;
  }

  sendLocalResponse(status: number, details: string, body: Uint8Array, headers: Array<[string, string]>, grpc: number): number {
    this.#local = { status, details: details.replace(WS, '_'), body, headers, grpc };
    this.#vm.deferFor(this.ctx);
    return Status.Ok;
  }

  afterVmCall(): void {
    // During our own callback the result mapping applies the actions (after the call returned).
    if (this.#inCb !== 0 || this.#destroyed) return;
    if (this.#applyTerminal()) return;
    if (this.#continueReq) {
      this.#continueReq = false;
      if (this.#stoppedReq) {
        this.#stoppedReq = false;
        this.#cb.continueDecoding();
      }
    }
    if (this.#continueResp) {
      this.#continueResp = false;
      if (this.#stoppedResp) {
        this.#stoppedResp = false;
        this.#cb.continueEncoding();
      }
    }
  }

  vmFailed(): void {
    if (this.#destroyed || this.#bypass || this.#inCb !== 0) return;
    if (!this.#stoppedReq && !this.#stoppedResp) {
      // Not waiting on the plugin: later callbacks see VM_FAILED and apply the strategy then.
      return;
    }
    this.#bypass = true;
    if (this.#policy.failOpen) {
      if (this.#stoppedReq) {
        this.#stoppedReq = false;
        this.#cb.continueDecoding();
      }
      if (this.#stoppedResp) {
        this.#stoppedResp = false;
        this.#cb.continueEncoding();
      }
      return;
    }
    this.#stoppedReq = this.#stoppedResp = false;
    this.#cb.sendLocalReply(503, '', { details: 'wasm_fail_stream', grpcStatus: 14 });
  }

  /** Local reply or close, if requested. Returns true when one was applied. */
  #applyTerminal(): boolean {
    const local = this.#local;
    if (local) {
      this.#local = undefined;
      this.#continueReq = this.#continueResp = false;
      this.#stoppedReq = this.#stoppedResp = false;
      this.#cb.sendLocalReply(local.status, Buffer.from(local.body.buffer, local.body.byteOffset, local.body.byteLength), {
        headers: local.headers,
        details: local.details,
        ...(local.grpc >= 0 && local.grpc <= 16 ? { grpcStatus: local.grpc } : {}),
      });
      return true;
    }
    if (this.#close) {
      this.#close = false;
      this.#cb.resetStream('wasm_close_stream');
      return true;
    }
    return false;
  }

  // ------------------------------------------------------------ failure
  #failed(kind: 'headers' | 'data' | 'trailers'): number {
    if (this.#policy.failOpen) {
      this.#bypass = true;
      return 0;
    }
    this.#bypass = true;
    this.#cb.sendLocalReply(503, '', { details: 'wasm_fail_stream', grpcStatus: 14 });
    return kind === 'headers' ? HeadersStatus.StopAllIterationAndWatermark : kind === 'data' ? DataStatus.StopIterationNoBuffer : TrailersStatus.StopIteration;
  }

  // ------------------------------------------------------------ result mapping (§2.7)
  #headersResult(r: number, dir: number): HeadersStatus {
    if (r === VM_FAILED) return this.#failed('headers') as HeadersStatus;
    if (this.#applyTerminal()) return HeadersStatus.StopAllIterationAndWatermark;
    let st: HeadersStatus = r === 0 || r === 2 ? HeadersStatus.Continue : r === 3 ? HeadersStatus.StopAllIterationAndBuffer : HeadersStatus.StopAllIterationAndWatermark;
    st = this.#resolveContinue(st, dir) as HeadersStatus;
    return st;
  }

  #dataResult(r: number, dir: number): DataStatus {
    if (r === VM_FAILED) return this.#failed('data') as DataStatus;
    if (this.#applyTerminal()) return DataStatus.StopIterationNoBuffer;
    let st: DataStatus = r === 0 ? DataStatus.Continue : r === 1 ? DataStatus.StopIterationAndBuffer : r === 2 ? DataStatus.StopIterationAndWatermark : DataStatus.StopIterationNoBuffer;
    st = this.#resolveContinue(st, dir) as DataStatus;
    return st;
  }

  #trailersResult(r: number, dir: number): TrailersStatus {
    if (r === VM_FAILED) return this.#failed('trailers') as TrailersStatus;
    if (this.#applyTerminal()) return TrailersStatus.StopIteration;
    const st: TrailersStatus = r === 0 ? TrailersStatus.Continue : TrailersStatus.StopIteration;
    return this.#resolveContinue(st, dir) as TrailersStatus;
  }

  /** A continue_stream asked for during our own callback turns a stop into Continue. */
  #resolveContinue(st: number, dir: number): number {
    if (dir === REQ) {
      if (this.#continueReq) {
        this.#continueReq = false;
        st = 0;
      }
      this.#stoppedReq = st !== 0;
    } else {
      if (this.#continueResp) {
        this.#continueResp = false;
        st = 0;
      }
      this.#stoppedResp = st !== 0;
    }
    // A continue for the other direction requested now applies when that direction is stopped.
    if (this.#continueReq || this.#continueResp) queueMicrotask(() => this.afterVmCall());
    return st;
  }

  // ------------------------------------------------------------ HttpFilter
  decodeHeaders(headers: HeaderMap, endStream: boolean): HeadersStatus {
    return this.#onHeaders(this.#vm.ex.on_request_headers, headers.size, endStream, REQ);
  }

  decodeData(data: DataBuffer, endStream: boolean): DataStatus {
    return this.#onBody(this.#vm.ex.on_request_body, data, endStream, REQ);
  }

  decodeTrailers(trailers: HeaderMap): TrailersStatus {
    return this.#onTrailers(this.#vm.ex.on_request_trailers, trailers.size, REQ);
  }

  encodeHeaders(headers: HeaderMap, endStream: boolean): HeadersStatus {
    return this.#onHeaders(this.#vm.ex.on_response_headers, headers.size, endStream, RESP);
  }

  encodeData(data: DataBuffer, endStream: boolean): DataStatus {
    return this.#onBody(this.#vm.ex.on_response_body, data, endStream, RESP);
  }

  encodeTrailers(trailers: HeaderMap): TrailersStatus {
    return this.#onTrailers(this.#vm.ex.on_response_trailers, trailers.size, RESP);
  }

  // One implementation per callback kind, parameterised by direction (REQ/RESP) and export.
  #onHeaders(fn: Function | undefined, size: number, endStream: boolean, dir: typeof REQ | typeof RESP): HeadersStatus {
    if (this.#bypass) return HeadersStatus.Continue;
    const vm = this.#vm;
    if (!vm.ensureCreated(this.ctx)) return this.#headersResult(VM_FAILED, dir);
    this.#inCb = dir;
    const r = vm.call(fn, this.ctx, this.ctx.id, size, endStream ? 1 : 0);
    this.#inCb = 0;
    return this.#headersResult(r, dir);
  }

  #onBody(fn: Function | undefined, data: DataBuffer, endStream: boolean, dir: typeof REQ | typeof RESP): DataStatus {
    if (this.#bypass || fn === undefined) return DataStatus.Continue;
    const vm = this.#vm;
    if (!vm.ensureCreated(this.ctx)) return this.#dataResult(VM_FAILED, dir);
    this.#inCb = dir;
    this.#curBody = data;
    this.#curBodyDir = dir;
    this.#curEos = endStream;
    const r = vm.call(fn, this.ctx, this.ctx.id, data.length, endStream ? 1 : 0);
    this.#curBody = undefined;
    this.#curBodyDir = 0;
    this.#inCb = 0;
    return this.#dataResult(r, dir);
  }

  #onTrailers(fn: Function | undefined, size: number, dir: typeof REQ | typeof RESP): TrailersStatus {
    if (this.#bypass || fn === undefined) return TrailersStatus.Continue;
    const vm = this.#vm;
    if (!vm.ensureCreated(this.ctx)) return this.#trailersResult(VM_FAILED, dir);
    this.#inCb = dir;
    const r = vm.call(fn, this.ctx, this.ctx.id, size);
    this.#inCb = 0;
    return this.#trailersResult(r, dir);
  }

  log(): void {
    if (this.#logged) return;
    this.#logged = true;
    const vm = this.#vm;
    if (this.ctx.created && !vm.failed) vm.call(vm.ex.on_log, this.ctx, this.ctx.id);
  }

  onDestroy(): void {
    if (this.#destroyed) return;
    this.log();
    this.#destroyed = true;
    const vm = this.#vm;
    if (this.ctx.created && !vm.failed) {
      vm.call(vm.ex.on_done, this.ctx, this.ctx.id);
      vm.call(vm.ex.on_delete, this.ctx, this.ctx.id);
    }
    vm.deleteStream(this.ctx);
    this.#policy.streamEnded?.();
  }
}

/** A filter that only answers 503 `wasm_fail_stream` (fail-closed plugin without a usable VM). */
export class FailClosedHttpFilter implements HttpFilter {
  readonly #cb: HttpFilterCallbacks;
  readonly #status: number;
  readonly #body: string;
  readonly #details: string;
  constructor(callbacks: HttpFilterCallbacks, status = 503, body = '', details = 'wasm_fail_stream') {
    this.#cb = callbacks;
    this.#status = status;
    this.#body = body;
    this.#details = details;
  }
  decodeHeaders(): HeadersStatus {
    this.#cb.sendLocalReply(this.#status, this.#body, { details: this.#details, grpcStatus: this.#status === 503 ? 14 : 7 });
    return HeadersStatus.StopAllIterationAndWatermark;
  }
}

export class WasmNetworkFilter implements NetworkFilter, StreamHost {
  readonly kind = 'network' as const;
  readonly #vm: WasmVm;
  readonly #cb: NetworkFilterCallbacks;
  readonly #policy: FailureHandler;
  readonly ctx: StreamContext;
  #inCb = false;
  #cur: DataBuffer | undefined;
  #curType = -1;
  #continue = false;
  #stopped = false;
  #close = false;
  #bypass = false;
  #done = false;

  constructor(vm: WasmVm, root: RootContext, callbacks: NetworkFilterCallbacks, policy: FailureHandler) {
    this.#vm = vm;
    this.#cb = callbacks;
    this.#policy = policy;
    this.ctx = vm.newStream(root, this);
  }

  get streamInfo(): StreamInfo {
    return this.#cb.streamInfo;
  }
  get connectionId(): number {
    return this.#cb.connectionId;
  }
  map(): HeaderMap | undefined {
    return undefined;
  }
  buffer(type: number): DataBuffer | undefined {
    return type === this.#curType ? this.#cur : undefined;
  }
  route(): RouteInfo | undefined {
    return undefined;
  }
  clearRouteCache(): void {}
  continueStream(type: number): number {
    if (type === 3) return Status.Unimplemented; // as Envoy
    if (type !== 2) return Status.BadArgument;
    this.#continue = true;
    this.#vm.deferFor(this.ctx);
    return Status.Ok;
  }
  closeStream(type: number): number {
    if (type !== 2 && type !== 3) return Status.BadArgument;
    this.#close = true;
    this.#vm.deferFor(this.ctx);
    return Status.Ok;
  }
  sendLocalResponse(): number {
    return Status.BadArgument;
  }
  afterVmCall(): void {
    if (this.#inCb) return;
    this.#apply();
  }
  vmFailed(): void {
    if (this.#done || this.#bypass || this.#inCb || !this.#stopped) return;
    this.#bypass = true;
    this.#stopped = false;
    if (this.#policy.failOpen) this.#cb.continueReading();
    else this.#cb.close(true, 'wasm_fail_stream');
  }
  #apply(): boolean {
    if (this.#close) {
      this.#close = false;
      this.#cb.close(true, 'wasm_close_stream');
      return true;
    }
    if (this.#continue) {
      this.#continue = false;
      if (this.#stopped) {
        this.#stopped = false;
        this.#cb.continueReading();
      }
    }
    return false;
  }

  #result(r: number): NetworkFilterStatus {
    if (r === VM_FAILED) {
      this.#bypass = true;
      if (this.#policy.failOpen) return NetworkFilterStatus.Continue;
      this.#cb.close(true, 'wasm_fail_stream');
      return NetworkFilterStatus.StopIteration;
    }
    if (this.#close) {
      this.#apply();
      return NetworkFilterStatus.StopIteration;
    }
    let st: NetworkFilterStatus = r === 0 ? NetworkFilterStatus.Continue : NetworkFilterStatus.StopIteration;
    if (this.#continue) {
      this.#continue = false;
      st = NetworkFilterStatus.Continue;
    }
    this.#stopped = st !== NetworkFilterStatus.Continue;
    return st;
  }

  onNewConnection(): NetworkFilterStatus {
    if (this.#bypass) return NetworkFilterStatus.Continue;
    const vm = this.#vm;
    if (!vm.ensureCreated(this.ctx)) return this.#result(VM_FAILED);
    this.#inCb = true;
    const r = vm.call(vm.ex.on_new_connection, this.ctx, this.ctx.id);
    this.#inCb = false;
    return this.#result(r);
  }

  #data(fn: Function | undefined, type: number, data: DataBuffer, endStream: boolean): NetworkFilterStatus {
    if (this.#bypass || fn === undefined) return NetworkFilterStatus.Continue;
    const vm = this.#vm;
    if (!vm.ensureCreated(this.ctx)) return this.#result(VM_FAILED);
    this.#inCb = true;
    this.#cur = data;
    this.#curType = type;
    const r = vm.call(fn, this.ctx, this.ctx.id, data.length, endStream ? 1 : 0);
    this.#cur = undefined;
    this.#curType = -1;
    this.#inCb = false;
    return this.#result(r);
  }

  onDownstreamData(data: DataBuffer, endStream: boolean): NetworkFilterStatus {
    return this.#data(this.#vm.ex.on_downstream_data, 2, data, endStream);
  }
  onUpstreamData(data: DataBuffer, endStream: boolean): NetworkFilterStatus {
    return this.#data(this.#vm.ex.on_upstream_data, 3, data, endStream);
  }
  onDownstreamClose(): void {
    const vm = this.#vm;
    if (this.#bypass || !this.ctx.created) return;
    vm.call(vm.ex.on_downstream_connection_close, this.ctx, this.ctx.id, PeerType.Remote);
  }
  onUpstreamClose(): void {
    const vm = this.#vm;
    if (this.#bypass || !this.ctx.created) return;
    vm.call(vm.ex.on_upstream_connection_close, this.ctx, this.ctx.id, PeerType.Remote);
  }
  onDestroy(): void {
    if (this.#done) return;
    this.#done = true;
    // TCP order: done → log → delete.
    this.#vm.finishStream(this.ctx, false);
    this.#policy.streamEnded?.();
  }
}
