/**
 * Route matching as Envoy's route tables do it: virtual host by authority (exact, then the longest
 * `*.suffix`, then the longest `prefix.*`, then `*`; case-insensitive; port retried without), then
 * the first route whose path (prefix / exact / regex on the path without the query), methods and
 * header matchers (exact, prefix, regex, present, absent, inverted) all hold. Plus route actions:
 * prefix rewrite (x-envoy-original-path kept, logged path is the client's), host rewrite, round
 * robin across endpoints, and a listener bound to a named route table.
 */
import assert from 'node:assert/strict';
import type http from 'node:http';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import type { RouteConfig } from '../../src/config/types.ts';
import { cluster, listener } from '../helpers/bootstrap.ts';
import { startPlane, type RunningPlane } from '../helpers/conformance.ts';
import { startHttp1, type TestServer } from '../helpers/upstream.ts';

/** A route that answers its own name (so a request shows which route matched). */
const named = (name: string, match: RouteConfig['match']): RouteConfig => ({ name, match, directResponse: { status: 200, body: name } });

let upA: TestServer & { server: http.Server };
let upB: TestServer & { server: http.Server };
let plane: RunningPlane;
let port: number;
let altPort: number;

const echo =
  (id: string): http.RequestListener =>
  (req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id, url: req.url, host: req.headers.host, original: req.headers['x-envoy-original-path'] ?? null }));
    });
  };

before(async () => {
  upA = await startHttp1(echo('a'));
  upB = await startHttp1(echo('b'));
  plane = await startPlane({
    listeners: [listener({ name: 'main', routeConfig: 'main' }), listener({ name: 'alt', routeConfig: 'alt' })],
    clusters: [
      cluster('a', upA.port),
      { ...cluster('ab', upA.port), endpoints: [{ address: '127.0.0.1', port: upA.port }, { address: '127.0.0.1', port: upB.port }] },
    ],
    routeTables: [
      {
        name: 'main',
        virtualHosts: [
          { name: 'exact', domains: ['api.example.com', 'API2.example.com'], routes: [named('vh-exact', { prefix: '/' })] },
          { name: 'suffix-long', domains: ['*.deep.example.com'], routes: [named('vh-suffix-long', { prefix: '/' })] },
          { name: 'suffix', domains: ['*.example.com'], routes: [named('vh-suffix', { prefix: '/' })] },
          { name: 'prefix', domains: ['internal.*'], routes: [named('vh-prefix', { prefix: '/' })] },
          { name: 'with-port', domains: ['port.example:8080'], routes: [named('vh-with-port', { prefix: '/' })] },
          {
            name: 'any',
            domains: ['*'],
            routes: [
              named('exact-path', { path: '/exact' }),
              named('regex', { regex: '/items/[0-9]+' }),
              named('post-only', { prefix: '/method', methods: ['POST', 'PUT'] }),
              named('method-other', { prefix: '/method' }),
              named('hdr-exact', { prefix: '/hdr', headers: [{ name: 'X-Tenant', exact: 'blue' }] }),
              named('hdr-prefix', { prefix: '/hdr', headers: [{ name: 'x-tenant', prefix: 'gr' }] }),
              named('hdr-regex', { prefix: '/hdr', headers: [{ name: 'x-tenant', regex: 'r[a-z]d' }] }),
              named('hdr-absent', { prefix: '/hdr', headers: [{ name: 'x-tenant', present: false }] }),
              named('hdr-invert', { prefix: '/hdr', headers: [{ name: 'x-tenant', exact: 'black', invert: true }] }),
              named('hdr-fallback', { prefix: '/hdr' }),
              named('two-headers', { prefix: '/two', headers: [{ name: 'x-a', present: true }, { name: 'x-b', exact: '1' }] }),
              { name: 'rewrite', match: { prefix: '/api/v1/' }, route: { cluster: 'a', prefixRewrite: '/v2/' } },
              { name: 'rewrite-exact', match: { path: '/old' }, route: { cluster: 'a', prefixRewrite: '/new' } },
              { name: 'host-rewrite', match: { prefix: '/hostrw' }, route: { cluster: 'a', hostRewrite: 'rewritten.internal' } },
              { name: 'rr', match: { prefix: '/rr' }, route: { cluster: 'ab' } },
              { name: 'redirect-prefix', match: { prefix: '/legacy/' }, redirect: { status: 302, prefixRewrite: '/modern/' } },
              named('case-sensitive-prefix', { prefix: '/Case' }),
              named('catch-all', { prefix: '/' }),
            ],
          },
        ],
      },
      { name: 'alt', virtualHosts: [{ name: 'alt', domains: ['*'], routes: [named('alt-table', { prefix: '/' })] }] },
    ],
  });
  port = plane.ports.main!;
  altPort = plane.ports.alt!;
});
after(async () => {
  await plane.close();
  await upA.close();
  await upB.close();
});

async function hit(path: string, opts: { host?: string; method?: string; headers?: Record<string, string>; p?: number } = {}): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  const res = await request(`http://127.0.0.1:${opts.p ?? port}${path}`, {
    method: (opts.method ?? 'GET') as 'GET',
    headers: { host: opts.host ?? 'any.test', ...opts.headers },
  });
  return { status: res.statusCode, body: await res.body.text(), headers: res.headers };
}

const matched = async (path: string, opts: Parameters<typeof hit>[1] = {}) => (await hit(path, opts)).body;

