import assert from 'node:assert/strict';
import { test } from 'node:test';
import { newRequestId } from './request-id.ts';

test('request ids are RFC 4122 version 4 UUIDs, unique across pool refills', () => {
  const seen = new Set<string>();
  const v4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
  // 10,000 ids span several refills of the 1,024-id batch.
  for (let i = 0; i < 10_000; i++) {
    const id = newRequestId();
    assert.match(id, v4);
    seen.add(id);
  }
  assert.equal(seen.size, 10_000);
});

test('every hex digit position varies (the bytes are random, not a counter)', () => {
  const ids = Array.from({ length: 2000 }, () => newRequestId().replaceAll('-', ''));
  for (let pos = 0; pos < 32; pos++) {
    if (pos === 12) continue; // the version nibble is always 4
    const digits = new Set(ids.map((id) => id[pos]));
    assert.ok(digits.size >= (pos === 16 ? 4 : 12), `position ${pos} took only ${digits.size} values`);
  }
});
