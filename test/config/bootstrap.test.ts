/** The bootstrap loader: defaults, every cross-reference check, exact file:line:path messages. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError, MeshextError } from '../../src/errors.ts';
import { defaultBootstrap, loadBootstrapFile, parseBootstrap, parseBootstrapObject } from '../../src/config/bootstrap.ts';

const dir = mkdtempSync(join(tmpdir(), 'meshext-boot-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The `file:line: path: message` lines a text produces (asserting it throws a ConfigError). */
function problems(text: string, file = join(dir, 'bootstrap.yaml')): string[] {
  try {
    parseBootstrap(text, file);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(err.code, 'MESHEXT_ERR_CONFIG');
    assert.ok(MeshextError.is(err));
    assert.equal(err.message, err.issues.map((i) => (i.path ? `${i.file}:${i.line}: ${i.path}: ${i.message}` : `${i.file}:${i.line}: ${i.message}`)).join('\n'));
    return err.message.split('\n').map((l) => l.replace(`${file}:`, 'F:'));
  }
  assert.fail('expected a ConfigError');
}

const minimal = `
listeners:
- name: http
  port: 8080
routeConfigs:
- name: default
  virtualHosts:
  - name: all
    domains: ["*"]
    routes:
    - match: {prefix: /}
      route: {cluster: backend}
clusters:
- name: backend
  endpoints: ["127.0.0.1:9000"]
`;

