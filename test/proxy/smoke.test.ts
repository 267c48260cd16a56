import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { DataPlane } from '../../src/proxy/data-plane.ts';
import { bootstrap, cluster, routeAll } from '../helpers/bootstrap.ts';
import { echoHandler, startHttp1, type TestServer } from '../helpers/upstream.ts';

let upstream: TestServer;
let dp: DataPlane;
let port: number;

before(async () => {
  upstream = await startHttp1(echoHandler);
  dp = new DataPlane(bootstrap({ clusters: [cluster('echo', upstream.port)], routeTables: [routeAll('echo')] }));
  await dp.start();
  port = dp.ports().http!;
});
after(async () => {
  await dp.close();
  await upstream.close();
});

test('proxies a GET to the upstream with Envoy headers', async () => {
  const res = await request(`http://127.0.0.1:${port}/hello?x=1`, { headers: { 'x-test': 'a' } });
  assert.equal(res.statusCode, 200);
  const body = (await res.body.json()) as { url: string; headers: Record<string, string> };
  assert.equal(body.url, '/hello?x=1');
  assert.equal(body.headers['x-test'], 'a');
  assert.equal(body.headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(body.headers['x-forwarded-proto'], 'http');
  assert.match(body.headers['x-request-id']!, /^[0-9a-f-]{36}$/);
  assert.ok(res.headers['x-envoy-upstream-service-time'] !== undefined);
});

test('streams a POST body', async () => {
  const res = await request(`http://127.0.0.1:${port}/up`, { method: 'POST', body: Buffer.alloc(100_000, 1) });
  const body = (await res.body.json()) as { bodyLength: number };
  assert.equal(body.bodyLength, 100_000);
});
