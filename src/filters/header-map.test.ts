/** Unit tests of HeaderMap's case-insensitive lookups and replacement rules. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HeaderMap } from './header-map.ts';

test('get/has/set/remove: names in any case, stored lower-cased', () => {
  const h = HeaderMap.fromPairs([['Content-Type', 'a'], ['x-multi', '1'], ['X-Multi', '2']]);
  assert.deepEqual(h.names, ['content-type', 'x-multi', 'x-multi']);
  assert.equal(h.get('content-type'), 'a');
  assert.equal(h.get('CONTENT-TYPE'), 'a');
  assert.equal(h.get('Content-Type'), 'a');
  assert.equal(h.get('content-typ'), undefined);
  assert.equal(h.has('X-MULTI'), true);
  assert.equal(h.has('absent'), false);
  assert.equal(h.has('Absent'), false);
  h.set('X-Multi', '3');
  assert.deepEqual([h.names, h.values], [['content-type', 'x-multi'], ['a', '3']]);
  h.set('X-New', 'n');
  h.set('x-new2', 'm');
  assert.deepEqual([h.names, h.values], [['content-type', 'x-multi', 'x-new', 'x-new2'], ['a', '3', 'n', 'm']]);
  h.set(':Status', '200');
  assert.deepEqual(h.names, [':status', 'content-type', 'x-multi', 'x-new', 'x-new2']);
  assert.equal(h.get(':STATUS'), '200');
  assert.equal(h.remove('X-NEW'), 1);
  assert.equal(h.get('x-new'), undefined);
});
