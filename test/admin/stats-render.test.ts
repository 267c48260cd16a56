import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { flatName, prometheusName, quantile, renderPrometheus, renderPrometheusBuffer, renderText, sanitizeMetricName } from '../../src/admin/stats-render.ts';
import { StatsStore, mergeSnapshots } from '../../src/observability/stats.ts';
import { parsePrometheus } from './prom-parse.ts';

describe('stats rendering', { timeout: 20_000 }, () => {
  it('extracts Envoy/Istio tags from dotted names', () => {
    const cases: [string, string, [string, string][]][] = [
      ['cluster.backend.upstream_rq_total', 'envoy_cluster_upstream_rq_total', [['cluster_name', 'backend']]],
      ['cluster.backend.upstream_rq_503', 'envoy_cluster_upstream_rq', [['cluster_name', 'backend'], ['response_code', '503']]],
      ['cluster.backend.upstream_rq_5xx', 'envoy_cluster_upstream_rq', [['cluster_name', 'backend'], ['response_code_class', '5xx']]],
      ['cluster.outbound|9080|v1|reviews.default.svc.cluster.local.upstream_cx_active', 'envoy_cluster_upstream_cx_active', [['cluster_name', 'outbound|9080|v1|reviews.default.svc.cluster.local']]],
      ['cluster.cluster.upstream_rq_total', 'envoy_cluster_upstream_rq_total', [['cluster_name', 'cluster']]],
      ['http.ingress.downstream_rq_2xx', 'envoy_http_downstream_rq', [['response_code_class', '2xx'], ['http_conn_manager_prefix', 'ingress']]],
      ['listener.0.0.0.0_15006.downstream_cx_total', 'envoy_listener_downstream_cx_total', [['listener_address', '0.0.0.0_15006']]],
      ['tcp.db_proxy.downstream_cx_total', 'envoy_tcp_downstream_cx_total', [['tcp_prefix', 'db_proxy']]],
      ['server.live', 'envoy_server_live', []],
      ['wasmcustom.my-plugin.hits', 'my_plugin_hits', []],
      ['istio_requests_total', 'istio_requests_total', []],
    ];
    for (const [name, prom, labels] of cases) {
      const got = prometheusName(name, false);
      assert.equal(got.name, prom, name);
      assert.deepEqual(got.labels, labels, name);
    }
    // Explicit tags win: no extraction from the name.
    assert.deepEqual(prometheusName('cluster.backend.upstream_rq_total', true), { name: 'envoy_cluster_backend_upstream_rq_total', labels: [] });
    assert.equal(sanitizeMetricName('9lives.a-b'), '_9lives_a_b');
  });

  it('quantiles interpolate inside buckets and handle overflow', () => {
    const s = new StatsStore();
    const h = s.histogram('h', undefined, [10, 20, 30]);
    for (let i = 0; i < 10; i++) h.record(15); // all in (10, 20]
    const e = s.snapshot()[0]!;
    assert.ok(e.kind === 'histogram');
    assert.equal(quantile(e, 0), 10);
    assert.equal(quantile(e, 50), 15);
    assert.equal(quantile(e, 100), 20);
    h.record(1000); // above the last bound
    const e2 = s.snapshot()[0]!;
    assert.ok(e2.kind === 'histogram');
    assert.equal(quantile(e2, 100), 30);
    const empty = new StatsStore();
    empty.histogram('x');
    const e3 = empty.snapshot()[0]!;
    assert.ok(e3.kind === 'histogram');
    assert.equal(quantile(e3, 50), null);
  });

  it('flat names join tags; control characters never break a line', () => {
    const s = new StatsStore();
    s.counter('m', { a: 'x\ny', b: 'z' }).inc();
    assert.equal(flatName(s.snapshot()[0]!), 'm.a.x_y.b.z');
    assert.equal(renderText(s.snapshot(), {}), 'm.a.x_y.b.z: 1\n');
  });

  it('Prometheus bytes are valid UTF-8 with non-ASCII label values, across many series', () => {
    const workers = [new StatsStore(), new StatsStore()];
    for (const w of workers) {
      for (let i = 0; i < 300; i++) {
        const tags = { destination_service: `sérvice-${i}-✓.example`, note: 'quote " back \\ slash' };
        w.counter('istio_requests_total', tags).inc(2);
        w.histogram('istio_request_duration_milliseconds', tags).record(i);
      }
    }
    const snap = mergeSnapshots(workers.map((w) => w.snapshot()));
    const buf = renderPrometheusBuffer(snap);
    assert.equal(buf.toString('utf8'), renderPrometheus(snap));
    const fams = parsePrometheus(buf.toString('utf8'));
    const rq = fams.get('istio_requests_total')!;
    assert.equal(rq.samples.length, 300);
    assert.ok(rq.samples.every((x) => x.value === 4 && x.labels.note === 'quote " back \\ slash'));
    assert.ok(rq.samples.some((x) => x.labels.destination_service === 'sérvice-7-✓.example'));
    const h = fams.get('istio_request_duration_milliseconds')!;
    assert.equal(h.samples.filter((x) => x.name.endsWith('_count')).length, 300);
  });

  it('an empty snapshot renders as an empty exposition', () => {
    assert.equal(renderPrometheus([]), '');
    assert.equal(renderText([], {}), '');
  });
});
