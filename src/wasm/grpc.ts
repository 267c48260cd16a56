/**
 * gRPC streaming callouts (proxy_grpc_stream / grpc_send / grpc_close / grpc_cancel) over HTTP/2
 * to a bootstrap cluster's first endpoint. The ClusterManager only offers buffered exchanges, so
 * streams use node:http2 directly (one session per VM and cluster, reused). Every event reaches
 * the plugin's ROOT context on its own event-loop turn, as Envoy delivers them:
 * initial metadata (map 4) → each message (buffer 5) → trailing metadata (map 5) → close(status).
 */
import http2 from 'node:http2';
import { HeaderMap } from '../filters/header-map.ts';
import type { ClusterConfig } from '../config/types.ts';
import { Status } from './abi.ts';
import type { RootContext, StreamContext, WasmVm } from './vm.ts';

const sessions = new WeakMap<WasmVm, Map<string, http2.ClientHttp2Session>>();

function session(vm: WasmVm, c: ClusterConfig): http2.ClientHttp2Session | undefined {
  let m = sessions.get(vm);
  if (!m) {
    m = new Map();
    sessions.set(vm, m);
  }
  let s = m.get(c.name);
  if (s && !s.closed && !s.destroyed) return s;
  const ep = c.endpoints[0];
  if (!ep) return undefined;
  const host = ep.address.includes(':') ? `[${ep.address}]` : ep.address;
  s = http2.connect(`${c.tls ? 'https' : 'http'}://${host}:${ep.port}`, c.tls ? { servername: c.tls.sni ?? ep.address, rejectUnauthorized: !c.tls.insecureSkipVerify } : {});
  s.on('error', () => undefined); // surfaced per stream
  s.unref();
  const map = m;
  const name = c.name;
  s.on('close', () => {
    if (map.get(name) === s) map.delete(name);
  });
  m.set(c.name, s);
  return s;
}

/** Closes the VM's HTTP/2 sessions (VM disposal). */
export function closeGrpcSessions(vm: WasmVm): void {
  const m = sessions.get(vm);
  if (!m) return;
  for (const s of m.values()) s.destroy();
  m.clear();
}

function toHeaderMap(h: http2.IncomingHttpHeaders): HeaderMap {
  const m = new HeaderMap();
  for (const [k, v] of Object.entries(h)) {
    if (k.startsWith(':') || v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) m.add(k, x);
    else m.add(k, String(v));
  }
  return m;
}

export function frame(msg: Uint8Array): Buffer {
  const f = Buffer.allocUnsafe(5 + msg.length);
  f[0] = 0;
  f.writeUInt32BE(msg.length, 1);
  f.set(msg, 5);
  return f;
}

/** Opens a stream; returns the token or a status (> 0 is an error status, token ≥ 6). */
export function openGrpcStream(
  vm: WasmVm,
  root: RootContext,
  issuer: StreamContext | undefined,
  cluster: ClusterConfig,
  service: string,
  method: string,
  metadata: Array<[string, string]>,
): { token: number } | { status: number } {
  const s = session(vm, cluster);
  if (!s) return { status: Status.InternalFailure };
  const headers: http2.OutgoingHttpHeaders = {
    ':method': 'POST',
    ':path': `/${service}/${method}`,
    ':authority': cluster.name,
    'content-type': 'application/grpc',
    te: 'trailers',
  };
  for (const [k, v] of metadata) headers[k.toLowerCase()] = v;
  let req: http2.ClientHttp2Stream;
  try {
    req = s.request(headers, { endStream: false });
  } catch {
    return { status: Status.InternalFailure };
  }
  const token = vm.nextCalloutToken(2);
  const entry = { handle: { promise: Promise.resolve() as never, cancel: () => req.close(http2.constants.NGHTTP2_CANCEL) }, issuer, grpc: true, stream: req };
  root.callouts.set(token, entry);
  let buf: Buffer = Buffer.alloc(0);
  let status: number | undefined;
  let message = '';
  const live = () => root.callouts.get(token) === entry && !vm.failed && !root.deleted;
  req.on('response', (h) => {
    if (!live()) return;
    const st = h['grpc-status'];
    if (st !== undefined) {
      // Trailers-only response: no messages will follow.
      status = Number(st);
      message = decodeURIComponent(String(h['grpc-message'] ?? ''));
      return;
    }
    const md = toHeaderMap(h);
    root.calloutResponse = { headers: undefined, trailers: undefined, body: undefined, grpcInitial: md };
    vm.call(vm.ex.on_grpc_receive_initial_metadata, root, root.id, token, md.size);
    root.calloutResponse = undefined;
  });
  req.on('data', (chunk: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    while (buf.length >= 5) {
      const len = buf.readUInt32BE(1);
      if (buf.length < 5 + len) break;
      const msg = buf.subarray(5, 5 + len);
      buf = buf.subarray(5 + len);
      if (!live()) continue;
      root.calloutResponse = { headers: undefined, trailers: undefined, body: msg };
      vm.call(vm.ex.on_grpc_receive, root, root.id, token, msg.length);
      root.calloutResponse = undefined;
    }
  });
  req.on('trailers', (t) => {
    status = Number(t['grpc-status'] ?? 2);
    message = decodeURIComponent(String(t['grpc-message'] ?? ''));
    if (!live()) return;
    const md = toHeaderMap(t);
    root.calloutResponse = { headers: undefined, trailers: undefined, body: undefined, grpcTrailing: md };
    vm.call(vm.ex.on_grpc_receive_trailing_metadata, root, root.id, token, md.size);
    root.calloutResponse = undefined;
  });
  const finish = (code: number, msg: string) => {
    if (root.callouts.get(token) !== entry) return;
    root.callouts.delete(token);
    if (vm.failed || root.deleted) return;
    root.statusCode = code;
    root.statusMessage = msg;
    vm.call(vm.ex.on_grpc_close, root, root.id, token, code);
  };
  req.on('close', () => finish(status ?? 14, status === undefined ? 'stream reset' : message));
  req.on('error', () => undefined);
  return { token };
}

/** proxy_grpc_send on a stream token. */
export function sendOnStream(req: http2.ClientHttp2Stream, msg: Uint8Array, end: boolean): number {
  if (req.closed || req.destroyed) return Status.NotFound;
  if (msg.length > 0 || end) req.write(frame(msg));
  if (end) req.end();
  return Status.Ok;
}
