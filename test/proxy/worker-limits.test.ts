/**
 * Data-plane workers run with a capped young generation (src/proxy/worker-limits.ts): under
 * sustained allocation V8 would otherwise grow each worker's new space to 128 MiB of semi-spaces.
 * The churn below (short-lived objects with some survivors, like requests in flight) grows a
 * worker with V8's defaults past the cap, so the capped run shows the limit is what holds it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { WORKER_YOUNG_GENERATION_MB, workerResourceLimits } from '../../src/proxy/worker-limits.ts';

const CHURN = `
  const v8 = require('node:v8');
  let live = [];
  for (let i = 0; i < 3e6; i++) { live.push({ n: i, s: 'k' + i }); if (live.length > 200000) live = []; }
  const ns = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
  require('node:worker_threads').parentPort.postMessage(ns.space_size / 2 ** 20);
`;

async function newSpaceAfterChurn(resourceLimits?: { maxYoungGenerationSizeMb: number }): Promise<number> {
  const w = new Worker(CHURN, { eval: true, resourceLimits });
  try {
    return await new Promise<number>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
  } finally {
    await w.terminate();
  }
}

test('a worker with the data plane limits keeps its new space within the cap under churn', async () => {
  // V8 sizes the young generation as 3 semi-spaces; new_space reports the two semi-spaces.
  const capMiB = (WORKER_YOUNG_GENERATION_MB / 3) * 2;
  const capped = await newSpaceAfterChurn(workerResourceLimits());
  const uncapped = await newSpaceAfterChurn();
  assert.ok(capped <= capMiB, `new space ${capped} MiB with the limits, cap ${capMiB} MiB`);
  assert.ok(uncapped > capMiB, `the churn must grow an unlimited worker past the cap to prove anything (it reached ${uncapped} MiB)`);
});
