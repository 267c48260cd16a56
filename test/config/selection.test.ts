/** Selection and ordering (traffic-extension.md §2.2–2.4), including istiod's quirks. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { loadExtensionObjects } from '../../src/config/extensions.ts';
import {
  compareByCreation,
  extensionsForListener,
  extensionsForProxy,
  flattenPhases,
  indexByNamespace,
  listenerClassForDirection,
  listenerInfoFor,
  lookupNamespaces,
  matchTraffic,
  shouldAttach,
} from '../../src/config/selection.ts';
import type { ListenerInfo } from '../../src/config/selection.ts';
import type { TrafficExtension } from '../../src/config/types.ts';
import { loadYaml, LUA, names, proxy, te } from './helpers.ts';

const fixture = (f: string): string => readFileSync(new URL(`./fixtures/${f}`, import.meta.url), 'utf8');

const ingress = proxy({ namespace: 'istio-ingress', labels: { istio: 'ingressgateway' } });
const gwInfo: ListenerInfo = { class: 'Gateway', port: 8080 };
const wasm = (url = 'oci://r/x:1', extra: Record<string, unknown> = {}) => ({ url, ...extra });

describe('ordering', () => {
  it('spec example (e): openid-connect -> acl-check -> check-header', () => {
    const exts = loadYaml(fixture('spec-7.1e-ordering.yaml'));
    // Feed them in reverse to prove the order comes from phase/priority, not input order.
    const byPhase = extensionsForListener(ingress, gwInfo, 'HTTP', [...exts].reverse());
    assert.deepEqual(names(byPhase.AUTHN), ['openid-connect']);
    assert.deepEqual(names(byPhase.AUTHZ), ['acl-check', 'check-header']);
    assert.deepEqual(names(flattenPhases(byPhase)), ['openid-connect', 'acl-check', 'check-header']);
  });

  it('unset priority sorts after every explicit priority, negative ones included (D1)', () => {
    const exts = [
      te('unset', 'default', { lua: LUA }, { creationTimestamp: '2026-01-01T00:00:00Z' }),
      te('neg', 'default', { lua: LUA, priority: -5 }, { creationTimestamp: '2026-01-02T00:00:00Z' }),
      te('min', 'default', { lua: LUA, priority: -2147483648 }, { creationTimestamp: '2026-01-03T00:00:00Z' }),
      te('zero', 'default', { lua: LUA, priority: 0 }, { creationTimestamp: '2026-01-04T00:00:00Z' }),
      te('high', 'default', { lua: LUA, priority: 10 }, { creationTimestamp: '2026-01-05T00:00:00Z' }),
    ];
    const r = extensionsForListener(proxy(), gwInfo, 'HTTP', exts);
    // INT32_MIN explicit ties with unset: the older (unset) keeps its place (stable sort).
    assert.deepEqual(names(r.UNSPECIFIED), ['high', 'zero', 'neg', 'unset', 'min']);
  });

  it('on equal priority the proxy namespace precedes the root namespace regardless of age (D2)', () => {
    const exts = [
      te('aaa-root', 'istio-system', { lua: LUA, priority: 5 }, { creationTimestamp: '2020-01-01T00:00:00Z' }),
      te('zzz-local', 'default', { lua: LUA, priority: 5 }, { creationTimestamp: '2026-01-01T00:00:00Z' }),
    ];
    assert.deepEqual(names(extensionsForListener(proxy(), gwInfo, 'HTTP', exts).UNSPECIFIED), ['zzz-local', 'aaa-root']);
    // A higher priority still wins across namespaces.
    const higherRoot = [exts[1]!, te('root-high', 'istio-system', { lua: LUA, priority: 6 })];
    assert.deepEqual(names(extensionsForListener(proxy(), gwInfo, 'HTTP', higherRoot).UNSPECIFIED), ['root-high', 'zzz-local']);
  });

  it('pre-sorts by creationTimestamp, then name (a missing timestamp sorts first)', () => {
    const exts = [
      te('b', 'default', { lua: LUA }, { creationTimestamp: '2026-01-01T00:00:01Z' }),
      te('a', 'default', { lua: LUA }, { creationTimestamp: '2026-01-01T00:00:02Z' }),
      te('d', 'default', { lua: LUA }, { creationTimestamp: '2026-01-01T00:00:01Z' }),
      te('z-no-time', 'default', { lua: LUA }),
    ];
    assert.deepEqual(names(extensionsForListener(proxy(), gwInfo, 'HTTP', exts).UNSPECIFIED), ['z-no-time', 'b', 'd', 'a']);
  });

  it('compareByCreation breaks a name tie by namespace', () => {
    const a = te('same', 'aaa', { lua: LUA });
    const b = te('same', 'bbb', { lua: LUA });
    assert.equal(compareByCreation(a, b), -1);
    assert.equal(compareByCreation(b, a), 1);
    assert.equal(compareByCreation(a, a), 0);
  });

  it('translated WasmPlugins sort with TrafficExtensions by their synthetic name', () => {
    const r = loadExtensionObjects([
      { apiVersion: 'extensions.istio.io/v1alpha1', kind: 'TrafficExtension', metadata: { name: 'a-b' }, spec: { lua: LUA } },
      { apiVersion: 'extensions.istio.io/v1alpha1', kind: 'WasmPlugin', metadata: { name: 'a' }, spec: { url: 'oci://r/a:1' } },
      { apiVersion: 'extensions.istio.io/v1alpha1', kind: 'TrafficExtension', metadata: { name: 'az' }, spec: { lua: LUA } },
      { apiVersion: 'extensions.istio.io/v1alpha1', kind: 'TrafficExtension', metadata: { name: 'b' }, spec: { lua: LUA } },
    ]);
    // '~' (0x7e) sorts after letters and '-': "a~istio-translated-wasmplugin" > "az".
    assert.deepEqual(names(extensionsForListener(proxy(), gwInfo, 'HTTP', r.set.extensions).UNSPECIFIED), ['a-b', 'az', 'a~istio-translated-wasmplugin', 'b']);
  });

  it('groups by phase; chain type filters Lua and NETWORK wasm', () => {
    const exts = [
      te('lua', 'default', { lua: LUA, phase: 'STATS' }),
      te('http-wasm', 'default', { wasm: wasm(), phase: 'AUTHZ' }),
      te('net-wasm', 'default', { wasm: wasm('oci://r/x:1', { type: 'NETWORK' }), phase: 'AUTHN' }),
      te('typed-http', 'default', { wasm: wasm('oci://r/x:1', { type: 'HTTP' }) }),
    ];
    assert.deepEqual(names(flattenPhases(extensionsForListener(proxy(), gwInfo, 'HTTP', exts))), ['http-wasm', 'lua', 'typed-http']);
    assert.deepEqual(names(flattenPhases(extensionsForListener(proxy(), gwInfo, 'NETWORK', exts))), ['net-wasm']);
    assert.deepEqual(names(flattenPhases(extensionsForListener(proxy(), gwInfo, 'ANY', exts))), ['net-wasm', 'http-wasm', 'lua', 'typed-http']);
  });

  it('looks up the proxy namespace, the root namespace and bound services namespaces, deduped', () => {
    assert.deepEqual(
      lookupNamespaces(proxy({ namespace: 'a' }), { class: 'SidecarInbound', port: 0, services: [{ name: 's', namespace: 'b', registry: 'Kubernetes' }, { name: 't', namespace: 'a', registry: 'Kubernetes' }] }),
      ['a', 'istio-system', 'b'],
    );
    assert.deepEqual(lookupNamespaces(proxy({ namespace: 'istio-system' }), gwInfo), ['istio-system']);
    // Extensions in other namespaces are never candidates.
    const other = te('elsewhere', 'other', { lua: LUA });
    assert.deepEqual(names(flattenPhases(extensionsForListener(proxy(), gwInfo, 'HTTP', [other]))), []);
  });
});

describe('match (§2.3)', () => {
  const cases: { name: string; match: TrafficExtension['spec']['match']; info: ListenerInfo; want: boolean }[] = [
    { name: 'empty list matches everything', match: [], info: { class: 'SidecarInbound', port: 9080 }, want: true },
    { name: 'CLIENT on a gateway', match: [{ mode: 'CLIENT' }], info: { class: 'Gateway', port: 80 }, want: true },
    { name: 'CLIENT on sidecar outbound', match: [{ mode: 'CLIENT' }], info: { class: 'SidecarOutbound', port: 80 }, want: true },
    { name: 'CLIENT not on sidecar inbound', match: [{ mode: 'CLIENT' }], info: { class: 'SidecarInbound', port: 80 }, want: false },
    { name: 'SERVER on sidecar inbound', match: [{ mode: 'SERVER' }], info: { class: 'SidecarInbound', port: 80 }, want: true },
    { name: 'SERVER not on a gateway', match: [{ mode: 'SERVER' }], info: { class: 'Gateway', port: 80 }, want: false },
    { name: 'SERVER not on sidecar outbound', match: [{ mode: 'SERVER' }], info: { class: 'SidecarOutbound', port: 80 }, want: false },
    { name: 'CLIENT_AND_SERVER everywhere', match: [{ mode: 'CLIENT_AND_SERVER' }], info: { class: 'SidecarInbound', port: 80 }, want: true },
    { name: 'UNDEFINED everywhere', match: [{ mode: 'UNDEFINED' }], info: { class: 'Gateway', port: 80 }, want: true },
    { name: 'mode unset everywhere', match: [{ ports: [{ number: 80 }] }], info: { class: 'SidecarOutbound', port: 80 }, want: true },
    { name: 'port listed', match: [{ mode: 'CLIENT', ports: [{ number: 8080 }, { number: 8081 }] }], info: { class: 'Gateway', port: 8081 }, want: true },
    { name: 'port not listed', match: [{ mode: 'CLIENT', ports: [{ number: 8080 }, { number: 8081 }] }], info: { class: 'Gateway', port: 443 }, want: false },
    { name: 'selectors are ORed', match: [{ mode: 'SERVER' }, { ports: [{ number: 443 }] }], info: { class: 'Gateway', port: 443 }, want: true },
    { name: 'conditions inside a selector are ANDed', match: [{ mode: 'SERVER', ports: [{ number: 443 }] }], info: { class: 'Gateway', port: 443 }, want: false },
    { name: 'Undefined class + port 0 (ECDS / whole-proxy query) matches all', match: [{ mode: 'SERVER', ports: [{ number: 1 }] }], info: { class: 'Undefined', port: 0 }, want: true },
    { name: 'Undefined class with a port counts as CLIENT', match: [{ mode: 'CLIENT' }], info: { class: 'Undefined', port: 80 }, want: true },
    { name: 'Undefined class with a port is not SERVER', match: [{ mode: 'SERVER' }], info: { class: 'Undefined', port: 80 }, want: false },
    { name: 'waypoint quirk: port lists never match port 0', match: [{ mode: 'SERVER', ports: [{ number: 9080 }] }], info: { class: 'SidecarInbound', port: 0 }, want: false },
    { name: 'waypoint quirk: CLIENT never matches', match: [{ mode: 'CLIENT' }], info: { class: 'SidecarInbound', port: 0 }, want: false },
    { name: 'waypoint: SERVER matches', match: [{ mode: 'SERVER' }], info: { class: 'SidecarInbound', port: 0 }, want: true },
  ];
  for (const c of cases) {
    it(c.name, () => assert.equal(matchTraffic(c.match, c.info), c.want));
  }

  it('spec example (f): Lua on gateway client ports 8080/8081 only', () => {
    const [ext] = loadYaml(fixture('spec-7.1f-lua-client-ports.yaml'));
    const on = (port: number) => names(flattenPhases(extensionsForListener(ingress, { class: 'Gateway', port }, 'HTTP', [ext!])));
    assert.deepEqual(on(8080), ['conditional-header-modifier']);
    assert.deepEqual(on(8081), ['conditional-header-modifier']);
    assert.deepEqual(on(443), []);
    // Lua never goes in network chains.
    assert.deepEqual(names(flattenPhases(extensionsForListener(ingress, { class: 'Gateway', port: 8080 }, 'NETWORK', [ext!]))), []);
  });
});

describe('selector and targetRefs (§2.4)', () => {
  const sidecar = proxy({ namespace: 'default', labels: { app: 'productpage', version: 'v1' } });
  const inbound: ListenerInfo = { class: 'SidecarInbound', port: 9080 };

  it('selector: all labels must match (subset)', () => {
    assert.equal(shouldAttach(sidecar, te('x', 'default', { lua: LUA, selector: { matchLabels: { app: 'productpage' } } }), inbound), true);
    assert.equal(shouldAttach(sidecar, te('x', 'default', { lua: LUA, selector: { matchLabels: { app: 'productpage', version: 'v2' } } }), inbound), false);
    assert.equal(shouldAttach(sidecar, te('x', 'default', { lua: LUA, selector: { matchLabels: { app: 'reviews' } } }), inbound), false);
  });

  it('no selector: every workload of the namespace; from the root namespace: every namespace', () => {
    const local = te('local', 'default', { lua: LUA });
    const root = te('root', 'istio-system', { lua: LUA });
    const foreign = te('foreign', 'bookinfo', { lua: LUA });
    assert.deepEqual(names(flattenPhases(extensionsForListener(sidecar, inbound, 'HTTP', [local, root, foreign]))), ['local', 'root']);
    const elsewhere = proxy({ namespace: 'bookinfo' });
    assert.deepEqual(names(flattenPhases(extensionsForListener(elsewhere, inbound, 'HTTP', [local, root, foreign]))), ['foreign', 'root']);
  });

  it('targetRefs are ignored for sidecars and classic gateways', () => {
    const byGateway = te('gw', 'default', { lua: LUA, targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'bookinfo-gateway' }] });
    const byService = te('svc', 'default', { lua: LUA, targetRefs: [{ kind: 'Service', group: '', name: 'productpage' }] });
    assert.equal(shouldAttach(sidecar, byGateway, inbound), false);
    assert.equal(shouldAttach(sidecar, byService, { ...inbound, services: [{ name: 'productpage', namespace: 'default', registry: 'Kubernetes' }] }), false);
    const classic = proxy({ namespace: 'default', labels: { istio: 'ingressgateway' } });
    assert.equal(shouldAttach(classic, byGateway, gwInfo), false);
  });

  describe('Gateway API gateway', () => {
    const gw = proxy({ namespace: 'default', labels: { 'gateway.networking.k8s.io/gateway-name': 'bookinfo-gateway', app: 'gw' } });
    const parityAtGateway = te('parity-at-gateway', 'default', { lua: LUA, phase: 'STATS', targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'bookinfo-gateway' }] });

    it('attaches by targetRef to its own Gateway (the gateway-name label), same namespace only', () => {
      assert.equal(shouldAttach(gw, parityAtGateway, gwInfo), true);
      const otherName = te('o', 'default', { lua: LUA, targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'other' }] });
      assert.equal(shouldAttach(gw, otherName, gwInfo), false);
      const otherNs = te('parity-at-gateway', 'istio-system', { lua: LUA, targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'bookinfo-gateway' }] });
      assert.equal(shouldAttach(gw, otherNs, gwInfo), false);
      // Service targetRefs are for waypoints only.
      const svc = te('s', 'default', { lua: LUA, targetRefs: [{ kind: 'Service', name: 'bookinfo-gateway' }] });
      assert.equal(shouldAttach(gw, svc, { ...gwInfo, services: [{ name: 'bookinfo-gateway', namespace: 'default', registry: 'Kubernetes' }] }), false);
    });

    it('gatewayName in the identity works like the label', () => {
      assert.equal(shouldAttach(proxy({ gatewayName: 'bookinfo-gateway' }), parityAtGateway, gwInfo), true);
    });

    it('selector policies apply unless ENABLE_SELECTOR_BASED_K8S_GATEWAY_POLICY=false', () => {
      const bySelector = te('sel', 'default', { lua: LUA, selector: { matchLabels: { app: 'gw' } } });
      const none = te('none', 'default', { lua: LUA });
      assert.equal(shouldAttach(gw, bySelector, gwInfo), true);
      assert.equal(shouldAttach(gw, none, gwInfo), true);
      assert.equal(shouldAttach(gw, bySelector, gwInfo, { selectorBasedK8sGatewayPolicy: false }), false);
      assert.equal(shouldAttach(gw, none, gwInfo, { selectorBasedK8sGatewayPolicy: false }), false);
    });
  });

  describe('waypoint', () => {
    const wp = proxy({ namespace: 'default', waypoint: true, gatewayName: 'waypoint', labels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' } });
    const reviews = { name: 'reviews', namespace: 'default', registry: 'Kubernetes' };
    const info = listenerInfoFor({ direction: 'sidecar_inbound', port: 15008 }, wp, [reviews]);

    it('is queried as SidecarInbound with port 0', () => {
      assert.deepEqual(info, { class: 'SidecarInbound', port: 0, services: [reviews] });
    });

    it('ignores selectors and selector-less policies, even from the root namespace', () => {
      assert.equal(shouldAttach(wp, te('s', 'default', { lua: LUA, selector: { matchLabels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' } } }), info), false);
      assert.equal(shouldAttach(wp, te('n', 'default', { lua: LUA }), info), false);
      assert.equal(shouldAttach(wp, te('r', 'istio-system', { lua: LUA }), info), false);
    });

    it('attaches via its Gateway, a bound Service, a ServiceEntry, or GatewayClass istio-waypoint from the root namespace', () => {
      const atWaypoint = te('parity-at-waypoint', 'default', { lua: LUA, targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'waypoint' }] });
      assert.equal(shouldAttach(wp, atWaypoint, info), true);
      const forReviews = te('parity-for-reviews', 'default', { lua: LUA, targetRefs: [{ kind: 'Service', group: '', name: 'reviews' }], match: [{ mode: 'SERVER' }] });
      assert.equal(shouldAttach(wp, forReviews, info), true);
      assert.equal(shouldAttach(wp, forReviews, { ...info, services: [] }), false, 'only on the chain of a bound service');
      const coreGroup = te('core', 'default', { lua: LUA, targetRefs: [{ kind: 'Service', group: 'core', name: 'reviews' }] });
      assert.equal(shouldAttach(wp, coreGroup, info), true);
      const se = te('se', 'default', { lua: LUA, targetRefs: [{ kind: 'ServiceEntry', group: 'networking.istio.io', name: 'ext' }] });
      assert.equal(shouldAttach(wp, se, { ...info, services: [{ name: 'ext', namespace: 'default', registry: 'External' }] }), true);
      assert.equal(shouldAttach(wp, se, { ...info, services: [{ name: 'ext', namespace: 'default', registry: 'Kubernetes' }] }), false, 'a ServiceEntry ref needs an External service');
      const cls = (ns: string, name = 'istio-waypoint') => te('cls', ns, { lua: LUA, targetRefs: [{ kind: 'GatewayClass', group: 'gateway.networking.k8s.io', name }] });
      assert.equal(shouldAttach(wp, cls('istio-system'), info), true);
      assert.equal(shouldAttach(wp, cls('default'), info), false, 'GatewayClass only from the root namespace');
      assert.equal(shouldAttach(wp, cls('istio-system', 'istio'), info), false, 'only the istio-waypoint class');
      assert.equal(shouldAttach(proxy({ gatewayName: 'gw' }), cls('istio-system'), gwInfo), false, 'not for non-waypoint gateways');
    });

    it('a Service in another namespace bound to the waypoint brings that namespace in', () => {
      const remote = { name: 'ratings', namespace: 'bookinfo', registry: 'Kubernetes' };
      const remoteInfo = listenerInfoFor({ direction: 'sidecar_inbound', port: 0 }, wp, [remote]);
      const forRatings = te('for-ratings', 'bookinfo', { lua: LUA, targetRefs: [{ kind: 'Service', name: 'ratings' }] });
      const wrongNs = te('wrong-ns', 'default', { lua: LUA, targetRefs: [{ kind: 'Service', name: 'ratings' }] });
      assert.deepEqual(names(flattenPhases(extensionsForListener(wp, remoteInfo, 'HTTP', [forRatings, wrongNs]))), ['for-ratings']);
    });

    it('spec example (g) and the port-0 quirk: ports or CLIENT never match a waypoint HTTP chain', () => {
      const [logger] = loadYaml(readFileSync(new URL('./fixtures/spec-7.1g-waypoint-lua.yaml', import.meta.url), 'utf8'));
      assert.deepEqual(names(extensionsForListener(wp, info, 'HTTP', [logger!]).STATS), ['reviews-header-logger']);
      const withPorts = te('ports', 'default', { lua: LUA, targetRefs: [{ kind: 'Service', name: 'reviews' }], match: [{ mode: 'SERVER', ports: [{ number: 9080 }] }] });
      const client = te('client', 'default', { lua: LUA, targetRefs: [{ kind: 'Service', name: 'reviews' }], match: [{ mode: 'CLIENT' }] });
      assert.deepEqual(names(flattenPhases(extensionsForListener(wp, info, 'HTTP', [withPorts, client]))), []);
    });
  });
});

describe('whole-proxy query', () => {
  it('returns every extension that applies on any listener, all chain types, ignoring match', () => {
    const exts = [
      te('inbound-only', 'default', { lua: LUA, match: [{ mode: 'SERVER', ports: [{ number: 1 }] }] }),
      te('net', 'default', { wasm: { url: 'oci://r/x:1', type: 'NETWORK' }, phase: 'AUTHN' }),
      te('other-workload', 'default', { lua: LUA, selector: { matchLabels: { app: 'nope' } } }),
      te('root', 'istio-system', { lua: LUA, phase: 'STATS' }),
    ];
    assert.deepEqual(names(extensionsForProxy(proxy(), exts)), ['net', 'root', 'inbound-only']);
    // A pre-built namespace index gives the same answer.
    assert.deepEqual(names(extensionsForProxy(proxy(), indexByNamespace(exts))), ['net', 'root', 'inbound-only']);
  });
});

describe('listener helpers', () => {
  it('maps directions to listener classes', () => {
    assert.equal(listenerClassForDirection('gateway'), 'Gateway');
    assert.equal(listenerClassForDirection('sidecar_inbound'), 'SidecarInbound');
    assert.equal(listenerClassForDirection('sidecar_outbound'), 'SidecarOutbound');
  });
  it('builds ListenerInfo from a listener for non-waypoints', () => {
    assert.deepEqual(listenerInfoFor({ direction: 'sidecar_outbound', port: 9080 }, {}), { class: 'SidecarOutbound', port: 9080 });
    assert.deepEqual(listenerInfoFor({ direction: 'gateway', port: 8443 }, { waypoint: false }), { class: 'Gateway', port: 8443 });
  });
});
