/**
 * Hot reload of TrafficExtension files while a client sends requests continuously: every change
 * applies without restart and without failing a request; invalid updates are rejected and the
 * last good version keeps serving.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Agent, request } from 'undici';
import { startProxy, type Proxy } from '../../src/proxy/proxy.ts';
import { bootstrap, cluster, routeAll } from '../helpers/bootstrap.ts';
import { echoHandler, startHttp1, type TestServer } from '../helpers/upstream.ts';

let dir: string;
let upstream: TestServer;
let proxy: Proxy;
let port: number;
const agent = new Agent({ connections: 4, pipelining: 1 });

function luaExtension(version: string, body?: string): string {
  const code = body ?? `function envoy_on_response(h)\n  h:headers():replace("x-version", "${version}")\nend\n`;
  const indented = code.split('\n').map((l) => `      ${l}`).join('\n');
  return `apiVersion: extensions.istio.io/v1alpha1
kind: TrafficExtension
metadata:
  name: versioned
  namespace: default
spec:
  phase: STATS
  lua:
    inlineCode: |
${indented}
`;
}

/** Replaces the file atomically, as editors and kubectl-style tools do. */
function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

async function version(): Promise<string | undefined> {
  const res = await request(`http://127.0.0.1:${port}/`, { dispatcher: agent });
  await res.body.dump();
  assert.equal(res.statusCode, 200);
  return res.headers['x-version'] as string | undefined;
}

async function waitForVersion(v: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if ((await version()) === v) return;
    if (Date.now() > deadline) throw new Error(`version ${v} never served`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshext-reload-'));
  writeAtomic(join(dir, 'ext.yaml'), luaExtension('0'));
  upstream = await startHttp1(echoHandler);
  proxy = await startProxy({ bootstrap: bootstrap({ clusters: [cluster('echo', upstream.port)], routeTables: [routeAll('echo')] }), extensionPaths: [dir], admin: false });
  port = proxy.ports.http!;
  await waitForVersion('0');
});

after(async () => {
  await proxy.close();
  await upstream.close();
  await agent.close();
  rmSync(dir, { recursive: true, force: true });
});

test('50 reloads under continuous traffic fail no request', async () => {
  let stop = false;
  let ok = 0;
  const failures: string[] = [];
  const seen = new Set<string>();
  const clients = Array.from({ length: 4 }, async () => {
    while (!stop) {
      try {
        const v = await version();
        if (v) seen.add(v);
        ok++;
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  });
  for (let i = 1; i <= 50; i++) {
    writeAtomic(join(dir, 'ext.yaml'), luaExtension(String(i)));
    await waitForVersion(String(i));
  }
  stop = true;
  await Promise.all(clients);
  assert.deepEqual(failures, []);
  assert.ok(ok > 50, `requests sent: ${ok}`);
  assert.ok(seen.size >= 50, `versions observed by the clients: ${seen.size}`);
});

test('an invalid resource is rejected and the last good version keeps serving', async () => {
  await waitForVersion('50');
  // Schema error: phase must be one of the enum values.
  writeAtomic(join(dir, 'ext.yaml'), luaExtension('bad').replace('phase: STATS', 'phase: SOMETIMES'));
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await version(), '50');
  const dump = (await proxy.configDump()) as { lastApplyIssues: unknown[] };
  assert.ok(Array.isArray(dump.lastApplyIssues));
  // A Lua syntax error is caught when the script loads.
  writeAtomic(join(dir, 'ext.yaml'), luaExtension('x', 'function envoy_on_response(h)\n  h:headers(:replace("x-version", "broken")\nend\n'));
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await version(), '50');
  // A good version after the bad ones applies.
  writeAtomic(join(dir, 'ext.yaml'), luaExtension('51'));
  await waitForVersion('51');
});

test('removing the file removes the extension', async () => {
  rmSync(join(dir, 'ext.yaml'));
  const deadline = Date.now() + 10_000;
  while ((await version()) !== undefined) {
    if (Date.now() > deadline) throw new Error('extension still applied');
    await new Promise((r) => setTimeout(r, 50));
  }
});
