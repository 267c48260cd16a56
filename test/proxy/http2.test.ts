/**
 * HTTP/2 conformance: a TLS listener offering ALPN h2 and http/1.1 (self-signed cert made with
 * openssl), a cleartext listener taking HTTP/2 by prior knowledge (h2c) next to HTTP/1.1, and all
 * four downstream × upstream protocol combinations (h1→h1, h1→h2, h2→h1, h2→h2), checked with node
 * clients and with curl as an independent client.
 */
import assert from 'node:assert/strict';
import type http from 'node:http';
import type http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { cluster, listener } from '../helpers/bootstrap.ts';
import { h2Close, h2Connect, h2Request, makeCert, run, startPlane, type RunningPlane, type TestCert, h1AndH2Routes } from '../helpers/conformance.ts';
import { startHttp1, startHttp2, type TestServer } from '../helpers/upstream.ts';

interface Seen {
  upstreamProtocol: string;
  method: string;
  path: string;
  authority: string | undefined;
  headers: Record<string, string>;
  body: string;
  /** HTTP/1.1 upstream only: how many Cookie header lines arrived. */
  cookieLines?: number;
}

let up1: TestServer;
let up2: TestServer;
let cert: TestCert;
let plane: RunningPlane;
let tlsPort: number;
let plainPort: number;

const h1Handler: http.RequestListener = (req, res) => {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (c: string) => (body += c));
  req.on('end', () => {
    const cookieLines = req.rawHeaders.filter((v, i) => i % 2 === 0 && v.toLowerCase() === 'cookie').length;
    const seen: Seen = { upstreamProtocol: `HTTP/${req.httpVersion}`, method: req.method!, path: req.url!, authority: req.headers.host, headers: req.headers as Record<string, string>, body, cookieLines };
    const out = JSON.stringify(seen);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out), 'x-upstream': 'h1' });
    res.end(out);
  });
};

const h2Handler = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
  let body = '';
  stream.setEncoding('utf8');
  stream.on('data', (c: string) => (body += c));
  stream.on('end', () => {
    const plain: Record<string, string> = {};
    for (const [k, v] of Object.entries(headers)) if (!k.startsWith(':')) plain[k] = String(v);
    const seen: Seen = { upstreamProtocol: 'HTTP/2', method: String(headers[':method']), path: String(headers[':path']), authority: headers[':authority'] as string | undefined, headers: plain, body };
    stream.respond({ ':status': 200, 'content-type': 'application/json', 'x-upstream': 'h2' });
    stream.end(JSON.stringify(seen));
  });
};

before(async () => {
  up1 = await startHttp1(h1Handler);
  up2 = await startHttp2(h2Handler);
  cert = makeCert();
  plane = await startPlane({
    listeners: [
      listener({ name: 'tls', tls: { certFile: cert.certFile, keyFile: cert.keyFile, alpn: ['h2', 'http/1.1'] } }),
      listener({ name: 'plain' }),
    ],
    clusters: [cluster('h1', up1.port), cluster('h2', up2.port, { protocol: 'HTTP2' })],
    routeTables: [h1AndH2Routes()],
  });
  tlsPort = plane.ports.tls!;
  plainPort = plane.ports.plain!;
});
after(async () => {
  await plane.close();
  await up1.close();
  await up2.close();
  cert.remove();
});

async function h1Get(url: string, opts: { ca?: Buffer; body?: string } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string; alpn?: string | false | null }> {
  if (url.startsWith('https:')) {
    return new Promise((resolve, reject) => {
      const options = { method: opts.body ? 'POST' : 'GET', ca: opts.ca, ALPNProtocols: ['http/1.1'], agent: false } as https.RequestOptions;
      const req = https.request(url, options, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body, alpn: (res.socket as import('node:tls').TLSSocket).alpnProtocol }));
      });
      req.on('error', reject);
      req.end(opts.body);
    });
  }
  const res = await request(url, { method: opts.body ? 'POST' : 'GET', body: opts.body });
  return { status: res.statusCode, headers: res.headers as http.IncomingHttpHeaders, body: await res.body.text() };
}

