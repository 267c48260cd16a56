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
  port.postMessage({ type: 'started', ports: dp.ports() });
  port.on('message', async (msg: WorkerRequest) => {
    try {
      let value: unknown;
      switch (msg.type) {
        case 'apply':
          value = await dp.applyExtensions(msg.set);
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
