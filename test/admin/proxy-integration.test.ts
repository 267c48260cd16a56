/**
 * The admin servers, Istio metrics and access log wired into a real proxy: requests through a
 * loopback listener to a loopback upstream, then what the admin API, the Prometheus port and the
 * access-log file say about them.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { TRANSPORT_ADDON_PATH } from '../../src/proxy/transport/native-socket.ts';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Proxy } from '../../src/proxy/proxy.ts';
import { bootstrap, cluster } from '../helpers/bootstrap.ts';
import { echoHandler, startHttp1, type TestServer } from '../helpers/upstream.ts';
import { parsePrometheus } from './prom-parse.ts';

let upstream: TestServer;
let proxy: Proxy;
let dir: string;
let logFile: string;
let closed = false;

const get = async (port: number, path: string, init?: RequestInit) => {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { ...init, signal: AbortSignal.timeout(5000) });
  return { status: r.status, body: await r.text() };
};

describe('admin + metrics + access log on a running proxy', { timeout: 30_000 }, () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshext-admin-int-'));
    logFile = join(dir, 'access.log');
    upstream = await startHttp1(echoHandler);
    proxy = await Proxy.start({
      bootstrap: bootstrap({
        clusters: [cluster('echo', upstream.port)],
        routeTables: [{ name: 'default', virtualHosts: [{ name: 'all', domains: ['*'], routes: [{ name: 'ok-route', match: { prefix: '/ok' }, route: { cluster: 'echo' } }] }] }],
        prometheus: { address: '127.0.0.1', port: 0 },
        readiness: { address: '127.0.0.1', port: 0 },
        accessLog: logFile,
      }),
    });
    const port = proxy.ports.http!;
    for (let i = 0; i < 3; i++) {
      const r = await get(port, `/ok/${i}`, { headers: { 'user-agent': 'admin-it' } });
      assert.equal(r.status, 200);
    }
    assert.equal((await get(port, '/nope')).status, 404);
  });
  after(async () => {
    if (!closed) await proxy.close();
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('/ready and the readiness port say LIVE', async () => {
    assert.deepEqual(await get(proxy.adminPort, '/ready'), { status: 200, body: 'LIVE\n' });
    const [, readiness] = proxy.serverPorts.slice(1);
    assert.equal((await get(readiness!, '/healthz/ready')).status, 200);
  });

  it('/stats counts the requests', async () => {
    const r = await get(proxy.adminPort, '/stats?filter=' + encodeURIComponent('^cluster\\.echo\\.upstream_rq_total$'));
    assert.equal(r.body, 'cluster.echo.upstream_rq_total: 3\n');
  });

  it('the Prometheus port exposes Istio metrics with the expected labels', async () => {
    const [prom] = proxy.serverPorts.slice(1);
    const fams = parsePrometheus((await get(prom!, '/stats/prometheus')).body);
    const rq = fams.get('istio_requests_total');
    assert.ok(rq, 'istio_requests_total present');
    const ok = rq.samples.find((s) => s.labels.response_code === '200');
    assert.equal(ok?.value, 3);
    assert.equal(ok?.labels.reporter, 'source');
    assert.equal(ok?.labels.source_workload, 'test');
    assert.equal(ok?.labels.source_app, 'test');
    assert.equal(ok?.labels.request_protocol, 'http');
    const nr = rq.samples.find((s) => s.labels.response_code === '404');
    assert.equal(nr?.value, 1);
    assert.equal(nr?.labels.response_flags, 'NR');
    assert.equal(fams.get('istio_request_duration_milliseconds')?.type, 'histogram');
    assert.deepEqual(fams.get('envoy_cluster_upstream_rq_total')?.samples[0]?.labels, { cluster_name: 'echo' });
  });

  it('/config_dump, /server_info, /listeners, /clusters reflect the configuration', async () => {
    const dump = JSON.parse((await get(proxy.adminPort, '/config_dump?resource=listeners&mask=name')).body) as { configs: unknown[] };
    assert.deepEqual(dump.configs, [{ name: 'http' }]);
    const info = JSON.parse((await get(proxy.adminPort, '/server_info')).body) as Record<string, unknown>;
    assert.equal(info.state, 'LIVE');
    assert.match(String(info.version), /\d+\.\d+\.\d+/);
    // native when the addon is built (CI builds it), else node:net with the reason
    assert.match(String(info.http1_transport), existsSync(TRANSPORT_ADDON_PATH) ? /^native$/ : /^node:net \(/);
    const listeners = await get(proxy.adminPort, '/listeners');
    assert.equal(listeners.body, `http::127.0.0.1:${proxy.ports.http}\n`);
    const clusters = await get(proxy.adminPort, '/clusters');
    assert.match(clusters.body, new RegExp(`^echo::127\\.0\\.0\\.1:${upstream.port}::health_flags::healthy$`, 'm'));
  });

  it('the access log has one JSON line per request, flushed on close', async () => {
    await proxy.close();
    closed = true;
    const lines = (await readFile(logFile, 'utf8')).trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(lines.length, 4);
    const ok = lines.filter((l) => l.response_code === 200);
    assert.equal(ok.length, 3);
    for (const l of ok) {
      assert.equal(l.method, 'GET');
      assert.match(String(l.path), /^\/ok\/\d$/);
      assert.equal(l.user_agent, 'admin-it');
      assert.equal(l.upstream_cluster, 'echo');
      assert.equal(l.upstream_host, `127.0.0.1:${upstream.port}`);
      assert.equal(l.route_name, 'ok-route');
      assert.match(String(l.request_id), /^[0-9a-f-]{36}$/);
      assert.equal(typeof l.duration, 'number');
    }
    const nr = lines.find((l) => l.response_code === 404);
    assert.equal(nr?.response_flags, 'NR');
    assert.equal(nr?.response_code_details, 'route_not_found');
  });
});
