/**
 * The HTTP and network filter contract, shaped after Envoy's `envoy/http/filter.h` and
 * `envoy/network/filter.h`: synchronous callbacks that return a status, and out-of-band resumption
 * through the callbacks object. No `async` per hop: Proxy-Wasm's Continue/Pause and Lua coroutine
 * yields map onto it one to one.
 */
import type { DataBuffer } from './data-buffer.ts';
import type { HeaderMap } from './header-map.ts';
import type { StreamInfo } from './stream-info.ts';

/** Result of decodeHeaders/encodeHeaders. Values match Envoy's FilterHeadersStatus. */
export const HeadersStatus = {
  /** Pass the headers to the next filter. */
  Continue: 0,
  /**
   * Do not pass headers further. Data and trailers are still given to THIS filter; returning
   * Continue from decodeData/decodeTrailers, or calling continueDecoding(), resumes everything.
   */
  StopIteration: 1,
  /** Envoy's ContinueAndDontEndStream; treated as Continue here (headers-only requests stay so). */
  ContinueAndDontEndStream: 2,
  /** Stop all iteration; buffer body and trailers until continue*(); over the limit: 413/500. */
  StopAllIterationAndBuffer: 3,
  /** Stop all iteration; buffer with flow control (downstream/upstream reads pause) instead of a limit error. */
  StopAllIterationAndWatermark: 4,
} as const;
export type HeadersStatus = (typeof HeadersStatus)[keyof typeof HeadersStatus];

/** Result of decodeData/encodeData. Values match Envoy's FilterDataStatus. */
export const DataStatus = {
  Continue: 0,
  /**
   * Keep the data in the stream's buffer. The next chunk is appended to it and this filter is
   * called again with the WHOLE buffer (cumulative, as the Proxy-Wasm host expects). Limit: 413/500.
   */
  StopIterationAndBuffer: 1,
  /** As StopIterationAndBuffer but with flow control instead of a limit error. */
  StopIterationAndWatermark: 2,
  /** The filter took the data (it must re-inject what it wants forwarded); nothing is buffered. */
  StopIterationNoBuffer: 3,
} as const;
export type DataStatus = (typeof DataStatus)[keyof typeof DataStatus];

/** Result of decodeTrailers/encodeTrailers. */
export const TrailersStatus = { Continue: 0, StopIteration: 1 } as const;
export type TrailersStatus = (typeof TrailersStatus)[keyof typeof TrailersStatus];

/** Result of network (L4) filter callbacks. */
export const NetworkFilterStatus = { Continue: 0, StopIteration: 1 } as const;
export type NetworkFilterStatus = (typeof NetworkFilterStatus)[keyof typeof NetworkFilterStatus];

/** A route as the filters see it (Envoy's Router::Route, reduced). */
export interface RouteInfo {
  readonly name: string;
  /** Cluster name for a forwarding route, undefined for direct responses and redirects. */
  readonly cluster: string | undefined;
  /** Envoy's route `metadata.filter_metadata`: namespaced by filter name. */
  readonly filterMetadata: Readonly<Record<string, Record<string, unknown>>>;
}

export interface LocalReplyOptions {
  /** Extra headers put on the reply (Envoy's `modify_headers`). */
  headers?: ReadonlyArray<readonly [string, string]>;
  /** Envoy's %RESPONSE_CODE_DETAILS%, e.g. `wasm_fail_stream`. */
  details?: string;
  /** gRPC status to send as `grpc-status` for gRPC requests. */
  grpcStatus?: number;
}

/** What a filter can do to its stream, both directions. */
export interface StreamFilterCallbacks {
  readonly streamInfo: StreamInfo;
  /** Stream id, unique per worker. */
  readonly streamId: number;
  /** The request headers (undefined until decoded). Valid for the stream's life. */
  requestHeaders(): HeaderMap | undefined;
  requestTrailers(): HeaderMap | undefined;
  responseHeaders(): HeaderMap | undefined;
  responseTrailers(): HeaderMap | undefined;
  /** The route matched for this request (cached; cleared by clearRouteCache). */
  route(): RouteInfo | undefined;
  clearRouteCache(): void;
  /**
   * Sends a local reply. Before the response started: through the encoder filters. After response
   * headers reached encoders but not the client: directly to the client. After that: resets the stream.
   */
  sendLocalReply(status: number, body: string | Buffer, options?: LocalReplyOptions): void;
  /** Resets the stream (Envoy's resetStream; Proxy-Wasm close_stream). */
  resetStream(details?: string): void;
  /** Limit for buffered body bytes per direction (Envoy's buffer limit). */
  readonly bufferLimit: number;
}

