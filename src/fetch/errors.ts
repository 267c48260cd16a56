/**
 * Fetch errors: one class, stable codes, plus the two facts every caller needs without parsing
 * messages: which pipeline step failed (for logs) and which Istio metric result it counts as.
 */
import { MeshextError } from '../errors.ts';

/** Istio agent's `wasm_remote_fetch_count{result}` values. */
export type FetchResult = 'success' | 'download_failure' | 'manifest_failure' | 'checksum_mismatched' | 'fetch_failure';

export type FetchStep =
  | 'resolve'
  | 'secret'
  | 'cache'
  | 'ping'
  | 'auth'
  | 'manifest'
  | 'blob'
  | 'extract'
  | 'download'
  | 'verify'
  | 'read'
  | 'push';

export const FetchErrorCode = {
  InvalidUrl: 'MESHEXT_ERR_FETCH_INVALID_URL',
  DigestConflict: 'MESHEXT_ERR_FETCH_DIGEST_CONFLICT',
  MissingPullSecret: 'MESHEXT_ERR_FETCH_MISSING_PULL_SECRET',
  InvalidPullSecret: 'MESHEXT_ERR_FETCH_INVALID_PULL_SECRET',
  Unauthorized: 'MESHEXT_ERR_FETCH_UNAUTHORIZED',
  NotFound: 'MESHEXT_ERR_FETCH_NOT_FOUND',
  HttpStatus: 'MESHEXT_ERR_FETCH_HTTP_STATUS',
  Transport: 'MESHEXT_ERR_FETCH_TRANSPORT',
  Timeout: 'MESHEXT_ERR_FETCH_TIMEOUT',
  Blocked: 'MESHEXT_ERR_FETCH_BLOCKED',
  BlockedRealm: 'MESHEXT_ERR_FETCH_BLOCKED_REALM',
  TooLarge: 'MESHEXT_ERR_FETCH_TOO_LARGE',
  InvalidManifest: 'MESHEXT_ERR_FETCH_INVALID_MANIFEST',
  InvalidImage: 'MESHEXT_ERR_FETCH_INVALID_IMAGE',
  BlobDigestMismatch: 'MESHEXT_ERR_FETCH_BLOB_DIGEST',
  ChecksumMismatch: 'MESHEXT_ERR_FETCH_CHECKSUM_MISMATCH',
  InvalidWasm: 'MESHEXT_ERR_FETCH_INVALID_WASM',
  FileRead: 'MESHEXT_ERR_FETCH_FILE',
  Push: 'MESHEXT_ERR_FETCH_PUSH',
} as const;
export type FetchErrorCode = (typeof FetchErrorCode)[keyof typeof FetchErrorCode];

export class FetchError extends MeshextError {
  /** The module URL (or the hop URL) the error is about. */
  readonly url: string;
  readonly step: FetchStep;
  /** Metric label this failure is counted under. */
  result: FetchResult;
  /** HTTP status when the failure was an HTTP answer. */
  readonly status: number | undefined;
  constructor(
    code: FetchErrorCode,
    message: string,
    info: { url: string; step: FetchStep; result?: FetchResult; status?: number; cause?: unknown },
  ) {
    super(code, message, info.cause === undefined ? undefined : { cause: info.cause });
    this.name = 'FetchError';
    this.url = info.url;
    this.step = info.step;
    this.result = info.result ?? 'fetch_failure';
    this.status = info.status;
  }
  static isFetchError(err: unknown): err is FetchError {
    return MeshextError.is(err) && (err as MeshextError).name === 'FetchError';
  }
}

/** Best-effort message of an unknown thrown value (undici nests the useful part in `cause`). */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    const code = (err as { code?: unknown }).code;
    let msg = err.message;
    if (typeof code === 'string' && !msg.includes(code) && !code.startsWith('MESHEXT_')) msg += ` (${code})`;
    if (cause instanceof Error && !msg.includes(cause.message)) msg += `: ${describeError(cause)}`;
    if (err instanceof AggregateError && err.errors.length > 0) msg += `: ${err.errors.map(describeError).join('; ')}`;
    // OpenSSL messages carry newlines and source paths; keep log lines on one line.
    return msg.replace(/\s*\n\s*/g, ' ').trim();
  }
  return String(err);
}
