/**
 * --concurrency: N worker threads share the listening port (SO_REUSEPORT), each with its own
 * data plane; stats are merged across workers; extensions apply in every worker.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Agent, request } from 'undici';
import { loadExtensionObjects } from '../../src/config/extensions.ts';
import { startProxy, type Proxy } from '../../src/proxy/proxy.ts';
import { bootstrap, cluster, routeAll } from '../helpers/bootstrap.ts';
import { echoHandler, startHttp1, type TestServer } from '../helpers/upstream.ts';

let upstream: TestServer;
let proxy: Proxy;

before(async () => {
  upstream = await startHttp1(echoHandler);
  const ext = loadExtensionObjects([
    {
      apiVersion: 'extensions.istio.io/v1alpha1',
      kind: 'TrafficExtension',
      metadata: { name: 'tag', namespace: 'default' },
      spec: { lua: { inlineCode: 'function envoy_on_response(h) h:headers():add("x-tagged", "yes") end' } },
    },
  ]);
  assert.deepEqual(ext.issues, []);
  proxy = await startProxy({
    bootstrap: bootstrap({ clusters: [cluster('echo', upstream.port)], routeTables: [routeAll('echo')] }),
    concurrency: 2,
    extensions: ext.set,
  });
});

after(async () => {
  await proxy.close();
  await upstream.close();
});

test('two workers serve one port; stats merge; extensions run in every worker', async () => {
  const port = proxy.ports.http!;
  const n = 40;
  // A fresh connection per request spreads them over both workers' sockets.
  for (let i = 0; i < n; i++) {
    const agent = new Agent({ connections: 1 });
    const res = await request(`http://127.0.0.1:${port}/`, { dispatcher: agent });
    await res.body.dump();
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['x-tagged'], 'yes');
    await agent.close();
  }
  const stats = await proxy.stats();
  const total = stats.find((s) => s.name === 'http.http.downstream_rq_total');
  assert.equal(total?.kind === 'counter' ? total.value : -1, n);
  const info = proxy.serverInfo();
  assert.equal(info.concurrency, 2);
  const res = await request(`http://127.0.0.1:${proxy.adminPort}/stats?filter=downstream_rq_total`);
  assert.match(await res.body.text(), new RegExp(`http.http.downstream_rq_total: ${n}`));
});

test('admin /reset_counters zeroes counters in every worker', async () => {
  const res = await request(`http://127.0.0.1:${proxy.adminPort}/reset_counters`, { method: 'POST' });
  await res.body.dump();
  assert.equal(res.statusCode, 200);
  const stats = await proxy.stats();
  const total = stats.find((s) => s.name === 'http.http.downstream_rq_total');
  assert.equal(total?.kind === 'counter' ? total.value : -1, 0);
});
