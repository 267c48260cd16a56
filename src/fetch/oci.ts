/**
 * A small OCI Distribution client (pull and push) on the guarded transport: /v2/ ping, anonymous,
 * Basic, and Bearer tokens obtained through the `WWW-Authenticate` challenge (with the realm
 * checked against the SSRF rules before it is contacted), manifests by tag or digest, blobs
 * verified against their digest. Plain HTTP and TLS-skip are used only for insecure-registries
 * hosts.
 */
import type { Logger } from 'pino';
import { FetchError, FetchErrorCode, describeError } from './errors.ts';
import type { FetchResult, FetchStep } from './errors.ts';
import type { RegistryCredentials } from './credentials.ts';
import { MANIFEST_ACCEPT, MediaType } from './layouts.ts';
import type { Descriptor, ImageManifest } from './layouts.ts';
import type { OciReference } from './reference.ts';
import { abortableDelay, headerValue } from './transport.ts';
import type { HttpResponse, Transport } from './transport.ts';
import { sha256Hex } from './wasm-bytes.ts';

export interface RegistryClientOptions {
  ref: OciReference;
  transport: Transport;
  /** Host is in the insecure-registries list: TLS not verified, plain HTTP fallback allowed. */
  insecure: boolean;
  credentials?: RegistryCredentials;
  /** Per-request deadline (ms). */
  timeoutMs: number;
  maxBytes: number;
  signal?: AbortSignal;
  log: Logger;
  /** For messages: the module URL being fetched. */
  url: string;
  /** registry → base URL learnt by an earlier ping (shared per fetcher, saves the HTTPS probe). */
  knownBases?: Map<string, string>;
  /** Attempts per API call on transport errors and 408/429/500/502/503/504 (default 3, as go-containerregistry). */
  attempts?: number;
  /** First retry delay, tripled each time (default 1000 ms). */
  retryDelayMs?: number;
}

const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);


interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses `Bearer realm="…",service="…",scope="…"` (quoted or token values). */
export function parseChallenge(header: string | undefined): Challenge | undefined {
  if (!header) return undefined;
  const m = /^\s*([A-Za-z]+)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?/g;
  for (let p = re.exec(m[2]!); p; p = re.exec(m[2]!)) params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3]!;
  return { scheme: m[1]!.toLowerCase(), params };
}

const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export interface ResolvedImage {
  /** Hex digest of the image manifest (the child one when the reference named an index). */
  digest: string;
  /** Hex digest of the index, when the reference resolved through one. */
  indexDigest?: string;
  manifest: ImageManifest;
  mediaType: string;
}

export class RegistryClient {
  readonly #o: RegistryClientOptions;
  #base: string | undefined;
  #challenge: Challenge | undefined;
  readonly #tokens = new Map<string, string>();

  constructor(o: RegistryClientOptions) {
    this.#o = o;
  }

  get baseUrl(): string | undefined {
    return this.#base;
  }

