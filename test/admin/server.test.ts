import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startAdminServer, startPrometheusServer, startReadinessServer, type AdminSource, type RunningServer } from '../../src/admin/server.ts';
import { getLevels, setLevel, logger } from '../../src/observability/log.ts';
import { mergeSnapshots, StatsStore } from '../../src/observability/stats.ts';
import { parsePrometheus } from './prom-parse.ts';

const T = { timeout: 10_000 };

function makeStats() {
  // Two workers, merged as the proxy does.
  const w1 = new StatsStore();
  const w2 = new StatsStore();
  for (const s of [w1, w2]) {
    s.counter('cluster.backend.upstream_rq_total').inc(3);
    s.counter('cluster.backend.upstream_rq_200').inc(2);
    s.counter('cluster.outbound|80||reviews.default.svc.cluster.local.upstream_cx_total').inc();
    s.gauge('cluster.backend.upstream_cx_active').set(1);
    s.counter('http.ingress.downstream_rq_total').inc(5);
    s.counter('listener.0.0.0.0_8080.downstream_cx_total').inc(1);
    s.counter('server.unused_counter');
    s.counter('wasmcustom.my_plugin_hits').inc(7);
    const h = s.histogram('cluster.backend.upstream_rq_time');
    for (const v of [0.3, 3, 3, 40, 200]) h.record(v);
    s.histogram('server.never_recorded');
  }
  const labels = { reporter: 'source', destination_service: 'a "quoted"\\ value\nline', response_code: '200' };
  w1.counter('istio_requests_total', labels).inc(4);
  w1.histogram('istio_request_duration_milliseconds', labels).record(12);
  return mergeSnapshots([w1.snapshot(), w2.snapshot()]);
}

class FakeSource implements AdminSource {
  ready = false;
  state: string | undefined = 'INITIALIZING';
  snapshot = makeStats();
  stats = async () => this.snapshot;
  configDump = async () => ({
    configs: [
      { '@type': 'type.googleapis.com/envoy.admin.v3.BootstrapConfigDump', bootstrap: { node: { id: 'sidecar~10.0.0.1~app.default' } } },
      {
        '@type': 'type.googleapis.com/envoy.admin.v3.ListenersConfigDump',
        dynamic_listeners: [
          { name: 'ingress', active_state: { listener: { name: 'ingress', address: { port: 8080 }, filter_chains: [{ filters: ['wasm-a', 'lua-b'] }] } } },
          { name: 'egress', active_state: { listener: { name: 'egress', address: { port: 9090 } } } },
        ],
      },
      {
        '@type': 'type.googleapis.com/envoy.admin.v3.ClustersConfigDump',
        dynamic_active_clusters: [
          { cluster: { name: 'backend', connect_timeout: '1s', lb_policy: 'ROUND_ROBIN' } },
          { cluster: { name: 'other', connect_timeout: '2s', lb_policy: 'ROUND_ROBIN' } },
        ],
      },
    ],
  });
  isReady = () => this.ready;
  serverInfo = () => ({
    version: '0.1.0/meshext',
    ...(this.state ? { state: this.ready ? 'LIVE' : this.state } : {}),
    command_line_options: { config_path: 'bootstrap.yaml' },
    node: { id: 'sidecar~10.0.0.1~app.default', cluster: 'app.default' },
    concurrency: 2,
  });
  clusters = async () => ({
    cluster_statuses: [
      {
        name: 'backend',
        host_statuses: [
          { address: { socket_address: { address: '127.0.0.1', port_value: 9000 } }, stats: [{ name: 'rq_total', value: 6 }, { name: 'cx_active', value: 1 }], health_status: { eds_health_status: 'HEALTHY' } },
        ],
      },
    ],
  });
}

let server: RunningServer;
const source = new FakeSource();
const url = (p: string) => `http://127.0.0.1:${server.port}${p}`;

async function get(p: string, init?: RequestInit): Promise<{ status: number; body: string; type: string | null }> {
  const r = await fetch(url(p), { ...init, signal: AbortSignal.timeout(5000) });
  return { status: r.status, body: await r.text(), type: r.headers.get('content-type') };
}

