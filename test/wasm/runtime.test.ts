/**
 * The `wasm` ExtensionRuntime: registration, module sources (file:// and paths; fetch failures
 * under each failStrategy), plugin options (config JSON, root id, VM environment), describe().
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { getRuntime } from '../../src/proxy/extension-runtime.ts';
import { StatsStore } from '../../src/observability/stats.ts';
import type { TrafficExtension } from '../../src/config/types.ts';
import { pluginOptions, vmEnv, wasmRuntime, setModuleSource, localModuleSource } from '../../src/wasm/runtime.ts';
import { bootstrap } from '../helpers/bootstrap.ts';
import { buildWat } from './helpers/build.ts';
import { exchange } from './helpers/driver.ts';
import { FakeClusters } from './helpers/fixtures.ts';
import { watPlugin } from './helpers/wat.ts';

function ext(wasm: TrafficExtension['spec']['wasm'], file = '/tmp/x.yaml'): TrafficExtension {
  return { apiVersion: 'extensions.istio.io/v1alpha1', kind: 'TrafficExtension', metadata: { name: 'rt', namespace: 'ns1' }, spec: { wasm }, origin: { file, line: 1, kind: 'TrafficExtension' } };
}

const services = () => ({ workerId: 0, bootstrap: bootstrap(), clusters: new FakeClusters(), stats: new StatsStore(), secrets: [] });

test('registers itself as the wasm runtime', () => {
  assert.equal(getRuntime('wasm'), wasmRuntime);
});

test('plugin options: pluginConfig as JSON, empty config, root id, names, VM env (INLINE, HOST, ISTIO_META_ dropped)', () => {
  process.env.MESHEXT_TEST_HOST_VAR = 'from-host';
  const o = pluginOptions(ext({ url: 'file:///x.wasm', pluginName: 'root1', pluginConfig: { a: [1, 'b'] }, vmConfig: { env: [{ name: 'A', value: 'x' }, { name: 'MESHEXT_TEST_HOST_VAR', valueFrom: 'HOST' }, { name: 'MISSING_HOST_VAR_XYZ', valueFrom: 'HOST' }, { name: 'ISTIO_META_WASM_IMAGE_PULL_SECRET', value: 's' }] } }), services());
  assert.equal(new TextDecoder().decode(o.plugin.configuration), '{"a":[1,"b"]}');
  assert.equal(o.plugin.rootId, 'root1');
  assert.equal(o.plugin.name, 'ns1.rt');
  assert.equal(o.filterName, 'extensions.istio.io/trafficextension/ns1.rt');
  assert.equal(o.failStrategy, 'FAIL_CLOSE');
  assert.equal(o.cpuBudgetMs, 1000);
  assert.deepEqual(o.env, [['A', 'x'], ['MESHEXT_TEST_HOST_VAR', 'from-host']]);
  assert.equal(pluginOptions(ext({ url: 'file:///x.wasm' }), services()).plugin.configuration.length, 0);
  assert.deepEqual(vmEnv({ url: 'x' }), []);
});

test('load from file:// and relative paths; describe(); release', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'meshext-rt-'));
  try {
    const bytes = await buildWat(watPlugin({}));
    await writeFile(join(dir, 'p.wasm'), bytes);
    const byUrl = await wasmRuntime.load(ext({ url: pathToFileURL(join(dir, 'p.wasm')).href, pluginConfig: { x: 1 } }), services());
    const d = byUrl.describe();
    assert.equal(d.state, 'ready');
    assert.equal(d.abi, '0.2.0');
    assert.equal(d.cpuBudgetEnforced, true);
    assert.match(String(d.sha256), /^[0-9a-f]{64}$/);
    const f = byUrl.httpFilterFactory({} as never)!;
    assert.ok((await exchange(f)).upstream);
    assert.equal(byUrl.networkFilterFactory({} as never), null);
    byUrl.release();
    const byPath = await wasmRuntime.load(ext({ url: './p.wasm' }, join(dir, 'ext.yaml')), services());
    assert.equal(byPath.describe().state, 'ready');
    const net = await wasmRuntime.load(ext({ url: './p.wasm', type: 'NETWORK' }, join(dir, 'ext.yaml')), services());
    assert.equal(net.httpFilterFactory({} as never), null);
    assert.ok(net.networkFilterFactory({} as never));
    await writeFile(join(dir, 'bad.wasm'), 'not wasm at all');
    const bad = await wasmRuntime.load(ext({ url: './bad.wasm' }, join(dir, 'ext.yaml')), services());
    assert.equal(bad.describe().state, 'fetch_failed');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('fetch failures follow istio-agent: deny-all 403 (FAIL_CLOSE, FAIL_RELOAD) or allow-all (FAIL_OPEN); the module source is pluggable', async () => {
  setModuleSource(async (wasm) => {
    throw new Error(`cannot fetch ${wasm.url}`);
  });
  const closed = await wasmRuntime.load(ext({ url: 'oci://registry.invalid/p:1' }), services());
  assert.equal(closed.describe().state, 'fetch_failed');
  assert.match(String(closed.describe().reason), /cannot fetch oci:\/\/registry.invalid/);
  const ex = await exchange(closed.httpFilterFactory({} as never)!);
  assert.equal(ex.local?.status, 403);
  assert.equal(ex.local?.body, 'RBAC: access denied');
  const open = await wasmRuntime.load(ext({ url: 'oci://registry.invalid/p:1', failStrategy: 'FAIL_OPEN' }), services());
  assert.equal((await exchange(open.httpFilterFactory({} as never)!)).filter, null);
  const bytes = await buildWat(watPlugin({}));
  const seen: string[] = [];
  setModuleSource(async (wasm) => {
    seen.push(wasm.url);
    return bytes;
  });
  try {
    const viaSource = await wasmRuntime.load(ext({ url: 'oci://example/p:1' }), services());
    assert.equal(viaSource.describe().state, 'ready');
    assert.deepEqual(seen, ['oci://example/p:1']);
  } finally {
    setModuleSource(localModuleSource);
  }
});