  #err(code: FetchErrorCode, msg: string, step: FetchStep, result: FetchResult, extra: { status?: number; cause?: unknown; url?: string } = {}): FetchError {
    return new FetchError(code, msg, { url: extra.url ?? this.#o.url, step, result, status: extra.status, cause: extra.cause });
  }

  /** GET /v2/: learns the scheme (https, or http for insecure hosts) and the auth challenge. */
  async ping(): Promise<void> {
    if (this.#base) return;
    const host = this.#o.ref.apiHost;
    const tryPing = async (base: string): Promise<HttpResponse> =>
      this.#o.transport.send({ url: `${base}/v2/`, timeoutMs: this.#o.timeoutMs, maxBytes: 64 * 1024, insecureTls: this.#o.insecure, signal: this.#o.signal, step: 'ping', result: 'manifest_failure' });
    let res: HttpResponse;
    const known = this.#o.knownBases?.get(host);
    try {
      if (known) {
        res = await tryPing(known);
        this.#base = known;
      } else {
        res = await tryPing(`https://${host}`);
        this.#base = `https://${host}`;
      }
    } catch (err) {
      if (known) throw err;
      const fallback = this.#o.insecure && FetchError.isFetchError(err) && err.code === FetchErrorCode.Transport;
      if (!fallback) throw err;
      // go-containerregistry's "server gave HTTP response to HTTPS client" path: retry in clear.
      this.#o.log.info({ url: this.#o.url, step: 'ping', registry: host, reason: describeError(err) }, 'HTTPS ping failed; retrying the insecure registry over plain HTTP');
      res = await tryPing(`http://${host}`);
      this.#base = `http://${host}`;
    }
    if (res.status === 401) {
      this.#challenge = parseChallenge(headerValue(res.headers, 'www-authenticate'));
    } else if (res.status < 200 || res.status >= 300) {
      // Some registries answer 404 on /v2/ but serve the API; only an unexpected 5xx is fatal here.
      if (res.status >= 500) throw this.#err(FetchErrorCode.HttpStatus, `registry ${host} ping failed: HTTP ${res.status}`, 'ping', 'manifest_failure', { status: res.status, url: `${this.#base}/v2/` });
    }
    this.#o.knownBases?.set(host, this.#base!);
    this.#o.log.debug({ url: this.#o.url, step: 'ping', registry: this.#base, auth: this.#challenge?.scheme ?? 'anonymous' }, 'registry ping');
  }

  async #token(challenge: Challenge, scope: string, step: FetchStep, result: FetchResult): Promise<string> {
    const realm = challenge.params.realm;
    if (!realm) throw this.#err(FetchErrorCode.Unauthorized, `registry ${this.#o.ref.registry} sent a Bearer challenge without realm`, 'auth', result);
    const why = this.#o.transport.guard.checkRealm(realm);
    if (why) throw this.#err(FetchErrorCode.BlockedRealm, `refusing the token endpoint of registry ${this.#o.ref.registry}: ${why}`, 'auth', result, { url: realm });
    const c = this.#o.credentials;
    if (c?.registryToken) return c.registryToken;
    const u = new URL(realm);
    const service = challenge.params.service;
    let res: HttpResponse;
    if (c?.identityToken) {
      // OAuth2 refresh-token grant, as docker does for identity tokens.
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: c.identityToken, client_id: 'meshext', scope });
      if (service) form.set('service', service);
      res = await this.#o.transport.send({ url: u.href, method: 'POST', body: form.toString(), headers: { 'content-type': 'application/x-www-form-urlencoded' }, timeoutMs: this.#o.timeoutMs, maxBytes: 1024 * 1024, insecureTls: this.#o.insecure, signal: this.#o.signal, step: 'auth', result });
    } else {
      if (service) u.searchParams.set('service', service);
      u.searchParams.set('scope', scope);
      const headers: Record<string, string> = {};
      if (c?.username !== undefined) headers.authorization = `Basic ${Buffer.from(`${c.username}:${c.password ?? ''}`).toString('base64')}`;
      // Same TLS policy as the registry itself (Istio uses one transport for the whole pull).
      res = await this.#o.transport.send({ url: u.href, headers, timeoutMs: this.#o.timeoutMs, maxBytes: 1024 * 1024, insecureTls: this.#o.insecure, signal: this.#o.signal, step: 'auth', result });
    }
    if (res.status === 401 || res.status === 403) {
      throw this.#err(FetchErrorCode.Unauthorized, `token endpoint ${u.origin}${u.pathname} refused ${c ? 'the pull secret credentials' : 'anonymous access'} for ${scope}: HTTP ${res.status}`, 'auth', result, { status: res.status, url: u.href });
    }
    if (res.status !== 200) throw this.#err(FetchErrorCode.HttpStatus, `token endpoint ${u.origin}${u.pathname} answered HTTP ${res.status}`, 'auth', result, { status: res.status, url: u.href });
    let tok: { token?: string; access_token?: string };
    try {
      tok = JSON.parse(res.body.toString('utf8'));
    } catch (err) {
      throw this.#err(FetchErrorCode.Unauthorized, `token endpoint ${u.origin}${u.pathname} returned no JSON`, 'auth', result, { cause: err });
    }
    const t = tok.token ?? tok.access_token;
    if (!t) throw this.#err(FetchErrorCode.Unauthorized, `token endpoint ${u.origin}${u.pathname} returned no token`, 'auth', result);
    return t;
  }

  async #authHeader(scope: string, step: FetchStep, result: FetchResult): Promise<string | undefined> {
    const ch = this.#challenge;
    if (!ch) return undefined;
    const c = this.#o.credentials;
    if (ch.scheme === 'basic') {
      return c?.username !== undefined ? `Basic ${Buffer.from(`${c.username}:${c.password ?? ''}`).toString('base64')}` : undefined;
    }
    if (ch.scheme === 'bearer') {
      let t = this.#tokens.get(scope);
      if (!t) {
        t = await this.#token(ch, scope, step, result);
        this.#tokens.set(scope, t);
      }
      return `Bearer ${t}`;
    }
    return undefined;
  }

  /** One API call; on 401 re-reads the challenge and retries once with fresh credentials. */
  async call(
    path: string,
    o: { method?: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH'; accept?: string; body?: Uint8Array | string; headers?: Record<string, string>; push?: boolean; maxBytes: number; step: FetchStep; result: FetchResult; absolute?: boolean },
  ): Promise<HttpResponse> {
    await this.ping();
    const scope = `repository:${this.#o.ref.repository}:${o.push ? 'pull,push' : 'pull'}`;
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = { ...o.headers };
      if (o.accept) headers.accept = o.accept;
      const auth = await this.#authHeader(scope, o.step, o.result);
      if (auth) headers.authorization = auth;
      const url = o.absolute ? path : `${this.#base}${path}`;
      const res = await this.#sendWithRetries({ url, method: o.method ?? 'GET', headers, body: o.body, timeoutMs: this.#o.timeoutMs, maxBytes: o.maxBytes, insecureTls: this.#o.insecure, signal: this.#o.signal, step: o.step, result: o.result });
      if (res.status !== 401 || attempt > 0) return res;
      const ch = parseChallenge(headerValue(res.headers, 'www-authenticate'));
      if (!ch) return res;
      // A new challenge (first contact, expired token or wider scope): drop cached tokens and retry.
      this.#challenge = ch;
      this.#tokens.clear();
      if (ch.scheme === 'basic' && this.#o.credentials?.username === undefined) return res;
    }
  }

  /** Transient failures (transport, 408/429/5xx gateways) are retried; uploads are not (bodies may be streams elsewhere). */
  async #sendWithRetries(req: Parameters<Transport['send']>[0]): Promise<HttpResponse> {
    const attempts = req.method === 'GET' || req.method === 'HEAD' ? Math.max(1, this.#o.attempts ?? 3) : 1;
    let wait = this.#o.retryDelayMs ?? 1000;
    for (let i = 1; ; i++) {
      let res: HttpResponse | undefined;
      let err: unknown;
      try {
        res = await this.#o.transport.send(req);
      } catch (e) {
        err = e;
      }
      const transient = res ? RETRY_STATUS.has(res.status) : FetchError.isFetchError(err) && (err.code === FetchErrorCode.Transport || err.code === FetchErrorCode.Timeout);
      if (!transient || i >= attempts || this.#o.signal?.aborted) {
        if (res) return res;
        throw err;
      }
      this.#o.log.info({ url: this.#o.url, step: req.step, hop: req.url, attempt: i, status: res?.status, reason: err ? describeError(err) : undefined, retryInMs: wait }, 'registry request failed; retrying');
      await abortableDelay(wait, this.#o.signal);
      wait *= 3;
    }
  }

  #statusError(res: HttpResponse, what: string, step: FetchStep, result: FetchResult): FetchError {
    const detail = res.body.length > 0 && res.body.length < 2048 ? `: ${res.body.toString('utf8').trim()}` : '';
    if (res.status === 401 || res.status === 403) {
      const who = this.#o.credentials ? 'with the pull secret credentials' : 'anonymously';
      return this.#err(FetchErrorCode.Unauthorized, `${what}: access denied ${who} (HTTP ${res.status})${detail}`, step, result, { status: res.status, url: res.url });
    }
    if (res.status === 404) return this.#err(FetchErrorCode.NotFound, `${what}: not found (HTTP 404)${detail}`, step, result, { status: 404, url: res.url });
    return this.#err(FetchErrorCode.HttpStatus, `${what}: HTTP ${res.status}${detail}`, step, result, { status: res.status, url: res.url });
  }

  async getManifest(reference: string): Promise<{ raw: Buffer; manifest: ImageManifest; mediaType: string; digest: string }> {
    const repo = this.#o.ref.repository;
    const res = await this.call(`/v2/${repo}/manifests/${reference}`, { accept: MANIFEST_ACCEPT, maxBytes: MAX_MANIFEST_BYTES, step: 'manifest', result: 'manifest_failure' });
    if (res.status !== 200) throw this.#statusError(res, `manifest ${this.#o.ref.registry}/${repo}:${reference}`, 'manifest', 'manifest_failure');
    const digest = sha256Hex(res.body);
    if (reference.startsWith('sha256:') && reference !== `sha256:${digest}`) {
      throw this.#err(FetchErrorCode.InvalidManifest, `manifest ${reference} from ${this.#o.ref.registry}/${repo} has digest sha256:${digest}`, 'manifest', 'manifest_failure');
    }
    let manifest: ImageManifest;
    try {
      manifest = JSON.parse(res.body.toString('utf8'));
    } catch (err) {
      throw this.#err(FetchErrorCode.InvalidManifest, `manifest ${this.#o.ref.registry}/${repo}:${reference} is not JSON`, 'manifest', 'manifest_failure', { cause: err });
    }
    const ct = (headerValue(res.headers, 'content-type') ?? '').split(';')[0]!.trim();
    let mediaType = manifest.mediaType ?? ct;
    if (!manifest.mediaType && Array.isArray(manifest.manifests)) mediaType = MediaType.OciIndex;
    else if (!manifest.mediaType && Array.isArray(manifest.layers) && (!ct || ct === 'application/json')) mediaType = MediaType.OciManifest;
    return { raw: res.body, manifest, mediaType, digest };
  }

  /** Manifest by tag or digest; an index resolves to its linux/amd64 image. */
  async resolve(): Promise<ResolvedImage> {
    const ref = this.#o.ref;
    const first = await this.getManifest(ref.digest ?? ref.tag ?? 'latest');
    if (first.mediaType !== MediaType.OciIndex && first.mediaType !== MediaType.DockerManifestList) {
      return { digest: first.digest, manifest: first.manifest, mediaType: first.mediaType };
    }
    const children = (first.manifest.manifests ?? []).filter((d) => d.mediaType === MediaType.OciManifest || d.mediaType === MediaType.DockerManifest || !d.mediaType);
    let pick = children.find((d) => d.platform?.os === 'linux' && d.platform.architecture === 'amd64');
    // Wasm images rarely carry a platform; a single-child index is unambiguous.
    if (!pick && children.length === 1) pick = children[0];
    if (!pick) {
      const plats = children.map((d) => `${d.platform?.os ?? '?'}/${d.platform?.architecture ?? '?'}`).join(', ');
      throw this.#err(FetchErrorCode.InvalidManifest, `image index ${ref.registry}/${ref.repository} has no linux/amd64 image (has: ${plats || 'none'})`, 'manifest', 'manifest_failure');
    }
    const child = await this.getManifest(pick.digest);
    return { digest: child.digest, indexDigest: first.digest, manifest: child.manifest, mediaType: child.mediaType };
  }

  /** Downloads a blob (following redirects to blob storage) and verifies it against its digest. */
  async getBlob(d: Descriptor): Promise<Uint8Array> {
    const repo = this.#o.ref.repository;
    if (!/^sha256:[a-f0-9]{64}$/.test(d.digest)) {
      throw this.#err(FetchErrorCode.InvalidManifest, `layer digest ${d.digest} is not a sha256 digest`, 'blob', 'download_failure');
    }
    if (typeof d.size === 'number' && d.size > this.#o.maxBytes) {
      throw this.#err(FetchErrorCode.TooLarge, `layer ${d.digest} of ${this.#o.url} is ${d.size} bytes, over the ${this.#o.maxBytes}-byte limit`, 'blob', 'download_failure');
    }
    const res = await this.call(`/v2/${repo}/blobs/${d.digest}`, { maxBytes: this.#o.maxBytes, step: 'blob', result: 'download_failure' });
    if (res.status !== 200) throw this.#statusError(res, `blob ${d.digest}`, 'blob', 'download_failure');
    const got = `sha256:${sha256Hex(res.body)}`;
    if (got !== d.digest) {
      throw this.#err(FetchErrorCode.BlobDigestMismatch, `blob ${d.digest} of ${this.#o.url} has digest ${got}`, 'blob', 'download_failure');
    }
    return res.body;
  }

  // ------------------------------------------------------------------ push

  async blobExists(digest: string): Promise<boolean> {
    const res = await this.call(`/v2/${this.#o.ref.repository}/blobs/${digest}`, { method: 'HEAD', push: true, maxBytes: 0, step: 'push', result: 'fetch_failure' });
    return res.status === 200;
  }

  async uploadBlob(digest: string, bytes: Uint8Array): Promise<void> {
    const repo = this.#o.ref.repository;
    const start = await this.call(`/v2/${repo}/blobs/uploads/`, { method: 'POST', body: '', push: true, maxBytes: 64 * 1024, step: 'push', result: 'fetch_failure', headers: { 'content-length': '0' } });
    if (start.status !== 202) throw this.#statusError(start, `starting the upload of ${digest} to ${this.#o.ref.registry}/${repo}`, 'push', 'fetch_failure');
    const loc = headerValue(start.headers, 'location');
    if (!loc) throw this.#err(FetchErrorCode.Push, `registry ${this.#o.ref.registry} gave no upload location`, 'push', 'fetch_failure');
    const u = new URL(loc, `${this.#base}/`);
    u.searchParams.set('digest', digest);
    const put = await this.call(u.href, { method: 'PUT', absolute: true, body: bytes, push: true, maxBytes: 64 * 1024, step: 'push', result: 'fetch_failure', headers: { 'content-type': 'application/octet-stream' } });
    if (put.status !== 201 && put.status !== 204) throw this.#statusError(put, `uploading ${digest} to ${this.#o.ref.registry}/${repo}`, 'push', 'fetch_failure');
  }

  async putManifest(reference: string, mediaType: string, bytes: Uint8Array): Promise<string | undefined> {
    const repo = this.#o.ref.repository;
    const res = await this.call(`/v2/${repo}/manifests/${reference}`, { method: 'PUT', body: bytes, push: true, maxBytes: 64 * 1024, step: 'push', result: 'fetch_failure', headers: { 'content-type': mediaType } });
    if (res.status !== 201 && res.status !== 200) throw this.#statusError(res, `putting manifest ${reference} to ${this.#o.ref.registry}/${repo}`, 'push', 'fetch_failure');
    return headerValue(res.headers, 'docker-content-digest');
  }
}
