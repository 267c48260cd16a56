import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DeadlineList, Deadlines, type DeadlineEntry } from './deadlines.ts';

function entry(name: string, fired: string[]): DeadlineEntry {
  return { dlPrev: undefined, dlNext: undefined, dlAt: 0, dlList: undefined, onDeadline: () => fired.push(name) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('entries fire once their duration has passed, removed ones never', async () => {
  const fired: string[] = [];
  const list = new DeadlineList(30);
  const a = entry('a', fired);
  const b = entry('b', fired);
  const c = entry('c', fired);
  list.add(a, performance.now());
  list.add(b, performance.now());
  list.add(c, performance.now());
  list.remove(b);
  assert.equal(list.size, 2);
  assert.equal(b.dlList, undefined);
  await sleep(120);
  assert.deepEqual(fired, ['a', 'c']);
  assert.equal(list.size, 0);
});

test('the timer re-arms: for a later entry behind the one it fired, and after the list emptied', async () => {
  const fired: string[] = [];
  const list = new DeadlineList(25);
  list.add(entry('first', fired), performance.now());
  await sleep(10);
  list.add(entry('second', fired), performance.now());
  await sleep(100);
  assert.deepEqual(fired, ['first', 'second']);
  // Empty now, with no timer armed; a new entry arms one again.
  list.add(entry('third', fired), performance.now());
  await sleep(100);
  assert.deepEqual(fired, ['first', 'second', 'third']);
});

test('removing from the middle, head and tail keeps the list consistent (10,000 entries)', async () => {
  const fired: string[] = [];
  const list = new DeadlineList(20);
  const es = Array.from({ length: 10_000 }, (_, i) => entry(String(i), fired));
  const now = performance.now();
  for (const e of es) list.add(e, now);
  for (let i = 0; i < es.length; i++) if (i % 3 !== 0) list.remove(es[i]!);
  list.remove(es[0]!);
  assert.equal(list.size, es.filter((_, i) => i % 3 === 0).length - 1);
  await sleep(100);
  assert.equal(fired.length, 3333);
  assert.equal(fired[0], '3');
  assert.equal(list.size, 0);
});

test('an entry added again moves to its new deadline; Deadlines keeps one list per duration', async () => {
  const fired: string[] = [];
  const d = new Deadlines();
  assert.equal(d.list(50), d.list(50));
  assert.notEqual(d.list(50), d.list(10));
  const e = entry('moved', fired);
  d.list(10).add(e, performance.now());
  d.list(50).add(e, performance.now());
  assert.equal(d.list(10).size, 0);
  await sleep(30);
  assert.deepEqual(fired, []);
  await sleep(80);
  assert.deepEqual(fired, ['moved']);
  d.clear();
});
