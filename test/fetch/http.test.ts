/**
 * http(s):// and file:// fetching against a local server: retries and backoff, statuses not
 * retried, timeouts, unboxing, validity and size checks, sha256, pull policy, cache (coalescing,
 * expiry, restart survival, atomic files), SSRF refusals, and metrics.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync, mkdirSync, utimesSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import https from 'node:https';
import type net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { packTar } from 'modern-tar';
import { createModuleFetcher } from '../../src/fetch/fetcher.ts';
import type { ModuleFetcherOptions } from '../../src/fetch/fetcher.ts';
import { FetchError, FetchErrorCode } from '../../src/fetch/errors.ts';
import { sha256Hex } from '../../src/fetch/wasm-bytes.ts';
import { buildImage } from '../../src/fetch/layouts.ts';
import { dockerConfigJson } from '../../src/fetch/credentials.ts';
import { StatsStore } from '../../src/observability/stats.ts';
import { OPENSSL_BIN, assertBytes, cleanup, selfSignedCert, startHttpServer, tempDir, wasmModule } from './helpers.ts';
import type { TestServer } from './helpers.ts';

const W1 = wasmModule('v1');
const W2 = wasmModule('v2-different');
const ctx = { namespace: 'default', resourceName: 'default.ext', resourceVersion: '1' };

let dir: string;
let srv: TestServer;
/** Per-path behaviour: tests set routes[path] before fetching. */
const routes = new Map<string, (res: import('node:http').ServerResponse, hit: number, req: import('node:http').IncomingMessage) => void>();

function fetcherOpts(extra: Partial<ModuleFetcherOptions> = {}): ModuleFetcherOptions {
  return { cacheDir: join(dir, `cache-${Math.random().toString(36).slice(2)}`), allowLoopback: true, httpInitialBackoffMs: 10, httpTimeoutMs: 2000, fetchTimeoutMs: 10_000, dockerConfigFile: null, stats: new StatsStore(), ...extra };
}

function counter(stats: StatsStore | undefined, name: string, tags: Record<string, string>): number {
  return stats!.snapshot().find((e) => e.name === name && JSON.stringify(e.tags) === JSON.stringify(tags) && e.kind !== 'histogram')?.['value' as never] ?? 0;
}

const isCode = (code: string) => (e: unknown) => FetchError.isFetchError(e) && e.code === code;

before(async () => {
  dir = tempDir();
  srv = await startHttpServer((req, res, hit) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const r = routes.get(path);
    if (!r) return void res.writeHead(404).end('no route');
    r(res, hit, req);
  });
});
after(async () => {
  await srv.close();
  cleanup(dir);
});

