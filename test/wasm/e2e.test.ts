/**
 * End to end through the real proxy (startProxy, in-process data plane) with real HTTP clients
 * (undici) and real upstreams on 127.0.0.1: AS SDK plugins loaded from file:// URLs by the `wasm`
 * runtime, an HTTP callout to a bootstrap cluster, metrics at /stats/prometheus, and failure
 * strategies (trap ⇒ 503 wasm_fail_stream, CPU budget with FAIL_OPEN).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { request } from 'undici';
import { loadExtensionObjects } from '../../src/config/extensions.ts';
import { startProxy, type Proxy } from '../../src/proxy/proxy.ts';
import { bootstrap, cluster, routeAll } from '../helpers/bootstrap.ts';
import { echoHandler, startHttp1, type TestServer } from '../helpers/upstream.ts';
import { buildAs, buildWat } from './helpers/build.ts';
import { watPlugin } from './helpers/wat.ts';

let dir: string;
let upstream: TestServer;
let authServer: TestServer;
let proxy: Proxy;
let failProxy: Proxy;

async function file(name: string, bytes: Uint8Array): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, bytes);
  return pathToFileURL(p).href;
}

function ext(name: string, wasm: Record<string, unknown>, priority = 0) {
  return { apiVersion: 'extensions.istio.io/v1alpha1', kind: 'TrafficExtension', metadata: { name, namespace: 'default' }, spec: { priority, wasm } };
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meshext-wasm-e2e-'));
  const [headers, auth] = await Promise.all([buildAs('headers'), buildAs('auth')]);
  // Crashes when the request carries x-crash; spins forever when it carries x-spin.
  const crashy = await buildWat(
    watPlugin({
      extra: `
  (data (i32.const 5000) "x-crash")
  (data (i32.const 5016) "x-spin")`,
      bodies: {
        proxy_on_request_headers: `
    (if (i32.eqz (call $hget (i32.const 0) (i32.const 5000) (i32.const 7) (i32.const 6000) (i32.const 6004))) (then (unreachable)))
    (if (i32.eqz (call $hget (i32.const 0) (i32.const 5016) (i32.const 6) (i32.const 6000) (i32.const 6004))) (then (loop $l (br $l))))
    (i32.const 0)`,
      },
    }),
  );
  upstream = await startHttp1(echoHandler);
  authServer = await startHttp1((req, res) => {
    res.writeHead(req.url === '/check/ok' ? 200 : 403, { 'content-type': 'text/plain' });
    res.end('checked');
  });
  const clusters = [cluster('echo', upstream.port), cluster('auth', authServer.port)];
  const set = loadExtensionObjects([
    ext('headers', { url: await file('headers.wasm', headers), pluginName: 'headers', pluginConfig: { greeting: 'hi' } }, 10),
    ext('auth', { url: await file('auth.wasm', auth), pluginName: 'auth', pluginConfig: { mode: 'strict' } }, 5),
  ]);
  assert.deepEqual(set.issues, []);
  proxy = await startProxy({ bootstrap: bootstrap({ clusters, routeTables: [routeAll('echo')] }), extensions: set.set });
  const crashUrl = await file('crashy.wasm', crashy);
  const failSet = loadExtensionObjects([
    ext('crash-closed', { url: crashUrl, failStrategy: 'FAIL_CLOSE', pluginConfig: { a: 1 } }, 10),
  ]);
  assert.deepEqual(failSet.issues, []);
  failProxy = await startProxy({
    bootstrap: bootstrap({ clusters, routeTables: [routeAll('echo')], wasm: { memoryLimitBytes: 64 << 20, cpuBudgetMs: 100, cacheDir: join(dir, 'cache'), insecureRegistries: [], allowLoopbackFetch: true } }),
    extensions: failSet.set,
  });
});

after(async () => {
  await proxy?.close();
  await failProxy?.close();
  await upstream?.close();
  await authServer?.close();
  await rm(dir, { recursive: true, force: true });
});

test('AS plugins in the real chain: header mutation both ways, plugin config, request seen upstream', { timeout: 240_000 }, async () => {
  const res = await request(`http://127.0.0.1:${proxy.ports.http}/hello`, { headers: { 'x-a': 'one', 'x-b': 'two', 'x-remove-me': 'bye' } });
  const body = (await res.body.json()) as { headers: Record<string, string> };
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers['x-config'], '{"greeting":"hi"}');
  assert.equal(res.headers['x-seen'], 'one|two');
  assert.equal(body.headers['x-added-by-wasm'], 'yes');
  assert.equal(body.headers['x-remove-me'], undefined);
});

test('local reply and HTTP callout to a bootstrap cluster through the real proxy', async () => {
  const port = proxy.ports.http;
  const denied = await request(`http://127.0.0.1:${port}/`, { headers: { 'x-deny': '1' } });
  assert.equal(denied.statusCode, 403);
  assert.equal(await denied.body.text(), 'forbidden');
  assert.equal(denied.headers['x-reason'], 'deny header');
  const ok = await request(`http://127.0.0.1:${port}/callout/ok`);
  const okBody = (await ok.body.json()) as { headers: Record<string, string> };
  assert.equal(ok.statusCode, 200);
  assert.equal(okBody.headers['x-auth-status'], '200', 'header added from the callout response, then resumed');
  const no = await request(`http://127.0.0.1:${port}/callout/no`);
  assert.equal(no.statusCode, 401);
  assert.equal(await no.body.text(), 'unauthorized');
});

test('plugin metrics are exported under their own name (wasmcustom namespace)', async () => {
  const stats = await proxy.stats();
  const c = stats.find((s) => s.name === 'wasmcustom.test_plugin_requests_total');
  assert.ok(c && c.kind === 'counter' && c.value >= 1, JSON.stringify(stats.filter((s) => s.name.includes('wasm')).map((s) => s.name)));
  const res = await request(`http://127.0.0.1:${proxy.adminPort}/stats/prometheus`);
  const text = await res.body.text();
  assert.match(text, /^test_plugin_requests_total(\{[^}]*\})? \d+/m);
});

test('FAIL_CLOSE through the proxy: a trap answers 503 wasm_fail_stream, then every request until the config changes', async () => {
  const port = failProxy.ports.http;
  const before = await request(`http://127.0.0.1:${port}/`);
  await before.body.dump();
  assert.equal(before.statusCode, 200);
  const crash = await request(`http://127.0.0.1:${port}/`, { headers: { 'x-crash': '1' } });
  await crash.body.dump();
  assert.equal(crash.statusCode, 503);
  const next = await request(`http://127.0.0.1:${port}/`);
  await next.body.dump();
  assert.equal(next.statusCode, 503);
});

test('CPU budget through the proxy with FAIL_OPEN: an infinite loop is cut off and traffic keeps flowing', async () => {
  const crashy = await buildWat(
    watPlugin({
      extra: `
  (data (i32.const 5016) "x-spin")`,
      bodies: { proxy_on_request_headers: '(if (i32.eqz (call $hget (i32.const 0) (i32.const 5016) (i32.const 6) (i32.const 6000) (i32.const 6004))) (then (loop $l (br $l)))) (i32.const 0)' },
    }),
  );
  const set = loadExtensionObjects([ext('spin-open', { url: await file('spin.wasm', crashy), failStrategy: 'FAIL_OPEN', pluginConfig: { a: 1 } })]);
  const outcome = await failProxy.applyExtensionSet(set.set, []);
  assert.deepEqual(outcome.issues, []);
  const port = failProxy.ports.http;
  const t0 = performance.now();
  const spin = await request(`http://127.0.0.1:${port}/`, { headers: { 'x-spin': '1' } });
  await spin.body.dump();
  const took = performance.now() - t0;
  assert.equal(spin.statusCode, 200, 'FAIL_OPEN: the stream continues');
  assert.ok(took < 5000, `cut off after ${took.toFixed(0)} ms`);
  const next = await request(`http://127.0.0.1:${port}/`);
  await next.body.dump();
  assert.equal(next.statusCode, 200);
  const stats = await failProxy.stats();
  const c = stats.find((s) => s.name === 'wasm.default.spin-open.cpu_budget_exceeded');
  assert.ok(c && c.kind === 'counter' && c.value === 1);
});

test('worker threads: the main thread compiles the module once and both workers receive it and run the plugin', { timeout: 120_000 }, async () => {
  const headers = await buildAs('headers');
  const set = loadExtensionObjects([ext('headers-workers', { url: await file('headers-w.wasm', headers), pluginName: 'headers', pluginConfig: { w: 1 } })]);
  const wp = await startProxy({ bootstrap: bootstrap({ clusters: [cluster('echo', upstream.port)], routeTables: [routeAll('echo')] }), concurrency: 2, extensions: set.set, admin: false });
  try {
    const { Agent } = await import('undici');
    for (let i = 0; i < 20; i++) {
      const agent = new Agent({ connections: 1 });
      const res = await request(`http://127.0.0.1:${wp.ports.http}/`, { dispatcher: agent, headers: { 'x-a': 'A', 'x-b': 'B' } });
      await res.body.dump();
      assert.equal(res.headers['x-seen'], 'A|B');
      await agent.close();
    }
    const stats = await wp.stats();
    const value = (n: string) => {
      const e = stats.find((s) => s.name === n);
      return e && e.kind === 'counter' ? e.value : 0;
    };
    assert.equal(value('wasm.default.headers-workers.vm_created'), 2, 'one VM per worker');
    assert.equal(value('wasm.modules_received_from_main_thread'), 2);
    assert.equal(value('wasm.modules_compiled_here'), 0, 'no worker compiles');
    // This test's thread is the proxy's main thread: the one compilation is in its cache.
    const { exportCompiledModules, sha256Hex } = await import('../../src/wasm/module.ts');
    const mine = (await exportCompiledModules()).filter((m) => m.plugin.sha256 === sha256Hex(headers));
    assert.equal(mine.length, 1, 'compiled once per process');
  } finally {
    await wp.close();
  }
});

test('worker threads: a module the main thread cannot load fails closed in every worker with the reason', { timeout: 120_000 }, async () => {
  // Valid Wasm without a Proxy-Wasm ABI marker: the error crosses the link back to each worker.
  const noAbi = await buildWat('(module (memory (export "memory") 1))');
  const set = loadExtensionObjects([ext('no-abi-workers', { url: await file('no-abi-w.wasm', noAbi), failStrategy: 'FAIL_CLOSE', pluginConfig: { w: 1 } })]);
  const wp = await startProxy({ bootstrap: bootstrap({ clusters: [cluster('echo', upstream.port)], routeTables: [routeAll('echo')] }), concurrency: 2, extensions: set.set, admin: false });
  try {
    const { Agent } = await import('undici');
    for (let i = 0; i < 10; i++) {
      const agent = new Agent({ connections: 1 });
      const res = await request(`http://127.0.0.1:${wp.ports.http}/`, { dispatcher: agent });
      await res.body.dump();
      assert.equal(res.statusCode, 503);
      await agent.close();
    }
    const text = JSON.stringify(await wp.configDump());
    assert.match(text, /missing Proxy-Wasm ABI version/);
    const stats = await wp.stats();
    const received = stats.find((s) => s.name === 'wasm.modules_received_from_main_thread');
    assert.ok(!received || (received.kind === 'counter' && received.value === 0));
  } finally {
    await wp.close();
  }
});

test('NETWORK plugin in the L4 chain: rewrites downstream data (buffer 2) and upstream data (buffer 3) through a real TCP proxy', { timeout: 60_000 }, async () => {
  const net = await import('node:net');
  const plugin = await buildWat(
    watPlugin({
      extra: `
  (data (i32.const 5100) "[")
  (data (i32.const 5101) "]")`,
      bodies: {
        // prepend "[" to client data, append "]" to data coming back
        proxy_on_downstream_data: '(drop (call $setbuf (i32.const 2) (i32.const 0) (i32.const 0) (i32.const 5100) (i32.const 1))) (i32.const 0)',
        proxy_on_upstream_data: '(drop (call $setbuf (i32.const 3) (i32.const 0x7fffffff) (i32.const 0) (i32.const 5101) (i32.const 1))) (i32.const 0)',
      },
    }),
  );
  const set = loadExtensionObjects([ext('tcp-wrap', { url: await file('tcp.wasm', plugin), type: 'NETWORK', pluginConfig: { a: 1 } })]);
  assert.deepEqual(set.issues, []);
  const echo = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  const echoPort = (echo.address() as import('node:net').AddressInfo).port;
  after(() => new Promise<void>((r) => echo.close(() => r())));
  const tcpProxy = await startProxy({
    bootstrap: bootstrap({
      listeners: [{ name: 'tcp', address: '127.0.0.1', port: 0, protocol: 'TCP', direction: 'gateway', cluster: 'echo-tcp', bufferLimitBytes: 1 << 20, statPrefix: 'tcp' }],
      clusters: [cluster('echo-tcp', echoPort)],
    }),
    extensions: set.set,
    admin: false,
  });
  try {
    const sock = net.connect(tcpProxy.ports.tcp!, '127.0.0.1');
    let got = '';
    sock.on('data', (d) => (got += d.toString()));
    await new Promise<void>((r) => sock.once('connect', () => r()));
    sock.write('hello');
    const deadline = Date.now() + 3000;
    while (!got.endsWith(']') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(got, '[hello]');
    sock.end();
    await new Promise((r) => sock.once('close', r));
  } finally {
    await tcpProxy.close();
  }
});

test('gRPC unary callout through the proxy to an HTTP/2 cluster: pause, reply read from buffer 5, resume', { timeout: 60_000 }, async () => {
  const { startHttp2 } = await import('../helpers/upstream.ts');
  const grpcServer = await startHttp2((stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const req = Buffer.concat(chunks);
      const msg = req.subarray(5, 5 + req.readUInt32BE(1)).toString();
      const ok = headers[':path'] === '/pkg.Auth/Check' && msg === 'hi';
      const reply = Buffer.from(ok ? 'granted' : 'bad');
      const f = Buffer.alloc(5);
      f.writeUInt32BE(reply.length, 1);
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(Buffer.concat([f, reply]));
    });
  });
  const plugin = await buildWat(
    watPlugin({
      imports: `
  (import "env" "proxy_grpc_call" (func $grpc (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $getbuf (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $addh (param i32 i32 i32 i32 i32) (result i32)))`,
      extra: `
  (data (i32.const 5200) "grpc")
  (data (i32.const 5210) "pkg.Auth")
  (data (i32.const 5220) "Check")
  (data (i32.const 5230) "hi")
  (data (i32.const 5240) "x-grpc-reply")`,
      bodies: {
        proxy_on_request_headers: '(global.set $saved (local.get $a0)) (drop (call $grpc (i32.const 5200) (i32.const 4) (i32.const 5210) (i32.const 8) (i32.const 5220) (i32.const 5) (i32.const 0) (i32.const 0) (i32.const 5230) (i32.const 2) (i32.const 2000) (i32.const 6100))) (i32.const 1)',
        proxy_on_grpc_receive: '(drop (call $eff (global.get $saved))) (drop (call $getbuf (i32.const 5) (i32.const 0) (local.get $a2) (i32.const 6200) (i32.const 6204))) (drop (call $addh (i32.const 0) (i32.const 5240) (i32.const 12) (i32.load (i32.const 6200)) (i32.load (i32.const 6204)))) (drop (call $continue (i32.const 0)))',
      },
    }),
  );
  const set = loadExtensionObjects([ext('grpc-auth', { url: await file('grpc.wasm', plugin), pluginConfig: { a: 1 } })]);
  assert.deepEqual(set.issues, []);
  const gp = await startProxy({
    bootstrap: bootstrap({ clusters: [cluster('echo', upstream.port), cluster('grpc', grpcServer.port, { protocol: 'HTTP2' })], routeTables: [routeAll('echo')] }),
    extensions: set.set,
    admin: false,
  });
  try {
    const res = await request(`http://127.0.0.1:${gp.ports.http}/`);
    const body = (await res.body.json()) as { headers: Record<string, string> };
    assert.equal(res.statusCode, 200);
    assert.equal(body.headers['x-grpc-reply'], 'granted');
  } finally {
    await gp.close();
    await grpcServer.close();
  }
});

test('remote module over http:// through src/fetch (the default remote source)', { timeout: 60_000 }, async () => {
  const bytes = await buildWat(watPlugin({ imports: '(import "env" "proxy_add_header_map_value" (func $addh (param i32 i32 i32 i32 i32) (result i32)))', extra: '(data (i32.const 5300) "x-remote")', bodies: { proxy_on_response_headers: '(drop (call $addh (i32.const 2) (i32.const 5300) (i32.const 8) (i32.const 5300) (i32.const 8))) (i32.const 0)' } }));
  let served = 0;
  const wasmServer = await startHttp1((_req, res) => {
    served++;
    res.writeHead(200, { 'content-type': 'application/wasm' });
    res.end(Buffer.from(bytes));
  });
  const set = loadExtensionObjects([ext('remote', { url: `http://127.0.0.1:${wasmServer.port}/plugin.wasm`, pluginConfig: { a: 1 } })]);
  assert.deepEqual(set.issues, []);
  const rp = await startProxy({
    bootstrap: bootstrap({ clusters: [cluster('echo', upstream.port)], routeTables: [routeAll('echo')], wasm: { memoryLimitBytes: 64 << 20, cpuBudgetMs: 500, cacheDir: join(dir, 'fetch-cache'), insecureRegistries: [], allowLoopbackFetch: true } }),
    extensions: set.set,
    admin: false,
  });
  try {
    const res = await request(`http://127.0.0.1:${rp.ports.http}/`);
    await res.body.dump();
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['x-remote'], 'x-remote');
    assert.ok(served >= 1);
  } finally {
    await rp.close();
    await wasmServer.close();
  }
});
