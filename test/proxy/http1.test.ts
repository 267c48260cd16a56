/**
 * Downstream HTTP/1.1 conformance: keep-alive reuse (downstream and the upstream pool), chunked
 * request and response bodies, pipelining (two requests written back to back, responses in
 * order even when the first is slower), Host → :authority, HTTP/1.0.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type http from 'node:http';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { Client } from 'undici';
import { cluster } from '../helpers/bootstrap.ts';
import { parseResponses, rawExchange, run, startPlane, type RunningPlane } from '../helpers/conformance.ts';
import { startHttp1, type TestServer } from '../helpers/upstream.ts';

let upstream: TestServer & { server: http.Server };
let plane: RunningPlane;
let port: number;
let upstreamConnections = 0;

/** Upstream app: /slow waits before answering; /chunked streams a chunked response; otherwise echoes. */
const handler: http.RequestListener = (req, res) => {
  const hash = createHash('sha256');
  let n = 0;
  req.on('data', (c: Buffer) => {
    n += c.length;
    hash.update(c);
  });
  req.on('end', () => {
    const url = req.url ?? '/';
    if (url.startsWith('/chunked')) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      let i = 0;
      const tick = () => {
        if (i === 5) return res.end();
        res.write(`part-${i++};`);
        setTimeout(tick, 5);
      };
      tick();
      return;
    }
    const body = JSON.stringify({
      method: req.method,
      url,
      httpVersion: req.httpVersion,
      headers: req.headers,
      bodyLength: n,
      sha256: hash.digest('hex'),
    });
    const send = () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (url.startsWith('/slow')) setTimeout(send, 300);
    else send();
  });
};

before(async () => {
  upstream = await startHttp1(handler);
  upstream.server.on('connection', () => upstreamConnections++);
  plane = await startPlane({
    clusters: [cluster('app', upstream.port)],
    routeTables: [
      {
        name: 'default',
        virtualHosts: [
          { name: 'special', domains: ['special.example'], routes: [{ name: 'special', match: { prefix: '/' }, directResponse: { status: 200, body: 'special-vhost' } }] },
          { name: 'all', domains: ['*'], routes: [{ name: 'default', match: { prefix: '/' }, route: { cluster: 'app' } }] },
        ],
      },
    ],
  });
  port = plane.ports.http!;
});
after(async () => {
  await plane.close();
  await upstream.close();
});

interface Echo {
  method: string;
  url: string;
  httpVersion: string;
  headers: Record<string, string>;
  bodyLength: number;
  sha256: string;
}

test('keep-alive: several requests on one downstream connection, one upstream connection reused', async () => {
  const client = new Client(`http://127.0.0.1:${port}`, { pipelining: 1 });
  let connects = 0;
  client.on('connect', () => connects++);
  const before = upstreamConnections;
  try {
    for (let i = 0; i < 5; i++) {
      const res = await client.request({ path: `/ka/${i}`, method: 'GET' });
      assert.equal(res.statusCode, 200);
      const body = (await res.body.json()) as Echo;
      assert.equal(body.url, `/ka/${i}`);
    }
  } finally {
    await client.close();
  }
  assert.equal(connects, 1, 'the client opened exactly one connection to the proxy');
  assert.ok(upstreamConnections - before <= 1, `upstream connections opened: ${upstreamConnections - before}`);
});

