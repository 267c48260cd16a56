/**
 * Proxy-Wasm properties (spec §3.7): Envoy attribute paths resolved against the stream's
 * StreamInfo, headers and route, plus the Wasm-only plugin_* names and node metadata, with
 * Envoy's value encodings (strings raw, ints as 8-byte LE, timestamps/durations in ns, maps as
 * serialized pairs). Unknown paths are NOT_FOUND; `set_property` values live in filter state under
 * `wasm.<path>` and read back through the same lookup.
 */
import type { HeaderMap } from '../filters/header-map.ts';
import type { StreamInfo } from '../filters/stream-info.ts';
import { encodeBytePairs, encodeString } from './pairs.ts';
import type { Context, WasmVm } from './vm.ts';
import { RootContext, StreamContext } from './vm.ts';

/** A typed attribute value, before serialization. */
type Value =
  | { t: 'str'; v: string }
  | { t: 'bytes'; v: Uint8Array }
  | { t: 'int'; v: number | bigint }
  | { t: 'uint'; v: number | bigint }
  | { t: 'double'; v: number }
  | { t: 'bool'; v: boolean }
  | { t: 'ts'; ns: bigint }
  | { t: 'dur'; ns: bigint }
  | { t: 'headers'; v: HeaderMap }
  /** A Struct-like JS object (metadata, node metadata, filter state objects). */
  | { t: 'obj'; v: unknown };

const str = (v: string | undefined): Value | undefined => (v === undefined ? undefined : { t: 'str', v });
const int = (v: number | undefined): Value | undefined => (v === undefined ? undefined : { t: 'int', v });

function msToNs(ms: number): bigint {
  return BigInt(Math.round(ms * 1e6));
}

function int64(v: number | bigint, unsigned: boolean): Uint8Array {
  const b = new Uint8Array(8);
  const dv = new DataView(b.buffer);
  const big = typeof v === 'bigint' ? v : BigInt(Math.trunc(v));
  if (unsigned) dv.setBigUint64(0, BigInt.asUintN(64, big), true);
  else dv.setBigInt64(0, BigInt.asIntN(64, big), true);
  return b;
}

/** Envoy serializeValue. */
export function serialize(v: Value): Uint8Array {
  switch (v.t) {
    case 'str': return encodeString(v.v);
    case 'bytes': return v.v;
    case 'int': return int64(v.v, false);
    case 'uint': return int64(v.v, true);
    case 'double': {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setFloat64(0, v.v, true);
      return b;
    }
    case 'bool': return new Uint8Array([v.v ? 1 : 0]);
    case 'ts':
    case 'dur': return int64(v.ns, false);
    case 'headers': {
      // Envoy's header map attribute: one entry per name, multiple values comma-joined.
      const merged = new Map<string, string>();
      v.v.forEach((n, val) => merged.set(n, merged.has(n) ? `${merged.get(n)},${val}` : val));
      return encodeBytePairs([...merged].map(([k, x]) => [encodeString(k), encodeString(x)] as const));
    }
    case 'obj': return serializeJs(v.v);
  }
}

function serializeJs(x: unknown): Uint8Array {
  if (x instanceof Uint8Array) return x;
  if (typeof x === 'string') return encodeString(x);
  if (typeof x === 'number') return serialize({ t: 'double', v: x });
  if (typeof x === 'bigint') return int64(x, false);
  if (typeof x === 'boolean') return new Uint8Array([x ? 1 : 0]);
  if (Array.isArray(x)) return encodeBytePairs(x.map((e) => [serializeJs(e), new Uint8Array(0)] as const));
  if (x instanceof Map) return encodeBytePairs([...x].map(([k, e]) => [encodeString(String(k)), serializeJs(e)] as const));
  if (x && typeof x === 'object') return encodeBytePairs(Object.entries(x).map(([k, e]) => [encodeString(k), serializeJs(e)] as const));
  return new Uint8Array(0);
}

