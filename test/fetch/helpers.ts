/**
 * Test fixtures for module fetching: a real CNCF distribution registry (Debian `docker-registry`)
 * on 127.0.0.1, with htpasswd basic auth or bearer tokens from a token server written here,
 * a programmable HTTP server, and tiny valid Wasm modules. Everything binds ephemeral loopback
 * ports and lives in a temp dir removed at the end.
 */
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createPrivateKey, createSign, X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function which(bin: string): string | undefined {
  for (const d of (process.env.PATH ?? '').split(':').concat(['/usr/bin', '/usr/sbin', '/bin'])) {
    const p = join(d, bin);
    if (existsSync(p)) return p;
  }
  return undefined;
}

export const REGISTRY_BIN = which('docker-registry');
export const HTPASSWD_BIN = which('htpasswd');
export const OPENSSL_BIN = which('openssl');
/** Why the registry suites are skipped, or false. */
export const registrySkip: string | false = !REGISTRY_BIN
  ? 'docker-registry not installed (apt-get install docker-registry); .ci/run installs it'
  : !HTPASSWD_BIN
    ? 'htpasswd not installed (apt-get install apache2-utils)'
    : false;
/** Suites that also need certificates (TLS registry, token server) skip without openssl. */
export const registryTlsSkip: string | false = registrySkip || (!OPENSSL_BIN ? 'openssl not installed (apt-get install openssl)' : false);

export function tempDir(prefix = 'meshext-fetch-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A loopback port that was free a moment ago (the registry needs a concrete addr in its config). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** A valid Wasm module: header plus a custom section carrying `marker` so modules differ. */
export function wasmModule(marker = 'meshext', padTo = 0): Uint8Array {
  const name = new TextEncoder().encode('meshext.test');
  let payload = new TextEncoder().encode(marker);
  if (padTo > payload.length) {
    const p = new Uint8Array(padTo);
    p.set(payload);
    payload = p;
  }
  const body = [...leb(name.length), ...name, ...payload];
  return Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x00, ...leb(body.length), ...body]);
}

function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

export function selfSignedCert(dir: string, cn = '127.0.0.1'): { cert: string; key: string } {
  const cert = join(dir, `${cn}-cert.pem`);
  const key = join(dir, `${cn}-key.pem`);
  execFileSync(OPENSSL_BIN!, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${cn}`, '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  return { cert, key };
}

// ------------------------------------------------------------------------------ token server

export interface TokenServer {
  url: string;
  realm: string;
  service: string;
  issuer: string;
  certFile: string;
  /** Every token request seen: scope, basic user (or undefined), granted? */
  requests: { scope: string | null; user: string | undefined; granted: boolean }[];
  close(): Promise<void>;
}

/**
 * A Docker token server (the protocol distribution's `auth: token` expects): answers
 * GET /token?service&scope with a JWT (RS256, x5c = the self-signed cert in the registry's
 * rootcertbundle). Anonymous callers get `pull` when anonymousPull; users get pull,push.
 */
export async function startTokenServer(dir: string, o: { users: Record<string, string>; anonymousPull: boolean }): Promise<TokenServer> {
  const { cert, key } = selfSignedCert(dir, 'token-issuer');
  const der = new X509Certificate(readFileSync(cert)).raw.toString('base64');
  const priv = createPrivateKey(readFileSync(key));
  const service = 'meshext-test-registry';
  const issuer = 'meshext-test-issuer';
  const requests: TokenServer['requests'] = [];
  const b64u = (b: Buffer | string): string => Buffer.from(b).toString('base64url');
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    let user: string | undefined;
    const auth = req.headers.authorization;
    if (auth?.startsWith('Basic ')) {
      const [name, pass] = Buffer.from(auth.slice(6), 'base64').toString().split(':');
      if (o.users[name!] === undefined || o.users[name!] !== pass) {
        requests.push({ scope: u.searchParams.get('scope'), user: name, granted: false });
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
        return;
      }
      user = name;
    }
    const scope = u.searchParams.get('scope');
    const access: { type: string; name: string; actions: string[] }[] = [];
    if (scope) {
      const [type, name, actions] = scope.split(':');
      const wanted = (actions ?? '').split(',');
      const allowed = user ? wanted : o.anonymousPull ? wanted.filter((a) => a === 'pull') : [];
      if (allowed.length) access.push({ type: type!, name: name!, actions: allowed });
    }
    requests.push({ scope, user, granted: access.length > 0 });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [der] };
    const claims = { iss: issuer, sub: user ?? '', aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: `${now}-${requests.length}`, access };
    const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(claims))}`;
    const sig = createSign('RSA-SHA256').update(input).sign(priv);
    const token = `${input}.${b64u(sig)}`;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, access_token: token, expires_in: 300 }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    certFile: cert,
    requests,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

// ------------------------------------------------------------------------------ registry

export interface Registry {
  /** `127.0.0.1:port` */
  host: string;
  port: number;
  storage: string;
  tls: boolean;
  stop(): Promise<void>;
  start(): Promise<void>;
}

export interface RegistryOptions {
  htpasswd?: Record<string, string>;
  token?: TokenServer;
  tls?: boolean;
}

/** Starts Debian's docker-registry (CNCF distribution 2.8) with a temp storage dir. */
export async function startRegistry(dir: string, o: RegistryOptions = {}): Promise<Registry> {
  // The port is picked before the registry binds it; another test process may grab it meanwhile.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startRegistryOnce(dir, o);
    } catch (err) {
      if (attempt >= 3 || !/address already in use/.test(String(err))) throw err;
    }
  }
}