describe('http(s) fetch: formats and verification', () => {
  it('downloads a plain module, then serves it from the cache (IfNotPresent)', async () => {
    routes.set('/plain.wasm', (res) => res.end(W1));
    const o = fetcherOpts();
    const f = await createModuleFetcher(o);
    try {
      const a = await f.fetch({ url: `${srv.url}/plain.wasm` }, ctx);
      assert.equal(a.source, 'remote');
      assertBytes(a.bytes, W1);
      assert.equal(a.sha256, sha256Hex(W1));
      const b = await f.fetch({ url: `${srv.url}/plain.wasm` }, { ...ctx, resourceVersion: '2' });
      assert.equal(b.source, 'cache');
      assert.equal(srv.hits.get('/plain.wasm'), 1);
      assert.equal(counter(o.stats, 'wasm_remote_fetch_count', { result: 'success' }), 1);
      assert.equal(counter(o.stats, 'wasm_cache_lookup_count', { hit: 'false' }), 1);
      assert.equal(counter(o.stats, 'wasm_cache_lookup_count', { hit: 'true' }), 1);
      assert.equal(counter(o.stats, 'wasm_cache_entries', {}), 1);
    } finally {
      await f.close();
    }
  });

  it('unboxes gzip, tar and tar.gz; sha256 is of the unboxed module', async () => {
    const tar = await packTar([{ header: { name: 'x/filter.wasm', size: W2.length }, body: W2 }]);
    routes.set('/m.wasm.gz', (res) => res.end(gzipSync(W2)));
    routes.set('/m.tar', (res) => res.end(tar));
    routes.set('/m.tar.gz', (res) => res.end(gzipSync(tar)));
    const f = await createModuleFetcher(fetcherOpts());
    try {
      for (const p of ['/m.wasm.gz', '/m.tar', '/m.tar.gz']) {
        const m = await f.fetch({ url: `${srv.url}${p}`, sha256: sha256Hex(W2) }, ctx);
        assertBytes(m.bytes, W2, p);
        assert.equal(m.sha256, sha256Hex(W2));
      }
    } finally {
      await f.close();
    }
  });

  it('rejects a body that is not Wasm (fetch_failure) and does not cache it', async () => {
    routes.set('/html', (res) => res.end('<html>login page</html>'));
    routes.set('/short', (res) => res.end(Buffer.from([0, 0x61, 0x73, 0x6d])));
    const o = fetcherOpts();
    const f = await createModuleFetcher(o);
    try {
      await assert.rejects(f.fetch({ url: `${srv.url}/html` }, ctx), (e: unknown) => isCode(FetchErrorCode.InvalidWasm)(e) && /is invalid/.test((e as Error).message));
      await assert.rejects(f.fetch({ url: `${srv.url}/short` }, ctx), isCode(FetchErrorCode.InvalidWasm));
      assert.equal(counter(o.stats, 'wasm_remote_fetch_count', { result: 'fetch_failure' }), 2);
      assert.equal(f.cache.size, 0);
    } finally {
      await f.close();
    }
  });

  it('enforces the size limit on the body, with or without content-length, and after gunzip', async () => {
    const big = wasmModule('big', 4000);
    routes.set('/big', (res) => res.end(big));
    routes.set('/big-chunked', (res) => {
      res.write(big.subarray(0, 100));
      res.end(big.subarray(100));
    });
    routes.set('/big-gz', (res) => res.end(gzipSync(big)));
    const f = await createModuleFetcher(fetcherOpts({ maxSizeBytes: 1000 }));
    try {
      for (const p of ['/big', '/big-chunked', '/big-gz']) {
        await assert.rejects(f.fetch({ url: `${srv.url}${p}` }, ctx), isCode(FetchErrorCode.TooLarge), p);
      }
      assert.equal(srv.hits.get('/big'), 1, 'size violations are not retried');
    } finally {
      await f.close();
    }
  });

  it('fails with checksum_mismatched when sha256 differs, and accepts a matching one', async () => {
    routes.set('/sum.wasm', (res) => res.end(W1));
    const o = fetcherOpts();
    const f = await createModuleFetcher(o);
    try {
      await assert.rejects(
        f.fetch({ url: `${srv.url}/sum.wasm`, sha256: sha256Hex(W2) }, ctx),
        (e: unknown) => isCode(FetchErrorCode.ChecksumMismatch)(e) && /has checksum [a-f0-9]{64}, which does not match/.test((e as Error).message),
      );
      assert.equal(counter(o.stats, 'wasm_remote_fetch_count', { result: 'checksum_mismatched' }), 1);
      assert.equal(f.cache.size, 0);
      const ok = await f.fetch({ url: `${srv.url}/sum.wasm`, sha256: sha256Hex(W1) }, ctx);
      assert.equal(ok.source, 'remote');
      await assert.rejects(f.fetch({ url: `${srv.url}/sum.wasm`, sha256: 'ABC' }, ctx), isCode(FetchErrorCode.InvalidUrl));
    } finally {
      await f.close();
    }
  });
});

