/**
 * oci:// against a real CNCF distribution registry (Debian docker-registry) on 127.0.0.1:
 * anonymous, htpasswd basic auth and bearer tokens from a token-server fixture; every image layout
 * pushed by `meshext push` and read back; index resolution; the fetch rows of the §4.1 failure
 * table; pull policy across resource changes; TLS and plain-HTTP rules for insecure registries.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { execFileSync } from 'node:child_process';
import { pushCommand } from '../../src/cli/push.ts';
import { dockerConfigJson } from '../../src/fetch/credentials.ts';
import { FetchError, FetchErrorCode } from '../../src/fetch/errors.ts';
import { createModuleFetcher } from '../../src/fetch/fetcher.ts';
import type { ModuleFetcher, ModuleFetcherOptions } from '../../src/fetch/fetcher.ts';
import { buildImage, MediaType } from '../../src/fetch/layouts.ts';
import type { Layout } from '../../src/fetch/layouts.ts';
import { RegistryClient } from '../../src/fetch/oci.ts';
import { pushModule } from '../../src/fetch/push.ts';
import { parseOciReference } from '../../src/fetch/reference.ts';
import { SsrfGuard } from '../../src/fetch/ssrf.ts';
import { Transport } from '../../src/fetch/transport.ts';
import { logger } from '../../src/observability/log.ts';
import { StatsStore } from '../../src/observability/stats.ts';
import { assertBytes, cleanup, registrySkip, registryTlsSkip, startHttpServer, startRegistry, startTokenServer, tempDir, wasmModule, which } from './helpers.ts';
import type { Registry, TokenServer } from './helpers.ts';

const isCode = (code: string) => (e: unknown) => FetchError.isFetchError(e) && e.code === code;
const ctx = { namespace: 'default', resourceName: 'default.ext', resourceVersion: '1' };

function counter(stats: StatsStore | undefined, name: string, tags: Record<string, string>): number {
  const e = stats!.snapshot().find((x) => x.name === name && JSON.stringify(x.tags) === JSON.stringify(tags));
  return e && e.kind !== 'histogram' ? e.value : 0;
}

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await pushCommand(args, { stdout: (s) => (out += s), stderr: (s) => (err += s) });
  return { code, out, err };
}

/** A raw registry client for hand-made manifests (indexes, broken images). */
function rawClient(reg: Registry, repo: string, credentials?: { username: string; password: string }): { client: RegistryClient; close: () => Promise<void> } {
  const transport = new Transport(new SsrfGuard({ allowLoopback: true }));
  const ref = parseOciReference(`${reg.host}/${repo}:x`);
  const client = new RegistryClient({ ref, transport, insecure: true, credentials, timeoutMs: 10_000, maxBytes: 1 << 24, log: logger('fetch'), url: `oci://${reg.host}/${repo}` });
  return { client, close: () => transport.close() };
}

