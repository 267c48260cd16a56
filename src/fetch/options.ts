/**
 * Fetcher options from the bootstrap (`wasm.cacheDir`, `insecureRegistries`, `allowLoopbackFetch`)
 * and Istio's agent environment knobs (spec §3.7), so operators can reuse the settings they know.
 * Environment values override the defaults, bootstrap values override the environment.
 */
import type { BootstrapConfig } from '../config/types.ts';
import type { StatsStore } from '../observability/stats.ts';
import type { ModuleFetcherOptions } from './fetcher.ts';

/** Parses a Go duration (`24h`, `1h30m`, `15s`, `500ms`) or a bare number of milliseconds. */
export function parseGoDuration(s: string): number | undefined {
  const t = s.trim();
  if (/^\d+$/.test(t)) return Number(t);
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let matched = 0;
  for (let m = re.exec(t); m; m = re.exec(t)) {
    total += Number(m[1]) * unit[m[2]!]!;
    matched = re.lastIndex;
  }
  return matched === t.length && matched > 0 ? Math.round(total) : undefined;
}

const list = (v: string | undefined): string[] => (v ?? '').split(',').map((x) => x.trim()).filter(Boolean);

export function fetcherOptionsFrom(
  wasm: Pick<BootstrapConfig['wasm'], 'cacheDir' | 'insecureRegistries' | 'allowLoopbackFetch'>,
  env: NodeJS.ProcessEnv = process.env,
  stats?: StatsStore,
): ModuleFetcherOptions {
  const o: ModuleFetcherOptions = {
    cacheDir: wasm.cacheDir,
    insecureRegistries: [...new Set([...list(env.WASM_INSECURE_REGISTRIES), ...wasm.insecureRegistries])],
    allowLoopback: wasm.allowLoopbackFetch,
    blockedCidrs: list(env.BLOCKED_CIDRS_IN_WASM_FETCH),
  };
  if (stats) o.stats = stats;
  const dur = (name: string): number | undefined => (env[name] ? parseGoDuration(env[name]!) : undefined);
  const expiry = dur('WASM_MODULE_EXPIRY');
  if (expiry !== undefined) o.moduleExpiryMs = expiry;
  const purge = dur('WASM_PURGE_INTERVAL');
  if (purge !== undefined) o.purgeIntervalMs = purge;
  const timeout = dur('WASM_HTTP_REQUEST_TIMEOUT');
  if (timeout !== undefined) o.httpTimeoutMs = timeout;
  const retries = Number(env.WASM_HTTP_REQUEST_MAX_RETRIES);
  if (env.WASM_HTTP_REQUEST_MAX_RETRIES && Number.isInteger(retries) && retries > 0) o.httpMaxRetries = retries;
  const max = Number(env.ISTIO_WASM_MAX_BINARY_SIZE_BYTES);
  if (env.ISTIO_WASM_MAX_BINARY_SIZE_BYTES && Number.isInteger(max) && max > 0) o.maxSizeBytes = max;
  return o;
}