describe('http(s) fetch: retries', () => {
  it('retries 5xx with backoff until success', async () => {
    routes.set('/flaky', (res, hit) => (hit < 3 ? res.writeHead(503).end('busy') : res.end(W1)));
    const f = await createModuleFetcher(fetcherOpts());
    try {
      const t0 = performance.now();
      const m = await f.fetch({ url: `${srv.url}/flaky` }, ctx);
      assertBytes(m.bytes, W1);
      assert.equal(srv.hits.get('/flaky'), 3);
      assert.ok(performance.now() - t0 >= 10 + 20 - 5, 'exponential backoff waited 10 ms then 20 ms');
    } finally {
      await f.close();
    }
  });

  for (const status of [501, 505, 511, 404, 403]) {
    it(`does not retry HTTP ${status}`, async () => {
      const path = `/status-${status}`;
      routes.set(path, (res) => res.writeHead(status).end());
      const o = fetcherOpts();
      const f = await createModuleFetcher(o);
      try {
        const code = status === 404 ? FetchErrorCode.NotFound : status === 403 ? FetchErrorCode.Unauthorized : FetchErrorCode.HttpStatus;
        await assert.rejects(f.fetch({ url: `${srv.url}${path}` }, ctx), (e: unknown) => FetchError.isFetchError(e) && e.code === code && e.status === status && e.result === 'download_failure' && e.message.includes(`status code ${status}`) && e.message.includes('after 1 attempts'));
        assert.equal(srv.hits.get(path), 1);
        assert.equal(counter(o.stats, 'wasm_remote_fetch_count', { result: 'download_failure' }), 1);
      } finally {
        await f.close();
      }
    });
  }

  it('gives up after httpMaxRetries attempts on persistent 500', async () => {
    routes.set('/always-500', (res) => res.writeHead(500).end());
    const f = await createModuleFetcher(fetcherOpts({ httpMaxRetries: 4 }));
    try {
      await assert.rejects(f.fetch({ url: `${srv.url}/always-500` }, ctx), /failed after 4 attempts, last error: status code 500/);
      assert.equal(srv.hits.get('/always-500'), 4);
    } finally {
      await f.close();
    }
  });

  it('retries transport errors (connection reset)', async () => {
    routes.set('/reset', (res, hit) => (hit === 1 ? res.socket?.destroy() : res.end(W1)));
    const f = await createModuleFetcher(fetcherOpts());
    try {
      assertBytes((await f.fetch({ url: `${srv.url}/reset` }, ctx)).bytes, W1);
      assert.equal(srv.hits.get('/reset'), 2);
    } finally {
      await f.close();
    }
  });

  it('times out each attempt and retries', async () => {
    routes.set('/slow-once', (res, hit) => (hit === 1 ? setTimeout(() => res.end(W1), 1500) : res.end(W1)));
    const f = await createModuleFetcher(fetcherOpts({ httpTimeoutMs: 200 }));
    try {
      const t0 = performance.now();
      assertBytes((await f.fetch({ url: `${srv.url}/slow-once` }, ctx)).bytes, W1);
      assert.equal(srv.hits.get('/slow-once'), 2);
      assert.ok(performance.now() - t0 < 1400, 'did not wait for the slow answer');
    } finally {
      await f.close();
    }
  });

  it('stops at the overall fetch deadline', async () => {
    routes.set('/hang', () => {});
    const f = await createModuleFetcher(fetcherOpts({ httpTimeoutMs: 5000, fetchTimeoutMs: 300 }));
    try {
      const t0 = performance.now();
      await assert.rejects(f.fetch({ url: `${srv.url}/hang` }, ctx), isCode(FetchErrorCode.Timeout));
      assert.ok(performance.now() - t0 < 3000);
    } finally {
      await f.close();
    }
  });
});

