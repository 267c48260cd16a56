/**
 * The meshext command: --help, --version, validate (file:line: path: message, exit 1 on errors),
 * and run refusing a bad bootstrap without starting anything.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';

const dir = mkdtempSync(join(tmpdir(), 'meshext-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function meshext(...args: string[]) {
  const r = spawnSync(process.execPath, ['bin/meshext.js', ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('--version and --help', () => {
  assert.match(meshext('--version').out, /^\d+\.\d+\.\d+/);
  const h = meshext('--help');
  for (const cmd of ['run', 'validate', 'analyze', 'demo', 'push']) assert.match(h.out, new RegExp(`\\b${cmd}\\b`));
});

test('validate accepts a good bootstrap and a good TrafficExtension', () => {
  const b = join(dir, 'good-bootstrap.yaml');
  writeFileSync(b, 'listeners:\n  - {name: http, port: 8080}\nrouteConfigs:\n  - name: default\n    virtualHosts:\n      - {name: all, domains: ["*"], routes: [{name: hi, match: {prefix: /}, directResponse: {status: 200, body: hi}}]}\n');
  const e = join(dir, 'good-ext.yaml');
  writeFileSync(e, 'apiVersion: extensions.istio.io/v1alpha1\nkind: TrafficExtension\nmetadata: {name: ok, namespace: default}\nspec:\n  lua: {inlineCode: "function envoy_on_request(h) end"}\n');
  const r = meshext('validate', b, e);
  assert.equal(r.code, 0, r.err);
});

test('validate prints file:line: path: message and exits 1', () => {
  const b = join(dir, 'bad-bootstrap.yaml');
  writeFileSync(b, 'listeners:\n  - name: http\n    port: 70000\n    protocol: QUIC\n');
  const e = join(dir, 'bad-ext.yaml');
  writeFileSync(e, 'apiVersion: extensions.istio.io/v1alpha1\nkind: TrafficExtension\nmetadata: {name: bad, namespace: default}\nspec:\n  wasm:\n    url: oci://ghcr.io/x/y:1\n    sha256: NOTHEX\n');
  const r = meshext('validate', b, e);
  assert.equal(r.code, 1);
  assert.match(r.err, new RegExp(`${b.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3: listeners\\[0\\]\\.port: `));
  assert.match(r.err, new RegExp(`${b.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:4: listeners\\[0\\]\\.protocol: `));
  assert.match(r.err, /bad-ext\.yaml:7: spec\.wasm\.sha256: /);
});

test('run refuses a bad bootstrap with the error and a non-zero exit', () => {
  const b = join(dir, 'bad-run.yaml');
  writeFileSync(b, 'listeners:\n  - {name: http, port: 8080, routeConfig: missing}\n');
  const r = meshext('run', '-c', b);
  assert.equal(r.code, 1);
  assert.match(r.err, /bad-run\.yaml:2: listeners\[0\]\.routeConfig: /);
});

test('push passes its own flags through and reports errors with exit 1', () => {
  const help = meshext('push', '--help');
  assert.equal(help.code, 0);
  assert.match(help.out, /meshext push FILE\.wasm oci:\/\/REGISTRY\/REPO:TAG/);
  const r = meshext('push', join(dir, 'missing.wasm'), 'oci://127.0.0.1:1/x:y', '--insecure');
  assert.equal(r.code, 1);
  assert.match(r.err, /missing\.wasm/);
});
