import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { HeaderMap } from '../../src/filters/header-map.ts';
import { ResponseFlag, StreamInfo } from '../../src/filters/stream-info.ts';
import { accessLogEntry, AccessLogger, createAccessLogger, formatTextLine } from '../../src/observability/access-log.ts';

let dir: string;

function completedStream(): { info: StreamInfo; req: HeaderMap; resp: HeaderMap } {
  const info = new StreamInfo();
  info.protocol = 'HTTP/2';
  info.downstreamRemoteAddress = { address: '10.1.2.3', port: 51000 };
  info.downstreamLocalAddress = { address: '10.1.2.4', port: 8080 };
  info.upstreamHost = { address: '::1', port: 9000 };
  info.upstreamLocalAddress = { address: '::1', port: 40000 };
  info.upstreamCluster = 'backend';
  info.routeName = 'default-route';
  info.requestId = 'req-1';
  info.responseCode = 200;
  info.responseCodeDetails = 'via_upstream';
  info.bytesReceived = 12;
  info.bytesSent = 345;
  info.requestedServerName = 'shop.example.com';
  info.firstUpstreamTxByteSent = info.startMono + 2;
  info.firstUpstreamRxByteReceived = info.startMono + 9.4;
  info.lastDownstreamTxByteSent = info.startMono + 11.6;
  const req = HeaderMap.fromPairs([
    [':method', 'POST'],
    [':path', '/api/v1?x=1'],
    [':authority', 'shop.example.com'],
    ['user-agent', 'curl/8.0'],
    ['x-forwarded-for', '192.0.2.1, 10.1.2.3'],
  ]);
  const resp = HeaderMap.fromPairs([[':status', '200']]);
  return { info, req, resp };
}