describe('oci:// with an anonymous registry', { skip: registrySkip }, () => {
  let dir: string;
  let reg: Registry;
  let fetchers: ModuleFetcher[] = [];
  const make = async (extra: Partial<ModuleFetcherOptions> = {}): Promise<ModuleFetcher> => {
    const f = await createModuleFetcher({ cacheDir: `${dir}/cache-${fetchers.length}`, allowLoopback: true, insecureRegistries: [reg.host], stats: new StatsStore(), dockerConfigFile: null, httpTimeoutMs: 5000, ...extra });
    fetchers.push(f);
    return f;
  };
  before(async () => {
    dir = tempDir();
    reg = await startRegistry(dir);
  });
  after(async () => {
    for (const f of fetchers) await f.close();
    fetchers = [];
    await reg.stop();
    cleanup(dir);
  });

  for (const layout of ['oci', 'docker', 'artifact'] as Layout[]) {
    it(`push (--layout ${layout}) then fetch round-trips, with the printed sha256`, async () => {
      const file = `${dir}/${layout}.wasm`;
      const w = wasmModule(`layout-${layout}`);
      (await import('node:fs')).writeFileSync(file, w);
      const ref = `oci://${reg.host}/plugins/rt:${layout}`;
      const r = await cli([file, ref, '--layout', layout, '--insecure']);
      assert.equal(r.code, 0, r.err);
      const sha = /^sha256: ([a-f0-9]{64})$/m.exec(r.out)?.[1];
      assert.ok(sha, r.out);
      const again = await cli([file, ref, '--layout', layout, '--insecure', '--json']);
      const j = JSON.parse(again.out);
      assert.equal(j.sha256, sha, 'deterministic image');
      assert.equal(j.uploadedBlobs, 0, 'existing blobs are not re-uploaded');
      const f = await make();
      const m = await f.fetch({ url: ref, sha256: sha }, ctx);
      assert.equal(m.source, 'remote');
      assert.equal(m.sha256, sha, 'OCI checksum is the manifest digest');
      assertBytes(m.bytes, w);
      // Pinned by digest in the URL, without scheme (oci:// implied).
      const byDigest = await (await make()).fetch({ url: `${reg.host}/plugins/rt@sha256:${sha}` }, ctx);
      assertBytes(byDigest.bytes, w);
    });
  }

  it('resolves an image index to its linux/amd64 image', async () => {
    const amd = wasmModule('amd64');
    const arm = wasmModule('arm64');
    const a = await pushModule({ wasm: amd, ref: `${reg.host}/plugins/multi:amd64`, insecure: true });
    const b = await pushModule({ wasm: arm, ref: `${reg.host}/plugins/multi:arm64`, insecure: true });
    const size = async (w: Uint8Array) => (await buildImage(w, 'oci')).manifest.length;
    const index = {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [
        { mediaType: MediaType.OciManifest, digest: b.digest, size: await size(arm), platform: { os: 'linux', architecture: 'arm64' } },
        { mediaType: MediaType.OciManifest, digest: a.digest, size: await size(amd), platform: { os: 'linux', architecture: 'amd64' } },
      ],
    };
    const { client, close } = rawClient(reg, 'plugins/multi');
    const idxBytes = new TextEncoder().encode(JSON.stringify(index));
    await client.putManifest('index', MediaType.OciIndex, idxBytes);
    await close();
    const f = await make();
    const m = await f.fetch({ url: `oci://${reg.host}/plugins/multi:index` }, ctx);
    assertBytes(m.bytes, amd);
    assert.equal(m.sha256, a.sha256, 'checksum of the resolved image, as go-containerregistry reports it');
  });

  it('failure rows: unknown tag (404), checksum mismatch, digest conflict, invalid image, invalid module, size limit', async () => {
    const w = wasmModule('rows');
    const pushed = await pushModule({ wasm: w, ref: `${reg.host}/plugins/rows:v1`, insecure: true });
    const f = await make();
    await assert.rejects(f.fetch({ url: `oci://${reg.host}/plugins/rows:nope` }, ctx), (e: unknown) => isCode(FetchErrorCode.NotFound)(e) && (e as FetchError).result === 'manifest_failure');
    await assert.rejects(f.fetch({ url: `oci://${reg.host}/plugins/missing-repo:v1` }, ctx), isCode(FetchErrorCode.NotFound));
    await assert.rejects(
      f.fetch({ url: `oci://${reg.host}/plugins/rows:v1`, sha256: 'f'.repeat(64) }, ctx),
      (e: unknown) => isCode(FetchErrorCode.ChecksumMismatch)(e) && (e as Error).message.includes(`has checksum ${pushed.sha256}, which does not match: ${'f'.repeat(64)}`),
    );
    await assert.rejects(f.fetch({ url: `oci://${reg.host}/plugins/rows@sha256:${pushed.sha256}`, sha256: 'e'.repeat(64) }, ctx), isCode(FetchErrorCode.DigestConflict));

    // Hand-made images: a layer of the wrong type, and a compat image whose plugin.wasm is not Wasm.
    const { client, close } = rawClient(reg, 'plugins/bad');
    const junk = new TextEncoder().encode('not a layer');
    const junkDigest = `sha256:${(await import('node:crypto')).createHash('sha256').update(junk).digest('hex')}`;
    await client.uploadBlob(junkDigest, junk);
    const cfg = new TextEncoder().encode('{}');
    const cfgDigest = `sha256:${(await import('node:crypto')).createHash('sha256').update(cfg).digest('hex')}`;
    await client.uploadBlob(cfgDigest, cfg);
    const badManifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config: { mediaType: MediaType.OciConfig, digest: cfgDigest, size: cfg.length }, layers: [{ mediaType: 'application/octet-stream', digest: junkDigest, size: junk.length }] };
    await client.putManifest('wrong-layer', MediaType.OciManifest, new TextEncoder().encode(JSON.stringify(badManifest)));
    const notWasm = await buildImage(new TextEncoder().encode('\u0000asX this is not wasm'), 'oci');
    for (const b of notWasm.blobs) await client.uploadBlob(b.digest, b.bytes);
    await client.putManifest('not-wasm', notWasm.mediaType, notWasm.manifest);
    await close();
    await assert.rejects(f.fetch({ url: `oci://${reg.host}/plugins/bad:wrong-layer` }, ctx), (e: unknown) => isCode(FetchErrorCode.InvalidImage)(e) && /invalid format as an OCI image/.test((e as Error).message));
    await assert.rejects(f.fetch({ url: `oci://${reg.host}/plugins/bad:not-wasm` }, ctx), isCode(FetchErrorCode.InvalidWasm));

    const big = wasmModule('big', 5000);
    await pushModule({ wasm: big, ref: `${reg.host}/plugins/big:v1`, insecure: true, layout: 'artifact' });
    const small = await make({ maxSizeBytes: 1000 });
    await assert.rejects(small.fetch({ url: `oci://${reg.host}/plugins/big:v1` }, ctx), isCode(FetchErrorCode.TooLarge));
  });

  it('counts Istio metrics per result', async () => {
    await pushModule({ wasm: wasmModule('metrics'), ref: `${reg.host}/plugins/metrics:v1`, insecure: true });
    const stats = new StatsStore();
    const f = await make({ stats });
    await f.fetch({ url: `oci://${reg.host}/plugins/metrics:v1` }, ctx);
    await f.fetch({ url: `oci://${reg.host}/plugins/metrics:v1` }, ctx);
    await assert.rejects(f.fetch({ url: `oci://${reg.host}/plugins/metrics:none` }, ctx));
    await assert.rejects(f.fetch({ url: `oci://${reg.host}/plugins/metrics:v1`, sha256: '0'.repeat(64) }, ctx));
    assert.equal(counter(stats, 'wasm_remote_fetch_count', { result: 'success' }), 1);
    assert.equal(counter(stats, 'wasm_remote_fetch_count', { result: 'manifest_failure' }), 1);
    assert.equal(counter(stats, 'wasm_remote_fetch_count', { result: 'checksum_mismatched' }), 1);
    assert.equal(counter(stats, 'wasm_cache_lookup_count', { hit: 'true' }), 1);
    assert.equal(counter(stats, 'wasm_cache_lookup_count', { hit: 'false' }), 3);
    assert.equal(counter(stats, 'wasm_cache_entries', {}), 1);
  });

  it('uses plain HTTP only for insecure-registries hosts', async () => {
    await pushModule({ wasm: wasmModule('plain'), ref: `${reg.host}/plugins/plain:v1`, insecure: true });
    const strict = await make({ insecureRegistries: [] });
    await assert.rejects(strict.fetch({ url: `oci://${reg.host}/plugins/plain:v1` }, ctx), (e: unknown) => isCode(FetchErrorCode.Transport)(e) && (e as FetchError).step === 'ping');
    const byHost = await make({ insecureRegistries: ['127.0.0.1'] });
    assert.equal((await byHost.fetch({ url: `oci://${reg.host}/plugins/plain:v1` }, ctx)).source, 'remote');
    const star = await make({ insecureRegistries: ['*'] });
    assert.equal((await star.fetch({ url: `oci://${reg.host}/plugins/plain:v1` }, ctx)).source, 'remote');
  });

  it('pull policy: :latest and Always re-pull when the resource changes; IfNotPresent does not; a moved tag back to a cached digest skips the layer', async () => {
    const w1 = wasmModule('latest-1');
    const w2 = wasmModule('latest-2');
    const url = `oci://${reg.host}/plugins/pol:latest`;
    await pushModule({ wasm: w1, ref: url, insecure: true });
    const f = await make();
    const r = (v: string) => ({ namespace: 'default', resourceName: 'default.pol', resourceVersion: v });
    assertBytes((await f.fetch({ url }, r('1'))).bytes, w1);
    await pushModule({ wasm: w2, ref: url, insecure: true });
    const same = await f.fetch({ url }, r('1'));
    assert.equal(same.source, 'cache', 'unchanged resource keeps its module');
    assertBytes(same.bytes, w1);
    const changed = await f.fetch({ url }, r('2'));
    assert.equal(changed.source, 'remote', 'unset policy + :latest = Always');
    assertBytes(changed.bytes, w2);
    const ifnp = await f.fetch({ url, imagePullPolicy: 'IfNotPresent' }, r('3'));
    assert.equal(ifnp.source, 'cache');
    // Tag moves back to w1 (already cached): Always re-resolves the manifest, skips the layer.
    await pushModule({ wasm: w1, ref: url, insecure: true });
    const back = await f.fetch({ url: `oci://${reg.host}/plugins/pol:latest`, imagePullPolicy: 'Always' }, r('4'));
    assertBytes(back.bytes, w1);
    // A non-latest tag with unset policy is IfNotPresent.
    const tagged = `oci://${reg.host}/plugins/pol:v1`;
    await pushModule({ wasm: w1, ref: tagged, insecure: true });
    await f.fetch({ url: tagged }, r('5'));
    await pushModule({ wasm: w2, ref: tagged, insecure: true });
    const kept = await f.fetch({ url: tagged }, r('6'));
    assert.equal(kept.source, 'cache');
    assertBytes(kept.bytes, w1);
  });

  it('retries transient registry errors (503, reset) on API calls, as go-containerregistry does', async () => {
    const w = wasmModule('flaky-registry');
    await pushModule({ wasm: w, ref: `${reg.host}/plugins/flaky:v1`, insecure: true });
    // A forwarding front that fails the first manifest GET with 503 and resets the first blob GET.
    let manifestHits = 0;
    let blobHits = 0;
    const front = await startHttpServer(async (req, res) => {
      if (req.url!.includes('/manifests/') && ++manifestHits === 1) return void res.writeHead(503).end();
      if (req.url!.includes('/blobs/') && ++blobHits === 1) return void res.socket?.destroy();
      const headers: Record<string, string> = {};
      if (req.headers.accept) headers.accept = String(req.headers.accept);
      const up = await fetch(`http://${reg.host}${req.url}`, { method: req.method, headers });
      const out: Record<string, string> = {};
      up.headers.forEach((v, k) => { if (k !== 'content-encoding' && k !== 'transfer-encoding' && k !== 'content-length') out[k] = v; });
      res.writeHead(up.status, out).end(Buffer.from(await up.arrayBuffer()));
    });
    try {
      const frontHost = `127.0.0.1:${front.port}`;
      const f = await make({ insecureRegistries: [frontHost], registryRetryDelayMs: 10 });
      const m = await f.fetch({ url: `oci://${frontHost}/plugins/flaky:v1` }, ctx);
      assertBytes(m.bytes, w);
      assert.equal(manifestHits, 2);
      assert.equal(blobHits, 2);
      const none = await make({ insecureRegistries: [frontHost], registryAttempts: 1 });
      manifestHits = 0;
      await assert.rejects(none.fetch({ url: `oci://${frontHost}/plugins/flaky:v1` }, ctx), (e: unknown) => FetchError.isFetchError(e) && e.status === 503);
    } finally {
      await front.close();
    }
  });

  it('coalesces concurrent fetches of one image into one download', async () => {
    await pushModule({ wasm: wasmModule('co'), ref: `${reg.host}/plugins/co:v1`, insecure: true });
    const stats = new StatsStore();
    const f = await make({ stats });
    const all = await Promise.all(Array.from({ length: 6 }, (_, i) => f.fetch({ url: `oci://${reg.host}/plugins/co:v1` }, { namespace: 'default', resourceName: `default.co${i}` })));
    assert.equal(new Set(all.map((m) => m.sha256)).size, 1);
    assert.equal(counter(stats, 'wasm_remote_fetch_count', { result: 'success' }), 1);
  });

  it('reads images converted by a third-party tool (skopeo)', { skip: which('skopeo') ? false : 'skopeo not installed' }, async () => {
    const w = wasmModule('skopeo');
    await pushModule({ wasm: w, ref: `${reg.host}/plugins/sk:docker`, insecure: true, layout: 'docker' });
    await pushModule({ wasm: w, ref: `${reg.host}/plugins/sk:oci`, insecure: true, layout: 'oci' });
    const env = { ...process.env, HOME: dir };
    const copy = (src: string, dst: string, fmt: string) =>
      execFileSync('skopeo', ['copy', '--quiet', '--insecure-policy', '--src-tls-verify=false', '--dest-tls-verify=false', '--format', fmt, `docker://${reg.host}/plugins/sk:${src}`, `docker://${reg.host}/plugins/sk:${dst}`], { env, timeout: 30_000 });
    copy('docker', 'to-oci', 'oci');
    copy('oci', 'to-v2s2', 'v2s2');
    const raw = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/plugins/sk:to-v2s2`], { env, encoding: 'utf8', timeout: 30_000 }));
    assert.equal(raw.mediaType, MediaType.DockerManifest);
    const f = await make();
    assertBytes((await f.fetch({ url: `oci://${reg.host}/plugins/sk:to-oci` }, ctx)).bytes, w);
    assertBytes((await f.fetch({ url: `oci://${reg.host}/plugins/sk:to-v2s2` }, ctx)).bytes, w);
  });
});

