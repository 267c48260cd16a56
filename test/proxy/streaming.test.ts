/**
 * Streaming with backpressure: a 1 GiB upload and a 1 GiB download pass through the proxy with
 * flat memory. Data is generated on the fly (one reused 64 KiB chunk) and counted on the other
 * side; process memory (RSS and arrayBuffers: client, proxy and upstream share this process) is
 * sampled during the transfer and its growth over the baseline must stay under 200 MiB. Without
 * backpressure the whole GiB would pile up in the proxy's buffers.
 *
 * Route/cluster request timeouts are 0 for these (a GiB may take longer than 15 s on a slow box).
 */
import assert from 'node:assert/strict';
import type http from 'node:http';
import http2 from 'node:http2';
import { Readable } from 'node:stream';
import v8 from 'node:v8';
import vm from 'node:vm';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { cluster } from '../helpers/bootstrap.ts';
import { h2Close, h2Connect, startPlane, type RunningPlane } from '../helpers/conformance.ts';
import { startHttp1, startHttp2, type TestServer } from '../helpers/upstream.ts';

const GiB = 1024 * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 0x61);
/** RSS growth allowed (the brief's bound). */
const LIMIT = 200 * 1024 * 1024;
/** Live (post-GC) arrayBuffers growth allowed: the buffers in flight, whatever the transfer size. */
const LIVE_LIMIT = 64 * 1024 * 1024;

let up1: TestServer & { server: http.Server };
let up2: TestServer;
let plane: RunningPlane;
let port: number;

/**
 * The receiving side stops reading for STALL_MS once, after STALL_AT bytes: meanwhile the sender
 * could go on at full speed, so without backpressure through the proxy hundreds of MiB would pile
 * up in its buffers (verified by disabling the proxy's flow control: the tests then fail).
 */
const STALL_AT = 256 * 1024 * 1024;
const STALL_MS = 3000;
const H2_STALL_AT = 32 * 1024 * 1024;

/** Upstream: POST counts the body (stalling now and then); GET /download?n= streams n bytes honouring backpressure. */
const h1Handler: http.RequestListener = (req, res) => {
  if (req.method === 'POST') {
    let n = 0;
    let stalled = false;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n >= STALL_AT && !stalled) {
        stalled = true;
        req.pause();
        setTimeout(() => req.resume(), STALL_MS);
      }
    });
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(String(n));
    });
    return;
  }
  const total = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('n'));
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
  let sent = 0;
  const pump = () => {
    while (sent < total) {
      const n = Math.min(CHUNK.length, total - sent);
      sent += n;
      if (!res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
};

const h2Handler = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
  if (headers[':method'] === 'POST') {
    let n = 0;
    let stalled = false;
    stream.on('data', (c: Buffer) => {
      n += c.length;
      if (n >= H2_STALL_AT && !stalled) {
        stalled = true;
        stream.pause();
        setTimeout(() => stream.resume(), STALL_MS);
      }
    });
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'text/plain' });
      stream.end(String(n));
    });
    return;
  }
  const total = Number(new URL(String(headers[':path']), 'http://x').searchParams.get('n'));
  stream.respond({ ':status': 200, 'content-type': 'application/octet-stream' });
  let sent = 0;
  const pump = () => {
    while (sent < total) {
      const n = Math.min(CHUNK.length, total - sent);
      sent += n;
      if (!stream.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
        stream.once('drain', pump);
        return;
      }
    }
    stream.end();
  };
  pump();
};

function* generate(total: number): Generator<Buffer> {
  let left = total;
  while (left > 0) {
    const n = Math.min(CHUNK.length, left);
    left -= n;
    yield n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n);
  }
}

interface MemoryWatch {
  stop(): { rssGrowth: number; abGrowth: number; peakRss: number };
}

// A collector we can call, so samples count live buffers rather than garbage awaiting a GC.
v8.setFlagsFromString('--expose-gc');
const gc1 = vm.runInNewContext('gc') as () => void;
// V8 frees the memory of dead ArrayBuffers on a background sweeper after a GC, so right after one
// collection arrayBuffers can still count dead buffers (more so on a busy machine). A second full
// GC waits for that sweep to finish first.
const gc = () => {
  gc1();
  gc1();
};

/**
 * Samples RSS every 100 ms, and arrayBuffers right after a GC every 500 ms (so that figure is
 * what the proxy and both test peers actually hold, not garbage awaiting collection), against a
 * baseline taken now.
 */