for (const down of ['h1', 'h2'] as const) {
  for (const upstream of ['h1', 'h2'] as const) {
    for (const transport of ['tls', 'cleartext'] as const) {
      test(`${down === 'h1' ? 'HTTP/1.1' : 'HTTP/2'} downstream (${transport === 'tls' ? 'TLS, ALPN' : down === 'h2' ? 'h2c prior knowledge' : 'cleartext'}) → ${upstream === 'h1' ? 'HTTP/1.1' : 'HTTP/2'} upstream`, async () => {
        const scheme = transport === 'tls' ? 'https' : 'http';
        const port = transport === 'tls' ? tlsPort : plainPort;
        const path = upstream === 'h2' ? '/h2/combo?q=1' : '/combo?q=1';
        let status: number;
        let resHeaders: Record<string, unknown>;
        let seen: Seen;
        if (down === 'h1') {
          const r = await h1Get(`${scheme}://127.0.0.1:${port}${path}`, { ca: cert.cert, body: 'payload' });
          if (transport === 'tls') assert.equal(r.alpn, 'http/1.1');
          status = r.status;
          resHeaders = r.headers;
          seen = JSON.parse(r.body) as Seen;
        } else {
          const session = await h2Connect(`${scheme}://127.0.0.1:${port}`, transport === 'tls' ? { ca: cert.cert } : {});
          try {
            if (transport === 'tls') assert.equal((session.socket as import('node:tls').TLSSocket).alpnProtocol, 'h2');
            const r = await h2Request(session, { ':method': 'POST', ':path': path, ':authority': `svc.example:${port}` }, 'payload');
            status = Number(r.headers[':status']);
            resHeaders = r.headers;
            seen = JSON.parse(r.body.toString()) as Seen;
          } finally {
            await h2Close(session);
          }
        }
        assert.equal(status, 200);
        assert.equal(resHeaders['x-upstream'], upstream);
        assert.equal(seen.upstreamProtocol, upstream === 'h1' ? 'HTTP/1.1' : 'HTTP/2');
        assert.equal(seen.method, 'POST');
        assert.equal(seen.path, path);
        assert.equal(seen.body, 'payload');
        assert.equal(seen.headers['x-forwarded-proto'], scheme);
        if (down === 'h2') assert.equal(seen.authority, `svc.example:${port}`);
        else assert.equal(seen.authority, `127.0.0.1:${port}`);
        // HTTP/2 pseudo-headers never leak as regular headers.
        for (const k of Object.keys(seen.headers)) assert.ok(!k.startsWith(':'), `pseudo-header ${k} forwarded as a header`);
      });
    }
  }
}

test('HTTP/2 downstream multiplexes 50 concurrent streams on one connection to an HTTP/1.1 upstream', async () => {
  const session = await h2Connect(`https://127.0.0.1:${tlsPort}`, { ca: cert.cert });
  try {
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => h2Request(session, { ':method': 'GET', ':path': `/mux/${i}` })));
    results.forEach((r, i) => {
      assert.equal(r.headers[':status'], 200);
      assert.equal((JSON.parse(r.body.toString()) as Seen).path, `/mux/${i}`);
    });
  } finally {
    await h2Close(session);
  }
});

test('curl: HTTP/2 over TLS (ALPN), HTTP/1.1 over TLS, and h2c prior knowledge', async () => {
  const fmt = ['-sS', '-o', '-', '-w', '\n%{http_version} %{http_code}'];
  const tlsH2 = await run('curl', [...fmt, '--http2', '--cacert', cert.certFile, `https://localhost:${tlsPort}/curl-h2`]);
  assert.equal(tlsH2.code, 0, tlsH2.stderr);
  assert.match(tlsH2.stdout, /\n2 200$/);
  assert.equal((JSON.parse(tlsH2.stdout.split('\n')[0]!) as Seen).path, '/curl-h2');

  const tlsH1 = await run('curl', [...fmt, '--http1.1', '--cacert', cert.certFile, `https://localhost:${tlsPort}/curl-h1`]);
  assert.equal(tlsH1.code, 0, tlsH1.stderr);
  assert.match(tlsH1.stdout, /\n1\.1 200$/);

  const h2c = await run('curl', [...fmt, '--http2-prior-knowledge', `http://127.0.0.1:${plainPort}/h2/curl-h2c`]);
  assert.equal(h2c.code, 0, h2c.stderr);
  assert.match(h2c.stdout, /\n2 200$/);
  const seen = JSON.parse(h2c.stdout.split('\n')[0]!) as Seen;
  assert.equal(seen.upstreamProtocol, 'HTTP/2');
  assert.equal(seen.path, '/h2/curl-h2c');

  const plain = await run('curl', [...fmt, `http://127.0.0.1:${plainPort}/curl-plain`]);
  assert.match(plain.stdout, /\n1\.1 200$/);
});

