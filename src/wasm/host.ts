/**
 * THE host-function table: every import meshext offers a Proxy-Wasm module, keyed by import name
 * (one place to audit, like cpp-host's exports.h). Each entry is a factory that closes over one VM
 * (closures are made once per instance, never per call). Every function has the same shape:
 * normalise args (`>>> 0`: u32 arrive signed; i64 arrive as BigInt), bounds-check enums and memory,
 * act on the EFFECTIVE context, marshal results into plugin memory, return a status. Memory errors
 * answer INVALID_MEMORY_ACCESS; nothing here throws for bad guest input.
 */
import { createRequire } from 'node:module';
import { HeaderMap } from '../filters/header-map.ts';
import { MeshextError } from '../errors.ts';
import { MAX_BUFFER_TYPE, MAX_MAP_TYPE, Status } from './abi.ts';
import { decodePairs, encodePairsInto, pairsSize } from './pairs.ts';
import { getProperty, setProperty } from './properties.ts';
import { Context, RootContext, StreamContext, type CalloutResponse, type WasmVm } from './vm.ts';
import { wasiFunctions } from './wasi.ts';

type HostFn = (...args: any[]) => number | void;
type HostFactory = (vm: WasmVm) => HostFn;

/** Foreign functions (proxy_call_foreign_function): name → (args, ctx) → result bytes | status. */
export type ForeignFunction = (args: Uint8Array, vm: WasmVm, ctx: Context | null) => Uint8Array | number;
const foreignFunctions = new Map<string, ForeignFunction>();

export function registerForeignFunction(name: string, fn: ForeignFunction): void {
  foreignFunctions.set(name, fn);
}

const require = createRequire(import.meta.url);

// node:zlib is loaded on the first compress/uncompress call, not in every worker that runs a
// plugin (~0.27 MiB of heap each; few plugins call these foreign functions).
let zlib: typeof import('node:zlib') | undefined;
const loadZlib = () => (zlib ??= require('node:zlib') as typeof import('node:zlib'));

// Likewise gRPC streams (require of an ES module: host calls are synchronous); properties.ts is
// imported eagerly because the SDKs read properties (e.g. the root id) at start.
let grpcMod: typeof import('./grpc.ts') | undefined;
const grpc = () => (grpcMod ??= require('./grpc.ts') as typeof import('./grpc.ts'));

/** Closes a disposed VM's gRPC sessions (there are none if no plugin ever opened a stream). */
export function closeGrpcSessions(vm: WasmVm): void {
  grpcMod?.closeGrpcSessions(vm);
}

registerForeignFunction('compress', (args) => new Uint8Array(loadZlib().deflateSync(args)));
registerForeignFunction('uncompress', (args) => {
  try {
    return new Uint8Array(loadZlib().inflateSync(args));
  } catch {
    return Status.SerializationFailure;
  }
});
registerForeignFunction('clear_route_cache', (_args, _vm, ctx) => {
  if (!(ctx instanceof StreamContext)) return Status.NotFound;
  ctx.host.clearRouteCache();
  return new Uint8Array(0);
});

/** Splits a property path on NUL (a trailing NUL is ignored, as Envoy). */
function splitPath(s: string): string[] {
  const parts = s.split('\u0000');
  if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
  return parts;
}

function streamOf(vm: WasmVm): StreamContext | undefined {
  const c = vm.effective;
  return c instanceof StreamContext ? c : undefined;
}

/** The map for a map type, or undefined when unavailable. */
function mapOf(vm: WasmVm, type: number, forWrite: boolean): HeaderMap | undefined {
  if (vm.allocating) return undefined;
  if (type <= 3) {
    const s = streamOf(vm);
    if (!s || s.host.kind !== 'http') return undefined;
    return s.host.map(type, forWrite);
  }
  if (forWrite) return undefined; // callout/gRPC maps are read-only
  const resp: CalloutResponse | undefined = vm.effective?.root.calloutResponse;
  if (!resp) return undefined;
  switch (type) {
    case 4: return resp.grpcInitial;
    case 5: return resp.grpcTrailing;
    case 6: return resp.headers;
    default: return resp.trailers;
  }
}

const EMPTY = new Uint8Array(0);

