/**
 * Proxy-Wasm ABI constants (spec §3) and the host's named limits (cpp-host `limits.h` analogue).
 * Plain `as const` objects instead of enums: Node's type stripping forbids enums.
 */

/** proxy_status_t */
export const Status = {
  Ok: 0,
  NotFound: 1,
  BadArgument: 2,
  SerializationFailure: 3,
  ParseFailure: 4,
  BadExpression: 5,
  InvalidMemoryAccess: 6,
  Empty: 7,
  CasMismatch: 8,
  ResultMismatch: 9,
  InternalFailure: 10,
  BrokenConnection: 11,
  Unimplemented: 12,
} as const;

export const MapType = {
  HttpRequestHeaders: 0,
  HttpRequestTrailers: 1,
  HttpResponseHeaders: 2,
  HttpResponseTrailers: 3,
  GrpcReceiveInitialMetadata: 4,
  GrpcReceiveTrailingMetadata: 5,
  HttpCallResponseHeaders: 6,
  HttpCallResponseTrailers: 7,
} as const;
export const MAX_MAP_TYPE = 7;

export const BufferType = {
  HttpRequestBody: 0,
  HttpResponseBody: 1,
  DownstreamData: 2,
  UpstreamData: 3,
  HttpCallResponseBody: 4,
  GrpcReceiveBuffer: 5,
  VmConfiguration: 6,
  PluginConfiguration: 7,
  ForeignFunctionArguments: 8,
} as const;
export const MAX_BUFFER_TYPE = 8;

export const StreamType = { HttpRequest: 0, HttpResponse: 1, Downstream: 2, Upstream: 3 } as const;

export const MetricType = { Counter: 0, Gauge: 1, Histogram: 2 } as const;

export const PeerType = { Unknown: 0, Local: 1, Remote: 2 } as const;

/** proxy_log_level_t: 0 trace … 5 critical. */
export const LOG_LEVEL_NAMES = ['trace', 'debug', 'info', 'warn', 'error', 'critical'] as const;

/** WASI errno values the shim returns. */
export const Errno = { Success: 0, Badf: 8, Fault: 21, Inval: 28, Noent: 44, Nosys: 52, Notsup: 58 } as const;

export type AbiVersion = '0.1.0' | '0.2.0' | '0.2.1';

export const ABI_MARKERS: ReadonlyArray<readonly [string, AbiVersion]> = [
  ['proxy_abi_version_0_2_1', '0.2.1'],
  ['proxy_abi_version_0_2_0', '0.2.0'],
  ['proxy_abi_version_0_1_0', '0.1.0'],
];

/** Named limits, as cpp-host's limits.h. */
export const Limits = {
  /** PROXY_WASM_HOST_PAIRS_MAX_BYTES */
  pairsMaxBytes: 1024 * 1024,
  /** PROXY_WASM_HOST_PAIRS_MAX_COUNT */
  pairsMaxCount: 1024,
  /** random_get cap (cpp-host and crypto.getRandomValues agree). */
  randomGetMaxBytes: 65536,
  /** Default VM memory cap when the bootstrap does not set one (cpp-host: 1 GiB). */
  defaultMemoryBytes: 1024 * 1024 * 1024,
  /** Loop iterations between two deadline checks of the CPU budget (see docs/adr-wasm-cpu-budget.md). */
  fuelChunk: 200_000,
  /** Base FAIL_RELOAD backoff (Envoy ReloadConfig default) and its cap. */
  reloadBackoffBaseMs: 1000,
  reloadBackoffMaxMs: 10_000,
} as const;

/** The import the instrumented module calls at loop headers (instrument.ts injects it, vm.ts provides it). */
export const FUEL_IMPORT_MODULE = 'meshext';
export const FUEL_IMPORT_NAME = 'fuel_check';