function watchMemory(): MemoryWatch {
  gc();
  const base = process.memoryUsage();
  let peakRss = base.rss;
  let peakAb = base.arrayBuffers;
  let ticks = 0;
  const sample = (collect: boolean) => {
    if (collect) gc();
    const m = process.memoryUsage();
    if (m.rss > peakRss) peakRss = m.rss;
    if (collect && m.arrayBuffers > peakAb) peakAb = m.arrayBuffers;
  };
  const t = setInterval(() => sample(++ticks % 5 === 0), 100);
  return {
    stop() {
      clearInterval(t);
      sample(true);
      return { rssGrowth: peakRss - base.rss, abGrowth: peakAb - base.arrayBuffers, peakRss };
    },
  };
}

const MiB = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

before(async () => {
  up1 = await startHttp1(h1Handler);
  up2 = await startHttp2(h2Handler);
  plane = await startPlane({
    clusters: [cluster('h1', up1.port, { requestTimeoutMs: 0 }), cluster('h2', up2.port, { requestTimeoutMs: 0, protocol: 'HTTP2' })],
    routeTables: [
      {
        name: 'default',
        virtualHosts: [
          {
            name: 'all',
            domains: ['*'],
            routes: [
              { name: 'h2', match: { prefix: '/h2/' }, route: { cluster: 'h2', timeoutMs: 0 } },
              { name: 'h1', match: { prefix: '/' }, route: { cluster: 'h1', timeoutMs: 0 } },
            ],
          },
        ],
      },
    ],
  });
  port = plane.ports.http!;
});
after(async () => {
  await plane.close();
  await up1.close();
  await up2.close();
});

test('1 GiB upload over HTTP/1.1 → HTTP/1.1 upstream passes with flat memory', { timeout: 150_000 }, async () => {
  const mem = watchMemory();
  const started = performance.now();
  const res = await request(`http://127.0.0.1:${port}/upload`, {
    method: 'POST',
    body: Readable.from(generate(GiB), { objectMode: false }),
    headers: { 'content-type': 'application/octet-stream' },
  });
  const text = await res.body.text();
  const m = mem.stop();
  const secs = (performance.now() - started) / 1000;
  console.log(`upload h1: ${secs.toFixed(1)} s, RSS growth ${MiB(m.rssGrowth)} (peak RSS ${MiB(m.peakRss)}), arrayBuffers growth ${MiB(m.abGrowth)}`);
  assert.equal(res.statusCode, 200);
  assert.equal(Number(text), GiB);
  assert.ok(m.rssGrowth < LIMIT, `RSS grew by ${MiB(m.rssGrowth)}`);
  assert.ok(m.abGrowth < LIVE_LIMIT, `live arrayBuffers grew by ${MiB(m.abGrowth)}`);
});

test('1 GiB download over HTTP/1.1 ← HTTP/1.1 upstream passes with flat memory', { timeout: 150_000 }, async () => {
  const mem = watchMemory();
  const started = performance.now();
  const res = await request(`http://127.0.0.1:${port}/download?n=${GiB}`);
  let n = 0;
  let stalled = false;
  for await (const c of res.body) {
    n += (c as Buffer).length;
    if (n >= STALL_AT && !stalled) {
      stalled = true;
      await new Promise((r) => setTimeout(r, STALL_MS));
    }
  }
  const m = mem.stop();
  const secs = (performance.now() - started) / 1000;
  console.log(`download h1: ${secs.toFixed(1)} s, RSS growth ${MiB(m.rssGrowth)} (peak RSS ${MiB(m.peakRss)}), arrayBuffers growth ${MiB(m.abGrowth)}`);
  assert.equal(res.statusCode, 200);
  assert.equal(n, GiB);
  assert.ok(m.rssGrowth < LIMIT, `RSS grew by ${MiB(m.rssGrowth)}`);
  assert.ok(m.abGrowth < LIVE_LIMIT, `live arrayBuffers grew by ${MiB(m.abGrowth)}`);
});

