/**
 * A test CA with a server certificate (localhost / 127.0.0.1) and a client certificate carrying a
 * SPIFFE URI SAN, made with openssl (EC P-256: fast).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface MtlsFiles {
  dir: string;
  caFile: string;
  serverCert: string;
  serverKey: string;
  /** PEM texts for clients. */
  ca: string;
  clientCert: string;
  clientKey: string;
  cleanup(): void;
}

export function makeMtls(clientSubject = '/C=US/O=meshext/O=second org/CN=client-workload'): MtlsFiles {
  const dir = mkdtempSync(join(tmpdir(), 'meshext-mtls-'));
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/O=meshext test CA/CN=test-ca');
  openssl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext');
  openssl('req', ...ec, '-keyout', 'client.key', '-out', 'client.csr', '-subj', clientSubject);
  writeFileSync(join(dir, 'client.ext'), 'subjectAltName=URI:spiffe://cluster.local/ns/default/sa/client\n');
  openssl('x509', '-req', '-in', 'client.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.pem', '-days', '2', '-extfile', 'client.ext');
  return {
    dir,
    caFile: join(dir, 'ca.pem'),
    serverCert: join(dir, 'server.pem'),
    serverKey: join(dir, 'server.key'),
    ca: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    clientCert: readFileSync(join(dir, 'client.pem'), 'utf8'),
    clientKey: readFileSync(join(dir, 'client.key'), 'utf8'),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
