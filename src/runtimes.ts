/**
 * Loads the extension runtimes (Wasm, Lua) so they register themselves. A runtime that fails to
 * load is reported once, and resources of its kind are then rejected loudly by the data plane.
 */
import { logger } from './observability/log.ts';

let loaded: Promise<void> | undefined;

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
