/**
 * `meshext demo` (and `npm start`): the proxy with an embedded configuration, a small built-in
 * upstream app, and the example extensions of Istio's docs, then the URLs and curl lines to try.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseBootstrapObject } from '../config/bootstrap.ts';
import { loadExtensionObjects } from '../config/extensions.ts';
import { formatIssue } from '../errors.ts';
import { startProxy, type Proxy } from '../proxy/proxy.ts';
import { demoExtensions } from './demo-extensions.ts';

/** The built-in upstream: echoes what it received, so header changes by extensions are visible. */
export async function startDemoApp(port = 0): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    let size = 0;
    req.on('data', (c: Buffer) => (size += c.length));
    req.on('end', () => {
      const body = JSON.stringify({ app: 'meshext-demo-upstream', method: req.method, path: req.url, headers: req.headers, bodyBytes: size }, null, 2) + '\n';
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return server;
}

export interface DemoOptions {
  port: number;
  /** Admin/Prometheus/readiness on Istio's ports unless overridden (tests use 0). */
  adminPort?: number;
  prometheusPort?: number;
  readinessPort?: number;
  quiet?: boolean;
}

export async function runDemo(opts: DemoOptions): Promise<Proxy> {
  const app = await startDemoApp();
  const appPort = (app.address() as AddressInfo).port;
  const bootstrap = parseBootstrapObject(
    {
      node: { namespace: 'default', labels: { app: 'productpage', 'istio.io/gateway-name': 'demo' }, workloadName: 'meshext-demo' },
      admin: { address: '127.0.0.1', port: opts.adminPort ?? 15000 },
      prometheus: { address: '127.0.0.1', port: opts.prometheusPort ?? 15090 },
      readiness: { address: '127.0.0.1', port: opts.readinessPort ?? 15021 },
      listeners: [{ name: 'http', address: '127.0.0.1', port: opts.port, protocol: 'HTTP', direction: 'gateway' }],
      routeConfigs: [
        {
          name: 'default',
          virtualHosts: [
            {
              name: 'demo',
              domains: ['*'],
              routes: [
                { name: 'hello', match: { path: '/hello' }, directResponse: { status: 200, body: 'hello from meshext\n' } },
                { name: 'app', match: { prefix: '/' }, route: { cluster: 'demo-app' } },
              ],
            },
          ],
        },
      ],
      clusters: [{ name: 'demo-app', endpoints: [{ address: '127.0.0.1', port: appPort }] }],
      accessLog: null,
    },
    '<demo>',
  );
  const ext = loadExtensionObjects(await demoExtensions(), { file: '<demo>' });
  for (const i of ext.issues) console.error(formatIssue(i));
  let proxy: Proxy;
  try {
    proxy = await startProxy({ bootstrap, extensions: ext.set, commandLine: { demo: true } });
  } catch (err) {
    app.close();
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EADDRINUSE') {
      throw new Error(`a demo port is in use (${e.message}); set MESHEXT_DEMO_PORT or stop what holds ports 15000/15090/15021`, { cause: err });
    }
    throw err;
  }
  const dump = (await proxy.configDump()) as { lastApplyIssues?: unknown[]; extensions?: { name: string }[] };
  const port = proxy.ports.http;
  if (!opts.quiet) {
    const lines = [
      '',
      'meshext demo is running',
      `  proxy            http://127.0.0.1:${port}/   (upstream app on 127.0.0.1:${appPort})`,
      `  admin            http://127.0.0.1:${proxy.adminPort}/help   (/stats, /config_dump, /logging, /ready)`,
      `  prometheus       http://127.0.0.1:${opts.prometheusPort ?? 15090}/stats/prometheus`,
      `  readiness        http://127.0.0.1:${opts.readinessPort ?? 15021}/healthz/ready`,
      `  extensions       ${(dump.extensions ?? []).map((e) => e.name).join(', ') || '(none loaded)'}`,
      '',
      'Try:',
      `  curl -si http://127.0.0.1:${port}/productpage -H 'x-number: 7'     # Lua parity: x-parity: odd; Wasm: x-meshext-wasm`,
      `  curl -s  http://127.0.0.1:${port}/hello`,
      `  curl -s  http://127.0.0.1:${proxy.adminPort}/config_dump | head -40`,
      `  curl -s  http://127.0.0.1:${opts.prometheusPort ?? 15090}/stats/prometheus | grep istio_requests_total`,
      '',
      'Ctrl-C drains and stops.',
    ];
    console.log(lines.join('\n'));
  }
  const close = proxy.close.bind(proxy);
  proxy.close = async () => {
    await close();
    await new Promise<void>((r) => {
      app.closeAllConnections();
      app.close(() => r());
    });
  };
  return proxy;
}
