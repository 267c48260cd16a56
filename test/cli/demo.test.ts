/**
 * The demo (`npm start`): its embedded bootstrap, upstream app and both example extensions work.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { runDemo } from '../../src/cli/demo.ts';
import type { Proxy } from '../../src/proxy/proxy.ts';

let proxy: Proxy;
before(async () => {
  proxy = await runDemo({ port: 0, adminPort: 0, prometheusPort: 0, readinessPort: 0, quiet: true });
});
after(async () => {
  await proxy.close();
});

test('the parity Lua script and the Wasm plugin both act on a proxied request', async () => {
  const res = await request(`http://127.0.0.1:${proxy.ports.http}/productpage`, { headers: { 'x-number': '7' } });
  const body = (await res.body.json()) as { app: string };
  assert.equal(res.statusCode, 200);
  assert.equal(body.app, 'meshext-demo-upstream');
  assert.equal(res.headers['x-parity'], 'odd');
  assert.equal(res.headers['x-meshext-wasm'], 'added by a Proxy-Wasm plugin');
});

test('the direct-response route and the admin config dump', async () => {
  const hello = await request(`http://127.0.0.1:${proxy.ports.http}/hello`);
  assert.equal(await hello.body.text(), 'hello from meshext\n');
  const dump = await request(`http://127.0.0.1:${proxy.adminPort}/config_dump`);
  const text = await dump.body.text();
  assert.match(text, /extensions\.istio\.io\/trafficextension\/default\.parity/);
  assert.match(text, /extensions\.istio\.io\/trafficextension\/default\.add-header/);
});