describe('admin server', T, () => {
  before(async () => {
    server = await startAdminServer({ address: '127.0.0.1', port: 0, source });
  });
  after(async () => {
    await server.close();
  });

  it('/ready flips between 503 with the state and 200 LIVE', async () => {
    source.ready = false;
    source.state = 'INITIALIZING';
    let r = await get('/ready');
    assert.equal(r.status, 503);
    assert.equal(r.body.trim(), 'INITIALIZING');
    source.state = 'DRAINING';
    r = await get('/ready');
    assert.equal(r.status, 503);
    assert.equal(r.body.trim(), 'DRAINING');
    source.ready = true;
    r = await get('/ready');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'LIVE\n');
  });

  it('/stats lists flat names sorted, histograms as quantiles', async () => {
    const r = await get('/stats');
    assert.equal(r.status, 200);
    assert.match(r.type ?? '', /^text\/plain/);
    const lines = r.body.trimEnd().split('\n');
    assert.ok(lines.includes('cluster.backend.upstream_rq_total: 6'), 'merged counter');
    assert.ok(lines.includes('cluster.backend.upstream_cx_active: 2'), 'merged gauge');
    assert.ok(lines.includes('wasmcustom.my_plugin_hits: 14'));
    // Tagged stats get their tags joined into the flat name.
    assert.ok(lines.some((l) => l.startsWith('istio_requests_total.reporter.source.destination_service.') && l.endsWith(': 4')));
    const scalars = lines.filter((l) => !/: (P0|No recorded)/.test(l)).map((l) => l.split(': ')[0]!);
    assert.deepEqual(scalars, [...scalars].sort());
    const h = lines.find((l) => l.startsWith('cluster.backend.upstream_rq_time: '));
    assert.ok(h, 'histogram line');
    assert.match(h, /P0\(nan,[\d.]+\) P25\(nan,[\d.]+\) P50\(nan,[\d.]+\).* P100\(nan,[\d.]+\)$/);
    assert.ok(lines.includes('server.never_recorded: No recorded values'));
  });

  it('/stats carries Envoy\'s server gauges (pilot-agent readiness reads them)', async () => {
    source.ready = false;
    source.state = 'INITIALIZING';
    let r = await get('/stats?usedonly&filter=' + encodeURIComponent('^(server.state|listener_manager.workers_started)'));
    assert.equal(r.body, 'server.state: 3\n');
    source.ready = true;
    r = await get('/stats?filter=' + encodeURIComponent('^(server\\.(state|live|concurrency)|listener_manager.workers_started)$'));
    assert.equal(r.body, 'listener_manager.workers_started: 1\nserver.concurrency: 2\nserver.live: 1\nserver.state: 0\n');
    const fams = parsePrometheus((await get('/stats/prometheus?filter=' + encodeURIComponent('^server\\.'))).body);
    assert.equal(fams.get('envoy_server_live')?.samples[0]?.value, 1);
    assert.ok((fams.get('envoy_server_uptime')?.samples[0]?.value ?? -1) >= 0);
    source.ready = false;
  });

  it('/stats?filter= applies a regex; bad regex is 400', async () => {
    const r = await get('/stats?filter=' + encodeURIComponent('^cluster\\.backend\\.upstream_rq_'));
    const names = r.body.trimEnd().split('\n').map((l) => l.split(':')[0]);
    assert.deepEqual(names, ['cluster.backend.upstream_rq_200', 'cluster.backend.upstream_rq_total', 'cluster.backend.upstream_rq_time']);
    const bad = await get('/stats?filter=' + encodeURIComponent('('));
    assert.equal(bad.status, 400);
    assert.match(bad.body, /Invalid regex/);
  });

  it('/stats?usedonly drops never-written stats; ?type= selects kinds', async () => {
    const used = await get('/stats?usedonly');
    assert.doesNotMatch(used.body, /server\.unused_counter/);
    assert.doesNotMatch(used.body, /server\.never_recorded/);
    const all = await get('/stats');
    assert.match(all.body, /server\.unused_counter: 0/);
    const hist = await get('/stats?type=Histograms');
    for (const l of hist.body.trimEnd().split('\n')) assert.match(l, /: (P0|No recorded)/);
    assert.equal((await get('/stats?type=Bogus')).status, 400);
  });

  it('/stats?format=json has Envoy shape incl. histograms', async () => {
    const r = await get('/stats?format=json&filter=upstream_rq');
    assert.equal(r.status, 200);
    assert.match(r.type ?? '', /application\/json/);
    const j = JSON.parse(r.body) as { stats: ({ name: string; value: number } | { histograms: { supported_quantiles: number[]; computed_quantiles: { name: string; values: { interval: null; cumulative: number }[] }[] } })[] };
    const scalars = j.stats.filter((s): s is { name: string; value: number } => 'name' in s);
    assert.deepEqual(scalars, [
      { name: 'cluster.backend.upstream_rq_200', value: 4 },
      { name: 'cluster.backend.upstream_rq_total', value: 6 },
    ]);
    const h = j.stats.find((s) => 'histograms' in s) as { histograms: { supported_quantiles: number[]; computed_quantiles: { name: string; values: { cumulative: number }[] }[] } };
    assert.deepEqual(h.histograms.supported_quantiles, [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100]);
    const q = h.histograms.computed_quantiles[0]!;
    assert.equal(q.name, 'cluster.backend.upstream_rq_time');
    assert.equal(q.values.length, 10);
    // 10 samples: 0.3 x2, 3 x4, 40 x2, 200 x2 → median inside the (1, 5] bucket, max in (100, 250].
    const p50 = q.values[2]!.cumulative;
    assert.ok(p50 > 1 && p50 <= 5, `p50 ${p50}`);
    const p100 = q.values[9]!.cumulative;
    assert.ok(p100 > 100 && p100 <= 250, `p100 ${p100}`);
  });

  it('/stats?histogram_buckets=cumulative shows bucket counts', async () => {
    const r = await get('/stats?filter=upstream_rq_time&histogram_buckets=cumulative');
    assert.match(r.body, /^cluster\.backend\.upstream_rq_time: B0\.5\(0,2\) B1\(0,2\) B5\(0,6\) /);
  });

  it('/stats/prometheus is valid exposition with Envoy/Istio naming', async () => {
    const r = await get('/stats/prometheus');
    assert.equal(r.status, 200);
    assert.match(r.type ?? '', /^text\/plain; version=0\.0\.4/);
    const fams = parsePrometheus(r.body);
    // Envoy stats: envoy_ prefix, tags extracted as Istio's bootstrap does.
    const rq = fams.get('envoy_cluster_upstream_rq_total');
    assert.equal(rq?.type, 'counter');
    assert.deepEqual(rq?.samples, [{ name: 'envoy_cluster_upstream_rq_total', labels: { cluster_name: 'backend' }, value: 6 }]);
    const code = fams.get('envoy_cluster_upstream_rq');
    assert.deepEqual(code?.samples[0]?.labels, { cluster_name: 'backend', response_code: '200' });
    const fqdn = fams.get('envoy_cluster_upstream_cx_total');
    assert.deepEqual(fqdn?.samples[0]?.labels, { cluster_name: 'outbound|80||reviews.default.svc.cluster.local' });
    assert.deepEqual(fams.get('envoy_http_downstream_rq_total')?.samples[0]?.labels, { http_conn_manager_prefix: 'ingress' });
    assert.deepEqual(fams.get('envoy_listener_downstream_cx_total')?.samples[0]?.labels, { listener_address: '0.0.0.0_8080' });
    assert.equal(fams.get('envoy_cluster_upstream_cx_active')?.type, 'gauge');
    // Custom namespace: prefix dropped, no envoy_.
    assert.equal(fams.get('my_plugin_hits')?.samples[0]?.value, 14);
    // Istio metric: unprefixed, labels kept, escaping round-trips.
    const istio = fams.get('istio_requests_total');
    assert.equal(istio?.samples[0]?.value, 4);
    assert.equal(istio?.samples[0]?.labels.destination_service, 'a "quoted"\\ value\nline');
    // Histogram: _bucket/_sum/_count, cumulative, +Inf == count (checked by the parser).
    const h = fams.get('envoy_cluster_upstream_rq_time');
    assert.equal(h?.type, 'histogram');
    const count = h?.samples.find((s) => s.name.endsWith('_count'));
    assert.equal(count?.value, 10);
    const sum = h?.samples.find((s) => s.name.endsWith('_sum'));
    assert.ok(Math.abs(sum!.value - 2 * (0.3 + 3 + 3 + 40 + 200)) < 1e-9);
    assert.ok(fams.get('istio_request_duration_milliseconds')?.samples.some((s) => s.labels.le === '25' && s.value === 1));
  });

  it('/stats/prometheus honours filter and usedonly; /stats?format=prometheus is the same', async () => {
    const r = await get('/stats/prometheus?usedonly&filter=' + encodeURIComponent('^(server\\.unused|server\\.never|istio)'));
    const fams = parsePrometheus(r.body);
    assert.deepEqual([...fams.keys()].sort(), ['istio_request_duration_milliseconds', 'istio_requests_total']);
    const all = parsePrometheus((await get('/stats/prometheus?filter=' + encodeURIComponent('^server\\.unused'))).body);
    assert.deepEqual([...all.keys()], ['envoy_server_unused_counter']);
    const alias = await get('/stats?format=prometheus&usedonly&filter=' + encodeURIComponent('^(server\\.unused|server\\.never|istio)'));
    assert.equal(alias.body, r.body);
  });

  it('/config_dump returns the source dump; resource, mask and name_regex select', async () => {
    const full = JSON.parse((await get('/config_dump')).body) as { configs: unknown[] };
    assert.equal(full.configs.length, 3);
    const cl = JSON.parse((await get('/config_dump?resource=dynamic_active_clusters')).body) as { configs: { cluster: { name: string } }[] };
    assert.deepEqual(cl.configs.map((c) => c.cluster.name), ['backend', 'other']);
    const masked = JSON.parse((await get('/config_dump?resource=dynamic_active_clusters&mask=cluster.name,cluster.lb_policy')).body) as { configs: unknown[] };
    assert.deepEqual(masked.configs, [{ cluster: { name: 'backend', lb_policy: 'ROUND_ROBIN' } }, { cluster: { name: 'other', lb_policy: 'ROUND_ROBIN' } }]);
    const named = JSON.parse((await get('/config_dump?resource=dynamic_listeners&name_regex=^ing')).body) as { configs: { name: string }[] };
    assert.deepEqual(named.configs.map((c) => c.name), ['ingress']);
    const sectionMask = JSON.parse((await get('/config_dump?mask=bootstrap.node.id')).body) as { configs: Record<string, unknown>[] };
    assert.deepEqual(sectionMask.configs[0], { '@type': 'type.googleapis.com/envoy.admin.v3.BootstrapConfigDump', bootstrap: { node: { id: 'sidecar~10.0.0.1~app.default' } } });
    assert.deepEqual(sectionMask.configs[1], { '@type': 'type.googleapis.com/envoy.admin.v3.ListenersConfigDump' });
    const missing = await get('/config_dump?resource=nope');
    assert.equal(missing.status, 404);
  });

  it('/config_dump accepts a plain object from the source', async () => {
    const s2: AdminSource = { ...source, stats: source.stats, isReady: () => true, serverInfo: () => ({}), configDump: async () => ({ listeners: [{ name: 'a' }, { name: 'b' }] }) };
    const srv = await startAdminServer({ address: '127.0.0.1', port: 0, source: s2 });
    try {
      const r = await fetch(`http://127.0.0.1:${srv.port}/config_dump?resource=listeners&name_regex=b`, { signal: AbortSignal.timeout(5000) });
      assert.deepEqual(await r.json(), { configs: [{ name: 'b' }] });
    } finally {
      await srv.close();
    }
  });

  it('/logging lists levels and POST changes them, which the loggers obey', async () => {
    const before = getLevels();
    try {
      let r = await get('/logging');
      assert.equal(r.status, 200);
      assert.match(r.body, /^active loggers:\n/);
      assert.match(r.body, /\n {2}wasm: \w+\n/);

      r = await get('/logging?wasm=debug', { method: 'POST' });
      assert.equal(r.status, 200);
      assert.match(r.body, /\n {2}wasm: debug\n/);
      assert.equal(getLevels().wasm, 'debug');
      assert.equal(logger('wasm').isLevelEnabled('debug'), true);
      assert.equal(logger('lua').isLevelEnabled('debug'), before.lua === 'debug' || before.lua === 'trace');

      r = await get('/logging?level=warning', { method: 'POST' });
      assert.equal(r.status, 200);
      assert.ok(Object.values(getLevels()).every((l) => l === 'warn'));
      assert.match(r.body, /\n {2}http: warning\n/);
      assert.equal(logger('http').isLevelEnabled('info'), false);

      r = await get('/logging?paths=lua:trace,http:error', { method: 'POST' });
      assert.equal(r.status, 200);
      assert.equal(getLevels().lua, 'trace');
      assert.equal(getLevels().http, 'error');

      // Bad requests change nothing.
      r = await get('/logging?lua=info&nosuch=debug', { method: 'POST' });
      assert.equal(r.status, 404);
      assert.match(r.body, /unknown logger 'nosuch'/);
      assert.equal(getLevels().lua, 'trace');
      r = await get('/logging?lua=loud', { method: 'POST' });
      assert.equal(r.status, 404);
      // Changing levels needs POST.
      r = await get('/logging?lua=info');
      assert.equal(r.status, 405);
      assert.equal(getLevels().lua, 'trace');

      const j = JSON.parse((await get('/logging?format=json')).body) as { loggers: Record<string, string> };
      assert.equal(j.loggers.lua, 'trace');
    } finally {
      for (const [c, l] of Object.entries(before)) setLevel(c as never, l);
    }
  });

  it('/server_info reports version, state, uptime, options, node, concurrency', async () => {
    source.ready = true;
    const j = JSON.parse((await get('/server_info')).body) as Record<string, unknown>;
    assert.equal(j.version, '0.1.0/meshext');
    assert.equal(j.state, 'LIVE');
    assert.match(String(j.uptime_current_epoch), /^\d+s$/);
    assert.deepEqual(j.command_line_options, { config_path: 'bootstrap.yaml', concurrency: 2 });
    assert.deepEqual(j.node, { id: 'sidecar~10.0.0.1~app.default', cluster: 'app.default' });
    source.ready = false;
    source.state = undefined;
    const j2 = JSON.parse((await get('/server_info')).body) as Record<string, unknown>;
    assert.equal(j2.state, 'INITIALIZING');
    source.state = 'INITIALIZING';
  });

  it('/clusters renders Envoy text and JSON; /listeners falls back when the source has none', async () => {
    const t = await get('/clusters');
    assert.equal(t.status, 200);
    assert.deepEqual(t.body.trimEnd().split('\n'), [
      'backend::observability_name::backend',
      'backend::127.0.0.1:9000::rq_total::6',
      'backend::127.0.0.1:9000::cx_active::1',
      'backend::127.0.0.1:9000::health_flags::healthy',
    ]);
    const j = JSON.parse((await get('/clusters?format=json')).body) as { cluster_statuses: unknown[] };
    assert.equal(j.cluster_statuses.length, 1);
    const l = await get('/listeners');
    assert.equal(l.status, 200);
    assert.equal(l.body, '');
    assert.deepEqual(JSON.parse((await get('/listeners?format=json')).body), { listener_statuses: [] });
  });

  it('/help lists every endpoint; unknown paths are 404; odd methods 405', async () => {
    const h = await get('/help');
    for (const p of ['/ready', '/stats', '/stats/prometheus', '/config_dump', '/logging', '/server_info', '/clusters', '/listeners', '/help']) {
      assert.match(h.body, new RegExp(`\\n {2}${p.replace(/\//g, '\\/')}: `), p);
    }
    assert.equal((await get('/nope')).status, 404);
    assert.equal((await get('/stats/nope')).status, 404);
    assert.equal((await get('/stats', { method: 'DELETE' })).status, 405);
  });

  it('/memory reports heap figures as Envoy does (uint64 as strings)', async () => {
    const j = JSON.parse((await get('/memory')).body) as Record<string, string>;
    for (const k of ['allocated', 'heap_size', 'total_physical_bytes']) assert.match(j[k]!, /^\d+$/, k);
  });

  it('mutating endpoints need POST and answer 501 when the proxy lacks the hook', async () => {
    for (const p of ['/drain_listeners', '/quitquitquit', '/reset_counters']) {
      assert.equal((await get(p)).status, 405, `GET ${p}`);
      assert.equal((await get(p, { method: 'POST' })).status, 501, `POST ${p}`);
    }
  });

  it('a failing source gives 500, and the server keeps serving', async () => {
    const orig = source.stats;
    const level = getLevels().admin!;
    setLevel('admin', 'off'); // the expected error would otherwise be logged into the test output
    source.stats = async () => {
      throw new Error('worker gone');
    };
    try {
      const r = await get('/stats');
      assert.equal(r.status, 500);
      assert.match(r.body, /worker gone/);
    } finally {
      source.stats = orig;
      setLevel('admin', level);
    }
    assert.equal((await get('/stats?filter=rq_total')).status, 200);
  });
});

