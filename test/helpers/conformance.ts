/**
 * Helpers for the data-plane conformance suites (test/proxy/*): a data plane started from a
 * test bootstrap with an access log in a temp file, a self-signed certificate made with openssl,
 * raw-socket HTTP/1.x exchanges, and an HTTP/2 client request that returns headers, body and
 * trailers. Everything binds 127.0.0.1 on ephemeral ports.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BootstrapConfig, RouteTableConfig } from '../../src/config/types.ts';
import type { AccessLogEntry } from '../../src/observability/access-log.ts';
import { DataPlane } from '../../src/proxy/data-plane.ts';
import { bootstrap } from './bootstrap.ts';

export interface RunningPlane {
  dp: DataPlane;
  /** Bound port by listener name. */
  ports: Record<string, number>;
  /** The access log file (JSON lines). */
  accessLogFile: string;
  /** Closes the plane (flushing the access log) and returns its records. */
  closeAndReadLog(): Promise<AccessLogEntry[]>;
  close(): Promise<void>;
}

/** Starts a DataPlane with an access log written to a fresh temp file. */
export async function startPlane(over: Partial<BootstrapConfig>): Promise<RunningPlane> {
  const dir = mkdtempSync(join(tmpdir(), 'meshext-conf-'));
  const accessLogFile = join(dir, 'access.log');
  const dp = new DataPlane(bootstrap({ accessLog: accessLogFile, ...over }));
  await dp.start();
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await dp.close();
  };
  return {
    dp,
    ports: dp.ports(),
    accessLogFile,
    close: async () => {
      await close();
      rmSync(dir, { recursive: true, force: true });
    },
    async closeAndReadLog() {
      await close();
      const text = readFileSync(accessLogFile, 'utf8');
      rmSync(dir, { recursive: true, force: true });
      return text
        .split('\n')
        .filter((l) => l.length > 0)
        .map((l) => JSON.parse(l) as AccessLogEntry);
    },
  };
}

export interface TestCert {
  dir: string;
  certFile: string;
  keyFile: string;
  cert: Buffer;
  remove(): void;
}

/** A self-signed certificate for `localhost` / 127.0.0.1 (openssl, EC P-256: fast to make). */
export function makeCert(): TestCert {
  const dir = mkdtempSync(join(tmpdir(), 'meshext-cert-'));
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ],
    { stdio: 'pipe' },
  );
  return { dir, certFile, keyFile, cert: readFileSync(certFile), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Writes `data` on a raw TCP connection and collects everything the server sends until it closes
 * the connection, or until `until(received)` holds (then the socket is closed by us).
 */
export function rawExchange(port: number, data: string | Buffer, until?: (received: string) => boolean, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let got = '';
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`raw exchange timed out; received so far:\n${got}`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(t);
      s.destroy();
      resolve(got);
    };
    s.on('connect', () => s.write(data));
    s.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      if (until?.(got)) done();
    });
    s.on('end', done);
    s.on('close', done);
    s.on('error', (err) => {
      clearTimeout(t);
      reject(err);
    });
  });
}

export interface ParsedResponse {
  status: number;
  /** Lower-cased header names; repeated headers keep the last value. */
  headers: Record<string, string>;
  /** Raw header lines (lower-cased names) in order, repeated ones kept. */
  headerLines: [string, string][];
  body: string;
  /** Trailer fields of a chunked response. */
  trailers: Record<string, string>;
}

