/**
 * Envoy's connection.* attributes for an mTLS downstream, read by a plugin with
 * proxy_get_property, and response.flags as Envoy's bit vector.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Agent, request } from 'undici';
import { loadExtensionObjects } from '../../src/config/extensions.ts';
import { startProxy, type Proxy } from '../../src/proxy/proxy.ts';
import { responseFlagBits } from '../../src/wasm/properties.ts';
import { bootstrap, cluster, listener, routeAll } from '../helpers/bootstrap.ts';
import { makeMtls, type MtlsFiles } from '../helpers/mtls.ts';
import { echoHandler, startHttp1, type TestServer } from '../helpers/upstream.ts';
import { buildWat } from './helpers/build.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** Copies a property (path in data) into a response header of the same name. */
function propertyHeaderPlugin(props: string[]): string {
  let data = '';
  let funcs = '';
  let at = 64;
  for (const p of props) {
    const path = p.replaceAll('.', '\\00');
    const pathLen = Buffer.byteLength(p);
    const name = `x-${p.replaceAll('.', '-').replaceAll('_', '-')}`;
    data += `(data (i32.const ${at}) "${path}")\n(data (i32.const ${at + 128}) "${name}")\n`;
    funcs += `
    (if (i32.eqz (call $get (i32.const ${at}) (i32.const ${pathLen}) (i32.const 8) (i32.const 12)))
      (then (drop (call $add (i32.const 2) (i32.const ${at + 128}) (i32.const ${name.length}) (i32.load (i32.const 8)) (i32.load (i32.const 12))))))`;
    at += 256;
  }
  return `(module
  (import "env" "proxy_get_property" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 4)
  ${data}
  (global $heap (mut i32) (i32.const 65536))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    ${funcs}
    (i32.const 0)))`;
}

let certs: MtlsFiles;
let upstream: TestServer;
let proxy: Proxy;
let dir: string;

before(async () => {
  certs = makeMtls();
  dir = mkdtempSync(join(tmpdir(), 'meshext-tlsprops-'));
  const wasm = await buildWat(
    propertyHeaderPlugin([
      'connection.subject_peer_certificate',
      'connection.uri_san_peer_certificate',
      'connection.dns_san_local_certificate',
      'connection.sha256_peer_certificate_digest',
      'connection.tls_version',
    ]),
  );
  const file = join(dir, 'props.wasm');
  writeFileSync(file, wasm);
  upstream = await startHttp1(echoHandler);
  const ext = loadExtensionObjects([
    { apiVersion: 'extensions.istio.io/v1alpha1', kind: 'TrafficExtension', metadata: { name: 'props', namespace: 'default' }, spec: { wasm: { url: pathToFileURL(file).href, pluginConfig: { a: 1 } } } },
  ]);
  proxy = await startProxy({
    bootstrap: bootstrap({
      listeners: [listener({ name: 'tls', tls: { certFile: certs.serverCert, keyFile: certs.serverKey, caFile: certs.caFile, alpn: ['http/1.1'] } })],
      clusters: [cluster('echo', upstream.port)],
      routeTables: [routeAll('echo')],
    }),
    extensions: ext.set,
    admin: false,
  });
});

after(async () => {
  await proxy.close();
  await upstream.close();
  certs.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

test('connection.* certificate attributes reach the plugin in Envoy formats', async () => {
  const agent = new Agent({ connect: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey, servername: 'localhost' } });
  try {
    const res = await request(`https://127.0.0.1:${proxy.ports.tls}/`, { dispatcher: agent });
    await res.body.dump();
    const h = res.headers as Record<string, string>;
    assert.equal(res.statusCode, 200);
    assert.equal(h['x-connection-subject-peer-certificate'], 'CN=client-workload,O=second org,O=meshext,C=US');
    assert.equal(h['x-connection-uri-san-peer-certificate'], 'spiffe://cluster.local/ns/default/sa/client');
    assert.equal(h['x-connection-dns-san-local-certificate'], 'localhost');
    assert.match(h['x-connection-sha256-peer-certificate-digest']!, /^[0-9a-f]{64}$/);
    assert.match(h['x-connection-tls-version']!, /^TLSv1\.[23]$/);
  } finally {
    await agent.close();
  }
});

test('response.flags is Envoy\'s bit vector', () => {
  assert.equal(responseFlagBits(new Set()), 0);
  assert.equal(responseFlagBits(new Set(['NR'])), 0x100);
  assert.equal(responseFlagBits(new Set(['UF', 'UH'])), 0x20 | 0x2);
  assert.equal(responseFlagBits(new Set(['UPE', 'DC'])), 0x800000 | 0x4000);
});
