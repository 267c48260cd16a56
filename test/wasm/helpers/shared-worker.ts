/**
 * Worker body for shared-data.test.ts: attaches to a store made by the test's main thread and
 * hammers it (CAS-retry increments, fresh keys that force index/heap growth, enqueues, receiving).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SharedState, type SharedStoreHandle } from '../../../src/wasm/shared.ts';

interface Job {
  handle: SharedStoreHandle;
  mode: 'cas' | 'enqueue' | 'receive';
  id: number;
  n: number;
  token?: number;
  go?: SharedArrayBuffer;
}

const job = workerData as Job;
const s = new SharedState(job.handle);
const u32 = (v: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
};

if (job.mode === 'cas') {
  // Start line: every thread blocks here until the parent releases them all at once, so the
  // increments really overlap instead of running one worker after another.
  const go = new Int32Array(job.go!);
  parentPort!.postMessage({ ready: true });
  Atomics.wait(go, 0, 0);
  let retries = 0;
  for (let i = 0; i < job.n; i++) {
    for (;;) {
      const e = s.get('vm', 'counter')!;
      const v = new DataView(e.value.buffer).getUint32(0, true);
      if (s.set('vm', 'counter', u32(v + 1), e.cas) === 0) break;
      retries++;
    }
    // Fresh keys from every thread at once: the index rehashes and the heap grows under load.
    s.set('vm', `w${job.id}-${i}`, new Uint8Array(8 + (i % 200)).fill(job.id), 0);
  }
  parentPort!.postMessage({ retries });
} else if (job.mode === 'enqueue') {
  for (let i = 0; i < job.n; i++) s.enqueue(job.token!, u32(job.id * 1_000_000 + i));
  parentPort!.postMessage({ done: true });
} else {
  // Registers the queue (becoming its receiver) and drains on every notification.
  const got: number[] = [];
  const token = s.registerQueue('vm', 'jobs', {
    notify: (t) =>
      setImmediate(() => {
        for (let v = s.dequeue(t); v; v = s.dequeue(t)) got.push(new DataView(v.buffer).getUint32(0, true));
        if (got.length >= job.n) parentPort!.postMessage({ got });
      }),
  });
  parentPort!.postMessage({ token });
  // Stay alive until the parent has what it needs (the channel alone does not hold the loop).
  const keep = setInterval(() => {}, 1000);
  parentPort!.on('message', () => {
    clearInterval(keep);
    s.close();
    parentPort!.close();
  });
}
