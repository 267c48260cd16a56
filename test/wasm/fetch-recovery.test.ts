/**
 * A FAIL_CLOSE Wasm extension whose module server is failing answers 403 `RBAC: access denied`
 * (Istio's deny fallback), then comes up by itself once the server serves the module, with no
 * configuration change (meshext retries the fetch in the background).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { loadExtensionObjects } from '../../src/config/extensions.ts';
import { startProxy, type Proxy } from '../../src/proxy/proxy.ts';
import { bootstrap, cluster, routeAll } from '../helpers/bootstrap.ts';
import { echoHandler, startHttp1, type TestServer } from '../helpers/upstream.ts';
import { buildWat } from './helpers/build.ts';

let upstream: TestServer;
let moduleServer: TestServer;
let proxy: Proxy;
let serving = false;
let cacheDir: string;

before(async () => {
  cacheDir = mkdtempSync(join(tmpdir(), 'meshext-recovery-'));
  const wasm = await buildWat(readFileSync(new URL('../../examples/plugins/add-header.wat', import.meta.url), 'utf8'));
  moduleServer = await startHttp1((_req, res) => {
    if (!serving) {
      // 404 is not retried within one fetch, so the first fetch fails fast.
      res.writeHead(404).end('not yet');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/wasm' }).end(Buffer.from(wasm));
  });
  upstream = await startHttp1(echoHandler);
  const b = bootstrap({ clusters: [cluster('echo', upstream.port)], routeTables: [routeAll('echo')] });
  b.wasm = { ...b.wasm, cacheDir, allowLoopbackFetch: true };
  const ext = loadExtensionObjects([
    {
      apiVersion: 'extensions.istio.io/v1alpha1',
      kind: 'TrafficExtension',
      metadata: { name: 'late', namespace: 'default' },
      spec: { wasm: { url: `http://127.0.0.1:${moduleServer.port}/plugin-${Date.now()}.wasm`, pluginConfig: { a: 1 } } },
    },
  ]);
  assert.deepEqual(ext.issues.filter((i) => i.level === 'error'), []);
  proxy = await startProxy({ bootstrap: b, extensions: ext.set, admin: false });
});

after(async () => {
  await proxy.close();
  await upstream.close();
  await moduleServer.close();
  rmSync(cacheDir, { recursive: true, force: true });
});

test('403 while the module cannot be fetched, then the plugin serves without a config change', { timeout: 60_000 }, async () => {
  const url = `http://127.0.0.1:${proxy.ports.http}/`;
  const denied = await request(url);
  assert.equal(denied.statusCode, 403);
  assert.equal(await denied.body.text(), 'RBAC: access denied');
  serving = true;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const res = await request(url);
    await res.body.dump();
    if (res.statusCode === 200) {
      assert.equal(res.headers['x-meshext-wasm'], 'added by a Proxy-Wasm plugin');
      break;
    }
    assert.equal(res.statusCode, 403);
    if (Date.now() > deadline) throw new Error('the extension never recovered');
    await new Promise((r) => setTimeout(r, 200));
  }
});