test('the access log records HTTP/2 and the TLS SNI', async () => {
  const p = await startPlane({
    listeners: [listener({ name: 'tls', tls: { certFile: cert.certFile, keyFile: cert.keyFile, alpn: ['h2', 'http/1.1'] } })],
    clusters: [cluster('h1', up1.port)],
    routeTables: [{ name: 'd', virtualHosts: [{ name: 'a', domains: ['*'], routes: [{ name: 'r', match: { prefix: '/' }, route: { cluster: 'h1' } }] }] }],
  });
  let ok = false;
  try {
    const r = await run('curl', ['-sS', '-o', '/dev/null', '--http2', '--cacert', cert.certFile, `https://localhost:${p.ports.tls}/logged`]);
    assert.equal(r.code, 0, r.stderr);
    ok = true;
  } finally {
    const log = await p.closeAndReadLog();
    if (ok) {
      const e = log.find((x) => x.path === '/logged');
      assert.ok(e, JSON.stringify(log));
      assert.equal(e.protocol, 'HTTP/2');
      assert.equal(e.requested_server_name, 'localhost');
      assert.equal(e.response_code, 200);
    }
  }
});

test('TLS to the upstream: HTTP/1.1 and HTTP/2 clusters verify the upstream certificate against caFile with SNI', async () => {
  const { createServer } = await import('node:https');
  const { createSecureServer } = await import('node:http2');
  const { readFileSync } = await import('node:fs');
  const key = readFileSync(cert.keyFile);
  const snis: string[] = [];
  const s1 = createServer({ cert: cert.cert, key }, (req, res) => {
    snis.push(String((req.socket as import('node:tls').TLSSocket).servername));
    res.end(`h1-tls ${req.url} ${req.httpVersion}`);
  });
  const s2 = createSecureServer({ cert: cert.cert, key }, (req, res) => {
    snis.push(String((req.socket as import('node:tls').TLSSocket).servername));
    res.end(`h2-tls ${req.url} ${req.httpVersion}`);
  });
  await new Promise<void>((r) => s1.listen(0, '127.0.0.1', () => r()));
  await new Promise<void>((r) => s2.listen(0, '127.0.0.1', () => r()));
  const p1 = (s1.address() as import('node:net').AddressInfo).port;
  const p2 = (s2.address() as import('node:net').AddressInfo).port;
  const p = await startPlane({
    clusters: [
      cluster('tls1', p1, { tls: { caFile: cert.certFile, sni: 'localhost' } }),
      cluster('tls2', p2, { protocol: 'HTTP2', tls: { caFile: cert.certFile, sni: 'localhost' } }),
      cluster('untrusted', p1, { tls: { sni: 'localhost' } }),
    ],
    routeTables: [
      {
        name: 'd',
        virtualHosts: [
          {
            name: 'v',
            domains: ['*'],
            routes: [
              { name: 'a', match: { prefix: '/one' }, route: { cluster: 'tls1' } },
              { name: 'b', match: { prefix: '/two' }, route: { cluster: 'tls2' } },
              { name: 'c', match: { prefix: '/untrusted' }, route: { cluster: 'untrusted' } },
            ],
          },
        ],
      },
    ],
  });
  try {
    const r1 = await request(`http://127.0.0.1:${p.ports.http}/one`);
    assert.equal(await r1.body.text(), 'h1-tls /one 1.1');
    const r2 = await request(`http://127.0.0.1:${p.ports.http}/two`);
    assert.equal(await r2.body.text(), 'h2-tls /two 2.0');
    assert.deepEqual(snis, ['localhost', 'localhost']);
    // A self-signed upstream without caFile fails verification: 503 connection failure, as Envoy.
    const r3 = await request(`http://127.0.0.1:${p.ports.http}/untrusted`);
    assert.equal(r3.statusCode, 503);
    assert.match(await r3.body.text(), /connection failure/);
  } finally {
    await p.close();
    s1.closeAllConnections();
    await new Promise<void>((r) => s1.close(() => r()));
    await new Promise<void>((r) => s2.close(() => r()));
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

test('HTTP/2 request with a Host header and no :authority: Host is the authority (RFC 9113 §8.3.1)', async () => {
  const p = await startPlane({
    clusters: [cluster('h1', up1.port)],
    routeTables: [
      {
        name: 'd',
        virtualHosts: [
          { name: 'svc', domains: ['svc.example'], routes: [{ name: 'svc', match: { prefix: '/' }, route: { cluster: 'h1' } }] },
          { name: 'other', domains: ['*'], routes: [{ name: 'other', match: { prefix: '/' }, directResponse: { status: 404, body: 'wrong vhost' } }] },
        ],
      },
    ],
  });
  const s = net.connect({ host: '127.0.0.1', port: p.ports.http! });
  try {
    await new Promise<void>((r) => s.once('connect', () => r()));
    // HPACK: :method GET, :path /, :scheme http, then `host: svc.example` (literal, static name index 38).
    const block = Buffer.concat([Buffer.from([0x82, 0x84, 0x86, 0x0f, 38 - 15, 11]), Buffer.from('svc.example')]);
    s.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(4, 0, 0, Buffer.alloc(0)), frame(1, 0x4 | 0x1, 1, block)]));
    // Read frames until the response's DATA for stream 1 ends.
    let buf = Buffer.alloc(0);
    let body = '';
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no response')), 10_000);
      s.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        while (buf.length >= 9) {
          const len = buf.readUIntBE(0, 3);
          if (buf.length < 9 + len) break;
          const type = buf[3]!;
          const flags = buf[4]!;
          const sid = buf.readUInt32BE(5) & 0x7fffffff;
          const payload = buf.subarray(9, 9 + len);
          buf = buf.subarray(9 + len);
          if (type === 4 && (flags & 1) === 0) s.write(frame(4, 1, 0, Buffer.alloc(0))); // SETTINGS ack
          if (type === 0 && sid === 1) {
            body += payload.toString();
            if (flags & 1) {
              clearTimeout(t);
              resolve();
            }
          }
        }
      });
    });
    const seen = JSON.parse(body) as Seen;
    assert.equal(seen.authority, 'svc.example');
    assert.equal(seen.path, '/');
  } finally {
    s.destroy();
    await p.close();
  }
});