describe('oci:// with htpasswd basic auth and pull secrets', { skip: registrySkip }, () => {
  let dir: string;
  let reg: Registry;
  const fetchers: ModuleFetcher[] = [];
  const make = async (): Promise<ModuleFetcher> => {
    const f = await createModuleFetcher({ cacheDir: `${dir}/cache-${fetchers.length}`, allowLoopback: true, insecureRegistries: [reg.host], dockerConfigFile: null });
    fetchers.push(f);
    return f;
  };
  before(async () => {
    dir = tempDir();
    reg = await startRegistry(dir, { htpasswd: { alice: 'wonderland', bob: 'builder' } });
  });
  after(async () => {
    for (const f of fetchers) await f.close();
    await reg.stop();
    cleanup(dir);
  });

  it('pushes with --username/--password and pulls with a dockerconfigjson secret from the same namespace', async () => {
    const w = wasmModule('basic');
    const file = `${dir}/basic.wasm`;
    (await import('node:fs')).writeFileSync(file, w);
    const denied = await cli([file, `oci://${reg.host}/secure/p:v1`, '--insecure']);
    assert.equal(denied.code, 1);
    assert.match(denied.err, /access denied/);
    const ok = await cli([file, `oci://${reg.host}/secure/p:v1`, '--insecure', '--username', 'alice', '--password', 'wonderland']);
    assert.equal(ok.code, 0, ok.err);
    let stdinOut = '';
    const viaStdin = await pushCommand([file, `oci://${reg.host}/secure/p:stdin`, '--insecure', '-u', 'bob', '--password-stdin'], { stdout: (s) => (stdinOut += s), stderr: () => {}, stdin: async () => 'builder\n' });
    assert.equal(viaStdin, 0);
    assert.match(stdinOut, /^sha256: [a-f0-9]{64}$/m);
    const url = `oci://${reg.host}/secure/p:v1`;
    const secret = { name: 'regcred', namespace: 'default', dockerConfigJson: dockerConfigJson(reg.host, 'bob', 'builder') };
    const f = await make();
    const m = await f.fetch({ url, imagePullSecret: 'regcred' }, { ...ctx, secrets: [secret] });
    assertBytes(m.bytes, w);
  });

  it('failure rows: no credentials (401), wrong password, secret in another namespace, secret without this registry', async () => {
    const url = `oci://${reg.host}/secure/p:v1`;
    const f = await make();
    await assert.rejects(f.fetch({ url }, ctx), (e: unknown) => isCode(FetchErrorCode.Unauthorized)(e) && (e as FetchError).status === 401 && /anonymously/.test((e as Error).message));
    const wrong = { name: 'regcred', namespace: 'default', dockerConfigJson: dockerConfigJson(reg.host, 'bob', 'nope') };
    await assert.rejects(f.fetch({ url, imagePullSecret: 'regcred' }, { ...ctx, secrets: [wrong] }), isCode(FetchErrorCode.Unauthorized));
    const elsewhere = { name: 'regcred', namespace: 'kube-system', dockerConfigJson: dockerConfigJson(reg.host, 'bob', 'builder') };
    await assert.rejects(f.fetch({ url, imagePullSecret: 'regcred' }, { ...ctx, secrets: [elsewhere] }), isCode(FetchErrorCode.MissingPullSecret));
    const otherReg = { name: 'regcred', namespace: 'default', dockerConfigJson: dockerConfigJson('other.example:5000', 'bob', 'builder') };
    await assert.rejects(f.fetch({ url, imagePullSecret: 'regcred' }, { ...ctx, secrets: [otherReg] }), isCode(FetchErrorCode.Unauthorized));
  });
});

