/**
 * `streamInfo():downstreamSslConnection()` and `connection():ssl()` on a real mTLS connection:
 * the client certificate's subject, SANs, digest, serial, validity, the cipher and TLS version, in
 * Envoy's formats; nil on plaintext.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, before, test } from 'node:test';
import { Agent, request } from 'undici';
import { loadExtensionObjects } from '../../src/config/extensions.ts';
import { startProxy, type Proxy } from '../../src/proxy/proxy.ts';
import { bootstrap, cluster, listener, routeAll } from '../helpers/bootstrap.ts';
import { makeMtls, type MtlsFiles } from '../helpers/mtls.ts';
import { echoHandler, startHttp1, type TestServer } from '../helpers/upstream.ts';

const SCRIPT = `
function envoy_on_request(h)
  local ssl = h:streamInfo():downstreamSslConnection()
  if ssl == nil then
    h:streamInfo():dynamicMetadata():set("t", "plain", "yes")
    return
  end
  local md = h:streamInfo():dynamicMetadata()
  md:set("t", "presented", tostring(ssl:peerCertificatePresented()))
  md:set("t", "validated", tostring(ssl:peerCertificateValidated()))
  md:set("t", "subject", ssl:subjectPeerCertificate())
  md:set("t", "issuer", ssl:issuerPeerCertificate())
  md:set("t", "uri", table.concat(ssl:uriSanPeerCertificate(), ","))
  md:set("t", "dns", table.concat(ssl:dnsSansLocalCertificate(), ","))
  md:set("t", "sha256", ssl:sha256PeerCertificateDigest())
  md:set("t", "serial", ssl:serialNumberPeerCertificate())
  md:set("t", "from", tostring(ssl:validFromPeerCertificate()))
  md:set("t", "cn", ssl:parsedSubjectPeerCertificate():commonName())
  md:set("t", "org", table.concat(ssl:parsedSubjectPeerCertificate():organizationName(), ","))
  md:set("t", "tls", ssl:tlsVersion())
  md:set("t", "cipherid", ssl:ciphersuiteId())
  md:set("t", "same", tostring(h:connection():ssl() ~= nil))
end
function envoy_on_response(h)
  local md = h:streamInfo():dynamicMetadata():get("t")
  for k, v in pairs(md) do h:headers():add("x-ssl-" .. k, v) end
end
`;

let certs: MtlsFiles;
let upstream: TestServer;
let proxy: Proxy;

before(async () => {
  certs = makeMtls();
  upstream = await startHttp1(echoHandler);
  const ext = loadExtensionObjects([
    { apiVersion: 'extensions.istio.io/v1alpha1', kind: 'TrafficExtension', metadata: { name: 'ssl', namespace: 'default' }, spec: { lua: { inlineCode: SCRIPT } } },
  ]);
  assert.deepEqual(ext.issues.filter((i) => i.level === 'error'), []);
  proxy = await startProxy({
    bootstrap: bootstrap({
      listeners: [
        listener({ name: 'tls', tls: { certFile: certs.serverCert, keyFile: certs.serverKey, caFile: certs.caFile, alpn: ['http/1.1'] } }),
        listener({ name: 'plain' }),
      ],
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
});

test('an mTLS client certificate is visible to Lua in Envoy formats', async () => {
  const agent = new Agent({ connect: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey, servername: 'localhost' } });
  try {
    const res = await request(`https://127.0.0.1:${proxy.ports.tls}/`, { dispatcher: agent });
    await res.body.dump();
    assert.equal(res.statusCode, 200);
    const h = res.headers as Record<string, string>;
    const x509 = new X509Certificate(certs.clientCert);
    assert.equal(h['x-ssl-presented'], 'true');
    assert.equal(h['x-ssl-validated'], 'true');
    assert.equal(h['x-ssl-subject'], 'CN=client-workload,O=second org,O=meshext,C=US');
    assert.equal(h['x-ssl-issuer'], 'CN=test-ca,O=meshext test CA');
    assert.equal(h['x-ssl-uri'], 'spiffe://cluster.local/ns/default/sa/client');
    assert.equal(h['x-ssl-dns'], 'localhost');
    assert.equal(h['x-ssl-sha256'], x509.fingerprint256.replaceAll(':', '').toLowerCase());
    assert.match(h['x-ssl-sha256']!, /^[0-9a-f]{64}$/);
    assert.equal(h['x-ssl-serial'], x509.serialNumber.toLowerCase());
    assert.equal(Number(h['x-ssl-from']), Math.floor(Date.parse(x509.validFrom) / 1000));
    assert.equal(h['x-ssl-cn'], 'client-workload');
    assert.equal(h['x-ssl-org'], 'meshext,second org');
    assert.match(h['x-ssl-tls']!, /^TLSv1\.[23]$/);
    assert.match(h['x-ssl-cipherid']!, /^0x[0-9a-f]{4}$/);
    assert.notEqual(h['x-ssl-cipherid'], '0xffff');
    assert.equal(h['x-ssl-same'], 'true');
  } finally {
    await agent.close();
  }
});

test('downstreamSslConnection() is nil on plaintext', async () => {
  const res = await request(`http://127.0.0.1:${proxy.ports.plain}/`);
  await res.body.dump();
  assert.equal(res.headers['x-ssl-plain'], 'yes');
});