test('128 MiB each way over HTTP/2 (h2c) → HTTP/2 upstream with flat memory', { timeout: 90_000 }, async () => {
  const total = 128 * 1024 * 1024;
  const session = await h2Connect(`http://127.0.0.1:${port}`);
  try {
    // Upload.
    let mem = watchMemory();
    const upload = await new Promise<string>((resolve, reject) => {
      const s = session.request({ ':method': 'POST', ':path': '/h2/upload' });
      let body = '';
      s.setEncoding('utf8');
      s.on('data', (c: string) => (body += c));
      s.on('end', () => resolve(body));
      s.on('error', reject);
      Readable.from(generate(total)).pipe(s);
    });
    let m = mem.stop();
    console.log(`upload h2→h2 128 MiB: RSS growth ${MiB(m.rssGrowth)}, arrayBuffers growth ${MiB(m.abGrowth)}`);
    assert.equal(Number(upload), total);
    assert.ok(m.rssGrowth < LIMIT, `RSS grew by ${MiB(m.rssGrowth)}`);
    assert.ok(m.abGrowth < LIVE_LIMIT, `live arrayBuffers grew by ${MiB(m.abGrowth)}`);
    // Download.
    mem = watchMemory();
    const n = await new Promise<number>((resolve, reject) => {
      const s = session.request({ ':method': 'GET', ':path': `/h2/download?n=${total}` });
      let got = 0;
      let stalled = false;
      s.on('data', (c: Buffer) => {
        got += c.length;
        if (got >= H2_STALL_AT && !stalled) {
          stalled = true;
          s.pause();
          setTimeout(() => s.resume(), STALL_MS);
        }
      });
      s.on('end', () => resolve(got));
      s.on('error', reject);
    });
    m = mem.stop();
    console.log(`download h2←h2 128 MiB: RSS growth ${MiB(m.rssGrowth)}, arrayBuffers growth ${MiB(m.abGrowth)}`);
    assert.equal(n, total);
    assert.ok(m.rssGrowth < LIMIT, `RSS grew by ${MiB(m.rssGrowth)}`);
    assert.ok(m.abGrowth < LIVE_LIMIT, `live arrayBuffers grew by ${MiB(m.abGrowth)}`);
  } finally {
    await h2Close(session);
  }
});

test('a slow reader pauses the upstream: a 256 MiB download to a client that stops reading stays bounded', { timeout: 60_000 }, async () => {
  const total = 256 * 1024 * 1024;
  const mem = watchMemory();
  const res = await request(`http://127.0.0.1:${port}/download?n=${total}`);
  // Read a little, then stall for 1.5 s: the proxy must not buffer the rest meanwhile.
  let n = 0;
  const it = res.body[Symbol.asyncIterator]();
  for (let i = 0; i < 4; i++) {
    const r = await it.next();
    if (r.done) break;
    n += (r.value as Buffer).length;
  }
  await new Promise((r) => setTimeout(r, 1500));
  const during = mem.stop();
  for (;;) {
    const r = await it.next();
    if (r.done) break;
    n += (r.value as Buffer).length;
  }
  console.log(`stalled download: growth while stalled RSS ${MiB(during.rssGrowth)}, arrayBuffers ${MiB(during.abGrowth)}`);
  assert.equal(n, total);
  assert.ok(during.abGrowth < 64 * 1024 * 1024, `arrayBuffers grew by ${MiB(during.abGrowth)} while the client was not reading`);
});

test('a client that aborts mid-download cancels the upstream response (HTTP/1.1 and HTTP/2 downstream)', { timeout: 60_000 }, async () => {
  const total = 512 * 1024 * 1024;
  const closed: string[] = [];
  const watch = (_req: http.IncomingMessage, res: http.ServerResponse) => res.on('close', () => closed.push(res.writableFinished ? 'finished' : 'aborted'));
  up1.server.prependListener('request', watch);
  try {
    // HTTP/1.1: read 1 MiB, then drop the connection.
    const res = await request(`http://127.0.0.1:${port}/download?n=${total}`);
    let n = 0;
    for await (const c of res.body) {
      n += (c as Buffer).length;
      if (n > 1024 * 1024) break; // destroys the body and the connection
    }
    // HTTP/2: read 1 MiB, then RST_STREAM.
    const session = await h2Connect(`http://127.0.0.1:${port}`);
    try {
      await new Promise<void>((resolve) => {
        const s = session.request({ ':method': 'GET', ':path': `/download?n=${total}` });
        let got = 0;
        s.on('error', () => {});
        s.on('data', (c: Buffer) => {
          got += c.length;
          if (got > 1024 * 1024 && !s.closed) {
            s.close(http2.constants.NGHTTP2_CANCEL);
            resolve();
          }
        });
      });
    } finally {
      await h2Close(session);
    }
    const deadline = Date.now() + 20_000;
    while (closed.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(closed, ['aborted', 'aborted'], 'the upstream responses were cut short, not streamed to the end');
  } finally {
    up1.server.off('request', watch);
  }
});
