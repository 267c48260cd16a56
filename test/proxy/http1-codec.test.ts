/**
 * The HTTP/1.1 codec end to end through the real data plane (sockets on 127.0.0.1): Envoy's codec
 * error statuses for malformed requests (and the connection closing), Expect: 100-continue, HEAD,
 * pipelining (one write and byte by byte), request trailers upstream, upstream framing (close-
 * delimited, chunked with trailers, 204, 304, interim 1xx), the pool (keep-alive reuse, idle close
 * retried, max connections queueing), upstream failures in the access log (UPE, UF), no header
 * injection from filter-set values, 1 MiB bodies, HTTP/1.0 clients, TLS on both sides.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import type { ClusterConfig, RouteConfig } from '../../src/config/types.ts';
import type { HeaderMap } from '../../src/filters/header-map.ts';
import { HeadersStatus, type HttpFilterFactory } from '../../src/filters/types.ts';
import { cluster, listener } from '../helpers/bootstrap.ts';
import { makeCert, parseResponses, rawExchange, startPlane, type RunningPlane, type TestCert } from '../helpers/conformance.ts';
import { startHttp1, type TestServer } from '../helpers/upstream.ts';

// ---------------------------------------------------------------- raw upstreams

interface RawUpstream {
  port: number;
  connections: number;
  /** Request heads received (text up to the blank line), in order. */
  heads: string[];
  close(): Promise<void>;
}

/**
 * A TCP server that reads bodyless requests (heads only) and lets `onRequest` answer with raw
 * bytes; `index` counts requests on that connection.
 */
