/**
 * What a fetch failure does and how an extension recovers: registry down (network error row of
 * the §4.1 table), the FAIL_CLOSE deny fallback answering 403 while the module is unavailable,
 * background retries bringing the real plugin up once the registry is back (no config change),
 * stopping a watch, and the on-disk cache serving modules after a restart with the registry down.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createDenyAllHttpFilterFactory, deniesOnFetchFailure, DENY_BODY } from '../../src/fetch/deny.ts';
import { FetchError, FetchErrorCode } from '../../src/fetch/errors.ts';
import { createModuleFetcher, fetchContextFor } from '../../src/fetch/fetcher.ts';
import type { FetchedModule } from '../../src/fetch/fetcher.ts';
import { pushModule } from '../../src/fetch/push.ts';
import { watchUntilAvailable } from '../../src/fetch/watch.ts';
import type { HttpFilterCallbacks, HttpFilterFactory } from '../../src/filters/types.ts';
import { HeaderMap } from '../../src/filters/header-map.ts';
import type { TrafficExtension, WasmConfig } from '../../src/config/types.ts';
import { StatsStore } from '../../src/observability/stats.ts';
import { assertBytes, cleanup, freePort, registrySkip, startRegistry, tempDir, wasmModule } from './helpers.ts';
import type { Registry } from './helpers.ts';

function ext(wasm: WasmConfig, resourceVersion = '1'): TrafficExtension {
  return {
    apiVersion: 'extensions.istio.io/v1alpha1',
    kind: 'TrafficExtension',
    metadata: { name: 'authz', namespace: 'default', resourceVersion },
    spec: { wasm },
    origin: { file: 'test.yaml', line: 1, kind: 'TrafficExtension' },
  };
}

/** Sends one request through a filter factory (or none) and returns the local reply status, 0 if it passed. */
function request(factory: HttpFilterFactory | null): { status: number; body: string } {
  let out = { status: 0, body: '' };
  if (!factory) return out;
  const cb = { sendLocalReply: (status: number, body: string | Buffer) => (out = { status, body: String(body) }) } as unknown as HttpFilterCallbacks;
  factory.create(cb)?.decodeHeaders?.(new HeaderMap(), true);
  return out;
}