/** Index a value by the remaining path segments (maps by key, lists by index). */
function descend(v: Value | undefined, rest: string[]): Value | undefined {
  let cur: Value | undefined = v;
  for (const seg of rest) {
    if (!cur) return undefined;
    if (cur.t === 'headers') {
      const all = cur.v.getAll(seg);
      cur = all.length === 0 ? undefined : { t: 'str', v: all.join(',') };
      continue;
    }
    if (cur.t === 'obj') {
      const o = cur.v;
      let next: unknown;
      if (o instanceof Map) next = o.get(seg);
      else if (Array.isArray(o)) next = /^\d+$/.test(seg) ? o[Number(seg)] : undefined;
      else if (o && typeof o === 'object') next = (o as Record<string, unknown>)[seg];
      if (next === undefined || next === null) return undefined;
      cur = { t: 'obj', v: next };
      continue;
    }
    return undefined;
  }
  return cur;
}

function splitHostPort(a: { address: string; port: number } | undefined): string | undefined {
  if (!a) return undefined;
  return a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

function requestAttr(name: string, h: HeaderMap | undefined, si: StreamInfo | undefined): Value | undefined {
  const path = h?.get(':path');
  switch (name) {
    case 'path': return str(path);
    case 'url_path': return path === undefined ? undefined : str(path.split('?', 1)[0]);
    case 'query': {
      if (path === undefined) return undefined;
      const q = path.indexOf('?');
      return str(q < 0 ? '' : path.slice(q + 1));
    }
    case 'host': return str(h?.get(':authority'));
    case 'scheme': return str(h?.get(':scheme'));
    case 'method': return str(h?.get(':method'));
    case 'referer': return str(h?.get('referer'));
    case 'useragent': return str(h?.get('user-agent'));
    case 'id': return str(h?.get('x-request-id') ?? (si?.requestId || undefined));
    case 'protocol': return str(si?.protocol);
    case 'headers': return h ? { t: 'headers', v: h } : undefined;
    case 'headers_bytes': return h ? int(h.byteSize()) : undefined;
    case 'time': return si ? { t: 'ts', ns: msToNs(si.startTime) } : undefined;
    case 'duration': return si && si.lastDownstreamRxByteReceived > 0 ? { t: 'dur', ns: msToNs(si.lastDownstreamRxByteReceived - si.startMono) } : undefined;
    case 'size': {
      const cl = h?.get('content-length');
      if (cl !== undefined && /^\d+$/.test(cl)) return int(Number(cl));
      return si ? int(si.bytesReceived) : undefined;
    }
    case 'total_size': return si ? int(si.bytesReceived + (h?.byteSize() ?? 0)) : undefined;
    default: return undefined;
  }
}

function responseAttr(name: string, h: HeaderMap | undefined, t: HeaderMap | undefined, si: StreamInfo | undefined): Value | undefined {
  switch (name) {
    case 'code': {
      const s = h?.get(':status');
      if (s !== undefined) return int(Number(s));
      return si && si.responseCode ? int(si.responseCode) : undefined;
    }
    case 'code_details': return si ? str(si.responseCodeDetails) : undefined;
    case 'flags': return si ? int(responseFlagBits(si.responseFlags)) : undefined;
    case 'grpc_status': {
      const g = t?.get('grpc-status') ?? h?.get('grpc-status');
      return g === undefined ? undefined : int(Number(g));
    }
    case 'headers': return h ? { t: 'headers', v: h } : undefined;
    case 'trailers': return t ? { t: 'headers', v: t } : undefined;
    case 'headers_bytes': return h ? int(h.byteSize()) : undefined;
    case 'size': return si ? int(si.bytesSent) : undefined;
    case 'total_size': return si ? int(si.bytesSent + (h?.byteSize() ?? 0)) : undefined;
    case 'backend_latency':
      return si && si.lastUpstreamRxByteReceived > 0 && si.firstUpstreamTxByteSent > 0 ? { t: 'dur', ns: msToNs(si.lastUpstreamRxByteReceived - si.firstUpstreamTxByteSent) } : undefined;
    default: return undefined;
  }
}

function nodeValue(vm: WasmVm): Value | undefined {
  const id = vm.services.identity;
  if (!id) return undefined;
  return {
    t: 'obj',
    v: {
      id: `sidecar~0.0.0.0~${id.workloadName}.${id.namespace}~${id.namespace}.svc.cluster.local`,
      cluster: `${id.workloadName}.${id.namespace}`,
      metadata: {
        NAMESPACE: id.namespace,
        LABELS: id.labels,
        WORKLOAD_NAME: id.workloadName,
        CLUSTER_ID: id.clusterId,
        NAME: id.workloadName,
        MESH_ID: 'cluster.local',
      },
    },
  };
}

function directionNum(d: string | undefined): number {
  return d === 'sidecar_inbound' ? 1 : d === 'sidecar_outbound' ? 2 : 0;
}

/**
 * Resolves a property for `ctx`. Returns the serialized bytes, or undefined (NOT_FOUND).
 */
export function getProperty(vm: WasmVm, ctx: Context | null, segs: string[]): Uint8Array | undefined {
  const top = segs[0];
  if (top === undefined) return undefined;
  const rest = segs.slice(1);
  const root = ctx?.root;
  const stream = ctx instanceof StreamContext ? ctx : undefined;
  const host = stream?.host;
  const si = host?.streamInfo;
  let v: Value | undefined;
  switch (top) {
    case 'plugin_name': v = root ? str(root.plugin.name) : undefined; break;
    case 'plugin_root_id': v = root ? str(root.plugin.rootId) : undefined; break;
    case 'plugin_vm_id': v = str(vm.vmId); break;
    case 'node': v = descend(nodeValue(vm), rest); return v ? serialize(v) : undefined;
    case 'xds': {
      const [sub, ...more] = rest;
      if (sub === 'node') v = descend(nodeValue(vm), more);
      else if (!host) v = undefined;
      else if (sub === 'cluster_name') v = str(si?.upstreamCluster ?? host.route()?.cluster);
      else if (sub === 'route_name') v = str(host.route()?.name ?? si?.routeName);
      else if (sub === 'listener_direction') v = int(directionNum(si?.direction));
      else if (sub === 'route_metadata') v = descend({ t: 'obj', v: { filter_metadata: host.route()?.filterMetadata ?? {} } }, more);
      else if (sub === 'virtual_host_name' || sub === 'filter_chain_name') v = undefined;
      return v ? serialize(v) : undefined;
    }
    case 'cluster_name': v = host ? str(si?.upstreamCluster ?? host.route()?.cluster) : undefined; break;
    case 'route_name': v = host ? str(host.route()?.name ?? si?.routeName) : undefined; break;
    case 'listener_direction': v = host ? int(directionNum(si?.direction)) : undefined; break;
    case 'route_metadata': v = host ? descend({ t: 'obj', v: { filter_metadata: host.route()?.filterMetadata ?? {} } }, rest) : undefined; return v ? serialize(v) : undefined;
    case 'connection_id': v = host ? { t: 'uint', v: host.connectionId } : undefined; break;
    default: break;
  }
  if (v) return serialize(descend(v, rest) ?? v);
  if (!host) {
    // Root context: only plugin-level properties and values it set itself.
    if (root instanceof RootContext) {
      const own = root.properties.get(segs.join('.'));
      if (own) return own;
    }
    return undefined;
  }
  switch (top) {
    case 'request':
      v = rest.length ? requestAttr(rest[0]!, host.map(0, false), si) : undefined;
      return serializeRest(v, rest.slice(1));
    case 'response':
      v = rest.length ? responseAttr(rest[0]!, host.map(2, false), host.map(3, false), si) : undefined;
      return serializeRest(v, rest.slice(1));
    case 'source':
    case 'destination': {
      const a = top === 'source' ? si?.downstreamRemoteAddress : si?.downstreamLocalAddress;
      if (rest[0] === 'address') v = str(splitHostPort(a));
      else if (rest[0] === 'port') v = a ? int(a.port) : undefined;
      return serializeRest(v, rest.slice(1));
    }
    case 'upstream': {
      if (rest[0] === 'address') v = str(splitHostPort(si?.upstreamHost));
      else if (rest[0] === 'port') v = si?.upstreamHost ? int(si.upstreamHost.port) : undefined;
      else if (rest[0] === 'local_address') v = str(splitHostPort(si?.upstreamLocalAddress));
      return serializeRest(v, rest.slice(1));
    }
    case 'connection': {
      const tls = si?.downstreamTls;
      switch (rest[0]) {
        case 'id': v = { t: 'uint', v: host.connectionId }; break;
        case 'mtls': v = { t: 'bool', v: !!tls?.peerCertificatePresented }; break;
        case 'requested_server_name': v = str(si?.requestedServerName ?? ''); break;
        case 'tls_version': v = tls ? str(tls.protocol) : undefined; break;
        case 'subject_local_certificate': v = optStr(tls?.localCertificate?.()?.subject); break;
        case 'subject_peer_certificate': v = optStr(tls?.peerCertificate?.()?.subject); break;
        case 'dns_san_local_certificate': v = optStr(tls?.localCertificate?.()?.dnsSans[0]); break;
        case 'dns_san_peer_certificate': v = optStr(tls?.peerCertificate?.()?.dnsSans[0]); break;
        case 'uri_san_local_certificate': v = optStr(tls?.localCertificate?.()?.uriSans[0]); break;
        case 'uri_san_peer_certificate': v = optStr(tls?.peerCertificate?.()?.uriSans[0]); break;
        case 'sha256_peer_certificate_digest': v = optStr(tls?.peerCertificate?.()?.sha256Digest); break;
        case 'peer_certificate': v = optStr(tls?.peerCertificate?.()?.pem); break;
        default: v = undefined;
      }
      return serializeRest(v, rest.slice(1));
    }
    case 'metadata': {
      if (!si) return undefined;
      const fm: Record<string, unknown> = {};
      for (const [k, x] of si.dynamicMetadata) fm[k] = x;
      return serializeRest({ t: 'obj', v: { filter_metadata: fm } }, rest);
    }
    case 'filter_state': {
      if (!si) return undefined;
      if (rest.length === 0) return serializeRest({ t: 'obj', v: si.filterState }, []);
      const x = si.filterState.get(rest[0]!);
      return x === undefined ? undefined : serializeRest({ t: 'obj', v: x }, rest.slice(1));
    }
    default: {
      // Envoy: any other top-level name is the filter state `wasm.<path>` written by set_property.
      const x = si?.filterState.get(`wasm.${segs.join('.')}`) ?? si?.filterState.get(`wasm.${top}`);
      if (x === undefined) return undefined;
      return serializeJs(x);
    }
  }
}

function serializeRest(v: Value | undefined, rest: string[]): Uint8Array | undefined {
  const d = rest.length ? descend(v, rest) : v;
  return d ? serialize(d) : undefined;
}

/** Envoy's response-flag bits (StreamInfo::CoreResponseFlag order), keyed by short code. */
const RESPONSE_FLAG_BITS: Record<string, number> = {
  LH: 0, UH: 1, UT: 2, LR: 3, UR: 4, UF: 5, UC: 6, UO: 7, NR: 8, DI: 9, FI: 10, RL: 11, UAEX: 12, RLSE: 13,
  DC: 14, URX: 15, SI: 16, IH: 17, DPE: 18, UMSDR: 19, RFCF: 20, NFCF: 21, DT: 22, UPE: 23, NC: 24, OM: 25, DF: 26, DO: 27,
};

export function responseFlagBits(flags: ReadonlySet<string>): number {
  let bits = 0;
  for (const f of flags) {
    const b = RESPONSE_FLAG_BITS[f];
    if (b !== undefined) bits |= 1 << b;
  }
  return bits;
}

function optStr(s: string | undefined): Value | undefined {
  return s === undefined || s === '' ? undefined : str(s);
}

/** set_property: stream → filter state `wasm.<path>`; root → kept on the root context. */
export function setProperty(ctx: Context | null, segs: string[], value: Uint8Array): boolean {
  if (!ctx || segs.length === 0) return false;
  const key = segs.join('.');
  if (ctx instanceof StreamContext) {
    const si = ctx.host.streamInfo;
    if (!si) return false;
    si.filterState.set(`wasm.${key}`, value);
    return true;
  }
  if (ctx instanceof RootContext) {
    ctx.properties.set(key, value);
    return true;
  }
  return false;
}
