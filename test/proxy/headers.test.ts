/**
 * The connection manager's header rules, as Envoy applies them: x-forwarded-for appended with the
 * peer address, x-forwarded-proto (set on gateways, kept on sidecars), x-request-id generated when
 * absent and kept when present (and logged), hop-by-hop headers removed in both directions over
 * both downstream protocols, `te: trailers` kept, `Expect: 100-continue` answered by the proxy,
 * repeated headers kept in order, and a downstream disconnect cancelling the upstream request.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import type http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { cluster, listener } from '../helpers/bootstrap.ts';
import { h2Close, h2Connect, h2Request, parseResponses, rawExchange, run, startPlane, type RunningPlane } from '../helpers/conformance.ts';
import { startHttp1, type TestServer } from '../helpers/upstream.ts';

interface Echo {
  url: string;
  headers: Record<string, string>;
  rawHeaders: string[];
  bodyLength: number;
}

let up: TestServer & { server: http.Server };
let plane: RunningPlane;
let gw: number;
let sidecar: number;
let hangClosed: Promise<void>;
let onHangClosed: () => void;

before(async () => {
  hangClosed = new Promise((r) => (onHangClosed = r));
  up = await startHttp1((req, res) => {
    if (req.url === '/hang') {
      req.on('close', () => onHangClosed());
      return;
    }
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => {
      const body = JSON.stringify({ url: req.url ?? '', headers: req.headers as Record<string, string>, rawHeaders: req.rawHeaders, bodyLength: n } satisfies Echo);
      // Hop-by-hop headers on the response: the proxy must not pass them on.
      res.setHeader('keep-alive', 'timeout=7, max=99');
      res.setHeader('proxy-connection', 'keep-alive');
      res.setHeader('upgrade', 'h2c');
      res.setHeader('x-app', 'yes');
      res.setHeader('set-cookie', ['a=1', 'b=2']);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body);
    });
  });
  const routes = [{ name: 'all', virtualHosts: [{ name: 'all', domains: ['*'], routes: [{ name: 'r', match: { prefix: '/' }, route: { cluster: 'app' } }] }] }];
  plane = await startPlane({
    listeners: [listener({ name: 'gw', direction: 'gateway' }), listener({ name: 'sidecar', direction: 'sidecar_inbound' })],
    clusters: [cluster('app', up.port)],
    routeTables: routes,
  });
  gw = plane.ports.gw!;
  sidecar = plane.ports.sidecar!;
});
after(async () => {
  await plane.close();
  await up.close();
});

async function get(port: number, headers: Record<string, string> = {}, path = '/e'): Promise<{ echo: Echo; res: Awaited<ReturnType<typeof request>> }> {
  const res = await request(`http://127.0.0.1:${port}${path}`, { headers });
  const echo = (await res.body.json()) as Echo;
  return { echo, res };
}

test('x-forwarded-for: set to the peer address, appended to an existing chain', async () => {
  assert.equal((await get(gw)).echo.headers['x-forwarded-for'], '127.0.0.1');
  assert.equal((await get(gw, { 'x-forwarded-for': '203.0.113.7, 198.51.100.1' })).echo.headers['x-forwarded-for'], '203.0.113.7, 198.51.100.1, 127.0.0.1');
});

test('x-forwarded-proto: set from the listener scheme on a gateway (client value overwritten), kept on a sidecar', async () => {
  assert.equal((await get(gw)).echo.headers['x-forwarded-proto'], 'http');
  assert.equal((await get(gw, { 'x-forwarded-proto': 'https' })).echo.headers['x-forwarded-proto'], 'http');
  assert.equal((await get(sidecar, { 'x-forwarded-proto': 'https' })).echo.headers['x-forwarded-proto'], 'https');
  assert.equal((await get(sidecar)).echo.headers['x-forwarded-proto'], 'http');
});

test('x-request-id: generated (UUID) when absent, unique per request, kept when present', async () => {
  const a = (await get(gw)).echo.headers['x-request-id']!;
  const b = (await get(gw)).echo.headers['x-request-id']!;
  assert.match(a, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.notEqual(a, b);
  assert.equal((await get(gw, { 'x-request-id': 'client-chosen-id' })).echo.headers['x-request-id'], 'client-chosen-id');
});

test('hop-by-hop request headers are removed (HTTP/1.1 downstream); te: trailers is kept', async () => {
  const raw = await rawExchange(
    gw,
    'GET /hop HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\nKeep-Alive: timeout=3\r\nProxy-Connection: keep-alive\r\nUpgrade: websocket\r\nTE: trailers\r\nX-Keep: 1\r\n\r\n',
  );
  const [res] = parseResponses(raw);
  const echo = JSON.parse(res!.body) as Echo;
  const sent = new Set(echo.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase()));
  for (const h of ['keep-alive', 'proxy-connection', 'upgrade', 'transfer-encoding']) assert.ok(!sent.has(h), `${h} forwarded: ${echo.rawHeaders.join(' | ')}`);
  // The upstream hop has its own connection header (undici's keep-alive), never the client's "close".
  assert.notEqual(echo.headers.connection, 'keep-alive, close');
  assert.equal(echo.headers.te, 'trailers');
  assert.equal(echo.headers['x-keep'], '1');
});

test('an h2c Upgrade request is served over HTTP/1.1 with Upgrade and HTTP2-Settings stripped (as Envoy)', async () => {
  const raw = await rawExchange(
    gw,
    'GET /h2c-upgrade HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n',
    (got) => got.endsWith('\r\n0\r\n\r\n'), // the end of the chunked response
  );
  const [res] = parseResponses(raw);
  assert.equal(res!.status, 200);
  const echo = JSON.parse(res!.body) as Echo;
  assert.equal(echo.url, '/h2c-upgrade');
  assert.equal(echo.headers.upgrade, undefined);
  assert.equal(echo.headers['http2-settings'], undefined);
});

test('TE values other than trailers are removed', async () => {
  const raw = await rawExchange(gw, 'GET /te HTTP/1.1\r\nHost: a\r\nTE: gzip\r\nConnection: close\r\n\r\n');
  const echo = JSON.parse(parseResponses(raw)[0]!.body) as Echo;
  assert.equal(echo.headers.te, undefined);
});

test('hop-by-hop response headers are removed (HTTP/1.1 and HTTP/2 downstream); repeated headers kept', async () => {
  const raw = await rawExchange(gw, 'GET /resp HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  const [res] = parseResponses(raw);
  assert.equal(res!.headers['x-app'], 'yes');
  assert.equal(res!.headers['proxy-connection'], undefined);
  assert.equal(res!.headers.upgrade, undefined);
  assert.notEqual(res!.headers['keep-alive'], 'timeout=7, max=99');
  assert.deepEqual(
    res!.headerLines.filter(([n]) => n === 'set-cookie').map(([, v]) => v),
    ['a=1', 'b=2'],
  );
  const session = await h2Connect(`http://127.0.0.1:${gw}`);
  try {
    const r = await h2Request(session, { ':method': 'GET', ':path': '/resp2' });
    assert.equal(r.headers[':status'], 200);
    for (const h of ['keep-alive', 'proxy-connection', 'upgrade', 'transfer-encoding', 'connection']) assert.equal(r.headers[h], undefined, h);
    assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2']);
  } finally {
    await h2Close(session);
  }
});

test('repeated request headers reach the upstream in order', async () => {
  const raw = await rawExchange(gw, 'GET /dup HTTP/1.1\r\nHost: a\r\nX-Dup: one\r\nX-Dup: two\r\nConnection: close\r\n\r\n');
  const echo = JSON.parse(parseResponses(raw)[0]!.body) as Echo;
  const dups = echo.rawHeaders.flatMap((v, i) => (i % 2 === 1 && echo.rawHeaders[i - 1]!.toLowerCase() === 'x-dup' ? [v] : []));
  assert.deepEqual(dups, ['one', 'two']);
});

test('Expect: 100-continue is answered by the proxy and not forwarded (curl, 2 MiB body)', async () => {
  const file = join(plane.accessLogFile, '..', 'body.bin');
  writeFileSync(file, Buffer.alloc(2 * 1024 * 1024, 7));
  const r = await run('curl', ['-sS', '-i', '-H', 'Expect: 100-continue', '--data-binary', `@${file}`, `http://127.0.0.1:${gw}/expect`]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^HTTP\/1\.1 100 Continue\r\n/);
  const body = r.stdout.slice(r.stdout.lastIndexOf('\r\n\r\n') + 4);
  assert.match(r.stdout, /HTTP\/1\.1 200 OK/);
  const echo = JSON.parse(body) as Echo;
  assert.equal(echo.bodyLength, 2 * 1024 * 1024);
  assert.equal(echo.headers.expect, undefined);
});

test('a downstream disconnect cancels the upstream request and is logged DC downstream_remote_disconnect', async () => {
  const p = await startPlane({ clusters: [cluster('app', up.port)], routeTables: [{ name: 'd', virtualHosts: [{ name: 'v', domains: ['*'], routes: [{ name: 'r', match: { prefix: '/' }, route: { cluster: 'app' } }] }] }] });
  try {
    const s = net.connect({ host: '127.0.0.1', port: p.ports.http! });
    s.on('error', () => {});
    s.write('GET /hang HTTP/1.1\r\nHost: a\r\n\r\n');
    await new Promise((r) => setTimeout(r, 200));
    s.destroy();
    await hangClosed; // the upstream saw its request go away
  } finally {
    const log = await p.closeAndReadLog();
    const e = log.find((x) => x.path === '/hang');
    assert.ok(e, JSON.stringify(log));
    assert.equal(e.response_flags, 'DC');
    assert.equal(e.response_code_details, 'downstream_remote_disconnect');
    assert.equal(e.response_code, 0);
  }
});

test('access log: request_id, x_forwarded_for, authority, upstream host/cluster, via_upstream details', async () => {
  const p = await startPlane({ clusters: [cluster('app', up.port)], routeTables: [{ name: 'd', virtualHosts: [{ name: 'v', domains: ['*'], routes: [{ name: 'route-1', match: { prefix: '/' }, route: { cluster: 'app' } }] }] }] });
  try {
    const res = await request(`http://127.0.0.1:${p.ports.http}/logged?x=1`, { headers: { 'x-request-id': 'rid-42', 'user-agent': 'conformance', host: 'svc.example' } });
    assert.equal(res.statusCode, 200);
    await res.body.text();
  } finally {
    const log = await p.closeAndReadLog();
    const e = log.find((x) => x.path === '/logged?x=1');
    assert.ok(e, JSON.stringify(log));
    assert.equal(e.request_id, 'rid-42');
    assert.equal(e.x_forwarded_for, '127.0.0.1');
    assert.equal(e.authority, 'svc.example');
    assert.equal(e.user_agent, 'conformance');
    assert.equal(e.upstream_cluster, 'app');
    assert.equal(e.upstream_host, `127.0.0.1:${up.port}`);
    assert.equal(e.route_name, 'route-1');
    assert.equal(e.response_code, 200);
    assert.equal(e.response_flags, '-');
    assert.equal(e.response_code_details, 'via_upstream');
    assert.ok(e.bytes_sent > 0);
  }
});

/** One HTTP/2 frame (RFC 9113 §4.1). */
function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

