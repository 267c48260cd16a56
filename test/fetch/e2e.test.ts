/**
 * Through the real proxy: the Wasm runtime's module source wired to src/fetch
 * (`setModuleSource(createFetchModuleSource(localModuleSource))`), a plugin pulled from a real
 * registry and answering requests, and a fetch failure applying failStrategy on live traffic:
 * FAIL_CLOSE answers 403 `RBAC: access denied`, FAIL_OPEN lets traffic through.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { loadExtensionObjects } from '../../src/config/extensions.ts';
import { closeSharedFetchers, createFetchModuleSource } from '../../src/fetch/module-source.ts';
import { pushModule } from '../../src/fetch/push.ts';
import { startProxy } from '../../src/proxy/proxy.ts';
import type { Proxy } from '../../src/proxy/proxy.ts';
import { localModuleSource, setModuleSource } from '../../src/wasm/runtime.ts';
import { bootstrap, cluster, routeAll } from '../helpers/bootstrap.ts';
import { echoHandler, startHttp1 } from '../helpers/upstream.ts';
import type { TestServer } from '../helpers/upstream.ts';
import { buildWat } from '../wasm/helpers/build.ts';
import { watPlugin } from '../wasm/helpers/wat.ts';
import { cleanup, registrySkip, startRegistry, tempDir } from './helpers.ts';
import type { Registry } from './helpers.ts';

describe('oci:// modules in the running proxy', { skip: registrySkip }, () => {
  let dir: string;
  let reg: Registry;
  let upstream: TestServer;
  let proxy: Proxy | undefined;

  before(async () => {
    dir = tempDir();
    reg = await startRegistry(dir);
    upstream = await startHttp1(echoHandler);
    setModuleSource(createFetchModuleSource(localModuleSource));
    // Answers every request itself: 218 "hello-from-oci".
    const plugin = await buildWat(
      watPlugin({
        extra: '  (data (i32.const 5000) "hello-from-oci")',
        bodies: { proxy_on_request_headers: '(drop (call $reply (i32.const 218) (i32.const 0) (i32.const 0) (i32.const 5000) (i32.const 14) (i32.const 0) (i32.const 0) (i32.const -1))) (i32.const 1)' },
      }),
    );
    await pushModule({ wasm: plugin, ref: `${reg.host}/plugins/e2e:v1`, insecure: true });
  });
  after(async () => {
    await proxy?.close();
    await closeSharedFetchers();
    await upstream?.close();
    await reg.stop();
    cleanup(dir);
  });

  it('pulls the plugin from the registry; a failed fetch denies (FAIL_CLOSE) or is absent (FAIL_OPEN)', async () => {
    const ext = (name: string, wasm: Record<string, unknown>) => ({ apiVersion: 'extensions.istio.io/v1alpha1', kind: 'TrafficExtension', metadata: { name, namespace: 'default', resourceVersion: '1' }, spec: { wasm } });
    const start = async (wasm: Record<string, unknown>): Promise<Proxy> => {
      const set = loadExtensionObjects([ext('fetched', wasm)]);
      assert.deepEqual(set.issues, []);
      return startProxy({
        bootstrap: bootstrap({ clusters: [cluster('echo', upstream.port)], routeTables: [routeAll('echo')], wasm: { memoryLimitBytes: 64 << 20, cpuBudgetMs: 0, cacheDir: `${dir}/cache`, insecureRegistries: [reg.host], allowLoopbackFetch: true } }),
        extensions: set.set,
        admin: false,
      });
    };

    proxy = await start({ url: `oci://${reg.host}/plugins/e2e:v1` });
    let res = await request(`http://127.0.0.1:${proxy.ports.http}/x`);
    assert.equal(res.statusCode, 218);
    assert.equal(await res.body.text(), 'hello-from-oci');
    await proxy.close();

    proxy = await start({ url: `oci://${reg.host}/plugins/e2e:missing`, failStrategy: 'FAIL_CLOSE' });
    res = await request(`http://127.0.0.1:${proxy.ports.http}/x`);
    assert.equal(res.statusCode, 403);
    assert.equal(await res.body.text(), 'RBAC: access denied');
    await proxy.close();

    proxy = await start({ url: `oci://${reg.host}/plugins/e2e:missing`, failStrategy: 'FAIL_OPEN' });
    res = await request(`http://127.0.0.1:${proxy.ports.http}/x`);
    assert.equal(res.statusCode, 200, 'FAIL_OPEN: the extension is absent and the upstream answers');
    await res.body.dump();
  });
});
