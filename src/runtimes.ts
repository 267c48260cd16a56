/**
 * Loads the extension runtimes (Wasm, Lua) so they register themselves, on first use: a worker
 * that runs no Lua never loads a Lua engine (each costs megabytes per worker thread). A runtime
 * that fails to load is reported once, and resources of its kind are then rejected loudly.
 */
import { logger } from './observability/log.ts';

const PATHS = { wasm: './wasm/runtime.ts', lua: './lua/runtime.ts' } as const;
const loading = new Map<keyof typeof PATHS, Promise<void>>();

/** Loads the runtime for one extension kind (once per thread). Never rejects. */
export function loadRuntime(kind: keyof typeof PATHS): Promise<void> {
  let p = loading.get(kind);
  if (!p) {
    p = import(PATHS[kind]).then(
      () => undefined,
      (err: Error) => {
        logger('main').warn({ err: err.message, kind }, `the ${kind} runtime is unavailable; ${kind} extensions will be rejected`);
      },
    );
    loading.set(kind, p);
  }
  return p;
}

let loaded: Promise<void> | undefined;

/** Loads every runtime now (for callers that want start-up errors early). */
export function loadRuntimes(): Promise<void> {
  loaded ??= (async () => {
    const log = logger('main');
    for (const [kind, path] of [
      ['wasm', './wasm/runtime.ts'],
      ['lua', './lua/runtime.ts'],
    ] as const) {
      try {
        await import(path);
      } catch (err) {
        log.warn({ err: (err as Error).message, kind }, `the ${kind} runtime is unavailable; ${kind} extensions will be rejected`);
      }
    }
  })();
  return loaded;
}