test('virtual hosts: exact domain, case-insensitive, port retried without', async () => {
  assert.equal(await matched('/', { host: 'api.example.com' }), 'vh-exact');
  assert.equal(await matched('/', { host: 'API.Example.COM' }), 'vh-exact');
  assert.equal(await matched('/', { host: 'api2.example.com' }), 'vh-exact');
  assert.equal(await matched('/', { host: 'api.example.com:8443' }), 'vh-exact');
  assert.equal(await matched('/', { host: 'port.example:8080' }), 'vh-with-port');
});

test('virtual hosts: longest suffix wildcard wins, then prefix wildcard, then *', async () => {
  assert.equal(await matched('/', { host: 'x.deep.example.com' }), 'vh-suffix-long');
  assert.equal(await matched('/', { host: 'other.example.com' }), 'vh-suffix');
  assert.equal(await matched('/', { host: 'internal.corp' }), 'vh-prefix');
  assert.equal(await matched('/', { host: 'internal.example.com' }), 'vh-suffix', 'suffix wildcards are tried before prefix wildcards');
  assert.equal(await matched('/', { host: 'example.com' }), 'catch-all', '*.example.com needs at least one character before the suffix');
  assert.equal(await matched('/', { host: 'unknown.test' }), 'catch-all');
});

test('path matching: exact, regex (whole path, query ignored), prefix, case-sensitive, first match wins', async () => {
  assert.equal(await matched('/exact'), 'exact-path');
  assert.equal(await matched('/exact?x=1'), 'exact-path');
  assert.equal(await matched('/exact/more'), 'catch-all');
  assert.equal(await matched('/items/42'), 'regex');
  assert.equal(await matched('/items/42?sort=asc'), 'regex');
  assert.equal(await matched('/items/42x'), 'catch-all', 'regex must match the whole path');
  assert.equal(await matched('/Case/x'), 'case-sensitive-prefix');
  assert.equal(await matched('/case/x'), 'catch-all');
});

test('method matching', async () => {
  assert.equal(await matched('/method', { method: 'POST' }), 'post-only');
  assert.equal(await matched('/method', { method: 'PUT' }), 'post-only');
  assert.equal(await matched('/method', { method: 'GET' }), 'method-other');
  assert.equal(await matched('/method', { method: 'DELETE' }), 'method-other');
});

test('header matching: exact (name case-insensitive), prefix, regex, absent, inverted, all must hold', async () => {
  assert.equal(await matched('/hdr', { headers: { 'x-tenant': 'blue' } }), 'hdr-exact');
  assert.equal(await matched('/hdr', { headers: { 'x-tenant': 'green' } }), 'hdr-prefix');
  assert.equal(await matched('/hdr', { headers: { 'x-tenant': 'red' } }), 'hdr-regex');
  assert.equal(await matched('/hdr', { headers: { 'x-tenant': 'redx' } }), 'hdr-invert', 'header regex must match the whole value');
  assert.equal(await matched('/hdr'), 'hdr-absent');
  assert.equal(await matched('/hdr', { headers: { 'x-tenant': 'black' } }), 'hdr-fallback');
  assert.equal(await matched('/two', { headers: { 'x-a': '', 'x-b': '1' } }), 'two-headers');
  assert.equal(await matched('/two', { headers: { 'x-b': '1' } }), 'catch-all');
  assert.equal(await matched('/two', { headers: { 'x-a': 'y', 'x-b': '2' } }), 'catch-all');
});

test('prefix rewrite: upstream sees the rewritten path and x-envoy-original-path; the access log keeps the client path', async () => {
  const r = JSON.parse(await matched('/api/v1/users?id=3')) as { url: string; original: string | null };
  assert.equal(r.url, '/v2/users?id=3');
  assert.equal(r.original, '/api/v1/users?id=3');
  const e = JSON.parse(await matched('/old?q')) as { url: string; original: string | null };
  assert.equal(e.url, '/new?q', 'prefix rewrite on an exact-path route replaces the path');
  assert.equal(e.original, '/old?q');
});

test('host rewrite: upstream sees the rewritten authority', async () => {
  const r = JSON.parse(await matched('/hostrw')) as { host: string };
  assert.equal(r.host, 'rewritten.internal');
});

test('redirect with prefix rewrite keeps the rest of the path and the query', async () => {
  const r = await hit('/legacy/a/b?x=1', { host: 'site.test' });
  assert.equal(r.status, 302);
  assert.equal(r.headers.location, 'http://site.test/modern/a/b?x=1');
});

test('round robin across the endpoints of a cluster', async () => {
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) ids.push((JSON.parse(await matched(`/rr/${i}`)) as { id: string }).id);
  assert.deepEqual(new Set(ids), new Set(['a', 'b']));
  for (let i = 1; i < ids.length; i++) assert.notEqual(ids[i], ids[i - 1], `not alternating: ${ids.join(',')}`);
});

test('a listener uses the route table it names', async () => {
  assert.equal(await matched('/exact', { p: altPort }), 'alt-table');
});

test('the access log carries the route name and the client path after a rewrite', async () => {
  const p = await startPlane({
    clusters: [cluster('a', upA.port)],
    routeTables: [{ name: 'd', virtualHosts: [{ name: 'v', domains: ['*'], routes: [{ name: 'rewrite', match: { prefix: '/api/v1/' }, route: { cluster: 'a', prefixRewrite: '/v2/' } }] }] }],
  });
  try {
    const res = await request(`http://127.0.0.1:${p.ports.http}/api/v1/x`);
    await res.body.text();
  } finally {
    const log = await p.closeAndReadLog();
    assert.equal(log.length, 1, JSON.stringify(log));
    assert.equal(log[0]!.path, '/api/v1/x');
    assert.equal(log[0]!.route_name, 'rewrite');
  }
});
