/**
 * The module fetcher the Wasm runtime calls: Istio agent's cache.Get (spec §3) as one async call.
 *
 *   resolve URL → (file: read) → pull secret → cache lookup by policy → coalesced download
 *   (OCI: manifest → digest check → cached? → layer → extract | HTTP: GET with retries → unbox)
 *   → wasm check → atomic cache write → bytes
 *
 * Failures throw FetchError (stable code, step, metric result); the caller applies failStrategy.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { homedir } from 'node:os';
import type { Logger } from 'pino';
import type { PullSecret, TrafficExtension, WasmConfig } from '../config/types.ts';
import { logger } from '../observability/log.ts';
import type { StatsStore } from '../observability/stats.ts';
import { ModuleCache } from './cache.ts';
import { credentialsFor, loadDockerConfigFile, parseDockerConfig } from './credentials.ts';
import type { RegistryCredentials } from './credentials.ts';
import { FetchError, FetchErrorCode, describeError } from './errors.ts';
import type { FetchResult } from './errors.ts';
import { extractModule } from './layouts.ts';
import { RegistryClient } from './oci.ts';
import { isInsecureHost, parseModuleUrl } from './reference.ts';
import type { ParsedModuleUrl } from './reference.ts';
import { SsrfGuard } from './ssrf.ts';
import { abortableDelay, Transport } from './transport.ts';
import { assertWasm, sha256Hex, unbox } from './wasm-bytes.ts';

export interface ModuleFetcherOptions {
  /** Cache directory (BootstrapConfig.wasm.cacheDir). Created if missing. */
  cacheDir: string;
  /** Hosts (`host`, `host:port` or `*`) allowed plain HTTP / unverified TLS (WASM_INSECURE_REGISTRIES). */
  insecureRegistries?: readonly string[];
  /** Allow dialling loopback (BootstrapConfig.wasm.allowLoopbackFetch). Default false. */
  allowLoopback?: boolean;
  /** Extra CIDRs refused at dial time (BLOCKED_CIDRS_IN_WASM_FETCH). */
  blockedCidrs?: readonly string[];
  stats?: StatsStore;
  /** Module and extraction size limit (ISTIO_WASM_MAX_BINARY_SIZE_BYTES, default 256 MiB). */
  maxSizeBytes?: number;
  /** Per-attempt HTTP timeout (WASM_HTTP_REQUEST_TIMEOUT, default 15 s). Also per registry request. */
  httpTimeoutMs?: number;
  /** HTTP(S) attempts (WASM_HTTP_REQUEST_MAX_RETRIES, default 5). */
  httpMaxRetries?: number;
  /** First HTTP retry delay, doubled each retry (default 500 ms). */
  httpInitialBackoffMs?: number;
  /** Attempts per registry API call on transient errors (default 3). */
  registryAttempts?: number;
  /** First registry retry delay, tripled each time (default 1000 ms). */
  registryRetryDelayMs?: number;
  /** Deadline of one whole download (Istio's http_uri.timeout, default 30 s). */
  fetchTimeoutMs?: number;
  /** Unused module lifetime (WASM_MODULE_EXPIRY, default 24 h). */
  moduleExpiryMs?: number;
  /** Expiry sweep period (WASM_PURGE_INTERVAL, default 1 h; 0 = no timer, call purge()). */
  purgeIntervalMs?: number;
  /**
   * Docker config used when the extension names no imagePullSecret (Istio's default keychain).
   * Default: $DOCKER_CONFIG/config.json or ~/.docker/config.json when present; `null` = anonymous.
   */
  dockerConfigFile?: string | null;
  log?: Logger;
  /** Clock for expiry (tests). */
  now?: () => number;
}

export interface FetchContext {
  /** The TrafficExtension's namespace: pull secrets are looked up only there. */
  namespace: string;
  /** Pull secrets from the extension sources (ExtensionSet.secrets / WorkerServices.secrets). */
  secrets?: readonly PullSecret[];
  /** Resource identity for pull policy bookkeeping, default `<namespace>.<unknown>`. */
  resourceName?: string;
  /** Changes whenever the resource changes (metadata.resourceVersion). */
  resourceVersion?: string;
  /** Used when resourceVersion is absent (file mode): metadata.generation. */
  generation?: number;
  /** Abandon waiting (the shared download itself continues for other waiters). */
  signal?: AbortSignal;
}