describe('access log', { timeout: 20_000 }, () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshext-al-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('builds an entry with Envoy-like fields from StreamInfo and headers', () => {
    const { info, req, resp } = completedStream();
    const e = accessLogEntry(info, { requestHeaders: req, responseHeaders: resp });
    assert.equal(e.start_time, new Date(info.startTime).toISOString());
    assert.equal(e.method, 'POST');
    assert.equal(e.path, '/api/v1?x=1');
    assert.equal(e.protocol, 'HTTP/2');
    assert.equal(e.response_code, 200);
    assert.equal(e.response_flags, '-');
    assert.equal(e.response_code_details, 'via_upstream');
    assert.equal(e.bytes_received, 12);
    assert.equal(e.bytes_sent, 345);
    assert.equal(e.duration, 12);
    assert.equal(e.upstream_service_time, 7);
    assert.equal(e.x_forwarded_for, '192.0.2.1, 10.1.2.3');
    assert.equal(e.user_agent, 'curl/8.0');
    assert.equal(e.request_id, 'req-1');
    assert.equal(e.authority, 'shop.example.com');
    assert.equal(e.upstream_host, '[::1]:9000');
    assert.equal(e.upstream_cluster, 'backend');
    assert.equal(e.upstream_local_address, '[::1]:40000');
    assert.equal(e.route_name, 'default-route');
    assert.equal(e.downstream_remote_address, '10.1.2.3:51000');
    assert.equal(e.downstream_local_address, '10.1.2.4:8080');
    assert.equal(e.requested_server_name, 'shop.example.com');
    assert.equal(e.connection_termination_details, null);
  });

  it('local replies: flags, details, original path, missing values as null', () => {
    const info = new StreamInfo();
    info.responseCode = 404;
    info.responseCodeDetails = 'route_not_found';
    info.responseFlags.add(ResponseFlag.NoRouteFound);
    const req = HeaderMap.fromPairs([[':method', 'GET'], [':path', '/rewritten'], ['x-envoy-original-path', '/orig'], ['host', 'h']]);
    const e = accessLogEntry(info, { requestHeaders: req, connectionTerminationDetails: 'closed by filter' });
    assert.equal(e.response_flags, 'NR');
    assert.equal(e.response_code_details, 'route_not_found');
    assert.equal(e.path, '/orig');
    assert.equal(e.authority, 'h');
    assert.equal(e.upstream_host, null);
    assert.equal(e.upstream_cluster, null);
    assert.equal(e.upstream_service_time, null);
    assert.equal(e.user_agent, null);
    assert.equal(e.route_name, null);
    assert.equal(e.connection_termination_details, 'closed by filter');
  });

  it('text encoding renders Istio\'s default format, - for missing, no forged lines', async () => {
    const { info, req, resp } = completedStream();
    const line = formatTextLine(accessLogEntry(info, { requestHeaders: req, responseHeaders: resp }));
    assert.equal(
      line,
      `[${new Date(info.startTime).toISOString()}] "POST /api/v1?x=1 HTTP/2" 200 - via_upstream - "-" 12 345 12 7 ` +
        `"192.0.2.1, 10.1.2.3" "curl/8.0" "req-1" "shop.example.com" "[::1]:9000" backend [::1]:40000 10.1.2.4:8080 10.1.2.3:51000 shop.example.com default-route`,
    );
    const evil = HeaderMap.fromPairs([[':method', 'GET'], [':path', '/'], ['user-agent', 'x\r\n[fake] "GET / HTTP/1.1" 200']]);
    const l2 = formatTextLine(accessLogEntry(new StreamInfo(), { requestHeaders: evil }));
    assert.doesNotMatch(l2, /[\r\n]/);
    assert.match(l2, /"x__\[fake\]/);
    const file = join(dir, 'text.log');
    const log = new AccessLogger({ target: file, encoding: 'text', flushIntervalMs: 0 });
    log.log(info, { requestHeaders: req });
    await log.close();
    assert.match(await readFile(file, 'utf8'), /^\[\S+\] "POST \/api\/v1\?x=1 HTTP\/2" 200 .* default-route\n$/);
  });

  it('writes JSON lines to a file, buffered, and flushes on close', async () => {
    const file = join(dir, 'sub', 'access.log');
    // Large buffer and no timer: nothing should reach the file before flush().
    const log = new AccessLogger({ target: file, bufferBytes: 1 << 20, flushIntervalMs: 0 });
    const { info, req, resp } = completedStream();
    for (let i = 0; i < 100; i++) {
      info.requestId = `req-${i}`;
      log.log(info, { requestHeaders: req, responseHeaders: resp });
    }
    await new Promise((r) => setTimeout(r, 50));
    const early = await readFile(file, 'utf8').catch(() => '');
    assert.equal(early, '', 'no write per request');
    await log.flush();
    const lines = (await readFile(file, 'utf8')).trimEnd().split('\n');
    assert.equal(lines.length, 100);
    const parsed = lines.map((l) => JSON.parse(l) as { request_id: string; method: string; response_code: number });
    assert.deepEqual(parsed.map((p) => p.request_id), Array.from({ length: 100 }, (_, i) => `req-${i}`));
    assert.equal(parsed[0]!.method, 'POST');
    log.log(info, { requestHeaders: req });
    await log.close();
    assert.equal((await readFile(file, 'utf8')).trimEnd().split('\n').length, 101);
    assert.equal(log.written, 101);
    assert.equal(log.dropped, 0);
    // After close, logging is a no-op rather than an error.
    log.log(info);
  });

  it('the periodic flush writes lines of a quiet proxy without an explicit flush', async () => {
    const file = join(dir, 'timer.log');
    const log = new AccessLogger({ target: file, bufferBytes: 1 << 20, flushIntervalMs: 50 });
    const { info } = completedStream();
    log.log(info);
    let content = '';
    for (let i = 0; i < 40 && !content; i++) {
      await new Promise((r) => setTimeout(r, 25));
      content = await readFile(file, 'utf8').catch(() => '');
    }
    assert.equal(content.trimEnd().split('\n').length, 1);
    await log.close();
  });

  it('appends to an existing file; createAccessLogger(null) is null', async () => {
    const file = join(dir, 'append.log');
    for (let round = 0; round < 2; round++) {
      const log = createAccessLogger(file)!;
      log.log(completedStream().info);
      await log.close();
    }
    assert.equal((await readFile(file, 'utf8')).trimEnd().split('\n').length, 2);
    assert.equal(createAccessLogger(null), null);
  });

  it('logging cost per request is small', async () => {
    const file = join(dir, 'bench.log');
    const log = new AccessLogger({ target: file, flushIntervalMs: 0 });
    const { info, req, resp } = completedStream();
    const facts = { requestHeaders: req, responseHeaders: resp };
    const n = 50_000;
    let spent = 0;
    // Batches with a yield between them, as a proxy's event loop would give the writes a turn.
    for (let b = 0; b < n / 1000; b++) {
      const t0 = performance.now();
      for (let i = 0; i < 1000; i++) log.log(info, facts);
      spent += performance.now() - t0;
      await new Promise((r) => setImmediate(r));
    }
    const us = (spent * 1000) / n;
    console.log(`# AccessLogger.log: ${us.toFixed(3)} µs/request`);
    await log.close();
    assert.equal((await readFile(file, 'utf8')).trimEnd().split('\n').length, n);
    assert.equal(log.dropped, 0);
    // A sanity bound only (loaded CI machines vary); buffering itself is checked above.
    assert.ok(us < 200, `${us} µs`);
  });

  it('drops and counts lines beyond maxBufferBytes instead of growing without bound', async () => {
    const file = join(dir, 'cap.log');
    const log = new AccessLogger({ target: file, bufferBytes: 1 << 20, maxBufferBytes: 4096, flushIntervalMs: 0 });
    const { info } = completedStream();
    for (let i = 0; i < 100; i++) log.log(info);
    assert.ok(log.dropped > 0);
    assert.equal(log.written + log.dropped, 100);
    await log.close();
    assert.equal((await readFile(file, 'utf8')).trimEnd().split('\n').length, log.written);
  });

  it('two writers sharing a pipe never split each other\'s lines', async () => {
    // Workers share stdout, usually a pipe: writes above PIPE_BUF may interleave mid-line.
    const fifo = join(dir, 'pipe');
    execFileSync('mkfifo', [fifo]);
    const reader = spawn('cat', [fifo], { stdio: ['ignore', 'pipe', 'inherit'] });
    const chunks: Buffer[] = [];
    reader.stdout.on('data', (c: Buffer) => chunks.push(c));
    const ended = new Promise<void>((resolve) => reader.on('close', () => resolve()));
    const a = new AccessLogger({ target: fifo, flushIntervalMs: 0 });
    const b = new AccessLogger({ target: fifo, flushIntervalMs: 0 });
    const big = { pad: 'x'.repeat(1500) };
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 50; i++) {
        a.write({ w: 'a', i: round * 50 + i, ...big });
        b.write({ w: 'b', i: round * 50 + i, ...big });
      }
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all([a.close(), b.close()]);
    await ended;
    const lines = Buffer.concat(chunks).toString('utf8').trimEnd().split('\n');
    assert.equal(lines.length, 2000);
    const seen = { a: 0, b: 0 };
    for (const l of lines) {
      const o = JSON.parse(l) as { w: 'a' | 'b'; pad: string };
      assert.equal(o.pad.length, 1500);
      seen[o.w]++;
    }
    assert.deepEqual(seen, { a: 1000, b: 1000 });
  });

  it('stdout target: every line arrives through a pipe whose reader stalls', async () => {
    // A child process whose stdout is a pipe we stop reading for a while: its batched writes
    // block in the thread pool (Linux keeps stdout pipes blocking; a non-blocking one would
    // answer EAGAIN, which the logger retries) and must all arrive, in order, once we read.
    const script = join(dir, 'child.ts');
    const modUrl = new URL('../../src/observability/access-log.ts', import.meta.url).href;
    await writeFile(
      script,
      `import { AccessLogger } from ${JSON.stringify(modUrl)};\n` +
        `console.log('not-json banner');\n` +
        `const log = new AccessLogger({ target: 'stdout', bufferBytes: 8192 });\n` +
        `for (let i = 0; i < 3000; i++) { log.write({ i, pad: 'y'.repeat(200) }); if (i % 100 === 0) await new Promise((r) => setImmediate(r)); }\n` +
        `await log.close();\n`,
    );
    const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const chunks: Buffer[] = [];
    child.stdout.pause();
    await new Promise((r) => setTimeout(r, 300));
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.stdout.resume();
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    assert.equal(code, 0);
    const lines = Buffer.concat(chunks).toString('utf8').trimEnd().split('\n').filter((l) => l !== 'not-json banner');
    assert.equal(lines.length, 3000);
    lines.forEach((l, i) => assert.equal((JSON.parse(l) as { i: number }).i, i));
  });

  it('a bad file path fails at construction', async () => {
    const file = join(dir, 'plain-file');
    await writeFile(file, '');
    // A directory component that is a regular file: ENOTDIR.
    assert.throws(() => new AccessLogger({ target: join(file, 'sub', 'access.log') }), /ENOTDIR/);
  });
});