test('a client abort mid-upload (HTTP/1.1 close, HTTP/2 RST_STREAM without END_STREAM) reaches the upstream as an incomplete request', async () => {
  const seen: { url: string; complete: boolean; n: number }[] = [];
  let onClose!: () => void;
  let closes = 0;
  const both = new Promise<void>((r) => (onClose = r));
  let onArrived!: () => void;
  let arrived = 0;
  const bothArrived = new Promise<void>((r) => (onArrived = r));
  const target = await startHttp1((req) => {
    let n = 0;
    req.on('data', (c: Buffer) => {
      const before = n;
      n += c.length;
      if (before < 1000 && n >= 1000 && ++arrived === 2) onArrived();
    });
    req.on('close', () => {
      seen.push({ url: req.url!, complete: req.complete, n });
      if (++closes === 2) onClose();
    });
  });
  const p = await startPlane({ clusters: [cluster('t', target.port)], routeTables: [{ name: 'd', virtualHosts: [{ name: 'v', domains: ['*'], routes: [{ name: 'r', match: { prefix: '/' }, route: { cluster: 't' } }] }] }] });
  try {
    const h1 = net.connect({ host: '127.0.0.1', port: p.ports.http! });
    h1.on('error', () => {});
    h1.write('POST /h1-abort HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n' + 'x'.repeat(1000));
    // Raw frames: node's client sends END_STREAM before its RST_STREAM, a real abort does not.
    const h2 = net.connect({ host: '127.0.0.1', port: p.ports.http! });
    h2.on('error', () => {});
    h2.on('data', () => {});
    const hpack = Buffer.from([0x83, 0x85, 0x86, 0x41, 0x01, 0x61]); // POST, /index.html, http, :authority a
    h2.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(4, 0, 0, Buffer.alloc(0)), frame(1, 4, 1, hpack), frame(0, 0, 1, Buffer.alloc(1000, 0x61))]));
    // Abort once the upstream has both requests and their first 1000 bytes.
    await bothArrived;
    h1.destroy();
    const cancel = Buffer.alloc(4);
    cancel.writeUInt32BE(8); // CANCEL
    h2.write(frame(3, 0, 1, cancel));
    await both;
    h2.destroy();
    const byUrl = Object.fromEntries(seen.map((x) => [x.url, x]));
    assert.deepEqual(byUrl['/h1-abort'], { url: '/h1-abort', complete: false, n: 1000 });
    assert.deepEqual(byUrl['/index.html'], { url: '/index.html', complete: false, n: 1000 });
  } finally {
    const log = await p.closeAndReadLog();
    for (const e of log) assert.equal(e.response_flags, 'DC', JSON.stringify(e));
    await target.close();
  }
});