describe('SSRF guard at dial time', () => {
  it('refuses cloud metadata and link-local URLs without dialling', async () => {
    const f = await createModuleFetcher(fetcherOpts());
    try {
      for (const u of ['http://169.254.169.254/latest/meta-data', 'http://[fe80::1]/x.wasm', 'http://metadata.google.internal/x.wasm', 'http://[::ffff:169.254.169.254]/x']) {
        await assert.rejects(f.fetch({ url: u }, ctx), isCode(FetchErrorCode.Blocked), u);
      }
    } finally {
      await f.close();
    }
  });

  it('refuses loopback unless allowed', async () => {
    routes.set('/lo.wasm', (res) => res.end(W1));
    const f = await createModuleFetcher(fetcherOpts({ allowLoopback: false }));
    try {
      await assert.rejects(f.fetch({ url: `${srv.url}/lo.wasm` }, ctx), isCode(FetchErrorCode.Blocked));
      await assert.rejects(f.fetch({ url: `http://localhost:${srv.port}/lo.wasm` }, ctx), isCode(FetchErrorCode.Blocked));
      assert.equal(srv.hits.get('/lo.wasm'), undefined, 'nothing reached the server');
    } finally {
      await f.close();
    }
  });

  it('applies operator blockedCidrs to resolved names (DNS lookup hook)', async () => {
    routes.set('/cidr.wasm', (res) => res.end(W1));
    const f = await createModuleFetcher(fetcherOpts({ blockedCidrs: ['127.0.0.0/8'] }));
    try {
      await assert.rejects(f.fetch({ url: `http://localhost:${srv.port}/cidr.wasm` }, ctx), (e: unknown) => isCode(FetchErrorCode.Blocked)(e) && /blocked CIDR 127\.0\.0\.0\/8/.test((e as Error).message));
      assert.equal(srv.hits.get('/cidr.wasm'), undefined);
    } finally {
      await f.close();
    }
  });

  it('checks every redirect hop', async () => {
    routes.set('/to-metadata', (res) => res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/iam' }).end());
    routes.set('/to-file', (res) => res.writeHead(302, { location: 'file:///etc/passwd' }).end());
    routes.set('/to-good', (res) => res.writeHead(307, { location: '/good.wasm' }).end());
    routes.set('/good.wasm', (res) => res.end(W1));
    const f = await createModuleFetcher(fetcherOpts());
    try {
      await assert.rejects(f.fetch({ url: `${srv.url}/to-metadata` }, ctx), isCode(FetchErrorCode.Blocked));
      await assert.rejects(f.fetch({ url: `${srv.url}/to-file` }, ctx), isCode(FetchErrorCode.Blocked));
      assert.equal(srv.hits.get('/to-metadata'), 1, 'a refused hop is not retried');
      assertBytes((await f.fetch({ url: `${srv.url}/to-good` }, ctx)).bytes, W1);
    } finally {
      await f.close();
    }
  });
});

describe('https and insecure servers', { skip: OPENSSL_BIN ? false : 'openssl not installed' }, () => {
  let tls: https.Server;
  let port = 0;
  before(async () => {
    const { cert, key } = selfSignedCert(dir, 'https-server');
    tls = https.createServer({ cert: readFileSync(cert), key: readFileSync(key) }, (_req, res) => res.end(W1));
    await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
    port = (tls.address() as net.AddressInfo).port;
  });
  after(() => new Promise<void>((r) => tls.close(() => r())));

  it('verifies TLS by default and skips verification only for insecure hosts', async () => {
    const strict = await createModuleFetcher(fetcherOpts({ httpMaxRetries: 1 }));
    const loose = await createModuleFetcher(fetcherOpts({ insecureRegistries: [`127.0.0.1:${port}`] }));
    try {
      await assert.rejects(strict.fetch({ url: `https://127.0.0.1:${port}/m.wasm` }, ctx), /self-signed|certificate/i);
      assertBytes((await loose.fetch({ url: `https://127.0.0.1:${port}/m.wasm` }, ctx)).bytes, W1);
    } finally {
      await strict.close();
      await loose.close();
    }
  });
});

describe('pull policy across resource changes (HTTP)', () => {
  it('Always re-pulls when resourceVersion (or generation) changes; IfNotPresent keeps the first module', async () => {
    let current = W1;
    routes.set('/moving.wasm', (res) => res.end(current));
    const f = await createModuleFetcher(fetcherOpts());
    const url = `${srv.url}/moving.wasm`;
    try {
      const a = await f.fetch({ url, imagePullPolicy: 'Always' }, { ...ctx, resourceVersion: '10' });
      assertBytes(a.bytes, W1);
      current = W2;
      const same = await f.fetch({ url, imagePullPolicy: 'Always' }, { ...ctx, resourceVersion: '10' });
      assert.equal(same.source, 'cache', 'unchanged resource: no re-pull');
      assertBytes(same.bytes, W1);
      const changed = await f.fetch({ url, imagePullPolicy: 'Always' }, { ...ctx, resourceVersion: '11' });
      assert.equal(changed.source, 'remote');
      assertBytes(changed.bytes, W2);
      // IfNotPresent for another resource: uses the last checksum seen for the URL, whatever its version.
      current = W1;
      const inp = await f.fetch({ url, imagePullPolicy: 'IfNotPresent' }, { namespace: 'default', resourceName: 'default.other', resourceVersion: '99' });
      assert.equal(inp.source, 'cache');
      assertBytes(inp.bytes, W2);
      // file-mode resources have no resourceVersion: generation is used.
      const g1 = await f.fetch({ url, imagePullPolicy: 'Always' }, { namespace: 'default', resourceName: 'default.gen', generation: 1 });
      assert.equal(g1.source, 'remote');
      assert.equal((await f.fetch({ url, imagePullPolicy: 'Always' }, { namespace: 'default', resourceName: 'default.gen', generation: 1 })).source, 'cache');
      assert.equal((await f.fetch({ url, imagePullPolicy: 'Always' }, { namespace: 'default', resourceName: 'default.gen', generation: 2 })).source, 'remote');
    } finally {
      await f.close();
    }
  });

  it('a known sha256 makes any policy IfNotPresent', async () => {
    routes.set('/pinned.wasm', (res) => res.end(W1));
    const f = await createModuleFetcher(fetcherOpts());
    try {
      await f.fetch({ url: `${srv.url}/pinned.wasm`, sha256: sha256Hex(W1), imagePullPolicy: 'Always' }, { ...ctx, resourceVersion: 'a' });
      const m = await f.fetch({ url: `${srv.url}/pinned.wasm`, sha256: sha256Hex(W1), imagePullPolicy: 'Always' }, { ...ctx, resourceVersion: 'b' });
      assert.equal(m.source, 'cache');
      assert.equal(srv.hits.get('/pinned.wasm'), 1);
    } finally {
      await f.close();
    }
  });
});

describe('cache', () => {
  it('coalesces concurrent requests for one module into one download', async () => {
    routes.set('/shared.wasm', (res) => setTimeout(() => res.end(W1), 150));
    const o = fetcherOpts();
    const f = await createModuleFetcher(o);
    try {
      const all = await Promise.all(Array.from({ length: 8 }, (_, i) => f.fetch({ url: `${srv.url}/shared.wasm` }, { namespace: 'default', resourceName: `default.r${i}`, resourceVersion: '1' })));
      assert.equal(srv.hits.get('/shared.wasm'), 1);
      for (const m of all) assertBytes(m.bytes, W1);
      // In one fetcher, waiters join the in-flight download itself (not the disk lock after it).
      assert.deepEqual(new Set(all.map((m) => m.source)), new Set(['remote']));
      assert.equal(counter(o.stats, 'wasm_remote_fetch_count', { result: 'success' }), 1);
    } finally {
      await f.close();
    }
  });

  it('worker threads sharing a cache dir download a module once (file lock), the others read it from disk', async () => {
    routes.set('/threads.wasm', (res) => setTimeout(() => res.end(W2), 200));
    const cacheDir = join(dir, 'threads-cache');
    const results = await Promise.all(
      Array.from({ length: 4 }, () =>
        new Promise<{ ok: boolean; source?: string; sha256?: string; error?: string }>((resolve, reject) => {
          const w = new Worker(new URL('./fixtures/fetch-worker.ts', import.meta.url), { workerData: { cacheDir, url: `${srv.url}/threads.wasm` } });
          w.once('message', resolve);
          w.once('error', reject);
        }),
      ),
    );
    for (const r of results) assert.ok(r.ok, r.error);
    assert.equal(srv.hits.get('/threads.wasm'), 1, 'one download for four threads');
    assert.equal(results.filter((r) => r.source === 'remote').length, 1);
    assert.equal(new Set(results.map((r) => r.sha256)).size, 1);
    assert.deepEqual(readdirSync(join(cacheDir, 'locks')), [], 'locks released');
  });

  it('a fetcher opened before another one downloaded finds the module on disk (late worker)', async () => {
    routes.set('/late.wasm', (res) => res.end(W1));
    const cacheDir = join(dir, 'late-cache');
    const late = await createModuleFetcher(fetcherOpts({ cacheDir }));
    const early = await createModuleFetcher(fetcherOpts({ cacheDir }));
    try {
      assert.equal((await early.fetch({ url: `${srv.url}/late.wasm`, imagePullPolicy: 'Always' }, ctx)).source, 'remote');
      const m = await late.fetch({ url: `${srv.url}/late.wasm`, imagePullPolicy: 'Always' }, ctx);
      assert.equal(m.source, 'cache');
      assert.equal(srv.hits.get('/late.wasm'), 1);
      // A real resource change still re-pulls in either fetcher.
      assert.equal((await late.fetch({ url: `${srv.url}/late.wasm`, imagePullPolicy: 'Always' }, { ...ctx, resourceVersion: '2' })).source, 'remote');
      assert.equal(srv.hits.get('/late.wasm'), 2);
    } finally {
      await late.close();
      await early.close();
    }
  });

  it('takes over a stale download lock left by a dead holder', async () => {
    routes.set('/stale.wasm', (res) => res.end(W1));
    const cacheDir = join(dir, 'stale-cache');
    const f = await createModuleFetcher(fetcherOpts({ cacheDir, fetchTimeoutMs: 200 }));
    try {
      const key = `${srv.url}/stale.wasm\u0000\u0000anonymous`;
      mkdirSync(join(cacheDir, 'locks'), { recursive: true });
      const lockPath = join(cacheDir, 'locks', `${sha256Hex(new TextEncoder().encode(key))}.lock`);
      writeFileSync(lockPath, '999999\n');
      const old = new Date(Date.now() - 60_000);
      utimesSync(lockPath, old, old);
      const m = await f.fetch({ url: `${srv.url}/stale.wasm` }, ctx);
      assertBytes(m.bytes, W1);
    } finally {
      await f.close();
    }
  });

  it('survives a restart: a new fetcher on the same dir serves cached modules offline', async () => {
    routes.set('/persist.wasm', (res) => res.end(W2));
    const cacheDir = join(dir, 'persist-cache');
    const f1 = await createModuleFetcher(fetcherOpts({ cacheDir }));
    await f1.fetch({ url: `${srv.url}/persist.wasm` }, ctx);
    await f1.close();
    routes.set('/persist.wasm', (res) => res.writeHead(500).end());
    const f2 = await createModuleFetcher(fetcherOpts({ cacheDir }));
    try {
      const m = await f2.fetch({ url: `${srv.url}/persist.wasm` }, { ...ctx, resourceVersion: '7' });
      assert.equal(m.source, 'cache');
      assertBytes(m.bytes, W2);
      assert.equal(srv.hits.get('/persist.wasm'), 1);
      await f2.cache.flush();
      const files = readdirSync(cacheDir, { recursive: true }).map(String);
      assert.ok(files.some((p) => /^[a-f0-9]{64}\/[a-f0-9]{64}\.wasm$/.test(p)), `Istio layout <sha256(name)>/<checksum>.wasm: ${files}`);
      assert.ok(!files.some((p) => p.includes('.tmp-')), 'no temp files left');
    } finally {
      await f2.close();
    }
  });

  it('ignores crash leftovers and drops corrupted modules, re-downloading them', async () => {
    routes.set('/corrupt.wasm', (res) => res.end(W1));
    const cacheDir = join(dir, 'corrupt-cache');
    const f1 = await createModuleFetcher(fetcherOpts({ cacheDir }));
    const first = await f1.fetch({ url: `${srv.url}/corrupt.wasm` }, ctx);
    await f1.close();
    writeFileSync(first.path, 'garbage');
    mkdirSync(join(cacheDir, 'a'.repeat(64)), { recursive: true });
    const leftover = join(cacheDir, 'a'.repeat(64), `${'b'.repeat(64)}.wasm.tmp-1-abcd`);
    writeFileSync(leftover, 'partial');
    const longAgo = new Date(Date.now() - 3_600_000);
    utimesSync(leftover, longAgo, longAgo);
    const fresh = join(cacheDir, 'a'.repeat(64), `${'c'.repeat(64)}.wasm.tmp-2-abcd`);
    writeFileSync(fresh, 'being written by another worker');
    const f2 = await createModuleFetcher(fetcherOpts({ cacheDir }));
    try {
      const m = await f2.fetch({ url: `${srv.url}/corrupt.wasm` }, ctx);
      assert.equal(m.source, 'remote');
      assertBytes(m.bytes, W1);
      assertBytes(readFileSync(first.path), W1, 'rewritten');
      assert.deepEqual(readdirSync(join(cacheDir, 'a'.repeat(64))), [`${'c'.repeat(64)}.wasm.tmp-2-abcd`], 'old temp file removed at open, a fresh one (a write in progress) kept');
    } finally {
      await f2.close();
    }
  });

  it('expires modules unused for longer than moduleExpiryMs, with their tag entries', async () => {
    routes.set('/old.wasm', (res) => res.end(W1));
    routes.set('/recent.wasm', (res) => res.end(W2));
    let now = 1_000_000;
    const o = fetcherOpts({ moduleExpiryMs: 60_000, purgeIntervalMs: 0, now: () => now });
    const f = await createModuleFetcher(o);
    try {
      const old = await f.fetch({ url: `${srv.url}/old.wasm` }, ctx);
      await f.fetch({ url: `${srv.url}/recent.wasm` }, ctx);
      now += 50_000;
      await f.fetch({ url: `${srv.url}/recent.wasm` }, ctx); // touched: lastUsed moves
      now += 20_000;
      assert.equal(await f.purge(), 1);
      assert.equal(counter(o.stats, 'wasm_cache_entries', {}), 1);
      assert.throws(() => readFileSync(old.path));
      assert.equal((await f.fetch({ url: `${srv.url}/recent.wasm` }, ctx)).source, 'cache');
      assert.equal((await f.fetch({ url: `${srv.url}/old.wasm` }, ctx)).source, 'remote');
    } finally {
      await f.close();
    }
  });

  it('runs the purge on its interval timer', async () => {
    routes.set('/timer.wasm', (res) => res.end(W1));
    const f = await createModuleFetcher(fetcherOpts({ moduleExpiryMs: 1, purgeIntervalMs: 50 }));
    try {
      await f.fetch({ url: `${srv.url}/timer.wasm` }, ctx);
      const deadline = Date.now() + 3000;
      while (f.cache.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(f.cache.size, 0);
    } finally {
      await f.close();
    }
  });
});

describe('file:// and pull secrets', () => {
  it('reads file:// locally and checks validity', async () => {
    const good = join(dir, 'local.wasm');
    const bad = join(dir, 'local.txt');
    writeFileSync(good, W1);
    writeFileSync(bad, 'nope');
    const f = await createModuleFetcher(fetcherOpts());
    try {
      const m = await f.fetch({ url: `file://${good}` }, ctx);
      assert.equal(m.source, 'file');
      assert.equal(m.path, good);
      assertBytes(m.bytes, W1);
      await assert.rejects(f.fetch({ url: `file://${bad}` }, ctx), isCode(FetchErrorCode.InvalidWasm));
      await assert.rejects(f.fetch({ url: `file://${join(dir, 'missing.wasm')}` }, ctx), isCode(FetchErrorCode.FileRead));
    } finally {
      await f.close();
    }
  });

  it('fails when the named pull secret is missing (no anonymous fallback), also for http URLs', async () => {
    routes.set('/s.wasm', (res) => res.end(W1));
    const o = fetcherOpts();
    const f = await createModuleFetcher(o);
    try {
      await assert.rejects(
        f.fetch({ url: `${srv.url}/s.wasm`, imagePullSecret: 'creds' }, { ...ctx, secrets: [{ name: 'creds', namespace: 'other-ns', dockerConfigJson: '{"auths":{}}' }] }),
        (e: unknown) => isCode(FetchErrorCode.MissingPullSecret)(e) && /missing image pulling secret/.test((e as Error).message),
      );
      assert.equal(srv.hits.get('/s.wasm'), undefined);
      assert.equal(counter(o.stats, 'wasm_remote_fetch_count', { result: 'fetch_failure' }), 1);
    } finally {
      await f.close();
    }
  });
});

describe('ModuleSource adapter for the Wasm runtime', () => {
  it('fetches through a shared per-isolate fetcher built from the bootstrap; relative paths go to the fallback', async () => {
    const { createFetchModuleSource, closeSharedFetchers, sharedModuleFetcher } = await import('../../src/fetch/module-source.ts');
    routes.set('/src.wasm', (res) => res.end(W2));
    const stats = new StatsStore();
    const services = { bootstrap: { wasm: { cacheDir: join(dir, 'shared-cache'), insecureRegistries: [], allowLoopbackFetch: true, memoryLimitBytes: 0, cpuBudgetMs: 0 } }, stats, secrets: [] };
    let fellBack = 0;
    const source = createFetchModuleSource(async () => {
      fellBack++;
      return W1;
    });
    const ext = { apiVersion: 'extensions.istio.io/v1alpha1' as const, kind: 'TrafficExtension' as const, metadata: { name: 'e', namespace: 'default', resourceVersion: '1' }, spec: {}, origin: { file: 'x.yaml', line: 1, kind: 'TrafficExtension' as const } };
    try {
      assertBytes(await source({ url: `${srv.url}/src.wasm` }, ext, services), W2);
      assertBytes(await source({ url: './local.wasm' }, ext, services), W1);
      assert.equal(fellBack, 1);
      assert.equal(await sharedModuleFetcher(services), await sharedModuleFetcher(services), 'one fetcher per cache dir');
      assert.equal(counter(stats, 'wasm_remote_fetch_count', { result: 'success' }), 1);
      const bytes = await source({ url: `${srv.url}/src.wasm` }, ext, services);
      assert.ok(await WebAssembly.compile(bytes), 'bytes compile as is');
    } finally {
      await closeSharedFetchers();
    }
  });
});

describe('registry protocol details (scripted registry)', () => {
  it('drops Authorization on a cross-origin blob redirect and verifies blob digests', async () => {
    const w = wasmModule('scripted');
    const img = await buildImage(w, 'artifact');
    const blobs = new Map(img.blobs.map((b) => [b.digest, b.bytes]));
    let corrupt = false;
    const storageAuth: (string | undefined)[] = [];
    const storage = await startHttpServer((req, res) => {
      storageAuth.push(req.headers.authorization);
      const digest = new URL(req.url!, 'http://x').searchParams.get('d')!;
      const b = blobs.get(digest)!;
      res.end(corrupt ? Buffer.concat([Buffer.from(b), Buffer.from('x')]) : b);
    });
    const registryAuth: (string | undefined)[] = [];
    const registry = await startHttpServer((req, res) => {
      registryAuth.push(req.headers.authorization);
      if (req.headers.authorization !== `Basic ${Buffer.from('u:p').toString('base64')}`) return void res.writeHead(401, { 'www-authenticate': 'Basic realm="scripted"' }).end();
      const u = req.url!;
      if (u === '/v2/') return void res.end('{}');
      if (u.startsWith('/v2/s/p/manifests/')) return void res.writeHead(200, { 'content-type': img.mediaType }).end(img.manifest);
      const m = /^\/v2\/s\/p\/blobs\/(sha256:[a-f0-9]+)$/.exec(u);
      if (m) return void res.writeHead(307, { location: `${storage.url}/blob?d=${m[1]}` }).end();
      res.writeHead(404).end();
    });
    const host = `127.0.0.1:${registry.port}`;
    const secret = { name: 's', namespace: 'default', dockerConfigJson: dockerConfigJson(host, 'u', 'p') };
    const f = await createModuleFetcher(fetcherOpts({ insecureRegistries: [host], registryAttempts: 1 }));
    try {
      const m = await f.fetch({ url: `oci://${host}/s/p:v1`, imagePullSecret: 's' }, { ...ctx, secrets: [secret] });
      assertBytes(m.bytes, w);
      assert.ok(storageAuth.length > 0 && storageAuth.every((a) => a === undefined), 'no credentials sent to blob storage');
      assert.ok(registryAuth.some((a) => a?.startsWith('Basic ')));
      corrupt = true;
      const fresh = await createModuleFetcher(fetcherOpts({ insecureRegistries: [host], registryAttempts: 1 }));
      await assert.rejects(
        fresh.fetch({ url: `oci://${host}/s/p:v2`, imagePullSecret: 's' }, { ...ctx, secrets: [secret] }),
        (e: unknown) => isCode(FetchErrorCode.BlobDigestMismatch)(e) && (e as FetchError).result === 'download_failure',
      ).finally(() => fresh.close());
      assert.equal(fresh.cache.size, 0);
    } finally {
      await f.close();
      await registry.close();
      await storage.close();
    }
  });
});