async function rawUpstream(onRequest: (socket: net.Socket, head: string, index: number) => void): Promise<RawUpstream> {
  const sockets = new Set<net.Socket>();
  const state: RawUpstream = { port: 0, connections: 0, heads: [], close: async () => {} };
  const server = net.createServer((socket) => {
    state.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buf = '';
    let index = 0;
    socket.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) break;
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        state.heads.push(head);
        onRequest(socket, head, index++);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  state.port = (server.address() as AddressInfo).port;
  state.close = () =>
    new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
  return state;
}

const pathOf = (head: string) => head.split(' ')[1] ?? '';

const ONE_MIB = Buffer.alloc(1024 * 1024);
for (let i = 0; i < ONE_MIB.length; i++) ONE_MIB[i] = (i * 7 + (i >> 10)) & 0xff;
const ONE_MIB_SHA = createHash('sha256').update(ONE_MIB).digest('hex');
const sha = (s: string) => createHash('sha256').update(Buffer.from(s, 'latin1')).digest('hex');

/** Canned responses of the raw upstream, by path. */
function rawResponder(socket: net.Socket, head: string): void {
  const path = pathOf(head);
  const isHead = head.startsWith('HEAD ');
  switch (path) {
    case '/raw/close-delimited':
      socket.end('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nbody until the connection closes');
      return;
    case '/raw/close-delimited-big':
      socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n');
      socket.end(ONE_MIB);
      return;
    case '/raw/chunked-trailers':
      socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n');
      socket.write('5\r\nhello\r\n');
      socket.write('6;ext=1\r\n world\r\n0\r\nX-Checksum: abc123\r\nX-Other: two\r\n\r\n');
      return;
    case '/raw/204':
      socket.write('HTTP/1.1 204 No Content\r\nX-Kind: no-content\r\n\r\n');
      return;
    case '/raw/304':
      // A 304 may carry the representation's length; no body follows.
      socket.write('HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 1234\r\n\r\n');
      return;
    case '/raw/interim':
      socket.write('HTTP/1.1 100 Continue\r\n\r\n');
      socket.write('HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n');
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Final: yes\r\n\r\nfinal');
      return;
    case '/raw/head':
      socket.write(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n${isHead ? '' : 'x'.repeat(1234)}`);
      return;
    default:
      socket.write('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
  }
}

// ---------------------------------------------------------------- the shared plane

let plane: RunningPlane;
let port: number;
let app: TestServer & { server: http.Server };
let appConnections = 0;
let appRequests = 0;
let raw: RawUpstream;
let idleClose: RawUpstream;
let single: TestServer & { server: http.Server };
let singleConnections = 0;
let singleActive = 0;
let singleMaxActive = 0;

interface Echo {
  method: string;
  url: string;
  httpVersion: string;
  headers: Record<string, string>;
  bodyLength: number;
  sha256: string;
  trailers: Record<string, string>;
}

/** Echo app: /big answers 1 MiB with or without content-length; otherwise echoes the request. */
const appHandler: http.RequestListener = (req, res) => {
  appRequests++;
  const hash = createHash('sha256');
  let n = 0;
  req.on('data', (c: Buffer) => {
    n += c.length;
    hash.update(c);
  });
  req.on('end', () => {
    const url = req.url ?? '/';
    if (url === '/app/big-length') {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': ONE_MIB.length });
      res.end(ONE_MIB);
      return;
    }
    if (url === '/app/big-chunked') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      for (let i = 0; i < ONE_MIB.length; i += 64 * 1024) res.write(ONE_MIB.subarray(i, i + 64 * 1024));
      res.end();
      return;
    }
    const body = JSON.stringify({ method: req.method, url, httpVersion: req.httpVersion, headers: req.headers, bodyLength: n, sha256: hash.digest('hex'), trailers: req.trailers });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
};

const prefixRoute = (prefix: string, clusterName: string): RouteConfig => ({ name: prefix, match: { prefix }, route: { cluster: clusterName } });

before(async () => {
  app = await startHttp1(appHandler);
  app.server.on('connection', () => appConnections++);
  raw = await rawUpstream((s, h) => rawResponder(s, h));
  // Answers the first request on a connection (keep-alive), then closes the connection without an
  // answer when the next request arrives on it: the pool's reused connection was already gone.
  idleClose = await rawUpstream((socket, _head, index) => {
    if (index === 0) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst');
    else socket.destroy();
  });
  single = await startHttp1((req, res) => {
    singleActive++;
    singleMaxActive = Math.max(singleMaxActive, singleActive);
    req.resume();
    req.on('end', () =>
      setTimeout(() => {
        singleActive--;
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(req.url ?? '') });
        res.end(req.url);
      }, 20),
    );
  });
  single.server.on('connection', () => singleConnections++);
  plane = await startPlane({
    clusters: [cluster('app', app.port), cluster('raw', raw.port), cluster('idle-close', idleClose.port), cluster('single', single.port, { maxConnections: 1 })],
    routeTables: [
      {
        name: 'default',
        virtualHosts: [
          {
            name: 'all',
            domains: ['*'],
            routes: [
              { name: 'direct', match: { prefix: '/direct' }, directResponse: { status: 200, body: 'direct-body' } },
              prefixRoute('/raw/', 'raw'),
              prefixRoute('/idle-close', 'idle-close'),
              prefixRoute('/single', 'single'),
              prefixRoute('/', 'app'),
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
  await app.close();
  await raw.close();
  await idleClose.close();
  await single.close();
});

/** One raw exchange that is expected to end with the server closing the connection. */
async function exchangeUntilClose(data: string | Buffer, p = port) {
  const got = await rawExchange(p, data);
  return { got, responses: parseResponses(got) };
}

/** Waits for `n` complete responses on a raw exchange (the connection may stay open). */
async function exchangeN(data: string | Buffer, n: number, p = port) {
  const got = await rawExchange(p, data, (r) => {
    try {
      return parseResponses(r).length >= n && completeResponses(r) >= n;
    } catch {
      return false;
    }
  });
  return parseResponses(got);
}

/** Counts responses whose bodies are complete (parseResponses reads what is there). */
function completeResponses(raw: string): number {
  let at = 0;
  let count = 0;
  while (at < raw.length) {
    const headEnd = raw.indexOf('\r\n\r\n', at);
    if (headEnd < 0) break;
    const head = raw.slice(at, headEnd).toLowerCase();
    at = headEnd + 4;
    const status = Number(head.slice(9, 12));
    const cl = /\r\ncontent-length: *(\d+)/.exec(head);
    if (status === 204 || status === 304 || (status >= 100 && status < 200)) {
      // no body
    } else if (/\r\ntransfer-encoding: *chunked/.test(head)) {
      const end = raw.indexOf('\r\n0\r\n', at - 2);
      if (end < 0) return count;
      const tEnd = raw.indexOf('\r\n\r\n', end + 3);
      if (tEnd < 0) return count;
      at = tEnd + 4;
    } else if (cl) {
      if (raw.length - at < Number(cl[1])) return count;
      at += Number(cl[1]);
    }
    count++;
  }
  return count;
}

function connect(p = port): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: p }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Reads from `s` until `pred(received)` holds; rejects on timeout (generous) or close first. */
function readUntil(s: net.Socket, pred: (got: string) => boolean, state: { got: string }, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (pred(state.got)) return resolve();
    const t = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out; received:\n${state.got}`));
    }, timeoutMs);
    const onData = () => {
      if (pred(state.got)) {
        cleanup();
        resolve();
      }
    };
    const onClose = () => {
      cleanup();
      if (pred(state.got)) resolve();
      else reject(new Error(`closed; received:\n${state.got}`));
    };
    const cleanup = () => {
      clearTimeout(t);
      s.off('data', onData);
      s.off('close', onClose);
    };
    s.on('data', onData);
    s.on('close', onClose);
  });
}

function collect(s: net.Socket): { got: string } {
  const state = { got: '' };
  s.on('data', (c: Buffer) => (state.got += c.toString('latin1')));
  return state;
}