export interface StreamDecoderFilterCallbacks extends StreamFilterCallbacks {
  /** Resumes request iteration stopped by this filter. Safe to call from any later tick. */
  continueDecoding(): void;
  /** The request body buffered so far (held at the stopped filter), or undefined. */
  decodingBuffer(): DataBuffer | undefined;
  /** Adds data to the buffered request body (as Envoy's addDecodedData while stopped). */
  addDecodedData(data: Buffer, streaming: boolean): void;
  /** Injects data after this filter (for StopIterationNoBuffer users). */
  injectDecodedDataToFilterChain(data: DataBuffer, endStream: boolean): void;
  /** Adds request trailers when the request has none yet; only valid on the last data frame. */
  addDecodedTrailers(): HeaderMap;
}

export interface StreamEncoderFilterCallbacks extends StreamFilterCallbacks {
  continueEncoding(): void;
  encodingBuffer(): DataBuffer | undefined;
  addEncodedData(data: Buffer, streaming: boolean): void;
  injectEncodedDataToFilterChain(data: DataBuffer, endStream: boolean): void;
  addEncodedTrailers(): HeaderMap;
}

/**
 * One HTTP filter instance: created per stream by its factory. Every method is optional: the
 * filter manager skips absent ones, so a decoder-only filter costs nothing on the response path.
 */
export interface HttpFilter {
  decodeHeaders?(headers: HeaderMap, endStream: boolean): HeadersStatus;
  decodeData?(data: DataBuffer, endStream: boolean): DataStatus;
  decodeTrailers?(trailers: HeaderMap): TrailersStatus;
  encodeHeaders?(headers: HeaderMap, endStream: boolean): HeadersStatus;
  encodeData?(data: DataBuffer, endStream: boolean): DataStatus;
  encodeTrailers?(trailers: HeaderMap): TrailersStatus;
  /** A local reply is about to be sent (from any filter or the proxy). */
  onLocalReply?(status: number, details: string): void;
  /** Access-log time: the stream is complete (Proxy-Wasm on_log). Headers remain readable. */
  log?(): void;
  /** The stream is gone (Proxy-Wasm on_done + on_delete). No callbacks after this. */
  onDestroy?(): void;
}

export interface HttpFilterCallbacks extends StreamDecoderFilterCallbacks, StreamEncoderFilterCallbacks {}

/**
 * Creates filters for one position of a listener's chain. Built once per (listener, config);
 * `create` runs per stream and may return null to skip the position for that stream (fail open).
 */
export interface HttpFilterFactory {
  /** Envoy filter name, e.g. `extensions.istio.io/trafficextension/default.parity`. */
  readonly name: string;
  create(callbacks: HttpFilterCallbacks): HttpFilter | null;
}

/** Network (L4) filter callbacks, as Envoy's ReadFilterCallbacks/WriteFilterCallbacks. */
export interface NetworkFilterCallbacks {
  readonly connectionId: number;
  readonly streamInfo: StreamInfo;
  /** Resumes reading/iteration after StopIteration (Proxy-Wasm continue_stream(DOWNSTREAM)). */
  continueReading(): void;
  /** Closes the connection (flush writes first when `flush`). */
  close(flush?: boolean, details?: string): void;
  /** Writes data to the downstream client, bypassing later write filters. */
  writeDownstream(data: Buffer): void;
}

export interface NetworkFilter {
  onNewConnection?(): NetworkFilterStatus;
  /** Data from the client on its way upstream. The buffer may be modified in place. */
  onDownstreamData?(data: DataBuffer, endStream: boolean): NetworkFilterStatus;
  /** Data from the upstream on its way to the client. */
  onUpstreamData?(data: DataBuffer, endStream: boolean): NetworkFilterStatus;
  onDownstreamClose?(): void;
  onUpstreamClose?(): void;
  onDestroy?(): void;
}

export interface NetworkFilterFactory {
  readonly name: string;
  create(callbacks: NetworkFilterCallbacks): NetworkFilter | null;
}
