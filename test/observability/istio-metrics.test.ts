import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ProxyIdentity } from '../../src/config/types.ts';
import { HeaderMap } from '../../src/filters/header-map.ts';
import { StreamInfo } from '../../src/filters/stream-info.ts';
import { renderPrometheus } from '../../src/admin/stats-render.ts';
import { IstioMetrics, ISTIO_REQUEST_LABELS, recordIstioRequest, recordIstioTcpOpen, reporterFor } from '../../src/observability/istio-metrics.ts';
import { StatsStore, type StatEntry } from '../../src/observability/stats.ts';
import { parsePrometheus } from '../admin/prom-parse.ts';

const identity: ProxyIdentity = {
  namespace: 'shop',
  labels: { app: 'productpage', version: 'v1' },
  rootNamespace: 'istio-system',
  workloadName: 'productpage-v1',
  clusterId: 'Kubernetes',
};

function stream(direction: string, code: number, over: Partial<StreamInfo> = {}): StreamInfo {
  const info = new StreamInfo();
  info.direction = direction;
  info.responseCode = code;
  info.bytesReceived = 100;
  info.bytesSent = 1000;
  Object.assign(info, over);
  return info;
}

function reqHeaders(authority = 'reviews.shop.svc.cluster.local:9080', extra: [string, string][] = []): HeaderMap {
  return HeaderMap.fromPairs([[':method', 'GET'], [':path', '/x'], [':authority', authority], ...extra]);
}

function find(store: StatsStore, name: string, pred: (t: Record<string, string>) => boolean = () => true): StatEntry[] {
  return store.snapshot().filter((e) => e.name === name && pred(e.tags as Record<string, string>));
}