describe('bootstrap: defaults', () => {
  it('fills every default from a minimal file', () => {
    const cfg = parseBootstrap(minimal, join(dir, 'b.yaml'));
    assert.equal(cfg.source, join(dir, 'b.yaml'));
    assert.deepEqual(cfg.identity, { namespace: 'default', labels: {}, rootNamespace: 'istio-system', workloadName: 'meshext', clusterId: 'Kubernetes' });
    assert.deepEqual(cfg.admin, { address: '127.0.0.1', port: 15000 });
    assert.deepEqual(cfg.prometheus, { address: '0.0.0.0', port: 15090 });
    assert.deepEqual(cfg.readiness, { address: '0.0.0.0', port: 15021 });
    assert.deepEqual(cfg.listeners, [{ name: 'http', address: '0.0.0.0', port: 8080, protocol: 'HTTP', direction: 'gateway', bufferLimitBytes: 1048576, statPrefix: 'http', routeConfig: 'default' }]);
    assert.deepEqual(cfg.clusters, [{ name: 'backend', endpoints: [{ address: '127.0.0.1', port: 9000 }], lbPolicy: 'ROUND_ROBIN', connectTimeoutMs: 5000, requestTimeoutMs: 15000, maxConnections: 1024, protocol: 'HTTP1' }]);
    assert.deepEqual(cfg.routeTables[0]!.virtualHosts[0]!.routes[0], { name: 'routeConfigs[0].virtualHosts[0].routes[0]', match: { prefix: '/' }, route: { cluster: 'backend' } });
    assert.deepEqual(cfg.extensions, []);
    assert.equal(cfg.accessLog, null);
    assert.equal(cfg.drainTimeoutMs, 5000);
    assert.deepEqual(cfg.lua, { engine: 'auto', memoryLimitBytes: 16777216, instructionBudget: 10000000, failClosed: false, allowUnsafeLibs: false });
    assert.deepEqual(cfg.wasm, { memoryLimitBytes: 268435456, cpuBudgetMs: 1000, cacheDir: join(homedir(), '.cache/meshext/wasm'), insecureRegistries: [], allowLoopbackFetch: false });
  });

  it('an empty file is a valid (empty) proxy; defaultBootstrap() overlays friendly fields', () => {
    assert.deepEqual(parseBootstrap('', 'empty.yaml').listeners, []);
    const cfg = defaultBootstrap({ node: { namespace: 'istio-ingress', labels: { istio: 'ingressgateway' } }, admin: { port: 0 }, prometheus: null, readiness: null });
    assert.equal(cfg.identity.namespace, 'istio-ingress');
    assert.deepEqual(cfg.admin, { address: '127.0.0.1', port: 0 });
    assert.equal(cfg.prometheus, null);
    assert.equal(cfg.readiness, null);
  });

  it('reads every field of the full format', () => {
    writeFileSync(join(dir, 'cert.pem'), 'x');
    writeFileSync(join(dir, 'key.pem'), 'x');
    writeFileSync(join(dir, 'ca.pem'), 'x');
    const cfg = parseBootstrap(`
node:
  namespace: istio-ingress
  labels: {istio: ingressgateway}
  rootNamespace: mesh-root
  workloadName: ingress-0
  clusterId: c1
admin: {address: 0.0.0.0, port: 0}
prometheus: null
readiness: {port: 0}
listeners:
- name: https
  address: 127.0.0.1
  port: 8443
  direction: sidecar_inbound
  tls: {certFile: cert.pem, keyFile: key.pem, caFile: ./ca.pem, alpn: [http/1.1]}
  routeConfig: main
  bufferLimitBytes: 4096
  statPrefix: ingress_https
- name: db
  port: 5432
  protocol: TCP
  direction: sidecar_outbound
  cluster: pg
routeConfigs:
- name: main
  virtualHosts:
  - name: web
    domains: ["*.example.com", "example.*", "www.example.com:8443"]
    routes:
    - name: api
      match:
        path: /api
        methods: [get, POST]
        headers:
        - {name: X-Env, exact: prod}
        - {name: x-debug, invert: true}
        - {name: x-v, regex: "^v[0-9]+$"}
      route: {cluster: web, timeoutMs: 0, prefixRewrite: /v2, hostRewrite: api.internal}
      metadata: {envoy.filters.http.lua: {team: a}}
    - match: {regex: "^/old/.*"}
      redirect: {status: 308, host: new.example.com, path: /new, stripQuery: true}
    - match: {prefix: /}
      directResponse: {status: 404, body: nope, headers: {content-type: text/plain}}
- name: unused
  virtualHosts: []
clusters:
- name: web
  endpoints: ["10.0.0.1:80", "[::1]:8080", {address: web.internal, port: 81}]
  connectTimeoutMs: 250
  requestTimeoutMs: 0
  maxConnections: 8
  protocol: HTTP2
  tls: {sni: web.internal, caFile: ca.pem, insecureSkipVerify: false}
- name: pg
  endpoints: ["db:5432"]
extensions: [./extensions, /etc/meshext/more.yaml]
accessLog: logs/access.log
drainTimeoutMs: 0
lua: {engine: wasm, memoryLimitBytes: 1048576, instructionBudget: 5000, failClosed: true, allowUnsafeLibs: true}
wasm: {memoryLimitBytes: 65536, cpuBudgetMs: 50, cacheDir: cache, insecureRegistries: [localhost:5000], allowLoopbackFetch: true}
`, join(dir, 'full.yaml'));
    assert.deepEqual(cfg.identity, { namespace: 'istio-ingress', labels: { istio: 'ingressgateway' }, rootNamespace: 'mesh-root', workloadName: 'ingress-0', clusterId: 'c1' });
    assert.deepEqual(cfg.admin, { address: '0.0.0.0', port: 0 });
    assert.equal(cfg.prometheus, null);
    assert.deepEqual(cfg.readiness, { address: '0.0.0.0', port: 0 });
    assert.deepEqual(cfg.listeners[0], {
      name: 'https', address: '127.0.0.1', port: 8443, protocol: 'HTTP', direction: 'sidecar_inbound', bufferLimitBytes: 4096, statPrefix: 'ingress_https',
      tls: { certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem'), caFile: join(dir, 'ca.pem'), alpn: ['http/1.1'] }, routeConfig: 'main',
    });
    assert.deepEqual(cfg.listeners[1], { name: 'db', address: '0.0.0.0', port: 5432, protocol: 'TCP', direction: 'sidecar_outbound', bufferLimitBytes: 1048576, statPrefix: 'db', cluster: 'pg' });
    const [api, old, fallback] = cfg.routeTables[0]!.virtualHosts[0]!.routes;
    assert.deepEqual(api, {
      name: 'api',
      match: { path: '/api', methods: ['GET', 'POST'], headers: [{ name: 'x-env', exact: 'prod' }, { name: 'x-debug', present: true, invert: true }, { name: 'x-v', regex: '^v[0-9]+$' }] },
      route: { cluster: 'web', timeoutMs: 0, prefixRewrite: '/v2', hostRewrite: 'api.internal' },
      metadata: { 'envoy.filters.http.lua': { team: 'a' } },
    });
    assert.deepEqual(old!.redirect, { status: 308, host: 'new.example.com', path: '/new', stripQuery: true });
    assert.deepEqual(fallback!.directResponse, { status: 404, body: 'nope', headers: { 'content-type': 'text/plain' } });
    assert.deepEqual(cfg.clusters[0]!.endpoints, [{ address: '10.0.0.1', port: 80 }, { address: '::1', port: 8080 }, { address: 'web.internal', port: 81 }]);
    assert.deepEqual(cfg.clusters[0]!.tls, { sni: 'web.internal', caFile: join(dir, 'ca.pem'), insecureSkipVerify: false });
    assert.equal(cfg.clusters[0]!.protocol, 'HTTP2');
    assert.deepEqual(cfg.extensions, [join(dir, 'extensions'), '/etc/meshext/more.yaml']);
    assert.equal(cfg.accessLog, join(dir, 'logs/access.log'));
    assert.equal(cfg.drainTimeoutMs, 0);
    assert.deepEqual(cfg.lua, { engine: 'wasm', memoryLimitBytes: 1048576, instructionBudget: 5000, failClosed: true, allowUnsafeLibs: true });
    assert.deepEqual(cfg.wasm, { memoryLimitBytes: 65536, cpuBudgetMs: 50, cacheDir: join(dir, 'cache'), insecureRegistries: ['localhost:5000'], allowLoopbackFetch: true });
  });

  it('keys without a value are absent, except that prometheus/readiness/accessLog: null disable', () => {
    const cfg = parseBootstrap('node:\nlisteners:\nclusters:\nlua:\n  engine:\nprometheus:\nreadiness: null\naccessLog:\n', 'x.yaml');
    assert.equal(cfg.identity.namespace, 'default');
    assert.deepEqual(cfg.listeners, []);
    assert.equal(cfg.lua.engine, 'auto');
    assert.equal(cfg.prometheus, null);
    assert.equal(cfg.readiness, null);
    assert.equal(cfg.accessLog, null);
  });

  it('extensions: a single path is accepted; accessLog: stdout stays stdout', () => {
    const cfg = parseBootstrap('extensions: ext.yaml\naccessLog: stdout\n', join(dir, 'x.yaml'));
    assert.deepEqual(cfg.extensions, [join(dir, 'ext.yaml')]);
    assert.equal(cfg.accessLog, 'stdout');
  });

  it('a waypoint defaults its gateway name to "waypoint"; the gateway-name label also sets it', () => {
    const wp = parseBootstrapObject({ node: { waypoint: true } });
    assert.equal(wp.identity.waypoint, true);
    assert.equal(wp.identity.gatewayName, 'waypoint');
    const gw = parseBootstrapObject({ node: { labels: { 'gateway.networking.k8s.io/gateway-name': 'bookinfo-gateway' } } });
    assert.equal(gw.identity.gatewayName, 'bookinfo-gateway');
    assert.equal(gw.identity.waypoint, undefined);
  });

  it('an HTTP listener picks the only route table, else the one named default', () => {
    const cfg = parseBootstrapObject({
      listeners: [{ name: 'a', port: 0 }],
      routeConfigs: [{ name: 'other', virtualHosts: [] }, { name: 'default', virtualHosts: [] }],
    });
    assert.equal(cfg.listeners[0]!.routeConfig, 'default');
  });

  it('loadBootstrapFile reads from disk; a missing file is a ConfigError', () => {
    const f = join(dir, 'on-disk.yaml');
    writeFileSync(f, minimal);
    assert.equal(loadBootstrapFile(f).listeners.length, 1);
    assert.throws(() => loadBootstrapFile(join(dir, 'absent.yaml')), (err: unknown) => err instanceof ConfigError && /bootstrap file not found/.test(err.message));
  });
});

describe('bootstrap: errors, all at once, with file:line: path: message', () => {
  it('lists every problem with its exact line and the fix', () => {
    const text = [
      'node:', //                                           1
      '  labels: {istio: ingressgateway, version: 1}', //   2
      'listeners:', //                                      3
      '- name: http', //                                    4
      '  port: 8080', //                                    5
      '  protocol: HTTPS', //                               6
      '- name: tcp', //                                     7
      '  port: 9000', //                                    8
      '  protocol: TCP', //                                 9
      '- name: http', //                                    10
      '  port: 15000', //                                   11
      '- name: big', //                                     12
      '  port: 70000', //                                   13
      'routeConfigs:', //                                   14
      '- name: default', //                                 15
      '  virtualHosts:', //                                 16
      '  - name: all', //                                   17
      '    domains: ["*", "a*b"]', //                       18
      '    routes:', //                                     19
      '    - match: {prefix: /}', //                        20
      '      route: {cluster: backend}', //                 21
      '    - match: {regex: "(("}', //                      22
      '      directResponse: {status: 200}', //             23
      '    - match: {prefix: /x}', //                       24
      '      route: {cluster: nope}', //                    25
      'clusters:', //                                       26
      '- name: backend', //                                 27
      '  endpoints: ["127.0.0.1:9000", "nohost"]', //       28
      'foo: 1', //                                          29
    ].join('\n');
    assert.deepEqual(problems(text), [
      'F:2: node.labels.version: must be a string, got integer 1 (quote it in YAML: "1")',
      'F:6: listeners[0].protocol: must be one of HTTP, TCP (got "HTTPS")',
      'F:7: listeners[1]: TCP listener "tcp" needs cluster: (the upstream it forwards to; defined: backend)',
      'F:10: listeners[2].name: duplicate listener name "http" (first defined at listeners[0]); names must be unique',
      'F:11: listeners[2].port: port 15000 on 0.0.0.0 is already used by admin (127.0.0.1:15000, its default; set admin.port to move it); pick another port',
      'F:13: listeners[3].port: must be <= 65535 (got 70000)',
      'F:18: routeConfigs[0].virtualHosts[0].domains[1]: invalid domain "a*b": a wildcard is allowed only as the first or last character ("*.example.com", "example.*", "*")',
      'F:22: routeConfigs[0].virtualHosts[0].routes[1].match.regex: invalid regular expression: /((/: Unterminated group',
      'F:25: routeConfigs[0].virtualHosts[0].routes[2].route.cluster: cluster "nope" referenced by routeConfigs[0].virtualHosts[0].routes[2] is not defined; add it under clusters: (defined: backend)',
      'F:28: clusters[0].endpoints[1]: must be "host:port" (e.g. "127.0.0.1:8080" or "[::1]:8080") or {address, port}',
      'F:29: foo: unknown field (known fields: node, admin, prometheus, readiness, listeners, routeConfigs, clusters, extensions, accessLog, drainTimeoutMs, lua, wasm)',
    ]);
  });

  const cases: { name: string; yaml: string; want: string[] }[] = [
    {
      name: 'YAML syntax error',
      yaml: 'listeners:\n  - name: [a\n',
      want: [/^F:\d: YAML: /.source],
    },
    {
      name: 'the document must be a mapping',
      yaml: '- a\n- b\n',
      want: ['F:1: the bootstrap must be a YAML mapping (key: value pairs)'],
    },
    {
      name: 'required listener fields',
      yaml: 'listeners:\n- address: 1.2.3.4\n',
      want: ['F:2: listeners[0].name: is required', 'F:2: listeners[0].port: is required', 'F:2: listeners[0]: HTTP listener "listener_0" has no routes; add a route table under routeConfigs: (or set protocol: TCP)'],
    },
    {
      name: 'direction enum',
      yaml: 'listeners:\n- name: a\n  port: 0\n  protocol: TCP\n  cluster: c\n  direction: inbound\nclusters:\n- name: c\n  endpoints: ["h:1"]\n',
      want: ['F:6: listeners[0].direction: must be one of gateway, sidecar_inbound, sidecar_outbound (got "inbound")'],
    },
    {
      name: 'TCP listener cluster must exist; routeConfig is HTTP-only',
      yaml: 'listeners:\n- name: t\n  port: 0\n  protocol: TCP\n  cluster: missing\n  routeConfig: r\n',
      want: [
        'F:5: listeners[0].cluster: cluster "missing" referenced by listeners[0] is not defined; add it under clusters: (defined: (none defined))',
        'F:6: listeners[0].routeConfig: routeConfig is only for HTTP listeners; a TCP listener forwards to its cluster:',
      ],
    },
    {
      name: 'HTTP listener: cluster is TCP-only; routeConfig must exist',
      yaml: 'listeners:\n- name: h\n  port: 0\n  cluster: c\n  routeConfig: nope\nclusters:\n- name: c\n  endpoints: ["h:1"]\n',
      want: [
        'F:4: listeners[0].cluster: cluster is only for TCP listeners (protocol: TCP); HTTP listeners route through routeConfig:',
        'F:5: listeners[0].routeConfig: route config "nope" referenced by listeners[0] is not defined; add it under routeConfigs: (defined: (none))',
      ],
    },
    {
      name: 'HTTP listener without any route table',
      yaml: 'listeners:\n- name: h\n  port: 0\n',
      want: ['F:2: listeners[0]: HTTP listener "h" has no routes; add a route table under routeConfigs: (or set protocol: TCP)'],
    },
    {
      name: 'HTTP listener with several route tables must name one',
      yaml: 'listeners:\n- name: h\n  port: 0\nrouteConfigs:\n- {name: a, virtualHosts: []}\n- {name: b, virtualHosts: []}\n',
      want: ['F:2: listeners[0]: HTTP listener "h" must name its route table with routeConfig: (one of a, b)'],
    },
    {
      name: 'duplicate route config and cluster names',
      yaml: 'routeConfigs:\n- {name: r, virtualHosts: []}\n- {name: r, virtualHosts: []}\nclusters:\n- {name: c, endpoints: ["h:1"]}\n- {name: c, endpoints: ["h:2"]}\n',
      want: [
        'F:3: routeConfigs[1].name: duplicate route config name "r" (first defined at routeConfigs[0]); names must be unique',
        'F:6: clusters[1].name: duplicate cluster name "c" (first defined at clusters[0]); names must be unique',
      ],
    },
    {
      name: 'route: exactly one action, exactly one path specifier',
      yaml: 'routeConfigs:\n- name: r\n  virtualHosts:\n  - name: v\n    domains: ["*"]\n    routes:\n    - match: {prefix: /, path: /x}\n      directResponse: {status: 200}\n      redirect: {host: a}\n    - match: {methods: [GET]}\n',
      want: [
        'F:7: routeConfigs[0].virtualHosts[0].routes[0]: has directResponse and redirect; set exactly one of route, directResponse or redirect',
        'F:7: routeConfigs[0].virtualHosts[0].routes[0].match: has prefix and path; set exactly one of prefix, path or regex',
        'F:10: routeConfigs[0].virtualHosts[0].routes[1]: needs exactly one of route, directResponse or redirect',
        'F:10: routeConfigs[0].virtualHosts[0].routes[1].match: needs exactly one of prefix, path or regex (use prefix: / to match everything)',
      ],
    },
    {
      name: 'header matcher: at most one specifier; regex compiles',
      yaml: 'routeConfigs:\n- name: r\n  virtualHosts:\n  - name: v\n    domains: ["*"]\n    routes:\n    - match:\n        prefix: /\n        headers:\n        - {name: a, exact: x, prefix: y}\n        - {name: b, regex: "["}\n      directResponse: {status: 204}\n',
      want: [
        'F:10: routeConfigs[0].virtualHosts[0].routes[0].match.headers[0]: has exact and prefix; set at most one of exact, prefix, regex, present',
        'F:11: routeConfigs[0].virtualHosts[0].routes[0].match.headers[1].regex: invalid regular expression: /[/: Unterminated character class',
      ],
    },
    {
      name: 'redirect: status enum, path xor prefixRewrite; direct response status range',
      yaml: 'routeConfigs:\n- name: r\n  virtualHosts:\n  - name: v\n    domains: ["*"]\n    routes:\n    - redirect: {status: 300, path: /a, prefixRewrite: /b}\n    - directResponse: {status: 99}\n',
      want: [
        'F:7: routeConfigs[0].virtualHosts[0].routes[0].redirect: has path and prefixRewrite; set at most one',
        'F:7: routeConfigs[0].virtualHosts[0].routes[0].redirect.status: must be one of 301, 302, 303, 307, 308 (got 300)',
        'F:8: routeConfigs[0].virtualHosts[0].routes[1].directResponse.status: must be >= 200 (got 99)',
      ],
    },
    {
      name: 'domains: unique per route config, non-empty list',
      yaml: 'routeConfigs:\n- name: r\n  virtualHosts:\n  - {name: a, domains: ["x.com"], routes: []}\n  - {name: b, domains: ["X.com"], routes: []}\n  - {name: c, domains: [], routes: []}\n',
      want: [
        'F:5: routeConfigs[0].virtualHosts[1].domains[0]: domain "X.com" is already used by virtual host "a"; each domain may appear once per route config',
        'F:6: routeConfigs[0].virtualHosts[2].domains: must have at least 1 item(s)',
      ],
    },
    {
      name: 'cluster fields',
      yaml: 'clusters:\n- name: c\n  endpoints: []\n  lbPolicy: RANDOM\n  protocol: HTTP3\n  connectTimeoutMs: 0\n- name: d\n  endpoints: ["h:99999", {address: a}]\n',
      want: [
        'F:3: clusters[0].endpoints: must have at least 1 item(s)',
        'F:4: clusters[0].lbPolicy: must be one of ROUND_ROBIN (got "RANDOM")',
        'F:5: clusters[0].protocol: must be one of HTTP1, HTTP2 (got "HTTP3")',
        'F:6: clusters[0].connectTimeoutMs: must be >= 1 (got 0)',
        'F:8: clusters[1].endpoints[0]: port 99999 is out of range 1..65535',
        'F:8: clusters[1].endpoints[1].port: is required',
      ],
    },
    {
      name: 'port conflicts between admin, prometheus, readiness and listeners (port 0 never conflicts)',
      yaml: 'admin: {port: 15090}\nreadiness: {address: 127.0.0.1, port: 15090}\nlisteners:\n- {name: a, port: 0, protocol: TCP, cluster: c}\n- {name: b, port: 0, protocol: TCP, cluster: c}\n- {name: d, address: 127.0.0.2, port: 15000, protocol: TCP, cluster: c}\n- {name: e, port: 15021, protocol: TCP, cluster: c}\nclusters:\n- {name: c, endpoints: ["h:1"]}\n',
      want: [
        'F:1: admin.port: port 15090 on 127.0.0.1 is already used by prometheus (0.0.0.0:15090, its default; set prometheus: to another port or null); pick another port',
        'F:2: readiness.port: port 15090 on 127.0.0.1 is already used by prometheus (0.0.0.0:15090, its default; set prometheus: to another port or null); pick another port',
        // readiness moved away from 15021, so a listener may take it.
      ],
    },
    {
      name: 'tls files must exist',
      yaml: 'listeners:\n- name: s\n  port: 0\n  protocol: TCP\n  cluster: c\n  tls: {certFile: /nonexistent/cert.pem, keyFile: /nonexistent/key.pem}\nclusters:\n- {name: c, endpoints: ["h:1"], tls: {caFile: /nonexistent/ca.pem}}\n',
      want: [
        'F:6: listeners[0].tls.certFile: file "/nonexistent/cert.pem" does not exist',
        'F:6: listeners[0].tls.keyFile: file "/nonexistent/key.pem" does not exist',
        'F:8: clusters[0].tls.caFile: file "/nonexistent/ca.pem" does not exist',
      ],
    },
    {
      name: 'engine options',
      yaml: 'lua: {engine: v8, memoryLimitBytes: 10}\nwasm: {cpuBudgetMs: -1, cache: x}\ndrainTimeoutMs: 1.5\n',
      want: [
        'F:1: lua.engine: must be one of auto, compiled, luajit, wasm (got "v8")',
        'F:1: lua.memoryLimitBytes: must be >= 65536 (got 10)',
        'F:2: wasm.cache: unknown field (known fields: memoryLimitBytes, cpuBudgetMs, cacheDir, insecureRegistries, allowLoopbackFetch)',
        'F:2: wasm.cpuBudgetMs: must be >= 1 (got -1)',
        'F:3: drainTimeoutMs: must be an integer, got number 1.5',
      ],
    },
    {
      name: 'gatewayName and the gateway-name label must agree',
      yaml: 'node:\n  gatewayName: a\n  labels: {gateway.networking.k8s.io/gateway-name: b}\n',
      want: ['F:2: node.gatewayName: differs from the label gateway.networking.k8s.io/gateway-name ("b"); set one of them'],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const got = problems(c.yaml);
      if (c.want.length === 1 && c.want[0]!.startsWith('^')) {
        assert.equal(got.length, 1);
        assert.match(got[0]!, new RegExp(c.want[0]!));
      } else {
        assert.deepEqual([...got].sort(), [...c.want].sort());
      }
    });
  }

  it('objects report line 0 and the given name', () => {
    assert.throws(() => parseBootstrapObject({ listeners: [{ name: 'x' }] }, 'demo'), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.deepEqual(err.issues.map((i) => `${i.file}:${i.line}: ${i.path}: ${i.message}`), ['demo:0: listeners[0].port: is required', 'demo:0: listeners[0]: HTTP listener "x" has no routes; add a route table under routeConfigs: (or set protocol: TCP)']);
      return true;
    });
  });

  it('objects do not check TLS files unless asked', () => {
    const obj = { listeners: [{ name: 's', port: 0, protocol: 'TCP', cluster: 'c', tls: { certFile: '/nope/c', keyFile: '/nope/k' } }], clusters: [{ name: 'c', endpoints: ['h:1'] }] };
    assert.equal(parseBootstrapObject(obj).listeners[0]!.tls!.certFile, '/nope/c');
    assert.throws(() => parseBootstrapObject(obj, 'x', { checkFiles: true }), ConfigError);
  });
});