/** Parses a sequence of HTTP/1.x responses from raw bytes (content-length and chunked framing). */
export function parseResponses(raw: string): ParsedResponse[] {
  const out: ParsedResponse[] = [];
  let at = 0;
  while (at < raw.length) {
    const headEnd = raw.indexOf('\r\n\r\n', at);
    if (headEnd < 0) break;
    const lines = raw.slice(at, headEnd).split('\r\n');
    const status = Number(lines[0]!.split(' ')[1]);
    const headers: Record<string, string> = {};
    const headerLines: [string, string][] = [];
    for (const l of lines.slice(1)) {
      const c = l.indexOf(':');
      const n = l.slice(0, c).trim().toLowerCase();
      const v = l.slice(c + 1).trim();
      headers[n] = v;
      headerLines.push([n, v]);
    }
    at = headEnd + 4;
    let body = '';
    const trailers: Record<string, string> = {};
    if (headers['transfer-encoding']?.toLowerCase() === 'chunked') {
      for (;;) {
        const le = raw.indexOf('\r\n', at);
        if (le < 0) throw new Error('truncated chunked body');
        const size = parseInt(raw.slice(at, le), 16);
        at = le + 2;
        if (size === 0) {
          // Trailer section ends with an empty line.
          for (;;) {
            const te = raw.indexOf('\r\n', at);
            if (te < 0) throw new Error('truncated trailers');
            const line = raw.slice(at, te);
            at = te + 2;
            if (line === '') break;
            const c = line.indexOf(':');
            trailers[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim();
          }
          break;
        }
        body += raw.slice(at, at + size);
        at += size + 2;
      }
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      body = raw.slice(at, at + n);
      at += n;
    } else if (status === 204 || status === 304 || (status >= 100 && status < 200)) {
      // no body
    } else {
      body = raw.slice(at);
      at = raw.length;
    }
    out.push({ status, headers, headerLines, body, trailers });
  }
  return out;
}

export interface H2Result {
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
  trailers: http2.IncomingHttpHeaders | undefined;
}

/**
 * One HTTP/2 request on `session`. `body` is written then the stream ends, with `trailers` sent
 * as a trailing HEADERS frame when given.
 */
export function h2Request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer | string,
  trailers?: http2.OutgoingHttpHeaders,
): Promise<H2Result> {
  return new Promise((resolve, reject) => {
    const hasBody = body !== undefined || trailers !== undefined;
    const stream = session.request(headers, { endStream: !hasBody, waitForTrailers: trailers !== undefined });
    if (trailers) stream.on('wantTrailers', () => stream.sendTrailers(trailers));
    let resHeaders: http2.IncomingHttpHeaders | undefined;
    let resTrailers: http2.IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (resHeaders = h));
    stream.on('trailers', (t) => (resTrailers = t));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve({ headers: resHeaders ?? {}, body: Buffer.concat(chunks), trailers: resTrailers }));
    stream.on('error', reject);
    if (hasBody) {
      if (body !== undefined) stream.write(body);
      stream.end();
    }
  });
}

/** Connects an HTTP/2 client session and waits until it is connected. */
export async function h2Connect(authority: string, opts: http2.SecureClientSessionOptions = {}): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(authority, opts);
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve());
    session.once('error', reject);
  });
  session.on('error', () => {});
  return session;
}

/** Closes an HTTP/2 client session and waits for it. */
export function h2Close(session: http2.ClientHttp2Session): Promise<void> {
  return new Promise((r) => {
    if (session.closed || session.destroyed) return r();
    session.close(() => r());
  });
}

/** Runs a command and returns stdout (for curl). */
export function run(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string; code: number | null }> {
  return import('node:child_process').then(
    ({ execFile }) =>
      new Promise((resolve) => {
        execFile(cmd, args, { maxBuffer: 64 * 1024 * 1024, timeout: 30_000 }, (err, stdout, stderr) => {
          resolve({ stdout: String(stdout), stderr: String(stderr), code: err ? ((err as { code?: number }).code ?? 1) : 0 });
        });
      }),
  );
}

/** Routes `/h2/...` to cluster `h2` (an HTTP/2 upstream) and everything else to `h1`. */
export function h1AndH2Routes(): RouteTableConfig {
  return {
    name: 'default',
    virtualHosts: [
      {
        name: 'all',
        domains: ['*'],
        routes: [
          { name: 'to-h2', match: { prefix: '/h2/' }, route: { cluster: 'h2' } },
          { name: 'to-h1', match: { prefix: '/' }, route: { cluster: 'h1' } },
        ],
      },
    ],
  };
}