describe('istio standard metrics', { timeout: 20_000 }, () => {
  it('maps directions to reporters', () => {
    assert.equal(reporterFor('gateway'), 'source');
    assert.equal(reporterFor('sidecar_outbound'), 'source');
    assert.equal(reporterFor('sidecar_inbound'), 'destination');
  });

  it('outbound request: reporter=source, own workload as source, service from authority', () => {
    const store = new StatsStore();
    const m = new IstioMetrics(store, identity);
    const info = stream('sidecar_outbound', 200);
    m.recordRequest(info, { requestHeaders: reqHeaders() });
    m.recordRequest(info, { requestHeaders: reqHeaders() });
    const [c] = find(store, 'istio_requests_total');
    assert.ok(c && c.kind === 'counter');
    assert.equal(c.value, 2);
    assert.deepEqual(Object.keys(c.tags), [...ISTIO_REQUEST_LABELS]);
    assert.deepEqual(c.tags, {
      reporter: 'source',
      source_workload: 'productpage-v1',
      source_canonical_service: 'productpage',
      source_canonical_revision: 'v1',
      source_workload_namespace: 'shop',
      source_principal: 'unknown',
      source_app: 'productpage',
      source_version: 'v1',
      source_cluster: 'Kubernetes',
      destination_workload: 'unknown',
      destination_workload_namespace: 'unknown',
      destination_principal: 'unknown',
      destination_app: 'unknown',
      destination_version: 'unknown',
      destination_service: 'reviews.shop.svc.cluster.local',
      destination_canonical_service: 'unknown',
      destination_canonical_revision: 'unknown',
      destination_service_name: 'reviews',
      destination_service_namespace: 'shop',
      destination_cluster: 'unknown',
      request_protocol: 'http',
      response_code: '200',
      grpc_response_status: '',
      response_flags: '-',
      connection_security_policy: 'unknown',
    });
    const [d] = find(store, 'istio_request_duration_milliseconds');
    assert.ok(d && d.kind === 'histogram');
    assert.equal(d.count, 2);
    const [rb] = find(store, 'istio_request_bytes');
    assert.ok(rb && rb.kind === 'histogram');
    // header bytes (":method"+"GET" ...) + 100 body bytes
    const hdr = reqHeaders().byteSize();
    assert.equal(rb.sum, 2 * (hdr + 100));
    const [sb] = find(store, 'istio_response_bytes');
    assert.ok(sb && sb.kind === 'histogram');
    assert.equal(sb.sum, 2000);
  });

  it('inbound request: reporter=destination, peer as source, mTLS policy, flags', () => {
    const store = new StatsStore();
    const m = new IstioMetrics(store, identity);
    const info = stream('sidecar_inbound', 503);
    info.downstreamTls = { protocol: 'TLSv1.3', cipher: 'x', peerCertificatePresented: true, alpn: 'h2' };
    info.responseFlags.add('UF');
    info.responseFlags.add('URX');
    m.recordRequest(info, {
      requestHeaders: reqHeaders('productpage:9080'),
      destinationService: 'productpage.shop.svc.cluster.local',
      peer: { workload: 'gateway', namespace: 'istio-system', app: 'istio-ingressgateway', principal: 'spiffe://cluster.local/ns/istio-system/sa/gw' },
      localPrincipal: 'spiffe://cluster.local/ns/shop/sa/productpage',
    });
    const [c] = find(store, 'istio_requests_total');
    const t = c!.tags as Record<string, string>;
    assert.equal(t.reporter, 'destination');
    assert.equal(t.source_workload, 'gateway');
    assert.equal(t.source_workload_namespace, 'istio-system');
    assert.equal(t.source_principal, 'spiffe://cluster.local/ns/istio-system/sa/gw');
    assert.equal(t.source_version, 'unknown');
    assert.equal(t.destination_workload, 'productpage-v1');
    assert.equal(t.destination_principal, 'spiffe://cluster.local/ns/shop/sa/productpage');
    assert.equal(t.destination_app, 'productpage');
    assert.equal(t.destination_service_name, 'productpage');
    assert.equal(t.destination_service_namespace, 'shop');
    assert.equal(t.connection_security_policy, 'mutual_tls');
    assert.equal(t.response_code, '503');
    assert.equal(t.response_flags, 'UF,URX');
    // Plain-text inbound → none.
    m.recordRequest(stream('sidecar_inbound', 200), { requestHeaders: reqHeaders('productpage') });
    assert.ok(find(store, 'istio_requests_total', (x) => x.connection_security_policy === 'none' && x.destination_service === 'productpage' && x.destination_service_namespace === 'unknown').length === 1);
  });

  it('destination_service from an Istio cluster name beats the authority', () => {
    const store = new StatsStore();
    const m = new IstioMetrics(store, identity);
    m.recordRequest(stream('sidecar_outbound', 200, { upstreamCluster: 'outbound|9080|v2|ratings.shop.svc.cluster.local' }), { requestHeaders: reqHeaders('ratings:9080') });
    m.recordRequest(stream('sidecar_outbound', 200, { upstreamCluster: 'plain-cluster' }), { requestHeaders: reqHeaders('ratings:9080') });
    const svcs = find(store, 'istio_requests_total').map((e) => [e.tags.destination_service, e.tags.destination_service_name, e.tags.destination_service_namespace]);
    assert.deepEqual(svcs.sort(), [
      ['ratings', 'ratings', 'unknown'],
      ['ratings.shop.svc.cluster.local', 'ratings', 'shop'],
    ]);
  });

  it('destination_service follows the authority from request to request', () => {
    const store = new StatsStore();
    const m = new IstioMetrics(store, identity);
    for (const a of ['a.shop.svc:80', 'b:8080', 'a.shop.svc:80', '[::1]:80', 'b', 'b:8080']) {
      m.recordRequest(stream('sidecar_outbound', 200), { requestHeaders: reqHeaders(a) });
    }
    const counts = find(store, 'istio_requests_total').map((e) => [e.tags.destination_service, e.kind === 'counter' ? e.value : -1]);
    assert.deepEqual(counts.sort(), [['[::1]', 1], ['a.shop.svc', 2], ['b', 3]]);
  });

  it('waypoint: reporter=waypoint, both sides from peers', () => {
    const store = new StatsStore();
    const m = new IstioMetrics(store, { ...identity, waypoint: true, workloadName: 'waypoint' });
    const info = stream('sidecar_inbound', 200);
    info.downstreamTls = { protocol: 'TLSv1.3', cipher: 'x', peerCertificatePresented: true, alpn: 'h2' };
    m.recordRequest(info, {
      requestHeaders: reqHeaders(),
      peer: { workload: 'productpage-v1', namespace: 'shop' },
      upstreamPeer: { workload: 'reviews-v2', namespace: 'shop', app: 'reviews', version: 'v2' },
    });
    m.recordRequest(stream('gateway', 200), { requestHeaders: reqHeaders() });
    const rows = find(store, 'istio_requests_total').map((e) => [e.tags.reporter, e.tags.source_workload, e.tags.destination_workload, e.tags.destination_version, e.tags.connection_security_policy]);
    assert.deepEqual(rows.sort(), [
      ['waypoint', 'productpage-v1', 'reviews-v2', 'v2', 'mutual_tls'],
      ['waypoint', 'unknown', 'unknown', 'unknown', 'none'],
    ]);
  });

  it('gateway + gRPC: protocol grpc and grpc status from trailers or mapped from HTTP', () => {
    const store = new StatsStore();
    const m = new IstioMetrics(store, identity);
    const grpcReq = reqHeaders('api.example.com', [['content-type', 'application/grpc+proto']]);
    m.recordRequest(stream('gateway', 200), { requestHeaders: grpcReq, responseTrailers: HeaderMap.fromPairs([['grpc-status', '5']]) });
    m.recordRequest(stream('gateway', 503), { requestHeaders: grpcReq });
    const all = find(store, 'istio_requests_total');
    assert.deepEqual(all.map((e) => [e.tags.reporter, e.tags.request_protocol, e.tags.response_code, e.tags.grpc_response_status, e.tags.destination_service]).sort(), [
      ['source', 'grpc', '200', '5', 'api.example.com'],
      ['source', 'grpc', '503', '14', 'api.example.com'],
    ]);
  });

  it('distinct codes are distinct series; the same combination reuses one', () => {
    const store = new StatsStore();
    const m = new IstioMetrics(store, identity);
    for (let i = 0; i < 10; i++) m.recordRequest(stream('gateway', i % 2 ? 404 : 200), { requestHeaders: reqHeaders() });
    assert.equal(m.seriesCount, 2);
    assert.deepEqual(find(store, 'istio_requests_total').map((e) => (e.kind === 'counter' ? e.value : -1)), [5, 5]);
  });

  it('caps series: unbounded authorities collapse to destination_service=unknown', () => {
    const store = new StatsStore();
    const m = new IstioMetrics(store, identity, { maxSeries: 5 });
    for (let i = 0; i < 100; i++) m.recordRequest(stream('gateway', 200), { requestHeaders: reqHeaders(`h${i}.example.com`) });
    assert.equal(m.seriesCount, 6);
    const unknown = find(store, 'istio_requests_total', (t) => t.destination_service === 'unknown');
    assert.equal(unknown.length, 1);
    assert.equal(unknown[0]!.kind === 'counter' && unknown[0]!.value, 95);
  });

  it('the convenience function reuses one recorder per store+identity', () => {
    const store = new StatsStore();
    recordIstioRequest(store, identity, stream('gateway', 200), { requestHeaders: reqHeaders() });
    recordIstioRequest(store, identity, stream('gateway', 200), { requestHeaders: reqHeaders() });
    const [c] = find(store, 'istio_requests_total');
    assert.equal(c!.kind === 'counter' && c!.value, 2);
  });

  it('TCP: opened, byte deltas on report and close, closed once', () => {
    const store = new StatsStore();
    const info = stream('sidecar_inbound', 0, { protocol: 'TCP', bytesReceived: 0, bytesSent: 0 });
    const conn = recordIstioTcpOpen(store, identity, info, { destinationService: 'db.shop.svc.cluster.local' });
    info.bytesReceived = 10;
    info.bytesSent = 20;
    conn.report();
    info.bytesReceived = 15;
    info.bytesSent = 50;
    conn.close();
    conn.close();
    const val = (n: string) => {
      const [e] = find(store, n);
      return e?.kind === 'counter' ? e.value : undefined;
    };
    assert.equal(val('istio_tcp_connections_opened_total'), 1);
    assert.equal(val('istio_tcp_connections_closed_total'), 1);
    assert.equal(val('istio_tcp_received_bytes_total'), 15);
    assert.equal(val('istio_tcp_sent_bytes_total'), 50);
    const [e] = find(store, 'istio_tcp_connections_opened_total');
    assert.equal(e!.tags.request_protocol, 'tcp');
    assert.equal(e!.tags.reporter, 'destination');
    assert.equal(e!.tags.destination_service_name, 'db');
    assert.equal('response_code' in e!.tags, false);
  });

  it('renders as valid Prometheus with Istio names and labels', () => {
    const store = new StatsStore();
    const m = new IstioMetrics(store, identity);
    m.recordRequest(stream('gateway', 200), { requestHeaders: reqHeaders() });
    m.recordRequest(stream('gateway', 500), { requestHeaders: reqHeaders() });
    m.openTcp(stream('gateway', 0, { protocol: 'TCP' })).close();
    const fams = parsePrometheus(renderPrometheus(store.snapshot()));
    assert.equal(fams.get('istio_requests_total')?.type, 'counter');
    assert.equal(fams.get('istio_requests_total')?.samples.length, 2);
    assert.equal(fams.get('istio_request_duration_milliseconds')?.type, 'histogram');
    assert.equal(fams.get('istio_request_bytes')?.type, 'histogram');
    assert.equal(fams.get('istio_response_bytes')?.type, 'histogram');
    assert.equal(fams.get('istio_tcp_connections_opened_total')?.samples[0]?.value, 1);
    assert.equal(fams.get('istio_requests_total')?.samples[0]?.labels.source_workload, 'productpage-v1');
  });

  it('hot path stays cheap: cached series cost a fraction of building one', () => {
    // Compared against the cold path in the same run rather than an absolute bound, so a loaded
    // CI machine does not make the test flaky, while per-request label building would fail it.
    const store = new StatsStore();
    const m = new IstioMetrics(store, identity, { maxSeries: 1e9 });
    const info = stream('sidecar_outbound', 200);
    const resp = HeaderMap.fromPairs([[':status', '200'], ['content-length', '1000']]);
    const n = 3000;
    const cold: HeaderMap[] = Array.from({ length: n }, (_, i) => reqHeaders(`svc-${i}.shop.svc.cluster.local`));
    const hot: HeaderMap[] = Array.from({ length: n }, () => reqHeaders());
    const time = (hs: HeaderMap[]) => {
      const t0 = performance.now();
      for (const h of hs) m.recordRequest(info, { requestHeaders: h, responseHeaders: resp });
      return ((performance.now() - t0) * 1000) / hs.length;
    };
    for (let i = 0; i < 10; i++) time(hot); // warm up
    const hotRuns: number[] = [];
    for (let i = 0; i < 5; i++) hotRuns.push(time(hot));
    const hotUs = hotRuns.sort((a, b) => a - b)[2]!;
    const coldUs = time(cold);
    console.log(`# recordRequest: ${hotUs.toFixed(3)} µs/request cached, ${coldUs.toFixed(2)} µs for a new label set`);
    assert.ok(hotUs * 3 < coldUs, `cached ${hotUs} µs vs new ${coldUs} µs`);
  });
});