export interface FetchedModule {
  /** Backed by a plain ArrayBuffer, so WebAssembly.compile accepts it as is. */
  bytes: Uint8Array<ArrayBuffer>;
  /** Istio's checksum: OCI manifest digest (hex) or sha256 of the module for HTTP/file. */
  sha256: string;
  /** sha256 of the module bytes themselves (for VM sharing by code). */
  codeSha256: string;
  source: 'cache' | 'remote' | 'file';
  /** Local file holding the module (the cache file, or the file:// path). */
  path: string;
  /** Normalised URL (oci:// added when the resource had no scheme). */
  url: string;
}

export interface ModuleFetcher {
  fetch(wasm: WasmConfig, ctx: FetchContext): Promise<FetchedModule>;
  /** Runs the expiry sweep now; returns the number of modules removed. */
  purge(): Promise<number>;
  readonly cache: ModuleCache;
  close(): Promise<void>;
}

/** Builds a FetchContext from a TrafficExtension (what the Wasm runtime has in hand). */
export function fetchContextFor(ext: TrafficExtension, secrets: readonly PullSecret[], signal?: AbortSignal): FetchContext {
  const ctx: FetchContext = { namespace: ext.metadata.namespace, secrets, resourceName: `${ext.metadata.namespace}.${ext.metadata.name}` };
  if (ext.metadata.resourceVersion !== undefined) ctx.resourceVersion = ext.metadata.resourceVersion;
  if (ext.metadata.generation !== undefined) ctx.generation = ext.metadata.generation;
  if (signal) ctx.signal = signal;
  return ctx;
}

/**
 * Istio's shouldIgnoreResourceVersion: IfNotPresent ignores resource changes; Always re-pulls on
 * them; unset is IfNotPresent except OCI URLs written with `:latest`.
 */
export function ignoresResourceVersion(policy: WasmConfig['imagePullPolicy'], parsed: ParsedModuleUrl, rawUrl: string): boolean {
  if (policy === 'Always') return false;
  if (policy === 'IfNotPresent') return true;
  return !(parsed.scheme === 'oci' && rawUrl.trim().endsWith(':latest'));
}

/** A view on a plain ArrayBuffer (WebAssembly.compile's type), copying only if needed. */
function plain(b: Uint8Array): Uint8Array<ArrayBuffer> {
  return b.buffer instanceof ArrayBuffer ? (b as Uint8Array<ArrayBuffer>) : new Uint8Array(b);
}

function retryableStatus(code: number): boolean {
  return code >= 500 && code !== 501 && code !== 505 && code !== 511;
}


function raceSignal<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => { signal.removeEventListener('abort', onAbort); resolve(v); },
      (e) => { signal.removeEventListener('abort', onAbort); reject(e); },
    );
  });
}

