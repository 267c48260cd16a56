/** StreamInfo's clocks: the wall-clock start is derived from the monotonic start. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StreamInfo } from './stream-info.ts';

test('startTime is the wall clock at the start (whole ms, within the clock granularity)', async () => {
  for (let i = 0; i < 50; i++) {
    const before = Date.now();
    const si = new StreamInfo();
    const after = Date.now();
    assert.ok(Number.isInteger(si.startTime));
    assert.ok(si.startTime >= before - 1 && si.startTime <= after, `${before} <= ${si.startTime} <= ${after}`);
    if (i % 10 === 0) await new Promise((r) => setTimeout(r, 30));
  }
});