test('keep-alive on a raw socket: the connection stays open between responses', async () => {
  const s = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((r) => s.once('connect', () => r()));
  let buf = '';
  s.on('data', (c: Buffer) => (buf += c.toString('latin1')));
  const waitFor = (n: number) =>
    new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out; got:\n${buf}`)), 10_000);
      const check = () => {
        try {
          if (parseResponses(buf).length >= n) {
            clearTimeout(t);
            s.off('data', check);
            resolve();
          }
        } catch {
          // incomplete
        }
      };
      s.on('data', check);
      check();
    });
  try {
    s.write('GET /one HTTP/1.1\r\nHost: a.example\r\n\r\n');
    await waitFor(1);
    assert.equal(s.destroyed, false);
    s.write('GET /two HTTP/1.1\r\nHost: a.example\r\n\r\n');
    await waitFor(2);
    const [r1, r2] = parseResponses(buf);
    assert.equal((JSON.parse(r1!.body) as Echo).url, '/one');
    assert.equal((JSON.parse(r2!.body) as Echo).url, '/two');
    assert.notEqual(r1!.headers.connection, 'close');
  } finally {
    s.destroy();
  }
});

test('chunked request body streams upstream intact (no content-length invented)', async () => {
  const parts = ['hello ', 'chunked ', 'world', 'x'.repeat(70_000)];
  let req = 'POST /creq HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n';
  for (const p of parts) req += `${Buffer.byteLength(p).toString(16)}\r\n${p}\r\n`;
  req += '0\r\n\r\n';
  const raw = await rawExchange(port, req);
  const [res] = parseResponses(raw);
  assert.equal(res!.status, 200);
  const echo = JSON.parse(res!.body) as Echo;
  const whole = parts.join('');
  assert.equal(echo.bodyLength, whole.length);
  assert.equal(echo.sha256, createHash('sha256').update(whole).digest('hex'));
  assert.equal(echo.headers['transfer-encoding'], 'chunked');
  assert.equal(echo.headers['content-length'], undefined);
});

test('chunked response body streams to the client as chunked', async () => {
  const raw = await rawExchange(port, 'GET /chunked HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n');
  const [res] = parseResponses(raw);
  assert.equal(res!.status, 200);
  assert.equal(res!.headers['transfer-encoding'], 'chunked');
  assert.equal(res!.body, 'part-0;part-1;part-2;part-3;part-4;');
});

test('pipelining: two requests written back to back get responses in order (first one slower)', async () => {
  const raw = await rawExchange(
    port,
    'GET /slow/first HTTP/1.1\r\nHost: a.example\r\n\r\n' + 'POST /fast/second HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\nhello' + 'GET /third HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n',
  );
  const responses = parseResponses(raw);
  assert.equal(responses.length, 3, raw);
  const urls = responses.map((r) => (JSON.parse(r.body) as Echo).url);
  assert.deepEqual(urls, ['/slow/first', '/fast/second', '/third']);
  assert.equal((JSON.parse(responses[1]!.body) as Echo).bodyLength, 5);
});

test('Host becomes :authority: forwarded as host and used for virtual host selection', async () => {
  const raw = await rawExchange(port, 'GET /h HTTP/1.1\r\nHost: Service.Example:8080\r\nConnection: close\r\n\r\n');
  const [res] = parseResponses(raw);
  assert.equal((JSON.parse(res!.body) as Echo).headers.host, 'Service.Example:8080');
  const special = parseResponses(await rawExchange(port, 'GET / HTTP/1.1\r\nHost: special.example\r\nConnection: close\r\n\r\n'))[0]!;
  assert.equal(special.body, 'special-vhost');
  // Port stripped when the exact domain has no port (Envoy retries without it).
  const special2 = parseResponses(await rawExchange(port, 'GET / HTTP/1.1\r\nHost: special.example:9999\r\nConnection: close\r\n\r\n'))[0]!;
  assert.equal(special2.body, 'special-vhost');
});

test('absolute-form request target (client using the proxy as its HTTP proxy): :authority and :path from the URL', async () => {
  const raw = await rawExchange(port, 'GET http://Svc.Example:8080/abs/path?x=1 HTTP/1.1\r\nHost: ignored.example\r\nConnection: close\r\n\r\n');
  const [res] = parseResponses(raw);
  assert.equal(res!.status, 200, raw);
  const echo = JSON.parse(res!.body) as Echo;
  assert.equal(echo.url, '/abs/path?x=1');
  assert.equal(echo.headers.host, 'Svc.Example:8080');
  const q = parseResponses(await rawExchange(port, 'GET http://special.example?y=2 HTTP/1.1\r\nHost: special.example\r\nConnection: close\r\n\r\n'))[0]!;
  assert.equal(q.body, 'special-vhost');
  // curl -x uses the absolute form.
  const c = await run('curl', ['-sS', '-x', `http://127.0.0.1:${port}`, 'http://proxied.example/via-curl-proxy']);
  assert.equal(c.code, 0, c.stderr);
  const viaCurl = JSON.parse(c.stdout) as Echo;
  assert.equal(viaCurl.url, '/via-curl-proxy');
  assert.equal(viaCurl.headers.host, 'proxied.example');
});

test('HTTP/1.1 request without Host is rejected with 400', async () => {
  const [res] = parseResponses(await rawExchange(port, 'GET /nohost HTTP/1.1\r\nConnection: close\r\n\r\n'));
  assert.equal(res!.status, 400);
});

test('HTTP/1.0 request: answered, connection closed after the response, forwarded upstream as HTTP/1.1', async () => {
  const raw = await rawExchange(port, 'GET /ten HTTP/1.0\r\nHost: a.example\r\n\r\n');
  const [res] = parseResponses(raw);
  assert.equal(res!.status, 200);
  const echo = JSON.parse(res!.body) as Echo;
  assert.equal(echo.url, '/ten');
  assert.equal(echo.httpVersion, '1.1');
  assert.equal(echo.headers.host, 'a.example');
  // rawExchange resolved because the proxy closed the connection (no keep-alive for 1.0).
  assert.notEqual(res!.headers.connection, 'keep-alive');
});

test('HTTP/1.0 client and a chunked upstream response: the body is sent close-delimited, never chunk-framed', async () => {
  const raw = await rawExchange(port, 'GET /chunked HTTP/1.0\r\nHost: a.example\r\n\r\n');
  const head = raw.slice(0, raw.indexOf('\r\n\r\n')).toLowerCase();
  assert.ok(!head.includes('transfer-encoding'), head);
  assert.equal(raw.slice(raw.indexOf('\r\n\r\n') + 4), 'part-0;part-1;part-2;part-3;part-4;');
});

test('HTTP/1.0 with keep-alive and a body', async () => {
  const raw = await rawExchange(port, 'POST /ten-ka HTTP/1.0\r\nHost: a.example\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc', (got) => {
    try {
      return parseResponses(got).length === 1 && got.includes('"bodyLength":3');
    } catch {
      return false;
    }
  });
  const [res] = parseResponses(raw);
  assert.equal(res!.status, 200);
  assert.equal((JSON.parse(res!.body) as Echo).bodyLength, 3);
});

test('the access log records HTTP/1.0 and HTTP/1.1 protocols', async () => {
  // Logged at close; this test reads the file only after a fresh plane closes.
  const p = await startPlane({ clusters: [cluster('app', upstream.port)], routeTables: [{ name: 'd', virtualHosts: [{ name: 'a', domains: ['*'], routes: [{ name: 'r', match: { prefix: '/' }, route: { cluster: 'app' } }] }] }] });
  try {
    const pp = p.ports.http!;
    await rawExchange(pp, 'GET /p10 HTTP/1.0\r\nHost: a\r\n\r\n');
    await rawExchange(pp, 'GET /p11 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  } finally {
    const log = await p.closeAndReadLog();
    const byPath = Object.fromEntries(log.map((e) => [e.path, e]));
    assert.equal(byPath['/p10']?.protocol, 'HTTP/1.0');
    assert.equal(byPath['/p11']?.protocol, 'HTTP/1.1');
    assert.equal(byPath['/p11']?.response_code, 200);
  }
});