function bufferOf(vm: WasmVm, type: number): { bytes: () => Uint8Array; length: number; writable: import('../filters/data-buffer.ts').DataBuffer | undefined } | undefined {
  const ctx = vm.effective;
  if (vm.allocating) return undefined;
  if (type <= 3) {
    const s = streamOf(vm);
    const b = s?.host.buffer(type);
    if (!b) return undefined;
    return { bytes: () => b.toBuffer(), length: b.length, writable: b };
  }
  const root = ctx?.root;
  let data: Uint8Array | undefined;
  switch (type) {
    case 4: data = root?.calloutResponse?.body; break;
    case 5: data = root?.calloutResponse?.body; break;
    case 6: data = root?.configPhase === 'vm_start' ? vm.vmConfiguration : undefined; break;
    case 7: data = root?.configPhase === 'configure' ? root.plugin.configuration : undefined; break;
    case 8: data = root?.foreignArgs; break;
  }
  if (type === 4 && root?.calloutResponse && !data) data = EMPTY;
  if (!data) return undefined;
  const d = data;
  return { bytes: () => d, length: d.length, writable: undefined };
}

function grpcUpstreamCluster(bytes: Uint8Array, vm: WasmVm): string | undefined {
  const asText = new TextDecoder().decode(bytes);
  if (vm.services.clusters?.has(asText)) return asText;
  // envoy.config.core.v3.GrpcService { envoy_grpc (1) { cluster_name (1) } }
  if (bytes[0] === 0x0a) {
    let i = 1;
    let len = 0;
    let shift = 0;
    while (i < bytes.length) {
      const b = bytes[i++]!;
      len |= (b & 0x7f) << shift;
      shift += 7;
      if (!(b & 0x80)) break;
    }
    if (bytes[i] === 0x0a) {
      let j = i + 1;
      let n = 0;
      shift = 0;
      while (j < bytes.length) {
        const b = bytes[j++]!;
        n |= (b & 0x7f) << shift;
        shift += 7;
        if (!(b & 0x80)) break;
      }
      if (j + n <= bytes.length && n <= len) return new TextDecoder().decode(bytes.subarray(j, j + n));
    }
  }
  return undefined;
}

function calloutFailure(err: unknown): { code: number; message: string } {
  if (MeshextError.is(err) && err.code === 'MESHEXT_ERR_UPSTREAM_TIMEOUT') return { code: Status.BrokenConnection, message: 'timeout' };
  return { code: Status.BrokenConnection, message: 'reset' };
}

