/**
 * Process-wide Proxy-Wasm shared data and queues (src/wasm/shared.ts): the store itself under
 * several worker_threads, its limits, and two plugin VMs in two proxy workers sharing a counter and
 * a queue through startProxy({ concurrency: 2 }).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Agent, request } from 'undici';
import { loadExtensionObjects } from '../../src/config/extensions.ts';
import { startProxy } from '../../src/proxy/proxy.ts';
import { Status } from '../../src/wasm/abi.ts';
import { SharedState, sharedState } from '../../src/wasm/shared.ts';
import { bootstrap, cluster, routeAll } from '../helpers/bootstrap.ts';
import { echoHandler, startHttp1 } from '../helpers/upstream.ts';
import { buildWat } from './helpers/build.ts';
import { watPlugin } from './helpers/wat.ts';

const u32 = (v: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
};
const readU32 = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0, true);
const text = (s: string) => new TextEncoder().encode(s);

function runWorker<T>(workerData: unknown, onFirst?: (msg: T, w: Worker) => void): { worker: Worker; done: Promise<T> } {
  const worker = new Worker(new URL('./helpers/shared-worker.ts', import.meta.url), { workerData });
  let first = true;
  const done = new Promise<T>((resolve, reject) => {
    worker.on('message', (m: T) => {
      if (first && onFirst) {
        first = false;
        onFirst(m, worker);
        return;
      }
      resolve(m);
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`worker exited (${code}) before answering`)));
  });
  return { worker, done };
}

test('get/set with CAS as Envoy: NOT_FOUND, unconditional cas 0, mismatch, cas never reused', () => {
  const s = new SharedState();
  assert.equal(s.get('vm', 'k'), undefined);
  assert.equal(s.set('vm', 'k', text('one'), 12345), Status.Ok, 'absent key: created whatever the cas');
  const a = s.get('vm', 'k')!;
  assert.deepEqual(a.value, text('one'));
  assert.notEqual(a.cas, 0);
  assert.equal(s.set('vm', 'k', text('two'), a.cas + 1), Status.CasMismatch);
  assert.equal(s.set('vm', 'k', text('two'), a.cas), Status.Ok);
  assert.equal(s.set('vm', 'k', text('three'), a.cas), Status.CasMismatch, 'stale cas');
  const b = s.get('vm', 'k')!;
  assert.deepEqual(b.value, text('two'));
  assert.ok(b.cas > a.cas);
  assert.equal(s.set('vm', 'k', text('x'), 0), Status.Ok, 'cas 0 = unconditional');
  assert.equal(s.set('vm', 'k', new Uint8Array(0), 0), Status.Ok, 'empty value (Rust remove_shared_data) is stored');
  assert.equal(s.get('vm', 'k')!.value.length, 0);
  // Non-ASCII keys round-trip and stay distinct from their neighbours.
  assert.equal(s.set('vm', 'clé-ü', text('u'), 0), Status.Ok);
  assert.deepEqual(s.get('vm', 'clé-ü')!.value, text('u'));
  assert.equal(s.get('vm', 'cle-u'), undefined);
  // The returned value is a private copy, not a view of shared memory.
  const e = s.get('vm', 'clé-ü')!;
  assert.ok(!(e.value.buffer instanceof SharedArrayBuffer));
});

test('vm_id partitions keys and queues; data keys and queue names do not collide', () => {
  const s = new SharedState();
  s.set('a', 'k', text('A'), 0);
  s.set('b', 'k', text('B'), 0);
  s.set('', 'k', text('-'), 0);
  // (vm_id, key) is not a plain concatenation.
  s.set('ab', 'c', text('abc1'), 0);
  s.set('a', 'bc', text('abc2'), 0);
  assert.deepEqual(s.get('a', 'k')!.value, text('A'));
  assert.deepEqual(s.get('b', 'k')!.value, text('B'));
  assert.deepEqual(s.get('', 'k')!.value, text('-'));
  assert.deepEqual(s.get('ab', 'c')!.value, text('abc1'));
  assert.deepEqual(s.get('a', 'bc')!.value, text('abc2'));
  assert.equal(s.get('c', 'k'), undefined);
  const r = { notify() {} };
  const qa = s.registerQueue('a', 'k', r);
  const qb = s.registerQueue('b', 'k', r);
  assert.ok(qa > 0 && qb > 0 && qa !== qb);
  assert.equal(s.registerQueue('a', 'k', r), qa, 're-register: same token');
  assert.equal(s.resolveQueue('a', 'k'), qa);
  assert.equal(s.resolveQueue('c', 'k'), undefined);
  assert.deepEqual(s.get('a', 'k')!.value, text('A'), 'queue named like a key leaves the key alone');
});

test('large values, values that grow and shrink in place, many keys (index and heap growth)', () => {
  const s = new SharedState();
  const big = new Uint8Array(5 << 20).map((_, i) => (i * 31) & 0xff);
  assert.equal(s.set('vm', 'big', big, 0), Status.Ok);
  assert.deepEqual(s.get('vm', 'big')!.value, big);
  for (const n of [10, 100_000, 3, 1 << 20, 0, 77]) {
    const v = new Uint8Array(n).fill(n & 0xff);
    assert.equal(s.set('vm', 'resized', v, 0), Status.Ok);
    assert.deepEqual(s.get('vm', 'resized')!.value, v);
  }
  const N = 30_000;
  for (let i = 0; i < N; i++) assert.equal(s.set('vm', `key-${i}`, u32(i), 0), Status.Ok);
  for (let i = 0; i < N; i++) assert.equal(readU32(s.get('vm', `key-${i}`)!.value), i);
  const u = s.usage();
  assert.equal(u.entries, N + 2);
  assert.ok(u.slots >= 2 * u.entries, 'load factor kept at or below 1/2');
  assert.deepEqual(s.get('vm', 'big')!.value, big, 'survives rehashing');
});

test('store full: set/enqueue answer INTERNAL_FAILURE, register answers token 0; what is stored stays readable', () => {
  const s = new SharedState({ maxHeapBytes: 256 * 1024, maxEntries: 600, maxQueues: 2 });
  let i = 0;
  for (; i < 10_000; i++) if (s.set('vm', `k${i}`, new Uint8Array(400), 0) !== Status.Ok) break;
  assert.ok(i > 100 && i < 10_000, `heap cap reached after ${i} keys`);
  assert.equal(s.set('vm', `k${i}`, new Uint8Array(400), 0), Status.InternalFailure);
  assert.equal(s.set('vm', 'huge', new Uint8Array(1 << 20), 0), Status.InternalFailure);
  assert.equal(s.get('vm', `k${i}`), undefined);
  assert.equal(s.get('vm', 'k0')!.value.length, 400);
  // Existing keys still update in place, and CAS is still checked first.
  const e = s.get('vm', 'k1')!;
  assert.equal(s.set('vm', 'k1', new Uint8Array(300).fill(7), e.cas + 1), Status.CasMismatch);
  assert.equal(s.set('vm', 'k1', new Uint8Array(300).fill(7), e.cas), Status.Ok);
  // Entry cap (index) reached before the heap cap.
  const t = new SharedState({ maxEntries: 600 });
  let j = 0;
  for (; j < 5000; j++) if (t.set('vm', `k${j}`, u32(j), 0) !== Status.Ok) break;
  assert.ok(j >= 600 && j < 5000, `index cap reached after ${j} keys`);
  // Queue cap.
  const r = { notify() {} };
  const q = new SharedState({ maxQueues: 2 });
  assert.ok(q.registerQueue('vm', 'a', r) > 0);
  assert.ok(q.registerQueue('vm', 'b', r) > 0);
  assert.equal(q.registerQueue('vm', 'c', r), 0);
  assert.equal(q.registerQueue('vm', 'a', r), 1, 'existing queues still open');
  // Queue items when the heap is full.
  const full = new SharedState({ maxHeapBytes: 128 * 1024 });
  const tok = full.registerQueue('vm', 'q', r);
  let st: number = Status.Ok;
  let n = 0;
  for (; n < 10_000 && st === Status.Ok; n++) st = full.enqueue(tok, new Uint8Array(400).fill(n & 0xff));
  assert.equal(st, Status.InternalFailure);
  assert.ok(n > 100);
  assert.deepEqual(full.dequeue(tok), new Uint8Array(400).fill(0), 'items enqueued before the cap are intact');
  assert.equal(full.enqueue(tok, new Uint8Array(400)), Status.Ok, 'a dequeued block is reused');
});

test('queues in one thread: FIFO, EMPTY, NOT_FOUND, one notification per enqueue, latest registrant, forgotten receiver', async () => {
  const s = new SharedState();
  const seen: string[] = [];
  const r1 = { notify: (t: number) => seen.push(`r1:${t}`) };
  const r2 = { notify: (t: number) => seen.push(`r2:${t}`) };
  const t = s.registerQueue('vm', 'q', r1);
  assert.equal(s.dequeue(t), null);
  assert.equal(s.dequeue(t + 100), undefined);
  assert.equal(s.dequeue(0), undefined);
  assert.equal(s.enqueue(t + 100, text('x')), Status.NotFound);
  assert.equal(s.enqueue(-1 >>> 0, text('x')), Status.NotFound);
  for (const v of ['a', 'b', 'c']) assert.equal(s.enqueue(t, text(v)), Status.Ok);
  assert.deepEqual(seen, [`r1:${t}`, `r1:${t}`, `r1:${t}`]);
  assert.equal(s.registerQueue('vm', 'q', r2), t);
  s.enqueue(t, text('d'));
  assert.equal(seen.at(-1), `r2:${t}`);
  s.forgetReceiver(r2);
  s.enqueue(t, text(''));
  assert.equal(seen.length, 4, 'no receiver: nobody is notified, the item waits');
  const out: string[] = [];
  for (let v = s.dequeue(t); v; v = s.dequeue(t)) out.push(new TextDecoder().decode(v));
  assert.deepEqual(out, ['a', 'b', 'c', 'd', '']);
  assert.equal(s.dequeue(t), null);
});

test('concurrent CAS increments from 4 worker threads on one key add up; fresh keys from all of them survive growth', { timeout: 60_000 }, async () => {
  const s = new SharedState();
  s.set('vm', 'counter', u32(0), 0);
  const W = 4;
  const N = 3000;
  const go = new Int32Array(new SharedArrayBuffer(4));
  let ready = 0;
  const runs = Array.from({ length: W }, (_, id) => runWorker<{ retries: number }>({ handle: s.handle(), mode: 'cas', id, n: N, go: go.buffer }, () => ready++));
  while (ready < W) await new Promise((r) => setTimeout(r, 5));
  Atomics.store(go, 0, 1);
  Atomics.notify(go, 0);
  // The main thread takes part too (Atomics.wait is allowed on Node's main thread).
  let mainRetries = 0;
  for (let i = 0; i < N; i++) {
    for (;;) {
      const e = s.get('vm', 'counter')!;
      if (s.set('vm', 'counter', u32(readU32(e.value) + 1), e.cas) === Status.Ok) break;
      mainRetries++;
      if (i % 16 === 0) await new Promise((r) => setImmediate(r));
    }
    if (i % 64 === 0) await new Promise((r) => setImmediate(r));
  }
  const results = await Promise.all(runs.map((r) => r.done));
  const retries = results.reduce((a, r) => a + r.retries, mainRetries);
  assert.equal(readU32(s.get('vm', 'counter')!.value), (W + 1) * N);
  for (let id = 0; id < W; id++) {
    for (let i = 0; i < N; i += 97) {
      const v = s.get('vm', `w${id}-${i}`)!.value;
      assert.equal(v.length, 8 + (i % 200));
      assert.ok(v.every((x) => x === id));
    }
  }
  assert.equal(s.usage().entries, 1 + W * N);
  console.log(`# ${(W + 1) * N} CAS increments, ${retries} CAS retries`);
});

test('queues across threads: items enqueued by two workers reach the receiver registered in a third, in per-sender order', { timeout: 60_000 }, async () => {
  const s = new SharedState();
  const N = 2000;
  let token = 0;
  const receiver = runWorker<{ got: number[] } & { token: number }>({ handle: s.handle(), mode: 'receive', id: 9, n: 2 * N }, (m) => {
    token = m.token;
  });
  while (token === 0) await new Promise((r) => setTimeout(r, 5));
  assert.equal(s.resolveQueue('vm', 'jobs'), token, 'the worker registered it in the shared store');
  const senders = [1, 2].map((id) => runWorker<{ done: boolean }>({ handle: s.handle(), mode: 'enqueue', id, n: N, token }));
  await Promise.all(senders.map((x) => x.done));
  const { got } = await receiver.done;
  receiver.worker.postMessage('bye');
  assert.equal(got.length, 2 * N);
  for (const id of [1, 2]) {
    const mine = got.filter((v) => Math.floor(v / 1_000_000) === id).map((v) => v % 1_000_000);
    assert.deepEqual(mine, Array.from({ length: N }, (_, i) => i));
  }
  assert.equal(s.dequeue(token), null);
});

test('attach: a second instance on the same handle sees the same data and receives notifications for its receivers', async () => {
  const a = new SharedState();
  const b = new SharedState(a.handle());
  a.set('vm', 'k', text('from a'), 0);
  assert.deepEqual(b.get('vm', 'k')!.value, text('from a'));
  const got: number[] = [];
  const t = b.registerQueue('vm', 'q', { notify: (tok) => got.push(tok) });
  assert.equal(a.resolveQueue('vm', 'q'), t);
  a.enqueue(t, text('1'));
  const deadline = Date.now() + 5000;
  while (got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(got, [t], 'delivered over the broadcast channel to the owning instance');
  assert.deepEqual(a.dequeue(t), text('1'));
  a.close();
  b.close();
});

test('cost per operation (uncontended)', () => {
  const s = new SharedState();
  const v = new Uint8Array(16);
  s.set('vm', 'bench-key', v, 0);
  for (let i = 0; i < 20_000; i++) s.get('vm', 'bench-key');
  const N = 200_000;
  let t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) s.get('vm', 'bench-key');
  const getNs = Number(process.hrtime.bigint() - t0) / N;
  t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) s.set('vm', 'bench-key', v, 0);
  const setNs = Number(process.hrtime.bigint() - t0) / N;
  console.log(`# shared data: get ${getNs.toFixed(0)} ns, set ${setNs.toFixed(0)} ns (16-byte value)`);
  assert.ok(getNs < 20_000 && setNs < 20_000);
});

test('end to end, concurrency 2: a per-request CAS counter equals the request count; queue items from both workers reach the one registered receiver', { timeout: 120_000 }, async () => {
  // Keys live in vm_id '' (what Istio uses) of this process's store, prefixed for this test.
  // They are created before the proxy starts: set with cas 0 on an absent key is unconditional
  // (Envoy semantics), so two workers creating the same key at once could both "win".
  for (const k of ['sd-counter', 'sd-vms', 'sd-recv1', 'sd-recv2', 'sd-sent1', 'sd-sent2']) sharedState.set('', k, u32(0), 0);
  const plugin = await buildWat(
    watPlugin({
      memory: { min: 4 },
      imports: `
  (import "env" "proxy_get_shared_data" (func $sget (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $sset (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_register_shared_queue" (func $qreg (param i32 i32 i32) (result i32)))
  (import "env" "proxy_resolve_shared_queue" (func $qres (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_enqueue_shared_queue" (func $qenq (param i32 i32 i32) (result i32)))
  (import "env" "proxy_dequeue_shared_queue" (func $qdeq (param i32 i32 i32) (result i32)))`,
      extra: `
  (data (i32.const 5000) "sd-counter")
  (data (i32.const 5016) "sd-q")
  (data (i32.const 5032) "sd-vms")
  (data (i32.const 5048) "sd-recv0")
  (data (i32.const 5064) "sd-sent0")
  (global $me (mut i32) (i32.const 0))
  ;; CAS-retry increment of the u32 stored at key (kp, kl); returns the new value.
  (func $incr (param $kp i32) (param $kl i32) (result i32) (local $v i32)
    (loop $retry
      (if (i32.eqz (call $sget (local.get $kp) (local.get $kl) (i32.const 6000) (i32.const 6004) (i32.const 6008)))
        (then (local.set $v (i32.load (i32.load (i32.const 6000)))))
        (else (local.set $v (i32.const 0)) (i32.store (i32.const 6008) (i32.const 0))))
      (i32.store (i32.const 6016) (i32.add (local.get $v) (i32.const 1)))
      (br_if $retry (i32.ne (call $sset (local.get $kp) (local.get $kl) (i32.const 6016) (i32.const 4) (i32.load (i32.const 6008))) (i32.const 0))))
    (i32.add (local.get $v) (i32.const 1)))
  (func (export "proxy_on_queue_ready") (param $root i32) (param $tok i32)
    (loop $drain
      (if (i32.eqz (call $qdeq (local.get $tok) (i32.const 6032) (i32.const 6036)))
        (then (drop (call $incr (i32.const 5048) (i32.const 8))) (br $drain)))))`,
      bodies: {
        // Which VM am I (1 or 2)? Then register the queue: the later of the two is its receiver.
        proxy_on_configure: `
    (global.set $me (call $incr (i32.const 5032) (i32.const 6)))
    (i32.store8 (i32.const 5055) (i32.add (i32.const 48) (global.get $me)))
    (i32.store8 (i32.const 5071) (i32.add (i32.const 48) (global.get $me)))
    (drop (call $qreg (i32.const 5016) (i32.const 4) (i32.const 6012)))
    (i32.const 1)`,
        proxy_on_request_headers: `
    (drop (call $incr (i32.const 5000) (i32.const 10)))
    (drop (call $incr (i32.const 5064) (i32.const 8)))
    (if (i32.eqz (call $qres (i32.const 0) (i32.const 0) (i32.const 5016) (i32.const 4) (i32.const 6024)))
      (then (drop (call $qenq (i32.load (i32.const 6024)) (i32.const 6016) (i32.const 4)))))
    (i32.const 0)`,
      },
    }),
  );
  const dir = await mkdtemp(join(tmpdir(), 'meshext-shared-data-'));
  const upstream = await startHttp1(echoHandler);
  const path = join(dir, 'counter.wasm');
  await writeFile(path, plugin);
  const set = loadExtensionObjects([
    { apiVersion: 'extensions.istio.io/v1alpha1', kind: 'TrafficExtension', metadata: { name: 'shared-counter', namespace: 'default' }, spec: { wasm: { url: pathToFileURL(path).href, pluginConfig: { a: 1 } } } },
  ]);
  assert.deepEqual(set.issues, []);
  const proxy = await startProxy({ bootstrap: bootstrap({ clusters: [cluster('echo', upstream.port)], routeTables: [routeAll('echo')] }), concurrency: 2, extensions: set.set, admin: false });
  const value = (k: string) => readU32(sharedState.get('', k)!.value);
  try {
    assert.equal(value('sd-vms'), 2, 'one VM per worker, both configured');
    const K = 40;
    for (let i = 0; i < K; i++) {
      const agent = new Agent({ connections: 1 });
      const res = await request(`http://127.0.0.1:${proxy.ports.http}/`, { dispatcher: agent });
      await res.body.dump();
      assert.equal(res.statusCode, 200);
      await agent.close();
    }
    assert.equal(value('sd-counter'), K, 'one counter for the process, not one per worker');
    const sent = [value('sd-sent1'), value('sd-sent2')];
    assert.equal(sent[0]! + sent[1]!, K);
    assert.ok(sent[0]! > 0 && sent[1]! > 0, `requests reached both workers (${sent})`);
    const deadline = Date.now() + 10_000;
    while (value('sd-recv1') + value('sd-recv2') < K && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const recv = [value('sd-recv1'), value('sd-recv2')];
    assert.deepEqual(recv.sort((a, b) => a - b), [0, K], `every item went to the latest registrant, from both workers (${recv})`);
    // An item enqueued by this (main) thread reaches the receiver in a worker too: workers listen
    // on their link to the main thread, which bridges the store's BroadcastChannel to it.
    const token = sharedState.resolveQueue('', 'sd-q');
    assert.ok(token !== undefined && token > 0);
    assert.equal(sharedState.enqueue(token, u32(7)), 0);
    const until = Date.now() + 10_000;
    while (value('sd-recv1') + value('sd-recv2') < K + 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    assert.equal(value('sd-recv1') + value('sd-recv2'), K + 1, 'the main thread\'s item was received');
  } finally {
    await proxy.close();
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  }
});