async function startRegistryOnce(dir: string, o: RegistryOptions): Promise<Registry> {
  const port = await freePort();
  const storage = join(dir, `registry-${port}`);
  const lines = [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${storage}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    '  secret: meshext-test-secret',
  ];
  if (o.tls) {
    const { cert, key } = selfSignedCert(dir, `registry-${port}`);
    lines.push('  tls:', `    certificate: ${cert}`, `    key: ${key}`);
  }
  if (o.htpasswd) {
    const file = join(dir, `htpasswd-${port}`);
    const entries = Object.entries(o.htpasswd).map(([u, p]) => execFileSync(HTPASSWD_BIN!, ['-Bbn', u, p], { encoding: 'utf8' }).trim());
    writeFileSync(file, `${entries.join('\n')}\n`);
    lines.push('auth:', '  htpasswd:', '    realm: meshext-test', `    path: ${file}`);
  } else if (o.token) {
    lines.push('auth:', '  token:', `    realm: ${o.token.realm}`, `    service: ${o.token.service}`, `    issuer: ${o.token.issuer}`, `    rootcertbundle: ${o.token.certFile}`);
  }
  const config = join(dir, `registry-${port}.yml`);
  writeFileSync(config, `${lines.join('\n')}\n`);
  let child: ChildProcess | undefined;
  let stderr = '';
  const reg: Registry = {
    host: `127.0.0.1:${port}`,
    port,
    storage,
    tls: o.tls === true,
    async start() {
      // Idempotent: a second child would fail to bind and the first one would leak.
      if (child && child.exitCode === null) return;
      stderr = '';
      child = spawn(REGISTRY_BIN!, ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const deadline = Date.now() + 15_000;
      for (;;) {
        if (child.exitCode !== null) throw new Error(`docker-registry exited ${child.exitCode}: ${stderr}`);
        if (await probe(port, o.tls === true)) return;
        if (Date.now() > deadline) throw new Error(`docker-registry did not come up on ${port}: ${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop() {
      const c = child;
      child = undefined;
      if (!c || c.exitCode !== null) return;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      const t = setTimeout(() => c.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    },
  };
  await reg.start();
  return reg;
}

function probe(port: number, tls: boolean): Promise<boolean> {
  return new Promise((resolve) => {
    const mod = tls ? https : http;
    const req = mod.get({ host: '127.0.0.1', port, path: '/v2/', rejectUnauthorized: false, timeout: 500 }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
  });
}

// ------------------------------------------------------------------------------ HTTP server

export interface TestServer {
  url: string;
  port: number;
  hits: Map<string, number>;
  close(): Promise<void>;
}

/** A programmable HTTP server on 127.0.0.1; `hits` counts requests per path. */
export async function startHttpServer(handler: (req: http.IncomingMessage, res: http.ServerResponse, hit: number) => void): Promise<TestServer> {
  const hits = new Map<string, number>();
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const n = (hits.get(path) ?? 0) + 1;
    hits.set(path, n);
    handler(req, res, n);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    hits,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

export function cleanup(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Byte equality regardless of Buffer/Uint8Array class. */
export function assertBytes(actual: Uint8Array | undefined, expected: Uint8Array, msg?: string): void {
  if (!actual || !Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength))) {
    throw new Error(`${msg ?? 'bytes differ'}: got ${actual ? Buffer.from(actual).subarray(0, 40).toString('hex') : 'undefined'} (${actual?.length}), want ${Buffer.from(expected).subarray(0, 40).toString('hex')} (${expected.length})`);
  }
}