const until = async (cond: () => boolean, ms: number, what: string): Promise<void> => {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('fetch failure and recovery', { skip: registrySkip }, () => {
  let dir: string;
  let reg: Registry;
  before(async () => {
    dir = tempDir();
    reg = await startRegistry(dir);
  });
  after(async () => {
    await reg.stop();
    cleanup(dir);
  });

  it('registry unreachable: the fetch fails at the ping step as manifest_failure', async () => {
    const port = await freePort();
    const stats = new StatsStore();
    const f = await createModuleFetcher({ cacheDir: `${dir}/down`, allowLoopback: true, insecureRegistries: ['*'], stats, dockerConfigFile: null });
    try {
      await assert.rejects(f.fetch({ url: `oci://127.0.0.1:${port}/x/y:v1` }, { namespace: 'default' }), (e: unknown) => FetchError.isFetchError(e) && e.code === FetchErrorCode.Transport && e.step === 'ping' && e.message.includes(`127.0.0.1:${port}`));
      const e = stats.snapshot().find((s) => s.name === 'wasm_remote_fetch_count' && s.tags.result === 'manifest_failure');
      assert.equal(e?.kind === 'counter' ? e.value : 0, 1);
    } finally {
      await f.close();
    }
  });

  it('FAIL_CLOSE: 403 RBAC: access denied while the registry is down, real plugin once it is back', async () => {
    const w = wasmModule('recovered');
    const url = `oci://${reg.host}/recover/authz:v1`;
    await pushModule({ wasm: w, ref: url, insecure: true });
    await reg.stop();
    let watchStop: (() => void) | undefined;
    const f = await createModuleFetcher({ cacheDir: `${dir}/recover`, allowLoopback: true, insecureRegistries: [reg.host], dockerConfigFile: null });
    try {
      const wasm: WasmConfig = { url, failStrategy: 'FAIL_CLOSE' };
      const resource = ext(wasm);
      const ctx = fetchContextFor(resource, []);
      // What the Wasm runtime does at load time.
      let active: HttpFilterFactory | null;
      let loaded: FetchedModule | undefined;
      try {
        loaded = await f.fetch(wasm, ctx);
        active = null;
      } catch {
        active = deniesOnFetchFailure(wasm.failStrategy) ? createDenyAllHttpFilterFactory('extensions.istio.io/trafficextension/default.authz') : null;
      }
      assert.equal(loaded, undefined);
      assert.deepEqual(request(active), { status: 403, body: DENY_BODY });
      let failures = 0;
      const pluginFactory: HttpFilterFactory = { name: 'plugin', create: () => ({}) };
      const watch = watchUntilAvailable(f, wasm, ctx, {
        initialDelayMs: 30,
        maxDelayMs: 150,
        onRetryFailed: () => failures++,
        onAvailable: (m) => {
          loaded = m;
          active = pluginFactory;
        },
      });
      watchStop = watch.stop;
      await until(() => failures >= 2, 10_000, 'two failed retries');
      assert.deepEqual(request(active), { status: 403, body: DENY_BODY }, 'still denied while down');
      await reg.start();
      const m = await Promise.race([watch.done, new Promise<undefined>((_, rej) => setTimeout(() => rej(new Error('no recovery within 10 s')), 10_000).unref())]);
      assert.ok(m);
      assertBytes(m.bytes, w);
      assert.equal(active, pluginFactory);
      assert.deepEqual(request(active), { status: 0, body: '' }, 'traffic reaches the plugin');
      assert.ok(watch.attempts >= 3);
    } finally {
      watchStop?.();
      await f.close();
      await reg.start();
    }
  });

  it('FAIL_OPEN: the extension is simply absent', () => {
    assert.equal(deniesOnFetchFailure('FAIL_OPEN'), false);
    assert.deepEqual(request(null), { status: 0, body: '' });
  });

  it('stop() ends a watch: no more attempts, done resolves undefined', async () => {
    const port = await freePort();
    const f = await createModuleFetcher({ cacheDir: `${dir}/stop`, allowLoopback: true, insecureRegistries: ['*'], dockerConfigFile: null });
    try {
      let failures = 0;
      const w = watchUntilAvailable(f, { url: `oci://127.0.0.1:${port}/never/here:v1` }, { namespace: 'default' }, { initialDelayMs: 10, maxDelayMs: 20, onAvailable: () => assert.fail('never available'), onRetryFailed: () => failures++ });
      await until(() => failures >= 2, 5000, 'retries');
      w.stop();
      assert.equal(await w.done, undefined);
      const n = w.attempts;
      await new Promise((r) => setTimeout(r, 100));
      assert.ok(w.attempts <= n + 1, 'no retries after stop');
    } finally {
      await f.close();
    }
  });

  it('after a restart the disk cache serves modules while the registry is down; Always still needs the registry', async () => {
    const w = wasmModule('offline');
    const url = `oci://${reg.host}/offline/p:v1`;
    await pushModule({ wasm: w, ref: url, insecure: true });
    const cacheDir = `${dir}/restart`;
    const f1 = await createModuleFetcher({ cacheDir, allowLoopback: true, insecureRegistries: [reg.host], dockerConfigFile: null });
    const first = await f1.fetch({ url }, { namespace: 'default', resourceName: 'default.p', resourceVersion: '1' });
    assert.equal(first.source, 'remote');
    await f1.close();
    await reg.stop();
    const f2 = await createModuleFetcher({ cacheDir, allowLoopback: true, insecureRegistries: [reg.host], dockerConfigFile: null });
    try {
      const again = await f2.fetch({ url }, { namespace: 'default', resourceName: 'default.p', resourceVersion: '2' });
      assert.equal(again.source, 'cache');
      assert.equal(again.sha256, first.sha256);
      assertBytes(again.bytes, w);
      const pinned = await f2.fetch({ url: `oci://${reg.host}/offline/p@sha256:${first.sha256}` }, { namespace: 'default' });
      assert.equal(pinned.source, 'cache', 'a digest-pinned URL hits the cache by checksum');
      await assert.rejects(f2.fetch({ url, imagePullPolicy: 'Always' }, { namespace: 'default', resourceName: 'default.p', resourceVersion: '3' }), (e: unknown) => FetchError.isFetchError(e) && e.step === 'ping');
    } finally {
      await f2.close();
      await reg.start();
    }
  });
});
