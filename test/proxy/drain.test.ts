/**
 * Graceful drain: SIGTERM stops accepting, lets in-flight requests finish, then exits 0.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { startHttp1, type TestServer } from '../helpers/upstream.ts';

let slow: TestServer;
let dir: string;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

before(async () => {
  slow = await startHttp1((_req, res) => setTimeout(() => res.end('slow done'), 800));
  dir = mkdtempSync(join(tmpdir(), 'meshext-drain-'));
});
after(async () => {
  await slow.close();
  rmSync(dir, { recursive: true, force: true });
});

test('SIGTERM drains in-flight requests and exits 0', { timeout: 90_000 }, async () => {
  const [port, admin] = [await freePort(), await freePort()];
  const cfg = join(dir, 'bootstrap.yaml');
  writeFileSync(
    cfg,
    `admin: {address: 127.0.0.1, port: ${admin}}
prometheus: null
readiness: null
drainTimeoutMs: 5000
listeners:
  - {name: http, address: 127.0.0.1, port: ${port}}
routeConfigs:
  - name: default
    virtualHosts:
      - {name: all, domains: ["*"], routes: [{name: all, match: {prefix: /}, route: {cluster: slow}}]}
clusters:
  - {name: slow, endpoints: ["127.0.0.1:${slow.port}"]}
`,
  );
  const child = spawn(process.execPath, ['bin/meshext.js', 'run', '-c', cfg], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MESHEXT_LOG_LEVEL: 'info' } });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  try {
  // Wait for LIVE.
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const r = await request(`http://127.0.0.1:${admin}/ready`);
      await r.body.dump();
      if (r.statusCode === 200) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`proxy never became ready:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const inflight = request(`http://127.0.0.1:${port}/`).then(async (r) => ({ status: r.statusCode, body: await r.body.text() }));
  await new Promise((r) => setTimeout(r, 200));
  child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 200));
  // New connections are refused while draining.
  await assert.rejects(
    new Promise<void>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve();
      });
      s.on('error', reject);
    }),
  );
  const r = await inflight;
  assert.equal(r.status, 200);
  assert.equal(r.body, 'slow done');
  const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running 30 s after SIGTERM'), 30_000).unref())]);
  assert.equal(code, 0, out);
  } finally {
    child.kill('SIGKILL');
  }
});
