/**
 * Error classes with stable `code` strings (undici style: code + Symbol.for brand), so callers
 * branch on codes, never on message text.
 */
const kMeshextError = Symbol.for('meshext.error');

export class MeshextError extends Error {
  readonly code: string;
  readonly [kMeshextError] = true;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MeshextError';
    this.code = code;
  }
  static is(err: unknown): err is MeshextError {
    return typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[kMeshextError] === true;
  }
}

/** One configuration problem, located: `file:line: path: message`. */
export interface ConfigIssue {
  file: string;
  line: number;
  /** Field path, e.g. `spec.wasm.sha256` or `listeners[0].port`. */
  path: string;
  message: string;
  /** `error` rejects the resource; `warning` is reported only. */
  level: 'error' | 'warning';
  /** Resource label for istioctl-analyze style output, e.g. `TrafficExtension parity.default`. */
  resource?: string;
  /** Istio analyzer code, e.g. IST0106 (schema validation error). */
  analyzerCode?: string;
}

export function formatIssue(issue: ConfigIssue): string {
  // Whole-file problems (YAML syntax, unreadable file) have no field path.
  return issue.path ? `${issue.file}:${issue.line}: ${issue.path}: ${issue.message}` : `${issue.file}:${issue.line}: ${issue.message}`;
}

export class ConfigError extends MeshextError {
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[]) {
    super('MESHEXT_ERR_CONFIG', issues.map(formatIssue).join('\n'));
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

export class ClusterNotFoundError extends MeshextError {
  constructor(cluster: string) {
    super('MESHEXT_ERR_CLUSTER_NOT_FOUND', `cluster '${cluster}' is not defined in the bootstrap`);
  }
}

export class UpstreamTimeoutError extends MeshextError {
  constructor(cluster: string, ms: number) {
    super('MESHEXT_ERR_UPSTREAM_TIMEOUT', `upstream request to cluster '${cluster}' timed out after ${ms} ms`);
  }
}

export class UpstreamConnectError extends MeshextError {
  constructor(cluster: string, cause: unknown) {
    super('MESHEXT_ERR_UPSTREAM_CONNECT', `cannot connect to cluster '${cluster}': ${(cause as Error)?.message ?? cause}`, { cause });
  }
}

export class UpstreamProtocolError extends MeshextError {
  constructor(cluster: string, cause: unknown) {
    super('MESHEXT_ERR_UPSTREAM_PROTOCOL', `broken response from cluster '${cluster}': ${(cause as Error)?.message ?? cause}`, { cause });
  }
}