export const hostFunctions: Record<string, HostFactory> = {
  // ------------------------------------------------------------ logging, time, status
  proxy_log: (vm) => (level: number, ptr: number, len: number) => {
    level >>>= 0;
    if (level > 5) return Status.BadArgument;
    if (!vm.logEnabled(level)) return vm.inBounds(ptr >>> 0, len >>> 0) ? Status.Ok : Status.InvalidMemoryAccess;
    const msg = vm.readString(ptr, len);
    if (msg === null) return Status.InvalidMemoryAccess;
    vm.pluginLog(level, msg);
    return Status.Ok;
  },
  proxy_get_log_level: (vm) => (ptr: number) => (vm.writeU32(ptr, vm.hostLogLevel()) ? Status.Ok : Status.InvalidMemoryAccess),
  proxy_get_current_time_nanoseconds: (vm) => (ptr: number) =>
    vm.writeU64(ptr, BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n)) ? Status.Ok : Status.InvalidMemoryAccess,
  proxy_get_status: (vm) => (codePtr: number, msgPtrPtr: number, msgLenPtr: number) => {
    const root = vm.effective?.root;
    if (!vm.writeU32(codePtr, root?.statusCode ?? 0)) return Status.InvalidMemoryAccess;
    return vm.returnString(root?.statusMessage ?? '', msgPtrPtr, msgLenPtr);
  },
  proxy_set_tick_period_milliseconds: (vm) => (ms: number) => {
    const root = vm.effective?.root;
    if (!root) return Status.BadArgument;
    root.tickMs = ms >>> 0;
    vm.armTimer(root);
    return Status.Ok;
  },

  // ------------------------------------------------------------ properties
  proxy_get_property: (vm) => (pathPtr: number, pathLen: number, valPtrPtr: number, valLenPtr: number) => {
    const path = vm.readString(pathPtr, pathLen);
    if (path === null) return Status.InvalidMemoryAccess;
    const v = getProperty(vm, vm.effective, splitPath(path));
    if (v === undefined) return Status.NotFound;
    return vm.returnBytes(v, valPtrPtr, valLenPtr);
  },
  proxy_set_property: (vm) => (pathPtr: number, pathLen: number, valPtr: number, valLen: number) => {
    const path = vm.readString(pathPtr, pathLen);
    const val = vm.readBytes(valPtr, valLen);
    if (path === null || val === null) return Status.InvalidMemoryAccess;
    return setProperty(vm.effective, splitPath(path), val) ? Status.Ok : Status.NotFound;
  },

  // ------------------------------------------------------------ header maps
  proxy_get_header_map_value: (vm) => (type: number, keyPtr: number, keyLen: number, valPtrPtr: number, valLenPtr: number) => {
    type >>>= 0;
    if (type > MAX_MAP_TYPE) return Status.BadArgument;
    const key = vm.readHeaderName(keyPtr, keyLen);
    if (key === null) return Status.InvalidMemoryAccess;
    const map = mapOf(vm, type, false);
    // HeaderMap.get without its toLowerCase: the name is lower-cased (and cached) already.
    let v: string | undefined;
    if (map) {
      const names = map.names;
      for (let i = 0; i < names.length; i++) {
        if (names[i] === key) {
          v = map.values[i];
          break;
        }
      }
    }
    if (v === undefined) {
      // 0.1.0 Envoy answered OK + empty value for a missing header.
      if (vm.abi === '0.1.0') return vm.returnString('', valPtrPtr, valLenPtr);
      return Status.NotFound;
    }
    return vm.returnString(v, valPtrPtr, valLenPtr);
  },
  proxy_add_header_map_value: (vm) => (type: number, kp: number, kl: number, vp: number, vl: number) => {
    type >>>= 0;
    if (type > MAX_MAP_TYPE) return Status.BadArgument;
    const k = vm.readHeaderName(kp, kl);
    const v = vm.readString(vp, vl);
    if (k === null || v === null) return Status.InvalidMemoryAccess;
    const map = mapOf(vm, type, true);
    if (!map) return Status.BadArgument;
    map.add(k, v);
    return Status.Ok;
  },
  proxy_replace_header_map_value: (vm) => (type: number, kp: number, kl: number, vp: number, vl: number) => {
    type >>>= 0;
    if (type > MAX_MAP_TYPE) return Status.BadArgument;
    const k = vm.readHeaderName(kp, kl);
    const v = vm.readString(vp, vl);
    if (k === null || v === null) return Status.InvalidMemoryAccess;
    const map = mapOf(vm, type, true);
    if (!map) return Status.BadArgument;
    map.set(k, v);
    return Status.Ok;
  },
  proxy_remove_header_map_value: (vm) => (type: number, kp: number, kl: number) => {
    type >>>= 0;
    if (type > MAX_MAP_TYPE) return Status.BadArgument;
    const k = vm.readHeaderName(kp, kl);
    if (k === null) return Status.InvalidMemoryAccess;
    const map = mapOf(vm, type, true);
    if (!map) return Status.BadArgument;
    map.remove(k);
    return Status.Ok;
  },
  proxy_get_header_map_pairs: (vm) => (type: number, ptrPtr: number, lenPtr: number) => {
    type >>>= 0;
    if (type > MAX_MAP_TYPE) return Status.BadArgument;
    const map = mapOf(vm, type, false);
    if (!map || map.size === 0) return vm.returnBytes(EMPTY, ptrPtr, lenPtr);
    ptrPtr >>>= 0;
    lenPtr >>>= 0;
    if (!vm.inBounds(ptrPtr, 4) || !vm.inBounds(lenPtr, 4)) return Status.InvalidMemoryAccess;
    const size = pairsSize(map.names, map.values);
    const p = vm.alloc(size);
    if (p === 0) return Status.InvalidMemoryAccess;
    encodePairsInto(map.names, map.values, vm.u8(), p);
    vm.writeU32(ptrPtr, p);
    vm.writeU32(lenPtr, size);
    return Status.Ok;
  },
  proxy_set_header_map_pairs: (vm) => (type: number, ptr: number, len: number) => {
    type >>>= 0;
    if (type > MAX_MAP_TYPE) return Status.BadArgument;
    ptr >>>= 0;
    len >>>= 0;
    if (!vm.inBounds(ptr, len)) return Status.InvalidMemoryAccess;
    const pairs = decodePairs(vm.u8(), ptr, len);
    const map = mapOf(vm, type, true);
    if (!map) return Status.BadArgument;
    // cpp-host treats a malformed map as empty; we refuse it instead of wiping the headers.
    if (pairs === null) return Status.BadArgument;
    map.replaceAll(pairs);
    return Status.Ok;
  },
  proxy_get_header_map_size: (vm) => (type: number, sizePtr: number) => {
    type >>>= 0;
    if (type > MAX_MAP_TYPE) return Status.BadArgument;
    const map = mapOf(vm, type, false);
    if (!map) return Status.BadArgument;
    // Envoy writes HeaderMap::byteSize() (sum of names and values), not the serialized size.
    return vm.writeU32(sizePtr, map.byteSize()) ? Status.Ok : Status.InvalidMemoryAccess;
  },

  // ------------------------------------------------------------ buffers
  proxy_get_buffer_status: (vm) => (type: number, lenPtr: number, flagsPtr: number) => {
    type >>>= 0;
    if (type > MAX_BUFFER_TYPE) return Status.BadArgument;
    const b = bufferOf(vm, type);
    if (!b) return Status.NotFound;
    if (!vm.writeU32(lenPtr, b.length) || !vm.writeU32(flagsPtr, 0)) return Status.InvalidMemoryAccess;
    return Status.Ok;
  },
  proxy_get_buffer_bytes: (vm) => (type: number, start: number, maxLen: number, ptrPtr: number, lenPtr: number) => {
    type >>>= 0;
    start >>>= 0;
    maxLen >>>= 0;
    if (type > MAX_BUFFER_TYPE) return Status.BadArgument;
    if (start + maxLen > 0xffffffff && maxLen !== 0xffffffff && maxLen !== 0x7fffffff) return Status.BadArgument;
    const b = bufferOf(vm, type);
    if (!b) return Status.NotFound;
    const all = b.bytes();
    const s = Math.min(start, all.length);
    const e = Math.min(all.length, s + maxLen);
    return vm.returnBytes(all.subarray(s, e), ptrPtr, lenPtr);
  },
  proxy_set_buffer_bytes: (vm) => (type: number, start: number, len: number, valPtr: number, valLen: number) => {
    type >>>= 0;
    start >>>= 0;
    len >>>= 0;
    if (type > MAX_BUFFER_TYPE) return Status.BadArgument;
    const val = vm.readBytes(valPtr, valLen);
    if (val === null) return Status.InvalidMemoryAccess;
    const b = bufferOf(vm, type);
    if (!b) return Status.NotFound;
    const w = b.writable;
    if (!w) return Status.BadArgument;
    const data = Buffer.from(val.buffer, val.byteOffset, val.byteLength);
    // Envoy semantics: start 0 ⇒ drain `len` then prepend; start ≥ size ⇒ append; else BAD_ARGUMENT.
    if (start === 0) {
      w.drain(Math.min(len, w.length));
      w.prepend(data);
    } else if (start >= w.length) {
      w.append(data);
    } else {
      return Status.BadArgument;
    }
    return Status.Ok;
  },

  // ------------------------------------------------------------ stream control
  proxy_send_local_response: (vm) => (status: number, dp: number, dl: number, bp: number, bl: number, hp: number, hl: number, grpc: number) => {
    const details = vm.readString(dp, dl);
    const body = vm.readBytes(bp, bl);
    hp >>>= 0;
    hl >>>= 0;
    if (details === null || body === null || !vm.inBounds(hp, hl)) return Status.InvalidMemoryAccess;
    const headers = decodePairs(vm.u8(), hp, hl) ?? [];
    const s = streamOf(vm);
    if (!s) return Status.NotFound;
    return s.host.sendLocalResponse(status >>> 0, details, body, headers, grpc | 0);
  },
  proxy_continue_stream: (vm) => (type: number) => {
    type >>>= 0;
    if (type > 3) return Status.BadArgument;
    const s = streamOf(vm);
    if (!s) return Status.NotFound;
    return s.host.continueStream(type);
  },
  proxy_close_stream: (vm) => (type: number) => {
    type >>>= 0;
    if (type > 3) return Status.BadArgument;
    const s = streamOf(vm);
    if (!s) return Status.NotFound;
    return s.host.closeStream(type);
  },
  // 0.1.0
  proxy_continue_request: (vm) => () => {
    const s = streamOf(vm);
    return s ? s.host.continueStream(0) : Status.NotFound;
  },
  proxy_continue_response: (vm) => () => {
    const s = streamOf(vm);
    return s ? s.host.continueStream(1) : Status.NotFound;
  },
  proxy_clear_route_cache: (vm) => () => {
    const s = streamOf(vm);
    if (!s) return Status.NotFound;
    s.host.clearRouteCache();
    return Status.Ok;
  },
  proxy_get_configuration: (vm) => (ptrPtr: number, lenPtr: number) => {
    const root = vm.effective?.root;
    const data = root?.configPhase === 'configure' ? root.plugin.configuration : vm.vmConfiguration;
    return vm.returnBytes(data, ptrPtr, lenPtr);
  },

  // ------------------------------------------------------------ shared data and queues
  proxy_get_shared_data: (vm) => (kp: number, kl: number, vpp: number, vlp: number, casPtr: number) => {
    const key = vm.readString(kp, kl);
    if (key === null) return Status.InvalidMemoryAccess;
    const e = vm.shared.get(vm.vmId, key);
    if (!e) return Status.NotFound;
    const st = vm.returnBytes(e.value, vpp, vlp);
    if (st !== Status.Ok) return st;
    return vm.writeU32(casPtr, e.cas) ? Status.Ok : Status.InvalidMemoryAccess;
  },
  proxy_set_shared_data: (vm) => (kp: number, kl: number, vp: number, vl: number, cas: number) => {
    const key = vm.readString(kp, kl);
    const val = vm.readBytes(vp, vl);
    if (key === null || val === null) return Status.InvalidMemoryAccess;
    // Ok, CasMismatch, or InternalFailure when the process-wide store is full.
    return vm.shared.set(vm.vmId, key, val, cas >>> 0);
  },
  proxy_register_shared_queue: (vm) => (np: number, nl: number, tokenPtr: number) => {
    const name = vm.readString(np, nl);
    if (name === null) return Status.InvalidMemoryAccess;
    const root = vm.effective?.root;
    if (!root) return Status.BadArgument;
    if (!vm.inBounds(tokenPtr >>> 0, 4)) return Status.InvalidMemoryAccess;
    const token = vm.shared.registerQueue(vm.vmId, name, root.queueReceiver);
    if (token === 0) return Status.InternalFailure; // store full (no queue slot or heap left)
    vm.writeU32(tokenPtr, token);
    return Status.Ok;
  },
  proxy_resolve_shared_queue: (vm) => (vp: number, vl: number, np: number, nl: number, tokenPtr: number) => {
    const vmId = vm.readString(vp, vl);
    const name = vm.readString(np, nl);
    if (vmId === null || name === null) return Status.InvalidMemoryAccess;
    const token = vm.shared.resolveQueue(vmId === '' ? vm.vmId : vmId, name);
    if (token === undefined) return Status.NotFound;
    return vm.writeU32(tokenPtr, token) ? Status.Ok : Status.InvalidMemoryAccess;
  },
  proxy_enqueue_shared_queue: (vm) => (token: number, vp: number, vl: number) => {
    const val = vm.readBytes(vp, vl);
    if (val === null) return Status.InvalidMemoryAccess;
    return vm.shared.enqueue(token >>> 0, val);
  },
  proxy_dequeue_shared_queue: (vm) => (token: number, vpp: number, vlp: number) => {
    if (!vm.inBounds(vpp >>> 0, 4) || !vm.inBounds(vlp >>> 0, 4)) return Status.InvalidMemoryAccess;
    const v = vm.shared.dequeue(token >>> 0);
    if (v === undefined) return Status.NotFound;
    if (v === null) return Status.Empty;
    return vm.returnBytes(v, vpp, vlp);
  },

  // ------------------------------------------------------------ metrics
  proxy_define_metric: (vm) => (type: number, np: number, nl: number, idPtr: number) => {
    type >>>= 0;
    if (type > 2) return Status.BadArgument;
    const name = vm.readString(np, nl);
    if (name === null) return Status.InvalidMemoryAccess;
    if (!vm.inBounds(idPtr >>> 0, 4)) return Status.InvalidMemoryAccess;
    vm.writeU32(idPtr, vm.defineMetric(type, name));
    return Status.Ok;
  },
  proxy_increment_metric: (vm) => (id: number, delta: bigint | number) => {
    const m = vm.metrics.get(id >>> 0);
    if (!m) return Status.NotFound;
    const d = Number(delta);
    if (m.type === 2) return Status.BadArgument;
    if (m.type === 0 && d < 0) return Status.BadArgument;
    m.inc(d);
    return Status.Ok;
  },
  proxy_record_metric: (vm) => (id: number, value: bigint | number) => {
    const m = vm.metrics.get(id >>> 0);
    if (!m) return Status.NotFound;
    m.record(Number(typeof value === 'bigint' ? BigInt.asUintN(64, value) : value));
    return Status.Ok;
  },
  proxy_get_metric: (vm) => (id: number, resultPtr: number) => {
    const m = vm.metrics.get(id >>> 0);
    if (!m) return Status.NotFound;
    const v = m.get();
    if (v === undefined) return Status.BadArgument;
    return vm.writeU64(resultPtr, BigInt(Math.trunc(v))) ? Status.Ok : Status.InvalidMemoryAccess;
  },

  // ------------------------------------------------------------ HTTP callouts
  proxy_http_call: (vm) => (up: number, ul: number, hp: number, hl: number, bp: number, bl: number, tp: number, tl: number, timeout: number, tokenPtr: number) => {
    const cluster = vm.readString(up, ul);
    const body = vm.readBytes(bp, bl);
    hp >>>= 0; hl >>>= 0; tp >>>= 0; tl >>>= 0;
    if (cluster === null || body === null || !vm.inBounds(hp, hl) || !vm.inBounds(tp, tl) || !vm.inBounds(tokenPtr >>> 0, 4)) return Status.InvalidMemoryAccess;
    const hdrs = decodePairs(vm.u8(), hp, hl);
    const trls = decodePairs(vm.u8(), tp, tl);
    if (hdrs === null || trls === null) return Status.BadArgument;
    const headers = HeaderMap.fromPairs(hdrs);
    if (!headers.get(':method') || !headers.get(':path') || !headers.get(':authority')) return Status.BadArgument;
    if ((timeout | 0) < 0) return Status.BadArgument;
    const clusters = vm.services.clusters;
    if (!clusters || !clusters.has(cluster)) return Status.BadArgument;
    const eff = vm.effective;
    const root = eff?.root;
    if (!root) return Status.BadArgument;
    if (body.length > 0) headers.set('content-length', String(body.length));
    let handle;
    try {
      handle = clusters.httpCall({
        cluster,
        headers,
        ...(body.length ? { body: Buffer.from(body.buffer, body.byteOffset, body.byteLength) } : {}),
        ...(trls.length ? { trailers: HeaderMap.fromPairs(trls) } : {}),
        timeoutMs: timeout >>> 0,
      });
    } catch {
      return Status.InternalFailure;
    }
    const token = vm.nextCalloutToken(0);
    root.callouts.set(token, { handle, issuer: eff instanceof StreamContext ? eff : undefined, grpc: false });
    vm.writeU32(tokenPtr, token);
    // Responses arrive on a later tick (never inside this VM call), to the ROOT context.
    handle.promise.then(
      (resp) => vm.deliverHttpCallResponse(root, token, { headers: resp.headers, trailers: resp.trailers, body: resp.body }),
      (err) => vm.deliverHttpCallResponse(root, token, undefined, calloutFailure(err)),
    );
    return Status.Ok;
  },

  // ------------------------------------------------------------ gRPC callouts (unary over the cluster's HTTP/2 pool)
  proxy_grpc_call: (vm) => (...a: number[]) => {
    // Standard: 12 args (with initial metadata); AssemblyScript SDK: 10 (without).
    const std = a.length >= 12;
    const [up, ul, sp, sl, mp, ml] = a as [number, number, number, number, number, number];
    const mdp = std ? a[6]! : 0;
    const mdl = std ? a[7]! : 0;
    const msgp = a[std ? 8 : 6]!;
    const msgl = a[std ? 9 : 7]!;
    const timeout = a[std ? 10 : 8]!;
    const tokenPtr = a[std ? 11 : 9]!;
    const upstream = vm.readBytes(up, ul);
    const service = vm.readString(sp, sl);
    const method = vm.readString(mp, ml);
    const msg = vm.readBytes(msgp, msgl);
    if (upstream === null || service === null || method === null || msg === null || !vm.inBounds(mdp >>> 0, mdl >>> 0) || !vm.inBounds(tokenPtr >>> 0, 4)) {
      return Status.InvalidMemoryAccess;
    }
    const md = decodePairs(vm.u8(), mdp >>> 0, mdl >>> 0);
    if (md === null) return Status.BadArgument;
    const cluster = grpcUpstreamCluster(upstream, vm);
    const clusters = vm.services.clusters;
    if (!cluster || !clusters?.has(cluster)) return Status.ParseFailure;
    const eff = vm.effective;
    const root = eff?.root;
    if (!root) return Status.BadArgument;
    const headers = HeaderMap.fromPairs([
      [':method', 'POST'],
      [':path', `/${service}/${method}`],
      [':authority', cluster],
      [':scheme', 'http'],
      ['content-type', 'application/grpc'],
      ['te', 'trailers'],
      ...md,
    ]);
    const frame = Buffer.allocUnsafe(5 + msg.length);
    frame[0] = 0;
    frame.writeUInt32BE(msg.length, 1);
    frame.set(msg, 5);
    let handle;
    try {
      handle = clusters.httpCall({ cluster, headers, body: frame, timeoutMs: timeout >>> 0 });
    } catch {
      return Status.InternalFailure;
    }
    const token = vm.nextCalloutToken(1);
    root.callouts.set(token, { handle, issuer: eff instanceof StreamContext ? eff : undefined, grpc: true });
    vm.writeU32(tokenPtr, token);
    handle.promise.then(
      (resp) => deliverGrpcUnary(vm, root, token, resp.headers, resp.trailers, resp.body),
      (err) => deliverGrpcClose(vm, root, token, 14, calloutFailure(err).message),
    );
    return Status.Ok;
  },
  proxy_grpc_stream: (vm) => (...a: number[]) => {
    // Standard: 9 args (with initial metadata); AssemblyScript SDK: 7 (without).
    const std = a.length >= 9;
    const [up, ul, sp, sl, mp, ml] = a as [number, number, number, number, number, number];
    const mdp = std ? a[6]! : 0;
    const mdl = std ? a[7]! : 0;
    const tokenPtr = a[std ? 8 : 6]!;
    const upstream = vm.readBytes(up, ul);
    const service = vm.readString(sp, sl);
    const method = vm.readString(mp, ml);
    if (upstream === null || service === null || method === null || !vm.inBounds(mdp >>> 0, mdl >>> 0) || !vm.inBounds(tokenPtr >>> 0, 4)) {
      return Status.InvalidMemoryAccess;
    }
    const md = decodePairs(vm.u8(), mdp >>> 0, mdl >>> 0);
    if (md === null) return Status.BadArgument;
    const name = grpcUpstreamCluster(upstream, vm) ?? new TextDecoder().decode(upstream);
    const cluster = vm.services.clusterConfigs?.find((c) => c.name === name);
    if (!cluster) return Status.ParseFailure;
    const eff = vm.effective;
    const root = eff?.root;
    if (!root) return Status.BadArgument;
    const r = grpc().openGrpcStream(vm, root, eff instanceof StreamContext ? eff : undefined, cluster, service, method, md);
    if ('status' in r) return r.status;
    vm.writeU32(tokenPtr, r.token);
    return Status.Ok;
  },
  proxy_grpc_send: (vm) => (token: number, mp: number, ml: number, end: number) => {
    const root = vm.effective?.root;
    const c = root?.callouts.get(token >>> 0);
    if (!c) return Status.NotFound;
    if (!c.stream) return Status.BadArgument; // not a stream token
    const msg = vm.readBytes(mp, ml);
    if (msg === null) return Status.InvalidMemoryAccess;
    return grpc().sendOnStream(c.stream, msg, end !== 0);
  },
  proxy_grpc_cancel: (vm) => (token: number) => {
    const root = vm.effective?.root;
    const c = root?.callouts.get(token >>> 0);
    if (!root || !c) return Status.NotFound;
    root.callouts.delete(token >>> 0); // no callbacks after a cancel
    c.handle?.cancel();
    return Status.Ok;
  },
  proxy_grpc_close: (vm) => (token: number) => {
    const root = vm.effective?.root;
    const c = root?.callouts.get(token >>> 0);
    if (!root || !c) return Status.NotFound;
    if (c.stream) {
      // Streams: half-close our side; the entry stays until the remote closes.
      if (!c.stream.writableEnded) c.stream.end();
      return Status.Ok;
    }
    root.callouts.delete(token >>> 0);
    c.handle?.cancel();
    return Status.Ok;
  },

  // ------------------------------------------------------------ contexts, done, foreign functions
  proxy_set_effective_context: (vm) => (id: number) => {
    const ctx = vm.contexts.get(id >>> 0);
    if (!ctx) return Status.BadArgument;
    vm.effective = ctx;
    return Status.Ok;
  },
  proxy_done: (vm) => () => {
    const root = vm.effective?.root;
    if (!root || !root.pendingDone) return Status.NotFound;
    root.pendingDone = false;
    vm.deferRootDelete(root);
    return Status.Ok;
  },
  proxy_call_foreign_function: (vm) => (np: number, nl: number, ap: number, al: number, rpp: number, rlp: number) => {
    const name = vm.readString(np, nl);
    const args = vm.readBytes(ap, al);
    if (name === null || args === null) return Status.InvalidMemoryAccess;
    const fn = foreignFunctions.get(name);
    if (!fn) return Status.NotFound;
    let out: Uint8Array | number;
    try {
      out = fn(args, vm, vm.effective);
    } catch {
      return Status.InternalFailure;
    }
    if (typeof out === 'number') return out;
    if ((rpp >>> 0) === 0 || (rlp >>> 0) === 0) return Status.Ok; // result discarded
    return vm.returnBytes(out, rpp, rlp);
  },

  // ------------------------------------------------------------ env extras
  emscripten_notify_memory_growth: () => () => undefined,
  pthread_equal: () => (a: number, b: number) => (a === b ? 1 : 0),
};