export async function createModuleFetcher(opts: ModuleFetcherOptions): Promise<ModuleFetcher> {
  const log = opts.log ?? logger('fetch');
  const maxBytes = opts.maxSizeBytes ?? 256 * 1024 * 1024;
  const httpTimeoutMs = opts.httpTimeoutMs ?? 15_000;
  const httpMaxRetries = Math.max(1, opts.httpMaxRetries ?? 5);
  const httpBackoff = opts.httpInitialBackoffMs ?? 500;
  const fetchTimeoutMs = opts.fetchTimeoutMs ?? 30_000;
  const insecure = opts.insecureRegistries ?? [];
  const guard = new SsrfGuard({ allowLoopback: opts.allowLoopback === true, blockedCidrs: opts.blockedCidrs ?? [] });
  const transport = new Transport(guard, Math.min(httpTimeoutMs, 10_000));
  const cache = await ModuleCache.open({
    dir: opts.cacheDir,
    moduleExpiryMs: opts.moduleExpiryMs ?? 24 * 3600_000,
    purgeIntervalMs: opts.purgeIntervalMs ?? 3600_000,
    stats: opts.stats,
    log,
    now: opts.now,
  });
  const stats = opts.stats;
  const knownBases = new Map<string, string>();
  const inflight = new Map<string, Promise<{ checksum: string; bytes: Uint8Array; path: string; fromCache?: boolean }>>();

  const defaultConfigPath = opts.dockerConfigFile === undefined
    ? join(process.env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json')
    : opts.dockerConfigFile;

  const count = (result: FetchResult): void => stats?.counter('wasm_remote_fetch_count', { result }).inc();

  function credentialsForFetch(wasm: WasmConfig, ctx: FetchContext, parsed: ParsedModuleUrl): { creds: RegistryCredentials | undefined; source: string } {
    const registry = parsed.oci?.registry ?? '';
    if (wasm.imagePullSecret) {
      const s = (ctx.secrets ?? []).find((x) => x.name === wasm.imagePullSecret && x.namespace === ctx.namespace);
      if (!s) {
        throw new FetchError(
          FetchErrorCode.MissingPullSecret,
          `cannot fetch Wasm module ${parsed.url}: missing image pulling secret ${ctx.namespace}/${wasm.imagePullSecret} (a kubernetes.io/dockerconfigjson Secret in the extension's namespace)`,
          { url: parsed.url, step: 'secret' },
        );
      }
      const auths = parseDockerConfig(s.dockerConfigJson, `pull secret ${s.namespace}/${s.name}`, parsed.url);
      return { creds: registry ? credentialsFor(auths, registry) : undefined, source: `secret ${s.namespace}/${s.name}` };
    }
    if (!registry || defaultConfigPath === null) return { creds: undefined, source: 'anonymous' };
    const creds = credentialsFor(loadDockerConfigFile(defaultConfigPath), registry);
    return { creds, source: creds ? `docker config ${defaultConfigPath}` : 'anonymous' };
  }

  async function httpDownload(parsed: ParsedModuleUrl, signal: AbortSignal): Promise<Uint8Array> {
    const u = new URL(parsed.url);
    const insecureTls = isInsecureHost(insecure, u.host);
    let lastErr = '';
    let lastStatus: number | undefined;
    let attempts = 0;
    let delay = httpBackoff;
    while (attempts < httpMaxRetries) {
      attempts++;
      try {
        const res = await transport.send({ url: parsed.url, timeoutMs: httpTimeoutMs, maxBytes, insecureTls, signal, step: 'download', result: 'download_failure' });
        if (res.status === 200) {
          log.debug({ url: parsed.url, step: 'download', attempt: attempts, bytes: res.body.length }, 'module downloaded');
          return unbox(res.body, maxBytes, parsed.url);
        }
        lastErr = `status code ${res.status}`;
        lastStatus = res.status;
        if (!retryableStatus(res.status)) {
          log.warn({ url: parsed.url, step: 'download', attempt: attempts, status: res.status }, 'module download failed; status not retried');
          break;
        }
        log.info({ url: parsed.url, step: 'download', attempt: attempts, status: res.status, retryInMs: delay }, 'module download failed; retrying');
      } catch (err) {
        // Refusals and size violations will not change on retry; the overall deadline is final.
        if (FetchError.isFetchError(err) && (err.code === FetchErrorCode.Blocked || err.code === FetchErrorCode.TooLarge || err.code === FetchErrorCode.InvalidImage)) throw err;
        if (signal.aborted) throw err;
        lastErr = describeError(err);
        log.info({ url: parsed.url, step: 'download', attempt: attempts, reason: lastErr, retryInMs: delay }, 'module download failed; retrying');
      }
      if (attempts >= httpMaxRetries) break;
      try {
        await abortableDelay(delay, signal);
      } catch {
        break;
      }
      delay *= 2;
    }
    const code = lastStatus === 404 ? FetchErrorCode.NotFound : lastStatus === 401 || lastStatus === 403 ? FetchErrorCode.Unauthorized : lastStatus !== undefined ? FetchErrorCode.HttpStatus : FetchErrorCode.Transport;
    throw new FetchError(code, `wasm module download from ${parsed.url} failed after ${attempts} attempts, last error: ${lastErr || 'deadline exceeded'}`, { url: parsed.url, step: 'download', result: 'download_failure', status: lastStatus });
  }

  async function download(
    parsed: ParsedModuleUrl,
    expected: string | undefined,
    creds: RegistryCredentials | undefined,
    resource: string,
    version: string,
  ): Promise<{ checksum: string; bytes: Uint8Array; path: string }> {
    const signal = AbortSignal.timeout(fetchTimeoutMs);
    const started = performance.now();
    try {
      let checksum: string;
      let bytes: Uint8Array;
      if (parsed.scheme === 'oci') {
        const ref = parsed.oci!;
        const client = new RegistryClient({ ref, transport, insecure: isInsecureHost(insecure, ref.registry), credentials: creds, timeoutMs: httpTimeoutMs, maxBytes, signal, log, url: parsed.url, knownBases, attempts: opts.registryAttempts ?? 3, retryDelayMs: opts.registryRetryDelayMs ?? 1000 });
        const img = await client.resolve();
        checksum = img.digest;
        log.debug({ url: parsed.url, step: 'manifest', digest: img.digest, mediaType: img.mediaType }, 'manifest resolved');
        if (expected && expected !== img.digest && expected !== img.indexDigest) {
          throw new FetchError(FetchErrorCode.ChecksumMismatch, `module downloaded from ${parsed.url} has checksum ${img.digest}, which does not match: ${expected}`, { url: parsed.url, step: 'verify', result: 'checksum_mismatched' });
        }
        // The tag moved to a digest we already hold: no layer download needed.
        const have = cache.get(parsed.moduleName, checksum);
        const cached = have ? await cache.read(have) : undefined;
        if (have && cached) {
          cache.recordTag(parsed.url, checksum, resource, version);
          count('success');
          log.info({ url: parsed.url, step: 'manifest', checksum }, 'manifest digest already cached; layer download skipped');
          return { checksum, bytes: cached, path: have.path };
        }
        bytes = await extractModule(img.manifest, img.mediaType, (d) => client.getBlob(d), maxBytes, parsed.url);
        assertWasm(bytes, parsed.url, maxBytes);
      } else {
        bytes = await httpDownload(parsed, signal);
        assertWasm(bytes, parsed.url, maxBytes);
        checksum = sha256Hex(bytes);
        if (expected && expected !== checksum) {
          throw new FetchError(FetchErrorCode.ChecksumMismatch, `module downloaded from ${parsed.url} has checksum ${checksum}, which does not match: ${expected}`, { url: parsed.url, step: 'verify', result: 'checksum_mismatched' });
        }
      }
      const entry = await cache.add({ url: parsed.url, name: parsed.moduleName, checksum, bytes, resource, version });
      count('success');
      log.info({ url: parsed.url, step: 'download', checksum, bytes: bytes.length, ms: Math.round(performance.now() - started), path: entry.path }, 'module fetched');
      return { checksum, bytes, path: entry.path };
    } catch (err) {
      const fe = FetchError.isFetchError(err)
        ? err
        : new FetchError(FetchErrorCode.Transport, `fetching ${parsed.url} failed: ${describeError(err)}`, { url: parsed.url, step: 'download', result: 'download_failure', cause: err });
      if (signal.aborted && fe.code !== FetchErrorCode.ChecksumMismatch) {
        const te = new FetchError(FetchErrorCode.Timeout, `fetching ${parsed.url} exceeded the ${fetchTimeoutMs} ms deadline at step ${fe.step}: ${fe.message}`, { url: parsed.url, step: fe.step, result: fe.result, cause: fe });
        count(te.result);
        log.warn({ url: parsed.url, step: te.step, code: te.code, reason: te.message }, 'module fetch failed');
        throw te;
      }
      count(fe.result);
      log.warn({ url: parsed.url, step: fe.step, code: fe.code, status: fe.status, reason: fe.message }, 'module fetch failed');
      throw fe;
    }
  }

  /**
   * Other fetchers on the same cache dir (worker threads, other processes) are coordinated with a
   * file lock: under the lock, the cache is reloaded from disk and looked up again before downloading.
   */
  async function coordinatedDownload(
    key: string,
    parsed: ParsedModuleUrl,
    expected: string | undefined,
    creds: RegistryCredentials | undefined,
    resource: string,
    version: string,
    ignoreVersion: boolean,
  ): Promise<{ checksum: string; bytes: Uint8Array; path: string; fromCache?: boolean }> {
    // What this fetcher knew when it decided to download; only newer news from disk may change that.
    const knownAt = cache.tag(parsed.url)?.fetchedAt ?? -1;
    let lock: { waited: boolean; release(): Promise<void> } | undefined;
    try {
      lock = await cache.lock(key, fetchTimeoutMs + 5000, AbortSignal.timeout(fetchTimeoutMs + 10_000));
    } catch (err) {
      // A read-only or odd cache dir must not stop fetching; it only loses the cross-thread dedupe.
      log.debug({ url: parsed.url, step: 'cache', reason: describeError(err) }, 'download lock unavailable');
    }
    try {
      // Look again under the lock even if it was free: another thread may have finished just before.
      if (lock) {
        await cache.reload();
        // Only a tag written by a download this fetcher had not seen counts, and only if it satisfies
        // the policy: the decision already made (e.g. Always with a new resourceVersion) must not be
        // undone by the tag it was made against.
        const t = expected ? undefined : cache.tag(parsed.url);
        const checksum = expected ?? (t && (t.fetchedAt ?? 0) > knownAt && (ignoreVersion || t.versions[resource] === version) ? t.checksum : undefined);
        const entry = checksum ? cache.get(parsed.moduleName, checksum) : undefined;
        const bytes = entry ? await cache.read(entry) : undefined;
        if (entry && bytes) {
          log.debug({ url: parsed.url, step: 'cache', checksum: entry.checksum }, 'module downloaded by another worker');
          return { checksum: entry.checksum, bytes, path: entry.path, fromCache: true };
        }
      }
      return await download(parsed, expected, creds, resource, version);
    } finally {
      await lock?.release().catch(() => {});
    }
  }

  async function fetchModule(wasm: WasmConfig, ctx: FetchContext): Promise<FetchedModule> {
    let parsed: ParsedModuleUrl;
    try {
      parsed = parseModuleUrl(wasm.url);
    } catch (err) {
      count('fetch_failure');
      log.warn({ url: wasm.url, step: 'resolve', reason: (err as Error).message }, 'module fetch failed');
      throw err;
    }
    if (parsed.scheme === 'file') {
      // Istio hands file:// to Envoy untouched (no policy, secret or sha256); only validity is checked.
      let bytes: Uint8Array;
      try {
        bytes = await readFile(parsed.path!);
      } catch (err) {
        const fe = new FetchError(FetchErrorCode.FileRead, `cannot read Wasm module ${parsed.url}: ${describeError(err)}`, { url: parsed.url, step: 'read', cause: err });
        log.warn({ url: parsed.url, step: 'read', reason: fe.message }, 'module read failed');
        throw fe;
      }
      assertWasm(bytes, parsed.url, maxBytes, 'read');
      const h = sha256Hex(bytes);
      return { bytes: plain(bytes), sha256: h, codeSha256: h, source: 'file', path: parsed.path!, url: parsed.url };
    }
    const fail = (fe: FetchError): never => {
      count(fe.result);
      log.warn({ url: parsed.url, step: fe.step, code: fe.code, reason: fe.message }, 'module fetch failed');
      throw fe;
    };
    const field = (wasm.sha256 ?? '').trim();
    if (field && !/^[a-f0-9]{64}$/.test(field)) {
      fail(new FetchError(FetchErrorCode.InvalidUrl, `sha256 '${field}' of ${parsed.url} is not 64 lower-case hex digits`, { url: parsed.url, step: 'resolve' }));
    }
    if (field && parsed.urlDigest && field !== parsed.urlDigest) {
      fail(new FetchError(FetchErrorCode.DigestConflict, `the digest in ${parsed.url} does not match sha256 ${field}`, { url: parsed.url, step: 'resolve' }));
    }
    // A non-sha256 URL digest disables the expected-checksum lookup (as Istio).
    const expected = field || parsed.urlDigest || undefined;
    let creds: { creds: RegistryCredentials | undefined; source: string };
    try {
      creds = credentialsForFetch(wasm, ctx, parsed);
    } catch (err) {
      return fail(err as FetchError);
    }
    const resource = ctx.resourceName ?? `${ctx.namespace}.`;
    const version = ctx.resourceVersion ?? (ctx.generation !== undefined ? `gen-${ctx.generation}` : '');
    const ignoreVersion = ignoresResourceVersion(wasm.imagePullPolicy, parsed, wasm.url);
    const hit = cache.lookup({ url: parsed.url, name: parsed.moduleName, checksum: expected, resource, version, ignoreVersion });
    if (hit.entry) {
      const bytes = await cache.read(hit.entry);
      if (bytes) {
        log.debug({ url: parsed.url, step: 'cache', checksum: hit.entry.checksum, path: hit.entry.path }, 'module served from cache');
        return { bytes: plain(bytes), sha256: hit.entry.checksum, codeSha256: hit.entry.fileSha256, source: 'cache', path: hit.entry.path, url: parsed.url };
      }
    }
    // One download per (URL, expected checksum, credentials) at a time; later callers share it.
    const key = `${parsed.url}\u0000${expected ?? ''}\u0000${creds.source}`;
    let p = inflight.get(key);
    if (!p) {
      log.debug({ url: parsed.url, step: 'download', policy: wasm.imagePullPolicy ?? 'UNSPECIFIED_POLICY', auth: creds.source, expected }, 'cache miss; downloading');
      p = coordinatedDownload(key, parsed, expected, creds.creds, resource, version, ignoreVersion).finally(() => inflight.delete(key));
      inflight.set(key, p);
    } else {
      log.debug({ url: parsed.url, step: 'download' }, 'joining an in-flight download');
    }
    const r = await raceSignal(p, ctx.signal);
    // Joiners of a shared download record their own resource version too (Istio's addEntry per Get).
    cache.recordTag(parsed.url, r.checksum, resource, version);
    return { bytes: plain(r.bytes), sha256: r.checksum, codeSha256: sha256Hex(r.bytes), source: r.fromCache ? 'cache' : 'remote', path: r.path, url: parsed.url };
  }

  return {
    fetch: fetchModule,
    purge: () => cache.purge(),
    cache,
    async close() {
      await cache.close();
      await transport.close();
    },
  };
}