describe('oci:// with bearer tokens from a token server', { skip: registryTlsSkip }, () => {
  let dir: string;
  let ts: TokenServer;
  let reg: Registry;
  const fetchers: ModuleFetcher[] = [];
  const make = async (): Promise<ModuleFetcher> => {
    const f = await createModuleFetcher({ cacheDir: `${dir}/cache-${fetchers.length}`, allowLoopback: true, insecureRegistries: [reg.host], dockerConfigFile: null });
    fetchers.push(f);
    return f;
  };
  before(async () => {
    dir = tempDir();
    ts = await startTokenServer(dir, { users: { alice: 'secret' }, anonymousPull: false });
    reg = await startRegistry(dir, { token: ts });
  });
  after(async () => {
    for (const f of fetchers) await f.close();
    await reg.stop();
    await ts.close();
    cleanup(dir);
  });

  it('pushes and pulls with tokens scoped to the repository', async () => {
    const w = wasmModule('bearer');
    const r = await pushModule({ wasm: w, ref: `${reg.host}/tok/p:v1`, insecure: true, credentials: { username: 'alice', password: 'secret' } });
    assert.ok(ts.requests.some((q) => q.scope === 'repository:tok/p:pull,push' && q.user === 'alice' && q.granted));
    const f = await make();
    await assert.rejects(f.fetch({ url: `oci://${reg.host}/tok/p:v1` }, ctx), isCode(FetchErrorCode.Unauthorized), 'anonymous token has no pull access');
    const secret = { name: 'tok', namespace: 'default', dockerConfigJson: dockerConfigJson(reg.host, 'alice', 'secret') };
    const m = await f.fetch({ url: `oci://${reg.host}/tok/p:v1`, sha256: r.sha256, imagePullSecret: 'tok' }, { ...ctx, secrets: [secret] });
    assertBytes(m.bytes, w);
    assert.ok(ts.requests.some((q) => q.scope === 'repository:tok/p:pull' && q.user === 'alice'));
    const bad = { name: 'tok', namespace: 'default', dockerConfigJson: dockerConfigJson(reg.host, 'alice', 'wrong') };
    await assert.rejects((await make()).fetch({ url: `oci://${reg.host}/tok/p:v1`, imagePullSecret: 'tok' }, { ...ctx, secrets: [bad] }), (e: unknown) => isCode(FetchErrorCode.Unauthorized)(e) && (e as FetchError).step === 'auth');
  });

  it('refuses bearer realms that point at metadata, private addresses or non-http schemes', async () => {
    let realm = '';
    const fake = await startHttpServer((_req, res) => res.writeHead(401, { 'www-authenticate': `Bearer realm="${realm}",service="x"` }).end());
    const host = `127.0.0.1:${fake.port}`;
    const f = await createModuleFetcher({ cacheDir: `${dir}/realm`, allowLoopback: true, insecureRegistries: [host], dockerConfigFile: null });
    try {
      for (realm of ['http://169.254.169.254/computeMetadata/v1/token', 'http://metadata.google.internal/token', 'http://10.1.2.3/token', 'file:///var/run/secrets/token']) {
        await assert.rejects(f.fetch({ url: `oci://${host}/x/y:v1` }, ctx), isCode(FetchErrorCode.BlockedRealm), realm);
      }
    } finally {
      await f.close();
      await fake.close();
    }
  });
});

describe('oci:// over TLS', { skip: registryTlsSkip }, () => {
  let dir: string;
  let reg: Registry;
  before(async () => {
    dir = tempDir();
    reg = await startRegistry(dir, { tls: true });
  });
  after(async () => {
    await reg.stop();
    cleanup(dir);
  });

  it('verifies certificates unless the host is an insecure registry', async () => {
    const w = wasmModule('tls');
    await pushModule({ wasm: w, ref: `${reg.host}/tls/p:v1`, insecure: true });
    const strict = await createModuleFetcher({ cacheDir: `${dir}/a`, allowLoopback: true, dockerConfigFile: null });
    const loose = await createModuleFetcher({ cacheDir: `${dir}/b`, allowLoopback: true, insecureRegistries: [reg.host], dockerConfigFile: null });
    try {
      await assert.rejects(strict.fetch({ url: `oci://${reg.host}/tls/p:v1` }, ctx), /self-signed|certificate/i);
      assertBytes((await loose.fetch({ url: `oci://${reg.host}/tls/p:v1` }, ctx)).bytes, w);
      assert.ok(loose.cache.entries()[0]);
    } finally {
      await strict.close();
      await loose.close();
    }
  });
});
