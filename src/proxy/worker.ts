/**
 * Worker-thread entry: one DataPlane with its own event loop and extension VMs, driven by
 * messages from the main thread (apply config, stats snapshot, config dump, drain, close).
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { BootstrapConfig } from '../config/types.ts';
import { DataPlane } from './data-plane.ts';
import { sharedState, type SharedStoreHandle } from '../wasm/shared.ts';

export type WorkerRequest =
  | { id: number; type: 'apply'; set: import('../config/types.ts').ExtensionSet }
  | { id: number; type: 'stats' }
  | { id: number; type: 'resetCounters' }
  | { id: number; type: 'configDump' }
  | { id: number; type: 'drain'; timeoutMs: number }
  | { id: number; type: 'close' };

export type WorkerReply = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string };

/**
 * A full GC once the plane started and after each extension set is applied (the main thread gave
 * workers gc(), see proxy.ts). Loading code leaves promoted garbage in old space; without this the
 * first mark-compact comes under traffic at a heap high-water mark it then keeps, about 1 MiB per
 * worker more in workers with an extension (the extension's modules push them over V8's first
 * marking threshold, which a plain worker stays just under). A few ms per worker, rare.
 */
function collect(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

async function main(): Promise<void> {
  const port = parentPort!;
  const { bootstrap, workerId, wasmShared } = workerData as { bootstrap: BootstrapConfig; workerId: number; wasmShared?: SharedStoreHandle };
  // Proxy-Wasm shared data and queues: one store for the process (the main thread made it).
  if (wasmShared) sharedState.attach(wasmShared);
  const dp = new DataPlane(bootstrap, { workerId });
  try {
    await dp.start();
  } catch (err) {
    port.postMessage({ type: 'startFailed', error: (err as Error).message });
    return;
  }
  collect();
  port.postMessage({ type: 'started', ports: dp.ports() });
  port.on('message', async (msg: WorkerRequest) => {
    try {
      let value: unknown;
      switch (msg.type) {
        case 'apply':
          value = await dp.applyExtensions(msg.set);
          collect();
          break;
        case 'stats':
          value = dp.stats.snapshot();
          break;
        case 'resetCounters':
          dp.stats.resetCounters();
          value = true;
          break;
        case 'configDump':
          value = dp.configDump();
          break;
        case 'drain':
          await dp.drain(msg.timeoutMs);
          value = true;
          break;
        case 'close':
          await dp.close();
          value = true;
          break;
      }
      port.postMessage({ id: msg.id, ok: true, value } satisfies WorkerReply);
      if (msg.type === 'close') port.close();
    } catch (err) {
      port.postMessage({ id: msg.id, ok: false, error: (err as Error).stack ?? String(err) } satisfies WorkerReply);
    }
  });
}

void main();