async function getJson(path: string, p = port): Promise<Echo> {
  const res = await request(`http://127.0.0.1:${p}${path}`);
  assert.equal(res.statusCode, 200);
  return (await res.body.json()) as Echo;
}

// ---------------------------------------------------------------- malformed requests

describe('malformed requests get Envoy codec error statuses and the connection closes', () => {
  const cases: [string, string, number][] = [
    ['bare LF', 'GET / HTTP/1.1\nHost: a\n\n', 400],
    ['control character in a header value', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n', 400],
    ['obs-fold', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n', 400],
    ['invalid header name', 'GET / HTTP/1.1\r\nHost: a\r\nBad Name: v\r\n\r\n', 400],
    ['missing colon', 'GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n', 400],
    ['Content-Length and Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
    ['conflicting Content-Length', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab', 400],
    ['non-numeric Content-Length', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ten\r\n\r\n', 400],
    ['invalid chunk size', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n', 400],
    ['missing Host in HTTP/1.1', 'GET / HTTP/1.1\r\nX: y\r\n\r\n', 400],
    ['unknown transfer coding', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n', 501],
    ['HTTP/2.0 request line', 'GET / HTTP/2.0\r\nHost: a\r\n\r\n', 505],
    ['headers over the limit', `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(100 * 1024)}\r\n\r\n`, 431],
  ];
  for (const [name, rawReq, status] of cases) {
    test(`${name} → ${status}`, async () => {
      const before = appRequests;
      const protocolErrors = plane.dp.stats.counter('http.http.downstream_cx_protocol_error');
      const errorsBefore = protocolErrors.value;
      const { responses } = await exchangeUntilClose(rawReq);
      assert.equal(protocolErrors.value, errorsBefore + 1, "counted in Envoy's downstream_cx_protocol_error");
      assert.equal(responses.length, 1, 'exactly one response');
      assert.equal(responses[0]!.status, status);
      assert.equal(responses[0]!.headers.connection, 'close');
      assert.equal(appRequests, before, 'nothing reached the upstream');
      // The proxy keeps serving.
      const echo = await getJson('/after-error');
      assert.equal(echo.url, '/after-error');
    });
  }

  test('after a codec error, later bytes on that connection are not served', async () => {
    const s = await connect();
    const st = collect(s);
    s.on('error', () => {});
    try {
      s.write('GET /bad HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n');
      await readUntil(s, (g) => g.includes('\r\n\r\n') && g.includes('Bad Request'), st);
      const seen = raw.heads.length;
      // A valid request after the error (the client did not read the 400 yet) must be ignored.
      s.write('GET /raw/204 HTTP/1.1\r\nHost: a\r\n\r\n');
      await readUntil(s, () => s.destroyed || s.readableEnded, st).catch(() => {});
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(raw.heads.length, seen, 'the request after the error reached the upstream');
      assert.equal(parseResponses(st.got).length, 1);
    } finally {
      s.destroy();
    }
  });
});

// ---------------------------------------------------------------- downstream behaviour

test('Expect: 100-continue: interim 100 before the body is sent, then the final response', async () => {
  const s = await connect();
  const st = collect(s);
  try {
    s.write('POST /expect HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n');
    await readUntil(s, (g) => g.includes('\r\n\r\n'), st);
    assert.match(st.got, /^HTTP\/1\.1 100 Continue\r\n\r\n$/);
    s.write('hello world');
    await readUntil(s, (g) => completeResponses(g) >= 2, st);
    const [interim, final] = parseResponses(st.got);
    assert.equal(interim!.status, 100);
    assert.equal(final!.status, 200);
    const echo = JSON.parse(final!.body) as Echo;
    assert.equal(echo.bodyLength, 11);
    assert.equal(echo.headers.expect, undefined, 'Expect is consumed by the proxy');
  } finally {
    s.destroy();
  }
});

test('HEAD: the response carries content-length but no body; the connection stays usable', async () => {
  const got = await rawExchange(port, 'HEAD /raw/head HTTP/1.1\r\nHost: a\r\n\r\nGET /direct HTTP/1.1\r\nHost: a\r\n\r\n', (r) => r.includes('direct-body'));
  const headEnd = got.indexOf('\r\n\r\n');
  const head = got.slice(0, headEnd);
  assert.match(head, /^HTTP\/1\.1 200 /);
  assert.match(head, /\r\ncontent-length: 1234(\r\n|$)/i);
  assert.doesNotMatch(head, /transfer-encoding/i);
  // The next bytes are the second response's status line, not a body.
  assert.ok(got.slice(headEnd + 4).startsWith('HTTP/1.1 200 '), `after the HEAD response: ${JSON.stringify(got.slice(headEnd + 4, headEnd + 40))}`);
});

test('HEAD proxied to a node:http upstream: content-length kept, no body', async () => {
  const got = await rawExchange(port, 'HEAD /app/big-length HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  const headEnd = got.indexOf('\r\n\r\n');
  assert.match(got.slice(0, headEnd), /\r\ncontent-length: 1048576(\r\n|$)/i);
  assert.equal(got.length, headEnd + 4, 'no body bytes');
});

function pipelinedBurst(n: number): string {
  let out = '';
  for (let i = 0; i < n; i++) {
    if (i % 5 === 4) out += `POST /p/${i} HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc`;
    else if (i % 7 === 6) out += `GET /direct/${i} HTTP/1.1\r\nHost: a\r\n\r\n`;
    else if (i % 6 === 5) out += `GET /raw/204 HTTP/1.1\r\nHost: a\r\n\r\n`;
    else out += `GET /p/${i} HTTP/1.1\r\nHost: a\r\n\r\n`;
  }
  return out;
}

function assertBurst(responses: ReturnType<typeof parseResponses>, n: number): void {
  assert.equal(responses.length, n);
  for (let i = 0; i < n; i++) {
    const r = responses[i]!;
    if (i % 5 === 4) {
      assert.equal(r.status, 200);
      const e = JSON.parse(r.body) as Echo;
      assert.equal(e.url, `/p/${i}`);
      assert.equal(e.bodyLength, 3);
    } else if (i % 7 === 6) {
      assert.equal(r.body, 'direct-body', `response ${i}`);
    } else if (i % 6 === 5) {
      assert.equal(r.status, 204, `response ${i}`);
    } else {
      assert.equal(r.status, 200);
      assert.equal((JSON.parse(r.body) as Echo).url, `/p/${i}`, `response ${i} in order`);
    }
  }
}

test('pipelining: 20 requests in one write get 20 responses in order', async () => {
  const responses = await exchangeN(pipelinedBurst(20), 20);
  assertBurst(responses, 20);
});

test('an HTTP/1.1 request whose first segment is only "P" (a prefix of the HTTP/2 preface) is served as HTTP/1.1', async () => {
  const s = await connect();
  const st = collect(s);
  try {
    s.write('P');
    // Let the lone byte arrive as its own read before the rest.
    await new Promise((r) => setTimeout(r, 50));
    s.write('OST /p-first HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi');
    await readUntil(s, (g) => completeResponses(g) >= 1, st);
    const [res] = parseResponses(st.got);
    assert.equal(res!.status, 200);
    assert.equal((JSON.parse(res!.body) as Echo).url, '/p-first');
  } finally {
    s.destroy();
  }
});

test('pipelining: 20 requests written byte by byte get 20 responses in order', async () => {
  const s = await connect();
  const st = collect(s);
  try {
    const bytes = Buffer.from(pipelinedBurst(20), 'latin1');
    for (let i = 0; i < bytes.length; i++) {
      s.write(bytes.subarray(i, i + 1));
      if (i % 16 === 0) await new Promise((r) => setImmediate(r));
    }
    await readUntil(s, (g) => completeResponses(g) >= 20, st, 30_000);
    assertBurst(parseResponses(st.got), 20);
  } finally {
    s.destroy();
  }
});

test('keep-alive after a direct response (answered while the request is being parsed)', async () => {
  const s = await connect();
  const st = collect(s);
  try {
    s.write('GET /direct/1 HTTP/1.1\r\nHost: a\r\n\r\n');
    await readUntil(s, (g) => completeResponses(g) >= 1, st);
    assert.notEqual(parseResponses(st.got)[0]!.headers.connection, 'close');
    s.write('GET /direct/2 HTTP/1.1\r\nHost: a\r\n\r\n');
    await readUntil(s, (g) => completeResponses(g) >= 2, st);
    assert.equal(parseResponses(st.got)[1]!.body, 'direct-body');
  } finally {
    s.destroy();
  }
});

test('chunked request body with trailers reaches an HTTP/1.1 upstream with the trailers', async () => {
  const req =
    'POST /trailers HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\nConnection: close\r\n\r\n' +
    '5\r\nhello\r\n6;ext=x\r\n world\r\n0\r\nX-Checksum: abc\r\nX-Second: 2\r\n\r\n';
  const { responses } = await exchangeUntilClose(req);
  assert.equal(responses.length, 1);
  const echo = JSON.parse(responses[0]!.body) as Echo;
  assert.equal(echo.bodyLength, 11);
  assert.equal(echo.sha256, sha('hello world'));
  assert.deepEqual(echo.trailers, { 'x-checksum': 'abc', 'x-second': '2' });
});

// ---------------------------------------------------------------- upstream framing

test('upstream close-delimited response (no length, Connection: close) is relayed whole', async () => {
  const responses = await exchangeN('GET /raw/close-delimited HTTP/1.1\r\nHost: a\r\n\r\n', 1);
  assert.equal(responses[0]!.status, 200);
  assert.equal(responses[0]!.body, 'body until the connection closes');
  // And again (the closed upstream connection is not reused).
  const again = await exchangeN('GET /raw/close-delimited HTTP/1.1\r\nHost: a\r\n\r\n', 1);
  assert.equal(again[0]!.body, 'body until the connection closes');
});

test('upstream chunked response with trailers: body and trailers reach the client', async () => {
  const responses = await exchangeN('GET /raw/chunked-trailers HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n', 1);
  const r = responses[0]!;
  assert.equal(r.status, 200);
  assert.equal(r.body, 'hello world');
  assert.equal(r.trailers['x-checksum'], 'abc123');
  assert.equal(r.trailers['x-other'], 'two');
});

test('upstream 204 and 304: no body, connection reused for the next request', async () => {
  const got = await rawExchange(port, 'GET /raw/204 HTTP/1.1\r\nHost: a\r\n\r\nGET /raw/304 HTTP/1.1\r\nHost: a\r\n\r\nGET /direct HTTP/1.1\r\nHost: a\r\n\r\n', (r) => r.includes('direct-body'));
  // Three heads back to back: neither the 204 nor the 304 (which carries the representation's
  // content-length) is followed by body bytes.
  const parts = got.split('\r\n\r\n');
  assert.match(parts[0]!, /^HTTP\/1\.1 204 /);
  assert.match(parts[0]!, /\r\nx-kind: no-content/);
  assert.doesNotMatch(parts[0]!, /transfer-encoding/i);
  assert.match(parts[1]!, /^HTTP\/1\.1 304 /);
  assert.match(parts[1]!, /\r\netag: "v1"/);
  assert.doesNotMatch(parts[1]!, /transfer-encoding/i);
  assert.match(parts[2]!, /^HTTP\/1\.1 200 /);
  assert.equal(parts[3], 'direct-body');
});

test('upstream 100 Continue and 103 before the final response: the final response is relayed', async () => {
  const responses = await exchangeN('GET /raw/interim HTTP/1.1\r\nHost: a\r\n\r\n', 1);
  const final = responses.find((r) => r.status >= 200)!;
  assert.equal(final.status, 200);
  assert.equal(final.headers['x-final'], 'yes');
  assert.equal(final.body, 'final');
});

test('1 MiB response with content-length', async () => {
  const res = await request(`http://127.0.0.1:${port}/app/big-length`);
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers['content-length'], String(ONE_MIB.length));
  const body = Buffer.from(await res.body.arrayBuffer());
  assert.equal(createHash('sha256').update(body).digest('hex'), ONE_MIB_SHA);
});

test('1 MiB response without content-length (chunked upstream, and close-delimited upstream)', async () => {
  for (const path of ['/app/big-chunked', '/raw/close-delimited-big']) {
    const res = await request(`http://127.0.0.1:${port}${path}`);
    assert.equal(res.statusCode, 200);
    const body = Buffer.from(await res.body.arrayBuffer());
    assert.equal(body.length, ONE_MIB.length, path);
    assert.equal(createHash('sha256').update(body).digest('hex'), ONE_MIB_SHA, path);
  }
});

test('1 MiB request body upstream (content-length and chunked)', async () => {
  const a = await request(`http://127.0.0.1:${port}/upload`, { method: 'POST', body: ONE_MIB });
  const ea = (await a.body.json()) as Echo;
  assert.equal(ea.bodyLength, ONE_MIB.length);
  assert.equal(ea.sha256, ONE_MIB_SHA);
  const parts: Buffer[] = [];
  for (let i = 0; i < ONE_MIB.length; i += 100_000) parts.push(ONE_MIB.subarray(i, i + 100_000));
  // A stream body without a length goes out chunked.
  const b = await request(`http://127.0.0.1:${port}/upload`, { method: 'POST', body: Readable.from(parts) });
  const eb = (await b.body.json()) as Echo;
  assert.equal(eb.sha256, ONE_MIB_SHA);
});

// ---------------------------------------------------------------- the upstream pool

test('upstream keep-alive: sequential requests share one upstream connection', async () => {
  await getJson('/warm');
  const before = appConnections;
  for (let i = 0; i < 6; i++) assert.equal((await getJson(`/seq/${i}`)).url, `/seq/${i}`);
  assert.ok(appConnections - before <= 1, `upstream connections opened for 6 sequential requests: ${appConnections - before}`);
});

test('an upstream that closed a reused keep-alive connection does not fail the next GET (one retry)', async () => {
  const before = idleClose.connections;
  for (let i = 0; i < 3; i++) {
    const res = await request(`http://127.0.0.1:${port}/idle-close/${i}`);
    assert.equal(res.statusCode, 200, `request ${i}`);
    assert.equal(await res.body.text(), 'first');
  }
  assert.ok(idleClose.connections - before >= 3, 'each request needed a fresh connection');
});

test('max connections 1: 5 concurrent requests queue and all succeed over one connection', async () => {
  const before = singleConnections;
  singleMaxActive = 0;
  const results = await Promise.all(
    [0, 1, 2, 3, 4].map(async (i) => {
      // Separate downstream connections so the requests are concurrent at the proxy.
      const responses = await exchangeN(`GET /single/${i} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`, 1);
      return responses[0]!;
    }),
  );
  results.forEach((r, i) => {
    assert.equal(r.status, 200);
    assert.equal(r.body, `/single/${i}`);
  });
  assert.equal(singleMaxActive, 1, 'never more than one request at the upstream at once');
  assert.ok(singleConnections - before <= 1, `connections: ${singleConnections - before}`);
});

// ---------------------------------------------------------------- HTTP/1.0

test('HTTP/1.0 client: no chunked framing, connection closes after the response', async () => {
  const a = await exchangeUntilClose('GET /h10 HTTP/1.0\r\n\r\n');
  assert.equal(a.responses.length, 1);
  assert.equal((JSON.parse(a.responses[0]!.body) as Echo).url, '/h10');
  // A body without a length upstream is close-delimited to an HTTP/1.0 client, never chunked.
  const b = await exchangeUntilClose('GET /raw/chunked-trailers HTTP/1.0\r\nHost: a\r\n\r\n');
  const head = b.got.slice(0, b.got.indexOf('\r\n\r\n'));
  assert.doesNotMatch(head, /transfer-encoding/i);
  assert.equal(b.got.slice(b.got.indexOf('\r\n\r\n') + 4), 'hello world');
});

test('HTTP/1.0 client with keep-alive gets two responses on one connection', async () => {
  const s = await connect();
  const st = collect(s);
  try {
    s.write('GET /k1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    await readUntil(s, (g) => completeResponses(g) >= 1, st);
    assert.equal(parseResponses(st.got)[0]!.headers.connection, 'keep-alive');
    s.write('GET /k2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    await readUntil(s, (g) => completeResponses(g) >= 2, st);
    assert.equal((JSON.parse(parseResponses(st.got)[1]!.body) as Echo).url, '/k2');
  } finally {
    s.destroy();
  }
});

// ---------------------------------------------------------------- header injection

/** A filter that writes values containing CR/LF into response headers and the reason phrase. */
const injector: HttpFilterFactory = {
  name: 'injector',
  create(cb) {
    return {
      encodeHeaders(headers: HeaderMap) {
        headers.set('x-evil', 'a\r\nx-injected: 1');
        headers.add('x-evil-lf', 'b\nx-injected-lf: 1');
        headers.set('x-fine', 'ok');
        cb.streamInfo.http1ReasonPhrase = 'OK\r\nx-injected-reason: 1';
        return HeadersStatus.Continue;
      },
    };
  },
};

/** A filter that writes CR/LF into the request's :path, :authority and a header. */
const requestInjector: HttpFilterFactory = {
  name: 'request-injector',
  create() {
    return {
      decodeHeaders(headers: HeaderMap) {
        const p = headers.get(':path') ?? '/';
        if (p.includes('inject-path')) headers.set(':path', '/x HTTP/1.1\r\nHost: a\r\n\r\nGET /smuggled');
        if (p.includes('inject-authority')) headers.set(':authority', 'a\r\nx-smuggled: 1');
        headers.set('x-req-evil', 'v\r\nx-smuggled-header: 1');
        return HeadersStatus.Continue;
      },
    };
  },
};

describe('no header injection from filter-set values', () => {
  let p2: RunningPlane;
  let p2port: number;
  before(async () => {
    p2 = await startPlane({ clusters: [cluster('raw', raw.port), cluster('app', app.port)], routeTables: [{ name: 'default', virtualHosts: [{ name: 'all', domains: ['*'], routes: [prefixRoute('/raw/', 'raw'), prefixRoute('/', 'app')] }] }] });
    p2port = p2.ports.http!;
    p2.dp.httpListeners[0]!.setChain([injector, requestInjector, p2.dp.routerFactory]);
  });
  after(async () => {
    await p2.close();
  });

  test('a response header value with CR/LF is never written raw (no response splitting)', async () => {
    const { got } = await exchangeUntilClose('GET /raw/204 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n', p2port);
    const lines = got.split('\r\n');
    assert.ok(lines[0]!.startsWith('HTTP/1.1 204'), lines[0]);
    for (const l of lines) assert.doesNotMatch(l, /^x-injected/i, `injected line in:\n${got}`);
    assert.doesNotMatch(got, /(^|[\r\n])x-injected/i);
    assert.ok(lines.includes('x-fine: ok'));
  });

  test('a request :path, :authority or header with CR/LF never splits the upstream request', async () => {
    const before = raw.heads.length;
    for (const path of ['/raw/204', '/raw/204/inject-path', '/raw/204/inject-authority']) {
      const { got } = await exchangeUntilClose(`GET ${path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`, p2port);
      assert.match(got, /^HTTP\/1\.1 \d{3} /);
    }
    const heads = raw.heads.slice(before);
    for (const h of heads) {
      assert.doesNotMatch(h, /(^|\n)x-smuggled/i, `injected line upstream:\n${h}`);
      assert.doesNotMatch(h, /GET \/smuggled/, `smuggled request upstream:\n${h}`);
    }
    assert.ok(!raw.heads.some((h) => pathOf(h) === '/smuggled'));
  });
});

// ---------------------------------------------------------------- upstream failures (access log)

async function failureScenario(c: ClusterConfig, path: string) {
  const p = await startPlane({ clusters: [c], routeTables: [{ name: 'default', virtualHosts: [{ name: 'all', domains: ['*'], routes: [prefixRoute('/', c.name)] }] }] });
  let responses: ReturnType<typeof parseResponses>;
  try {
    ({ responses } = await exchangeUntilClose(`GET ${path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`, p.ports.http!));
  } catch (err) {
    await p.close();
    throw err;
  }
  const log = await p.closeAndReadLog();
  const entry = log.find((e) => e.path === path);
  assert.ok(entry, `no access log line for ${path}: ${JSON.stringify(log)}`);
  return { response: responses[0]!, entry };
}

test('a malformed request head is a 400 DPE request in downstream_rq_4xx and the access log (Envoy: http1.codec_error)', async () => {
  const p = await startPlane({});
  let rq4xx: number;
  let rqTotal: number;
  try {
    const c4 = p.dp.stats.counter('http.http.downstream_rq_4xx');
    const ct = p.dp.stats.counter('http.http.downstream_rq_total');
    const [b4, bt] = [c4.value, ct.value];
    const { responses } = await exchangeUntilClose('GET /bad-head HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n', p.ports.http!);
    assert.equal(responses[0]!.status, 400);
    rq4xx = c4.value - b4;
    rqTotal = ct.value - bt;
  } catch (err) {
    await p.close();
    throw err;
  }
  const log = await p.closeAndReadLog();
  assert.equal(rq4xx, 1, 'downstream_rq_4xx counts the local reply');
  assert.equal(rqTotal, 1, 'downstream_rq_total counts it');
  const entry = log.find((e) => e.response_flags === 'DPE');
  assert.ok(entry, `no DPE access log line: ${JSON.stringify(log)}`);
  assert.equal(entry.response_code, 400);
  assert.equal(entry.response_code_details, 'http1.codec_error');
});

test('a malformed chunked body after a head already proxied: the stream ends as a 400 DPE request', async () => {
  const up = await rawUpstream(() => {}); // reads the head, never answers
  const p = await startPlane({ clusters: [cluster('slow', up.port)], routeTables: [{ name: 'default', virtualHosts: [{ name: 'all', domains: ['*'], routes: [prefixRoute('/', 'slow')] }] }] });
  let responses: ReturnType<typeof parseResponses>;
  let c4: number;
  try {
    const before = p.dp.stats.counter('http.http.downstream_rq_4xx').value;
    const s = net.connect(p.ports.http!, '127.0.0.1');
    s.on('error', () => {});
    let got = '';
    s.on('data', (c: Buffer) => (got += c.toString('latin1')));
    await new Promise<void>((r) => s.once('connect', () => r()));
    s.write('POST /bad-chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
    // Let the head reach the upstream before the bad chunk arrives.
    for (let i = 0; i < 100 && up.heads.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(up.heads.length, 1, 'the request head was proxied');
    s.write('zz\r\n');
    await new Promise<void>((r) => s.once('close', () => r()));
    responses = parseResponses(got);
    c4 = p.dp.stats.counter('http.http.downstream_rq_4xx').value - before;
  } catch (err) {
    await p.close();
    await up.close();
    throw err;
  }
  const log = await p.closeAndReadLog();
  await up.close();
  assert.equal(responses[0]!.status, 400);
  assert.equal(c4, 1);
  const entry = log.find((e) => e.path === '/bad-chunk');
  assert.ok(entry, `no access log line for /bad-chunk: ${JSON.stringify(log)}`);
  assert.equal(entry.response_code, 400);
  assert.equal(entry.response_flags, 'DPE');
  assert.equal(entry.response_code_details, 'http1.codec_error');
});

test('an upstream that answers garbage → 502 UPE upstream_reset_before_response_started{protocol_error}', async () => {
  const garbage = await rawUpstream((s) => s.write('THIS IS NOT HTTP\r\n\r\n'));
  try {
    const { response, entry } = await failureScenario(cluster('garbage', garbage.port), '/garbage');
    // Envoy answers upstream codec errors with 502 (503 UC was the pre-1.20 behaviour).
    assert.equal(response.status, 502);
    assert.equal(entry.response_code, 502);
    assert.equal(entry.response_flags, 'UPE');
    assert.equal(entry.response_code_details, 'upstream_reset_before_response_started{protocol_error}');
  } finally {
    await garbage.close();
  }
});

test('an upstream whose response has conflicting content-lengths → 502 UPE', async () => {
  const bad = await rawUpstream((s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd'));
  try {
    const { response, entry } = await failureScenario(cluster('bad', bad.port), '/bad-cl');
    assert.equal(response.status, 502);
    assert.equal(entry.response_flags, 'UPE');
  } finally {
    await bad.close();
  }
});

test('connection refused → 503 UF', async () => {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const closedPort = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  const { response, entry } = await failureScenario(cluster('refused', closedPort), '/refused');
  assert.equal(response.status, 503);
  assert.equal(entry.response_flags, 'UF');
  assert.match(entry.response_code_details ?? '', /^upstream_reset_before_response_started\{connection_failure/);
});

test('connect timeout (TLS handshake never completes) → 503 UF', async () => {
  const silent = await rawUpstream(() => {});
  try {
    const { response, entry } = await failureScenario(cluster('silent', silent.port, { connectTimeoutMs: 250, tls: { insecureSkipVerify: true } }), '/timeout');
    assert.equal(response.status, 503);
    assert.equal(entry.response_flags, 'UF');
    assert.match(entry.response_code_details ?? '', /^upstream_reset_before_response_started\{connection_(failure|timeout)/);
  } finally {
    await silent.close();
  }
});

// ---------------------------------------------------------------- TLS

describe('TLS', () => {
  let cert: TestCert;
  let tp: RunningPlane;
  let httpsUp: https.Server;
  let httpsConnections = 0;
  before(async () => {
    cert = makeCert();
    httpsUp = https.createServer({ cert: cert.cert, key: (await import('node:fs')).readFileSync(cert.keyFile) }, appHandler);
    httpsUp.on('secureConnection', () => httpsConnections++);
    await new Promise<void>((r) => httpsUp.listen(0, '127.0.0.1', () => r()));
    const upPort = (httpsUp.address() as AddressInfo).port;
    tp = await startPlane({
      listeners: [listener({ name: 'tls', tls: { certFile: cert.certFile, keyFile: cert.keyFile, alpn: ['h2', 'http/1.1'] } })],
      clusters: [cluster('app', app.port), cluster('tls-up', upPort, { tls: { caFile: cert.certFile, sni: 'localhost' } })],
      routeTables: [{ name: 'default', virtualHosts: [{ name: 'all', domains: ['*'], routes: [prefixRoute('/tls-up', 'tls-up'), prefixRoute('/', 'app')] }] }],
    });
  });
  after(async () => {
    await tp.close();
    httpsUp.closeAllConnections();
    await new Promise<void>((r) => httpsUp.close(() => r()));
    cert.remove();
  });

  function tlsExchange(data: string, n: number): Promise<{ alpn: string | false; responses: ReturnType<typeof parseResponses> }> {
    return new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: tp.ports.tls!, ca: cert.cert, servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () => s.write(data));
      let got = '';
      const t = setTimeout(() => {
        s.destroy();
        reject(new Error(`timed out:\n${got}`));
      }, 20_000);
      s.on('data', (c: Buffer) => {
        got += c.toString('latin1');
        if (completeResponses(got) >= n) {
          clearTimeout(t);
          const alpn = s.alpnProtocol;
          s.destroy();
          resolve({ alpn: alpn ?? false, responses: parseResponses(got) });
        }
      });
      s.on('error', (err) => {
        clearTimeout(t);
        reject(err);
      });
    });
  }

  test('HTTP/1.1 over TLS downstream: keep-alive, chunked request body, x-forwarded-proto https', async () => {
    const { alpn, responses } = await tlsExchange(
      'GET /t1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /t2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
      2,
    );
    assert.equal(alpn, 'http/1.1');
    const [a, b] = responses.map((r) => JSON.parse(r.body) as Echo);
    assert.equal(a!.url, '/t1');
    assert.equal(a!.headers['x-forwarded-proto'], 'https');
    assert.equal(b!.url, '/t2');
    assert.equal(b!.bodyLength, 3);
  });

  test('HTTP/1.1 over TLS upstream: requests relayed, connection reused', async () => {
    const { responses } = await tlsExchange('GET /tls-up/1 HTTP/1.1\r\nHost: a\r\n\r\n', 1);
    assert.equal((JSON.parse(responses[0]!.body) as Echo).url, '/tls-up/1');
    const before = httpsConnections;
    const res = await tlsExchange('GET /tls-up/2 HTTP/1.1\r\nHost: a\r\n\r\nGET /tls-up/3 HTTP/1.1\r\nHost: a\r\n\r\n', 2);
    assert.deepEqual(
      res.responses.map((r) => (JSON.parse(r.body) as Echo).url),
      ['/tls-up/2', '/tls-up/3'],
    );
    assert.ok(httpsConnections - before <= 1, `TLS upstream connections: ${httpsConnections - before}`);
  });
});
