/**
 * Envoy's local replies for upstream and routing failures, each checked on the wire (status, body)
 * and in the access log (response_code, response_code_details as %RESPONSE_CODE_DETAILS%, and
 * response_flags): 503 UH no_healthy_upstream, 503 UF connection_failure (closed port), 503 UC
 * connection_termination, 504 UT upstream_response_timeout, 502 UPE protocol_error (garbage from a
 * raw TCP server), 404 NR route_not_found, 503 NC cluster_not_found, direct responses and
 * redirects; and resets once the response has started. Every case runs over an HTTP/1.1 and an
 * HTTP/2 upstream where that applies, and over HTTP/1.1 and HTTP/2 downstream.
 */
import assert from 'node:assert/strict';
import type http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import type { ClusterConfig, RouteConfig } from '../../src/config/types.ts';
import type { AccessLogEntry } from '../../src/observability/access-log.ts';
import { cluster } from '../helpers/bootstrap.ts';
import { h2Close, h2Connect, h2Request, startPlane } from '../helpers/conformance.ts';
import { startHttp1, startHttp2, type TestServer } from '../helpers/upstream.ts';

interface Reply {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

type Down = 'h1' | 'h2';

/** Starts a plane with `routes` under domain `*`, sends one request, closes it and returns the reply and the log line. */
async function scenario(clusters: ClusterConfig[], routes: RouteConfig[], path: string, down: Down = 'h1', extra: { method?: string; authority?: string } = {}): Promise<{ reply: Reply; entry: AccessLogEntry }> {
  const plane = await startPlane({ clusters, routeTables: [{ name: 'default', virtualHosts: [{ name: 'vh', domains: ['*.example', 'localhost'], routes }] }] });
  let reply: Reply;
  try {
    const port = plane.ports.http!;
    const authority = extra.authority ?? 'svc.example';
    if (down === 'h1') {
      const res = await request(`http://127.0.0.1:${port}${path}`, { method: (extra.method ?? 'GET') as 'GET', headers: { host: authority } });
      reply = { status: res.statusCode, body: await res.body.text(), headers: res.headers as Reply['headers'] };
    } else {
      const session = await h2Connect(`http://127.0.0.1:${port}`);
      try {
        const r = await h2Request(session, { ':method': extra.method ?? 'GET', ':path': path, ':authority': authority });
        reply = { status: Number(r.headers[':status']), body: r.body.toString(), headers: r.headers as Reply['headers'] };
      } finally {
        await h2Close(session);
      }
    }
  } catch (err) {
    await plane.close();
    throw err;
  }
  const log = await plane.closeAndReadLog();
  const entry = log.find((e) => e.path === path);
  assert.ok(entry, `no access log line for ${path}: ${JSON.stringify(log)}`);
  return { reply, entry };
}

function assertLocal(r: { reply: Reply; entry: AccessLogEntry }, status: number, details: string, flags: string, body?: string | RegExp): void {
  assert.equal(r.reply.status, status, `status; body: ${r.reply.body}`);
  if (typeof body === 'string') assert.equal(r.reply.body, body);
  else if (body) assert.match(r.reply.body, body);
  assert.equal(r.entry.response_code, status);
  assert.equal(r.entry.response_code_details, details);
  assert.equal(r.entry.response_flags, flags);
}

const route = (clusterName: string, over: Partial<RouteConfig> = {}): RouteConfig => ({ name: 'r', match: { prefix: '/' }, route: { cluster: clusterName }, ...over });

let closedPort: number;
let silent1: TestServer & { server: http.Server };
let silent2: TestServer;
let garbage: net.Server;
let garbagePort: number;
let hangup: net.Server;
let hangupPort: number;
let partial: TestServer & { server: http.Server };
let refusing: TestServer;
let resetting: TestServer;
const rawSockets = new Set<net.Socket>();

before(async () => {
  // A port nobody listens on: bind, read the port, close.
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
  closedPort = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  // Upstreams that accept the request and never answer.
  silent1 = await startHttp1(() => {});
  silent2 = await startHttp2(() => {});
  // Answers any request with bytes that are not HTTP.
  garbage = net.createServer((s) => {
    rawSockets.add(s);
    s.on('error', () => {});
    s.once('data', () => s.write('THIS IS NOT HTTP AT ALL\r\n\r\n'));
  });
  await new Promise<void>((r) => garbage.listen(0, '127.0.0.1', () => r()));
  garbagePort = (garbage.address() as net.AddressInfo).port;
  // Accepts, reads the request, closes without a byte.
  hangup = net.createServer((s) => {
    rawSockets.add(s);
    s.on('error', () => {});
    s.once('data', () => s.destroy());
  });
  await new Promise<void>((r) => hangup.listen(0, '127.0.0.1', () => r()));
  hangupPort = (hangup.address() as net.AddressInfo).port;
  // HTTP/2 upstreams that answer every stream with RST_STREAM (REFUSED_STREAM / INTERNAL_ERROR).
  const rstWith = (code: number) => (stream: http2.ServerHttp2Stream) => {
    stream.on('error', () => {}); // closing with an error code also errors our own side
    stream.close(code);
  };
  refusing = await startHttp2(rstWith(http2.constants.NGHTTP2_REFUSED_STREAM));
  resetting = await startHttp2(rstWith(http2.constants.NGHTTP2_INTERNAL_ERROR));
  // Sends headers and part of the body, then dies (/die) or stalls (/stall).
  partial = await startHttp1((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' });
    res.write('partial');
    if (req.url?.startsWith('/die')) setTimeout(() => res.socket?.destroy(), 50);
  });
});
after(async () => {
  for (const s of rawSockets) s.destroy();
  await Promise.all([silent1.close(), silent2.close(), partial.close(), refusing.close(), resetting.close(), new Promise<void>((r) => garbage.close(() => r())), new Promise<void>((r) => hangup.close(() => r()))]);
});

for (const down of ['h1', 'h2'] as const) {
  const D = down === 'h1' ? 'HTTP/1.1' : 'HTTP/2';

  test(`${D}: 503 no_healthy_upstream (UH) when the cluster has no endpoints`, async () => {
    const r = await scenario([cluster('empty', 0, { endpoints: [] })], [route('empty')], '/uh', down);
    assertLocal(r, 503, 'no_healthy_upstream', 'UH', 'no healthy upstream');
  });

  for (const proto of ['HTTP1', 'HTTP2'] as const) {
    const U = proto === 'HTTP1' ? 'HTTP/1.1' : 'HTTP/2';

    test(`${D} → ${U}: 503 upstream_reset_before_response_started{connection_failure} (UF) on a closed port`, async () => {
      const r = await scenario([cluster('closed', closedPort, { protocol: proto })], [route('closed')], '/uf', down);
      assertLocal(r, 503, 'upstream_reset_before_response_started{connection_failure}', 'UF', /connection failure/);
    });

    test(`${D} → ${U}: 504 upstream_response_timeout (UT) when the upstream does not answer`, async () => {
      const port = proto === 'HTTP1' ? silent1.port : silent2.port;
      const started = performance.now();
      const r = await scenario([cluster('silent', port, { protocol: proto, requestTimeoutMs: 15_000 })], [route('silent', { route: { cluster: 'silent', timeoutMs: 400 } })], '/ut', down);
      assertLocal(r, 504, 'upstream_response_timeout', 'UT', 'upstream request timeout');
      assert.ok(performance.now() - started >= 350, 'the route timeout (400 ms), not the cluster one, applies');
    });

    test(`${D} → ${U}: 502 upstream_reset_before_response_started{protocol_error} (UPE) on a garbage response`, async () => {
      const r = await scenario([cluster('garbage', garbagePort, { protocol: proto })], [route('garbage')], '/upe', down);
      assertLocal(r, 502, 'upstream_reset_before_response_started{protocol_error}', 'UPE', /protocol error/);
    });
  }

  test(`${D}: 503 upstream_reset_before_response_started{connection_termination} (UC) when the upstream closes without answering`, async () => {
    const r = await scenario([cluster('hangup', hangupPort)], [route('hangup')], '/uc', down);
    assertLocal(r, 503, 'upstream_reset_before_response_started{connection_termination}', 'UC', /connection termination/);
  });

  test(`${D} → HTTP/2: 503 upstream_reset_before_response_started{remote_refused_stream_reset} (UR) when the upstream refuses the stream`, async () => {
    const r = await scenario([cluster('refusing', refusing.port, { protocol: 'HTTP2' })], [route('refusing')], '/refused', down);
    assertLocal(r, 503, 'upstream_reset_before_response_started{remote_refused_stream_reset}', 'UR', /remote refused stream reset/);
  });

  test(`${D} → HTTP/2: 503 upstream_reset_before_response_started{remote_reset} (UR) when the upstream resets the stream`, async () => {
    const r = await scenario([cluster('resetting', resetting.port, { protocol: 'HTTP2' })], [route('resetting')], '/reset', down);
    assertLocal(r, 503, 'upstream_reset_before_response_started{remote_reset}', 'UR', /remote reset/);
  });

  test(`${D}: 404 route_not_found (NR) when no route matches`, async () => {
    const r = await scenario([], [{ name: 'only', match: { path: '/exact' }, directResponse: { status: 200 } }], '/nr', down);
    assertLocal(r, 404, 'route_not_found', 'NR', '');
  });

  test(`${D}: 404 route_not_found (NR) when no virtual host matches the authority`, async () => {
    const r = await scenario([], [route('x')], '/nr-vhost', down, { authority: 'other.test' });
    assertLocal(r, 404, 'route_not_found', 'NR');
  });

  test(`${D}: 503 cluster_not_found (NC) when the route names an unknown cluster`, async () => {
    const r = await scenario([], [route('missing')], '/nc', down);
    assertLocal(r, 503, 'cluster_not_found', 'NC');
  });

  test(`${D}: direct response with status, body and headers (direct_response)`, async () => {
    const r = await scenario([], [{ name: 'dr', match: { prefix: '/' }, directResponse: { status: 418, body: 'short and stout', headers: { 'x-teapot': 'yes' } } }], '/dr', down);
    assertLocal(r, 418, 'direct_response', '-', 'short and stout');
    assert.equal(r.reply.headers['x-teapot'], 'yes');
    assert.equal(r.reply.headers['content-type'], 'text/plain');
  });

  test(`${D}: redirect (301 default, host/port/path/scheme rewrite, strip query)`, async () => {
    const r = await scenario([], [{ name: 'rd', match: { prefix: '/' }, redirect: { status: 301, scheme: 'https', host: 'new.example', port: 8443, stripQuery: true } }], '/old/path?q=1', down);
    assert.equal(r.reply.status, 301);
    assert.equal(r.reply.headers.location, 'https://new.example:8443/old/path');
    assert.equal(r.entry.response_code, 301);
    assert.equal(r.entry.response_code_details, 'direct_response');
    const r2 = await scenario([], [{ name: 'rd', match: { prefix: '/' }, redirect: { status: 308, path: '/new' } }], '/keep?x=2', down);
    assert.equal(r2.reply.status, 308);
    assert.equal(r2.reply.headers.location, 'http://svc.example/new');
  });
}

test('HTTP/1.1: upstream dies after the response started: the downstream is reset, logged upstream_reset_after_response_started', async () => {
  const plane = await startPlane({ clusters: [cluster('partial', partial.port)], routeTables: [{ name: 'd', virtualHosts: [{ name: 'v', domains: ['*'], routes: [route('partial')] }] }] });
  let err: unknown;
  try {
    const res = await request(`http://127.0.0.1:${plane.ports.http}/die`);
    assert.equal(res.statusCode, 200);
    await res.body.text().catch((e: unknown) => (err = e));
  } finally {
    const log = await plane.closeAndReadLog();
    const e = log.find((x) => x.path === '/die');
    assert.ok(e, JSON.stringify(log));
    assert.equal(e.response_code, 200);
    assert.match(e.response_code_details ?? '', /^upstream_reset_after_response_started\{/);
    assert.match(e.response_flags, /U[CR]/);
  }
  assert.ok(err, 'the client saw the truncated response fail');
});

test('HTTP/2: route timeout after the response started resets the stream, logged upstream_response_timeout UT', async () => {
  const plane = await startPlane({
    clusters: [cluster('partial', partial.port)],
    routeTables: [{ name: 'd', virtualHosts: [{ name: 'v', domains: ['*'], routes: [route('partial', { route: { cluster: 'partial', timeoutMs: 400 } })] }] }],
  });
  let failed = false;
  try {
    const session = await h2Connect(`http://127.0.0.1:${plane.ports.http}`);
    try {
      await h2Request(session, { ':method': 'GET', ':path': '/stall' }).catch(() => (failed = true));
    } finally {
      await h2Close(session);
    }
  } finally {
    const log = await plane.closeAndReadLog();
    const e = log.find((x) => x.path === '/stall');
    assert.ok(e, JSON.stringify(log));
    assert.equal(e.response_code_details, 'upstream_response_timeout');
    assert.match(e.response_flags, /UT/);
  }
  assert.ok(failed, 'the HTTP/2 stream was reset');
});

test('local replies to a gRPC request carry grpc-status (Envoy: 200 + grpc-status 14 for 503)', async () => {
  const plane = await startPlane({ clusters: [cluster('empty', 0, { endpoints: [] })], routeTables: [{ name: 'd', virtualHosts: [{ name: 'v', domains: ['*'], routes: [route('empty')] }] }] });
  try {
    const session = await h2Connect(`http://127.0.0.1:${plane.ports.http}`);
    try {
      const r = await h2Request(session, { ':method': 'POST', ':path': '/pkg.Svc/Method', 'content-type': 'application/grpc' }, Buffer.alloc(5));
      assert.equal(r.headers[':status'], 200);
      assert.equal(r.headers['grpc-status'], '14');
    } finally {
      await h2Close(session);
    }
  } finally {
    await plane.close();
  }
});

test(
  'response flags after the response started are the upstream cause only (Envoy logs 200 UC / 200 UT, without LR)',
  {},
  async () => {
    const plane = await startPlane({
      clusters: [cluster('partial', partial.port, { requestTimeoutMs: 400 })],
      routeTables: [{ name: 'd', virtualHosts: [{ name: 'v', domains: ['*'], routes: [route('partial')] }] }],
    });
    try {
      for (const path of ['/die-flags', '/stall-flags']) {
        const res = await request(`http://127.0.0.1:${plane.ports.http}${path}`);
        await res.body.text().catch(() => {});
      }
    } finally {
      const log = await plane.closeAndReadLog();
      const byPath = Object.fromEntries(log.map((e) => [e.path, e]));
      assert.equal(byPath['/die-flags']?.response_flags, 'UC');
      assert.equal(byPath['/stall-flags']?.response_flags, 'UT');
    }
  },
);
