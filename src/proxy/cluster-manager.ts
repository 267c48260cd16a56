/**
 * Clusters of the bootstrap: endpoint selection (round robin) and upstream connection pools
 * (our HTTP/1.1 keep-alive pools in http1/client.ts, node:http2 sessions for HTTP/2). Used by the router and by extensions'
 * HTTP callouts (Proxy-Wasm http_call, Lua httpCall).
 */
import type { HeaderMap } from '../filters/header-map.ts';

export interface HttpCallRequest {
  cluster: string;
  /** Must hold :method, :path and :authority (Envoy's validation for callouts). */
  headers: HeaderMap;
  body?: Buffer;
  trailers?: HeaderMap;
  timeoutMs: number;
}

export interface HttpCallResponse {
  /** Response headers including `:status`. */
  headers: HeaderMap;
  body: Buffer;
  trailers: HeaderMap;
}

export interface HttpCallHandle {
  readonly promise: Promise<HttpCallResponse>;
  cancel(): void;
}

export interface ClusterManager {
  has(cluster: string): boolean;
  /** A buffered HTTP request to a cluster. Rejects with MeshextError codes (not found, timeout, connect, protocol). */
  httpCall(req: HttpCallRequest): HttpCallHandle;
}