test('HTTP/2 cookie crumbs are joined into one Cookie header with "; " (RFC 9113 §8.2.3); other repeated headers stay separate', async () => {
  const session = await h2Connect(`http://127.0.0.1:${plainPort}`);
  try {
    for (const path of ['/cookies', '/h2/cookies']) {
      const r = await h2Request(session, { ':method': 'GET', ':path': path, cookie: ['a=1', 'b=2', 'c=3'], 'x-multi': ['1', '2'] });
      const seen = JSON.parse(r.body.toString()) as Seen;
      assert.equal(seen.headers.cookie, 'a=1; b=2; c=3', path);
      if (seen.upstreamProtocol === 'HTTP/1.1') assert.equal(seen.cookieLines, 1, 'one Cookie header line to the HTTP/1.1 upstream');
      assert.equal(seen.headers['x-multi'], '1, 2', path);
    }
  } finally {
    await h2Close(session);
  }
});

test('HTTP/2 Expect: 100-continue is answered by the proxy (interim 100, then the response) and not forwarded', async () => {
  const session = await h2Connect(`http://127.0.0.1:${plainPort}`);
  try {
    const result = await new Promise<{ continued: boolean; status: number; seen: Seen }>((resolve, reject) => {
      const stream = session.request({ ':method': 'POST', ':path': '/expect', expect: '100-continue' }, { endStream: false });
      let continued = false;
      let status = 0;
      let body = '';
      // The client holds the body until the interim response arrives, as curl does.
      stream.on('continue', () => {
        continued = true;
        stream.end('held body');
      });
      stream.on('response', (h) => (status = Number(h[':status'])));
      stream.setEncoding('utf8');
      stream.on('data', (c: string) => (body += c));
      stream.on('end', () => resolve({ continued, status, seen: JSON.parse(body) as Seen }));
      stream.on('error', reject);
    });
    assert.ok(result.continued, 'an interim 100 Continue reached the client');
    assert.equal(result.status, 200);
    assert.equal(result.seen.body, 'held body');
    assert.equal(result.seen.headers.expect, undefined, 'Expect is not forwarded');
  } finally {
    await h2Close(session);
  }
});

test('HTTP/2 drain: the session gets GOAWAY and a stream in flight when the drain began still completes', async () => {
  const p = await startPlane({ listeners: [listener({ name: 'plain' })], clusters: [cluster('h1', up1.port)], routeTables: [h1AndH2Routes()] });
  try {
    const session = await h2Connect(`http://127.0.0.1:${p.ports.plain!}`);
    const goaway = new Promise<void>((r) => session.once('goaway', () => r()));
    // A request whose body is still being sent when the drain begins.
    const stream = session.request({ ':method': 'POST', ':path': '/in-flight' }, { endStream: false });
    stream.write('first half, ');
    const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
      let status = 0;
      let body = '';
      stream.on('response', (h) => (status = Number(h[':status'])));
      stream.setEncoding('utf8');
      stream.on('data', (c: string) => (body += c));
      stream.on('end', () => resolve({ status, body }));
      stream.on('error', reject);
    });
    await new Promise((r) => setTimeout(r, 50));
    const draining = p.dp.httpListeners[0]!.drain(5000);
    await goaway;
    stream.end('second half');
    const r = await answer;
    assert.equal(r.status, 200);
    assert.equal((JSON.parse(r.body) as Seen).body, 'first half, second half');
    await draining;
    session.destroy();
  } finally {
    await p.close();
  }
});