function deliverGrpcUnary(vm: WasmVm, root: RootContext, token: number, headers: HeaderMap, trailers: HeaderMap, body: Buffer): void {
  const st = trailers.get('grpc-status') ?? headers.get('grpc-status');
  const code = st === undefined ? (headers.get(':status') === '200' ? 2 : 14) : Number(st);
  if (code !== 0) {
    deliverGrpcClose(vm, root, token, code, decodeURIComponent(trailers.get('grpc-message') ?? headers.get('grpc-message') ?? ''));
    return;
  }
  const entry = root.callouts.get(token);
  if (!entry) return;
  root.callouts.delete(token);
  if (vm.failed || root.deleted) return;
  const msg = body.length >= 5 ? body.subarray(5, 5 + body.readUInt32BE(1)) : new Uint8Array(0);
  root.statusCode = 0;
  root.statusMessage = '';
  root.calloutResponse = { headers: undefined, trailers: undefined, body: msg };
  vm.call(vm.ex.on_grpc_receive, root, root.id, token, msg.length);
  root.calloutResponse = undefined;
}

function deliverGrpcClose(vm: WasmVm, root: RootContext, token: number, code: number, message: string): void {
  const entry = root.callouts.get(token);
  if (!entry) return;
  root.callouts.delete(token);
  if (vm.failed || root.deleted) return;
  root.statusCode = code;
  root.statusMessage = message;
  vm.call(vm.ex.on_grpc_close, root, root.id, token, code);
}

/** Builds the import object: every env function plus WASI under both module names. */
export function buildImports(vm: WasmVm): WebAssembly.Imports {
  const env: Record<string, HostFn> = {};
  for (const name in hostFunctions) env[name] = hostFunctions[name]!(vm);
  const wasi: Record<string, HostFn> = {};
  for (const name in wasiFunctions) wasi[name] = wasiFunctions[name]!(vm);
  return { env, wasi_snapshot_preview1: wasi, wasi_unstable: wasi };
}