describe('prometheus and readiness servers', T, () => {
  it('the prometheus server serves only /stats/prometheus', async () => {
    const s = new FakeSource();
    const srv = await startPrometheusServer({ address: '127.0.0.1', port: 0, source: s });
    try {
      const r = await fetch(`http://127.0.0.1:${srv.port}/stats/prometheus`, { signal: AbortSignal.timeout(5000) });
      assert.equal(r.status, 200);
      assert.ok(parsePrometheus(await r.text()).has('istio_requests_total'));
      for (const p of ['/stats', '/ready', '/config_dump', '/logging']) {
        const x = await fetch(`http://127.0.0.1:${srv.port}${p}`, { signal: AbortSignal.timeout(5000) });
        await x.text();
        assert.equal(x.status, 404, p);
      }
    } finally {
      await srv.close();
    }
  });

  it('the readiness server answers /healthz/ready 503 then 200', async () => {
    const s = new FakeSource();
    const srv = await startReadinessServer({ address: '127.0.0.1', port: 0, source: s });
    try {
      const probe = async (p = '/healthz/ready') => {
        const r = await fetch(`http://127.0.0.1:${srv.port}${p}`, { signal: AbortSignal.timeout(5000) });
        await r.text();
        return r.status;
      };
      assert.equal(await probe(), 503);
      s.ready = true;
      assert.equal(await probe(), 200);
      s.ready = false;
      assert.equal(await probe(), 503);
      assert.equal(await probe('/stats'), 404);
    } finally {
      await srv.close();
    }
  });

  it('close() returns even with keep-alive clients connected; the port is freed', async () => {
    const s = new FakeSource();
    const srv = await startAdminServer({ address: '127.0.0.1', port: 0, source: s });
    const r = await fetch(`http://127.0.0.1:${srv.port}/ready`, { signal: AbortSignal.timeout(5000) });
    await r.text();
    await srv.close();
    await assert.rejects(fetch(`http://127.0.0.1:${srv.port}/ready`, { signal: AbortSignal.timeout(2000) }));
  });

  it('drain_listeners, reset_counters and quitquitquit call the proxy', async () => {
    const calls: unknown[] = [];
    const s = new FakeSource();
    const store = new StatsStore();
    store.counter('a.b').inc(5);
    store.gauge('a.g').set(3);
    const src: AdminSource = {
      stats: async () => store.snapshot(),
      configDump: async () => ({}),
      isReady: s.isReady,
      serverInfo: s.serverInfo,
      drainListeners: async (o) => {
        calls.push(['drain', o]);
      },
      resetCounters: async () => {
        store.resetCounters();
        calls.push(['reset']);
      },
      quit: () => {
        calls.push(['quit']);
      },
    };
    const srv = await startAdminServer({ address: '127.0.0.1', port: 0, source: src });
    const post = async (p: string) => {
      const r = await fetch(`http://127.0.0.1:${srv.port}${p}`, { method: 'POST', signal: AbortSignal.timeout(5000) });
      return [r.status, await r.text()];
    };
    try {
      assert.deepEqual(await post('/drain_listeners?inboundonly&graceful'), [200, 'OK\n']);
      assert.deepEqual(await post('/reset_counters'), [200, 'OK\n']);
      const stats = await (await fetch(`http://127.0.0.1:${srv.port}/stats?filter=^a\\.`, { signal: AbortSignal.timeout(5000) })).text();
      assert.equal(stats, 'a.b: 0\na.g: 3\n');
      assert.deepEqual(await post('/quitquitquit'), [200, 'OK\n']);
      for (let i = 0; i < 50 && calls.length < 3; i++) await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(calls, [['drain', { inboundOnly: true, graceful: true }], ['reset'], ['quit']]);
    } finally {
      await srv.close();
    }
  });

  it('listening on a taken port rejects', async () => {
    const s = new FakeSource();
    const a = await startAdminServer({ address: '127.0.0.1', port: 0, source: s });
    try {
      await assert.rejects(startAdminServer({ address: '127.0.0.1', port: a.port, source: s }), /EADDRINUSE/);
    } finally {
      await a.close();
    }
  });
});
