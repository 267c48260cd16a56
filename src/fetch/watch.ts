/**
 * Background recovery (beyond Istio, issue 4 item 5): after a failed fetch the extension runs its
 * failStrategy fallback, and this keeps retrying with exponential backoff (jittered, capped) until
 * the module is available, then hands it over once. The fetcher's cache and coalescing apply, so
 * many extensions waiting on one registry do not multiply the load.
 */
import type { WasmConfig } from '../config/types.ts';
import { logger } from '../observability/log.ts';
import { describeError } from './errors.ts';
import type { FetchContext, FetchedModule, ModuleFetcher } from './fetcher.ts';

export interface WatchOptions {
  /** Called once, with the module, when a retry succeeds. Errors it throws are logged. */
  onAvailable(module: FetchedModule): void | Promise<void>;
  /** Called after each failed retry (for status pages and tests). */
  onRetryFailed?(err: unknown, attempt: number, nextDelayMs: number): void;
  /** Delay before the first retry (default 1 s). */
  initialDelayMs?: number;
  /** Backoff cap (default 5 min). */
  maxDelayMs?: number;
  /** Backoff multiplier (default 2). */
  factor?: number;
  /** ± fraction of random jitter (default 0.2) so many proxies do not retry in lockstep. */
  jitter?: number;
  /** Stops the watch when aborted. */
  signal?: AbortSignal;
}

export interface ModuleWatch {
  /** Stops retrying (idempotent). Call when the extension is released or its config changes. */
  stop(): void;
  /** Resolves with the module once available, or undefined if stopped first. Never rejects. */
  readonly done: Promise<FetchedModule | undefined>;
  /** Retries made so far. */
  readonly attempts: number;
}

export function watchUntilAvailable(fetcher: ModuleFetcher, wasm: WasmConfig, ctx: FetchContext, opts: WatchOptions): ModuleWatch {
  const log = logger('fetch');
  const initial = opts.initialDelayMs ?? 1000;
  const max = opts.maxDelayMs ?? 300_000;
  const factor = opts.factor ?? 2;
  const jitter = opts.jitter ?? 0.2;
  const stopper = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, stopper.signal]) : stopper.signal;
  let attempts = 0;
  let timer: NodeJS.Timeout | undefined;
  let resolveDone!: (m: FetchedModule | undefined) => void;
  const done = new Promise<FetchedModule | undefined>((r) => (resolveDone = r));

  const jittered = (d: number): number => Math.max(1, Math.round(d * (1 + (Math.random() * 2 - 1) * jitter)));

  const schedule = (delay: number): void => {
    if (signal.aborted) return;
    timer = setTimeout(() => void attempt(delay), jittered(delay));
  };

  const attempt = async (delay: number): Promise<void> => {
    timer = undefined;
    if (signal.aborted) return;
    attempts++;
    let m: FetchedModule;
    try {
      m = await fetcher.fetch(wasm, { ...ctx, signal });
    } catch (err) {
      if (signal.aborted) return;
      const next = Math.min(max, delay * factor);
      log.info({ url: wasm.url, step: 'retry', attempt: attempts, nextDelayMs: next, reason: describeError(err) }, 'module still unavailable; will retry');
      opts.onRetryFailed?.(err, attempts, next);
      schedule(next);
      return;
    }
    if (signal.aborted) return;
    log.info({ url: wasm.url, step: 'retry', attempt: attempts, sha256: m.sha256, source: m.source }, 'module became available');
    try {
      await opts.onAvailable(m);
    } catch (err) {
      log.error({ url: wasm.url, step: 'retry', reason: describeError(err) }, 'onAvailable failed');
    }
    resolveDone(m);
  };

  const stop = (): void => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    stopper.abort();
    resolveDone(undefined);
  };
  signal.addEventListener('abort', stop, { once: true });
  schedule(initial);
  return {
    stop,
    done,
    get attempts() {
      return attempts;
    },
  };
}
