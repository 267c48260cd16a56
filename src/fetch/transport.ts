/**
 * The one HTTP path every fetch step uses (registry API, token endpoint, blob storage, plain HTTP
 * modules): undici Agents whose connector runs the SSRF guard at dial time, manual redirects (so
 * the Authorization header is dropped when a hop leaves the origin, as registries redirecting blobs
 * to object storage require), a per-request deadline and a hard body-size cap.
 */
import net from 'node:net';
import { Agent, buildConnector, request } from 'undici';
import type { Dispatcher } from 'undici';
import { FetchError, FetchErrorCode, describeError } from './errors.ts';
import type { FetchResult, FetchStep } from './errors.ts';
import { blockedErr } from './ssrf.ts';
import type { SsrfGuard } from './ssrf.ts';

export interface HttpRequest {
  url: string;
  method?: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH';
  headers?: Record<string, string>;
  body?: Uint8Array | string;
  /** Deadline for the whole exchange including redirects and the body (ms). */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Body bytes accepted; more fails with TooLarge. */
  maxBytes: number;
  /** Skip TLS verification (only for insecure-registries hosts). */
  insecureTls?: boolean;
  /** Follow 3xx (default true). */
  followRedirects?: boolean;
  /** For error attribution. */
  step: FetchStep;
  result?: FetchResult;
}

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** Final URL after redirects. */
  url: string;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 10;

export function headerValue(h: HttpResponse['headers'], name: string): string | undefined {
  const v = h[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

export class Transport {
  readonly guard: SsrfGuard;
  readonly #secure: Agent;
  readonly #insecure: Agent;

  constructor(guard: SsrfGuard, connectTimeoutMs = 10_000) {
    this.guard = guard;
    this.#secure = new Agent({ connect: this.#connector(false, connectTimeoutMs), allowH2: false });
    this.#insecure = new Agent({ connect: this.#connector(true, connectTimeoutMs), allowH2: false });
  }

  #connector(insecure: boolean, timeout: number): buildConnector.connector {
    const base = buildConnector({ lookup: this.guard.lookup, rejectUnauthorized: !insecure, timeout });
    return (opts, cb) => {
      // net.connect skips `lookup` for IP literals, so literals are checked here.
      const host = opts.hostname.replace(/^\[|\]$/g, '');
      if (net.isIP(host)) {
        const why = this.guard.checkAddress(host);
        if (why) {
          cb(blockedErr(host, why), null);
          return;
        }
      }
      base(opts, cb);
    };
  }

  dispatcher(insecureTls: boolean): Dispatcher {
    return insecureTls ? this.#insecure : this.#secure;
  }

  async send(req: HttpRequest): Promise<HttpResponse> {
    const deadline = AbortSignal.timeout(req.timeoutMs);
    const signal = req.signal ? AbortSignal.any([deadline, req.signal]) : deadline;
    let url = req.url;
    let method = req.method ?? 'GET';
    let body = req.body;
    const headers: Record<string, string> = { 'user-agent': 'meshext-fetch/0.1', ...req.headers };
    for (let hop = 0; ; hop++) {
      let u: URL;
      try {
        u = new URL(url);
      } catch {
        throw new FetchError(FetchErrorCode.InvalidUrl, `invalid URL ${url}`, { url, step: req.step, result: req.result });
      }
      if (u.protocol !== 'http:' && u.protocol !== 'https:') {
        throw new FetchError(FetchErrorCode.Blocked, `refusing to follow ${url}: only http and https are fetched`, { url, step: req.step, result: req.result });
      }
      let res: Dispatcher.ResponseData;
      try {
        res = await request(url, {
          method,
          headers,
          body: body === undefined ? undefined : typeof body === 'string' ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength),
          signal,
          dispatcher: this.dispatcher(req.insecureTls === true),
        });
      } catch (err) {
        throw this.#wrap(err, url, req, deadline);
      }
      const status = res.statusCode;
      const location = headerValue(res.headers, 'location');
      if (req.followRedirects !== false && REDIRECTS.has(status) && location) {
        await res.body.dump().catch(() => {});
        if (hop >= MAX_REDIRECTS) {
          throw new FetchError(FetchErrorCode.Transport, `too many redirects fetching ${req.url}`, { url, step: req.step, result: req.result });
        }
        const next = new URL(location, url);
        // Credentials belong to the origin that asked for them, never to where it redirects.
        if (next.origin !== u.origin) {
          delete headers.authorization;
          delete headers.Authorization;
        }
        if (status === 303 || ((status === 301 || status === 302) && method === 'POST')) {
          method = 'GET';
          body = undefined;
          delete headers['content-type'];
        }
        url = next.href;
        continue;
      }
      let buf: Buffer;
      try {
        buf = method === 'HEAD' ? (await res.body.dump(), Buffer.alloc(0)) : await readLimited(res, req.maxBytes, url, req.step);
      } catch (err) {
        if (FetchError.isFetchError(err)) {
          err.result = req.result ?? err.result;
          throw err;
        }
        throw this.#wrap(err, url, req, deadline);
      }
      return { status, headers: res.headers, body: buf, url };
    }
  }

  #wrap(err: unknown, url: string, req: HttpRequest, deadline: AbortSignal): FetchError {
    if (FetchError.isFetchError(err)) return err;
    if (deadline.aborted) {
      return new FetchError(FetchErrorCode.Timeout, `request to ${url} timed out after ${req.timeoutMs} ms`, { url, step: req.step, result: req.result, cause: err });
    }
    if (req.signal?.aborted) {
      return new FetchError(FetchErrorCode.Transport, `request to ${url} aborted`, { url, step: req.step, result: req.result, cause: err });
    }
    let e: unknown = err;
    for (let i = 0; i < 5 && e; i++) {
      if ((e as { code?: string }).code === 'MESHEXT_SSRF_BLOCKED') {
        return new FetchError(FetchErrorCode.Blocked, (e as Error).message, { url, step: req.step, result: req.result, cause: err });
      }
      e = (e as { cause?: unknown }).cause;
    }
    return new FetchError(FetchErrorCode.Transport, `request to ${url} failed: ${describeError(err)}`, { url, step: req.step, result: req.result, cause: err });
  }

  async close(): Promise<void> {
    await Promise.all([this.#secure.close(), this.#insecure.close()]);
  }
}

async function readLimited(res: Dispatcher.ResponseData, max: number, url: string, step: FetchStep): Promise<Buffer> {
  const len = Number(headerValue(res.headers, 'content-length'));
  if (Number.isFinite(len) && len > max) {
    discard(res);
    throw new FetchError(FetchErrorCode.TooLarge, `response from ${url} is ${len} bytes, over the ${max}-byte limit`, { url, step });
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body) {
    total += (chunk as Buffer).length;
    if (total > max) {
      discard(res);
      throw new FetchError(FetchErrorCode.TooLarge, `response from ${url} exceeds the ${max}-byte limit`, { url, step });
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, total);
}

/** Drops a response body we refuse to read; the abort error undici emits for it is expected. */
function discard(res: Dispatcher.ResponseData): void {
  res.body.on('error', () => {});
  res.body.destroy();
}

/** Waits `ms`, rejecting with the signal's reason if it aborts first (retry backoff of fetches). */
export function abortableDelay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
