/**
 * Pure-function tests: URL/reference parsing, pull-policy decision, SSRF address and realm rules,
 * docker config credentials, unboxing, layout build/extract, and the deny fallback filter.
 */
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { describe, it } from 'node:test';
import { packTar } from 'modern-tar';
import { HeaderMap } from '../../src/filters/header-map.ts';
import { HeadersStatus, NetworkFilterStatus } from '../../src/filters/types.ts';
import type { HttpFilterCallbacks, NetworkFilterCallbacks } from '../../src/filters/types.ts';
import { credentialsFor, parseDockerConfig } from '../../src/fetch/credentials.ts';
import {
  DENY_BODY,
  DENY_DETAILS,
  createDenyAllHttpFilterFactory,
  createDenyAllNetworkFilterFactory,
  deniesOnFetchFailure,
} from '../../src/fetch/deny.ts';
import { FetchError, FetchErrorCode } from '../../src/fetch/errors.ts';
import { ignoresResourceVersion } from '../../src/fetch/fetcher.ts';
import { buildImage, extractModule, MediaType } from '../../src/fetch/layouts.ts';
import type { Descriptor } from '../../src/fetch/layouts.ts';
import { parseChallenge } from '../../src/fetch/oci.ts';
import { isInsecureHost, parseModuleUrl } from '../../src/fetch/reference.ts';
import { SsrfGuard } from '../../src/fetch/ssrf.ts';
import { isWasm, unbox } from '../../src/fetch/wasm-bytes.ts';
import { assertBytes, wasmModule } from './helpers.ts';

describe('module URL parsing', () => {
  it('treats a URL without scheme as oci:// and strips tag/digest for the module name', () => {
    const p = parseModuleUrl('ghcr.io/acme/filters/auth:1.2');
    assert.equal(p.scheme, 'oci');
    assert.equal(p.url, 'oci://ghcr.io/acme/filters/auth:1.2');
    assert.equal(p.moduleName, 'oci://ghcr.io/acme/filters/auth');
    assert.equal(p.oci?.tag, '1.2');
  });
  it('parses host:port, digests, and defaults the tag to latest', () => {
    const d = 'a'.repeat(64);
    const p = parseModuleUrl(`oci://127.0.0.1:5000/x/y@sha256:${d}`);
    assert.equal(p.oci?.registry, '127.0.0.1:5000');
    assert.equal(p.oci?.repository, 'x/y');
    assert.equal(p.urlDigest, d);
    assert.equal(p.moduleName, 'oci://127.0.0.1:5000/x/y');
    assert.equal(parseModuleUrl('oci://r.io/x').oci?.tag, 'latest');
  });
  it('maps Docker Hub short names', () => {
    const p = parseModuleUrl('istio/wasm:1');
    assert.equal(p.oci?.registry, 'index.docker.io');
    assert.equal(p.oci?.apiHost, 'registry-1.docker.io');
    assert.equal(parseModuleUrl('busybox').oci?.repository, 'library/busybox');
  });
  it('keeps the full URL as the module name for http(s), and the path for file://', () => {
    assert.equal(parseModuleUrl('https://x.io/a.wasm?v=1').moduleName, 'https://x.io/a.wasm?v=1');
    assert.equal(parseModuleUrl('file:///opt/f.wasm').path, '/opt/f.wasm');
  });
  it('rejects bad schemes, bad tags and malformed sha256 digests with a stable code', () => {
    for (const bad of ['ftp://x/y.wasm', 'oci://r.io/UPPER', 'oci://r.io/x:bad tag', `oci://r.io/x@sha256:${'A'.repeat(64)}`, '']) {
      assert.throws(() => parseModuleUrl(bad), (e: unknown) => FetchError.isFetchError(e) && e.code === FetchErrorCode.InvalidUrl, bad);
    }
  });
  it('matches insecure registries by host:port, bare host, or *', () => {
    assert.ok(isInsecureHost(['reg:5000'], 'reg:5000'));
    assert.ok(isInsecureHost(['reg'], 'reg:5000'));
    assert.ok(isInsecureHost(['*'], 'anything:1'));
    assert.ok(!isInsecureHost(['reg:5001'], 'reg:5000'));
    assert.ok(!isInsecureHost([], 'reg'));
  });
});

describe('pull policy (Istio shouldIgnoreResourceVersion)', () => {
  const p = (u: string) => parseModuleUrl(u);
  it('IfNotPresent ignores resource changes; Always does not', () => {
    assert.equal(ignoresResourceVersion('IfNotPresent', p('oci://r/x:latest'), 'oci://r/x:latest'), true);
    assert.equal(ignoresResourceVersion('Always', p('oci://r/x:1'), 'oci://r/x:1'), false);
    assert.equal(ignoresResourceVersion('Always', p('http://h/x.wasm'), 'http://h/x.wasm'), false);
  });
  it('unset means Always only for OCI URLs written with :latest', () => {
    assert.equal(ignoresResourceVersion(undefined, p('oci://r/x:latest'), 'oci://r/x:latest'), false);
    assert.equal(ignoresResourceVersion('UNSPECIFIED_POLICY', p('r.io/x:latest'), 'r.io/x:latest'), false);
    assert.equal(ignoresResourceVersion(undefined, p('oci://r/x'), 'oci://r/x'), true, 'implicit latest is not :latest');
    assert.equal(ignoresResourceVersion(undefined, p('oci://r/x:1'), 'oci://r/x:1'), true);
    assert.equal(ignoresResourceVersion(undefined, p('http://h/x:latest'), 'http://h/x:latest'), true, 'no latest rule for HTTP');
  });
});

describe('SSRF guard', () => {
  it('always refuses link-local and cloud metadata addresses, whatever the spelling', () => {
    const g = new SsrfGuard({ allowLoopback: true });
    for (const ip of ['169.254.169.254', '169.254.170.2', 'fe80::1', '::ffff:169.254.169.254', '::ffff:a9fe:a9fe', 'fd00:ec2::254', '100.100.100.200', '192.0.0.192', '64:ff9b::a9fe:a9fe']) {
      assert.ok(g.checkAddress(ip), ip);
    }
    assert.ok(g.checkHostname('metadata.google.internal'));
    assert.equal(g.checkAddress('10.1.2.3'), undefined, 'private registries are legitimate dial targets');
    assert.equal(g.checkAddress('127.0.0.1'), undefined);
  });
  it('refuses loopback and unspecified unless the operator allows loopback', () => {
    const g = new SsrfGuard();
    for (const ip of ['127.0.0.1', '127.9.9.9', '::1', '::ffff:127.0.0.1', '0.0.0.0', '::']) assert.ok(g.checkAddress(ip), ip);
    assert.ok(g.checkHostname('localhost'));
  });
  it('adds operator CIDRs (IPv4, IPv6, single addresses)', () => {
    const g = new SsrfGuard({ blockedCidrs: ['10.0.0.0/8', '2001:db8::/32', '203.0.113.7'] });
    assert.match(g.checkAddress('10.20.30.40') ?? '', /blocked CIDR 10\.0\.0\.0\/8/);
    assert.ok(g.checkAddress('2001:db8::5'));
    assert.ok(g.checkAddress('203.0.113.7'));
    assert.equal(g.checkAddress('203.0.113.8'), undefined);
    assert.throws(() => new SsrfGuard({ blockedCidrs: ['10.0.0.0/33'] }));
  });
  it('restricts bearer realms: http(s) only, no metadata/localhost names, no private/link-local/loopback literals', () => {
    const strict = new SsrfGuard();
    const loose = new SsrfGuard({ allowLoopback: true });
    for (const r of ['file:///etc/passwd', 'gopher://x/', 'http://169.254.169.254/latest', 'http://metadata.google.internal/token', 'http://10.0.0.5/token', 'http://192.168.1.1/t', 'http://[fd00::1]/t', 'http://localhost:9/t', 'http://127.0.0.1/t', 'not a url']) {
      assert.ok(strict.checkRealm(r), r);
    }
    assert.equal(strict.checkRealm('https://auth.docker.io/token'), undefined);
    assert.equal(loose.checkRealm('http://127.0.0.1:8080/token'), undefined, 'loopback realm allowed with allowLoopback');
    assert.ok(loose.checkRealm('http://10.0.0.5/token'), 'private realm refused even with allowLoopback');
  });
});

describe('WWW-Authenticate parsing', () => {
  it('reads quoted and bare parameters', () => {
    const c = parseChallenge('Bearer realm="https://auth.io/token",service="registry.io",scope="repository:a/b:pull,push"');
    assert.equal(c?.scheme, 'bearer');
    assert.equal(c?.params.realm, 'https://auth.io/token');
    assert.equal(c?.params.scope, 'repository:a/b:pull,push');
    assert.equal(parseChallenge('Basic realm=reg')?.params.realm, 'reg');
    assert.equal(parseChallenge(undefined), undefined);
  });
});

describe('docker config credentials', () => {
  it('decodes auth, username/password and identity tokens; maps Docker Hub keys', () => {
    const auths = parseDockerConfig(JSON.stringify({
      auths: {
        'https://index.docker.io/v1/': { auth: Buffer.from('hub:pw').toString('base64') },
        'reg.io:5000': { username: 'u', password: 'p:with:colons' },
        'tok.io': { identitytoken: 'refresh' },
        'anon.io': {},
      },
    }), 'secret', 'x');
    assert.deepEqual(credentialsFor(auths, 'index.docker.io'), { username: 'hub', password: 'pw' });
    assert.deepEqual(credentialsFor(auths, 'reg.io:5000'), { username: 'u', password: 'p:with:colons' });
    assert.equal(credentialsFor(auths, 'tok.io')?.identityToken, 'refresh');
    assert.equal(credentialsFor(auths, 'anon.io'), undefined, 'an empty entry means anonymous');
    assert.equal(credentialsFor(auths, 'other.io'), undefined);
  });
  it('fails on malformed secrets instead of pulling anonymously', () => {
    assert.throws(() => parseDockerConfig('{not json', 's', 'x'), (e: unknown) => FetchError.isFetchError(e) && e.code === FetchErrorCode.InvalidPullSecret);
    assert.throws(() => parseDockerConfig(JSON.stringify({ auths: { r: { auth: Buffer.from('nocolon').toString('base64') } } }), 's', 'x'));
  });
});

describe('unboxing (Istio unboxIfPossible)', () => {
  const w = wasmModule('unbox');
  it('passes Wasm through and unwraps gzip, tar, tar.gz and nested layers', async () => {
    const tar = await packTar([{ header: { name: 'dir/', type: 'directory', size: 0 } }, { header: { name: 'dir/any-name.wasm', size: w.length }, body: w }]);
    assertBytes(await unbox(w, 1 << 20, 'u'), w);
    assertBytes(await unbox(gzipSync(w), 1 << 20, 'u'), w);
    assertBytes(await unbox(tar, 1 << 20, 'u'), w);
    assertBytes(await unbox(gzipSync(tar), 1 << 20, 'u'), w);
    assertBytes(await unbox(gzipSync(gzipSync(tar)), 1 << 20, 'u'), w);
  });
  it('returns non-archives unchanged (the validity check reports them) and caps decompression', async () => {
    const junk = new TextEncoder().encode('<html>not found</html>');
    assert.ok(!isWasm(await unbox(junk, 1 << 20, 'u')));
    const bomb = gzipSync(new Uint8Array(4 << 20));
    await assert.rejects(unbox(bomb, 1 << 20, 'u'), (e: unknown) => FetchError.isFetchError(e) && e.code === FetchErrorCode.TooLarge);
  });
});

describe('image layouts', () => {
  const w = wasmModule('layout');
  for (const layout of ['oci', 'docker', 'artifact'] as const) {
    it(`builds and extracts the ${layout} layout; builds are deterministic`, async () => {
      const img = await buildImage(w, layout);
      const again = await buildImage(w, layout);
      assert.equal(img.digest, again.digest);
      const blobs = new Map(img.blobs.map((b) => [b.digest, b.bytes]));
      const manifest = JSON.parse(new TextDecoder().decode(img.manifest));
      const got = await extractModule(manifest, img.mediaType, async (d: Descriptor) => blobs.get(d.digest)!, 1 << 20, 'u');
      assertBytes(got, w);
      if (layout === 'artifact') assert.equal(manifest.layers.length, 2);
      if (layout === 'docker') assert.equal(img.mediaType, MediaType.DockerManifest);
    });
  }
  it('uses only the last layer of a multi-layer compat image, and rejects other shapes', async () => {
    const img = await buildImage(w, 'oci');
    const m = JSON.parse(new TextDecoder().decode(img.manifest));
    const blobs = new Map(img.blobs.map((b) => [b.digest, b.bytes]));
    const junkLayer: Descriptor = { mediaType: MediaType.OciLayerTarGzip, digest: 'sha256:junk', size: 1 };
    const multi = { ...m, layers: [junkLayer, ...m.layers] };
    assertBytes(await extractModule(multi, MediaType.OciManifest, async (d) => blobs.get(d.digest)!, 1 << 20, 'u'), w);
    const three = { ...m, layers: [{ ...junkLayer, mediaType: 'application/x-other' }, { ...junkLayer, mediaType: 'application/x-other' }, { ...junkLayer, mediaType: MediaType.WasmContentLayer }] };
    await assert.rejects(extractModule(three, MediaType.OciManifest, async () => w, 1 << 20, 'u'), /number of layers must be 2 but got 3/);
    const dockerWithOciLayer = { ...m, mediaType: MediaType.DockerManifest };
    await assert.rejects(extractModule(dockerWithOciLayer, MediaType.DockerManifest, async (d) => blobs.get(d.digest)!, 1 << 20, 'u'), (e: unknown) => FetchError.isFetchError(e) && e.code === FetchErrorCode.InvalidImage);
    await assert.rejects(extractModule(m, 'application/vnd.docker.distribution.manifest.v1+json', async () => w, 1 << 20, 'u'), /invalid format as an OCI image/);
  });
  it('requires plugin.wasm by basename in the compat layer', async () => {
    const tar = await packTar([{ header: { name: 'other.wasm', size: w.length }, body: w }]);
    const gz = gzipSync(tar);
    const m = { schemaVersion: 2, mediaType: MediaType.OciManifest, layers: [{ mediaType: MediaType.OciLayerTarGzip, digest: 'sha256:x', size: gz.length }] };
    await assert.rejects(extractModule(m, MediaType.OciManifest, async () => gz, 1 << 20, 'u'), /plugin\.wasm not found/);
  });
});

describe('deny fallback filter (fetch failure with FAIL_CLOSE / FAIL_RELOAD)', () => {
  it('answers every request with 403 RBAC: access denied and rbac details', () => {
    const replies: { status: number; body: string; details?: string }[] = [];
    const cb = { sendLocalReply: (status: number, body: string | Buffer, o?: { details?: string }) => replies.push({ status, body: String(body), details: o?.details }) } as unknown as HttpFilterCallbacks;
    const f = createDenyAllHttpFilterFactory('extensions.istio.io/trafficextension/ns.x').create(cb)!;
    assert.equal(f.decodeHeaders!(new HeaderMap(), true), HeadersStatus.StopIteration);
    assert.deepEqual(replies, [{ status: 403, body: DENY_BODY, details: DENY_DETAILS }]);
    assert.equal(DENY_BODY, 'RBAC: access denied');
    assert.equal(DENY_DETAILS, 'rbac_access_denied_matched_policy[none]');
  });
  it('closes TCP connections on their first data', () => {
    let closed = '';
    const cb = { close: (_f?: boolean, d?: string) => (closed = d ?? 'closed') } as unknown as NetworkFilterCallbacks;
    const f = createDenyAllNetworkFilterFactory('n').create(cb)!;
    assert.equal(f.onDownstreamData!({} as never, false), NetworkFilterStatus.StopIteration);
    assert.equal(closed, DENY_DETAILS);
  });
  it('denies for FAIL_CLOSE, FAIL_RELOAD and unset; not for FAIL_OPEN', () => {
    assert.equal(deniesOnFetchFailure('FAIL_CLOSE'), true);
    assert.equal(deniesOnFetchFailure('FAIL_RELOAD'), true);
    assert.equal(deniesOnFetchFailure(undefined), true);
    assert.equal(deniesOnFetchFailure('FAIL_OPEN'), false);
  });
});

describe('options from bootstrap and Istio env knobs', async () => {
  const { parseGoDuration, fetcherOptionsFrom } = await import('../../src/fetch/options.ts');
  it('parses Go durations', () => {
    assert.equal(parseGoDuration('24h'), 86_400_000);
    assert.equal(parseGoDuration('1h30m'), 5_400_000);
    assert.equal(parseGoDuration('15s'), 15_000);
    assert.equal(parseGoDuration('500ms'), 500);
    assert.equal(parseGoDuration('250'), 250);
    assert.equal(parseGoDuration('soon'), undefined);
    assert.equal(parseGoDuration('5x'), undefined);
  });
  it('maps WASM_* / ISTIO_WASM_* / BLOCKED_CIDRS_IN_WASM_FETCH and merges insecure registries', () => {
    const o = fetcherOptionsFrom({ cacheDir: '/var/cache/meshext', insecureRegistries: ['reg:5000'], allowLoopbackFetch: false }, {
      WASM_INSECURE_REGISTRIES: 'a.io, b.io',
      WASM_MODULE_EXPIRY: '2h',
      WASM_PURGE_INTERVAL: '10m',
      WASM_HTTP_REQUEST_TIMEOUT: '3s',
      WASM_HTTP_REQUEST_MAX_RETRIES: '2',
      ISTIO_WASM_MAX_BINARY_SIZE_BYTES: '1048576',
      BLOCKED_CIDRS_IN_WASM_FETCH: '10.0.0.0/8,192.168.0.0/16',
    });
    assert.deepEqual(o.insecureRegistries, ['a.io', 'b.io', 'reg:5000']);
    assert.equal(o.moduleExpiryMs, 7_200_000);
    assert.equal(o.purgeIntervalMs, 600_000);
    assert.equal(o.httpTimeoutMs, 3000);
    assert.equal(o.httpMaxRetries, 2);
    assert.equal(o.maxSizeBytes, 1048576);
    assert.deepEqual(o.blockedCidrs, ['10.0.0.0/8', '192.168.0.0/16']);
    assert.equal(o.allowLoopback, false);
    assert.equal(o.cacheDir, '/var/cache/meshext');
  });
});

describe('meshext push argument handling', async () => {
  const { pushCommand } = await import('../../src/cli/push.ts');
  const run = async (args: string[]) => {
    let out = '';
    let err = '';
    const code = await pushCommand(args, { stdout: (s) => (out += s), stderr: (s) => (err += s), stdin: async () => 'pw\n' });
    return { code, out, err };
  };
  it('prints help, and rejects bad usage with exit code 2', async () => {
    const h = await run(['--help']);
    assert.equal(h.code, 0);
    assert.match(h.out, /--layout oci\|docker\|artifact/);
    assert.equal((await run(['only-one-arg'])).code, 2);
    const bad = await run(['f.wasm', 'oci://r/x:1', '--layout', 'zip']);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--layout must be one of oci, docker, artifact/);
  });
  it('fails (exit 1) on a non-OCI reference, a missing file, or a username without password', async () => {
    assert.match((await run(['f.wasm', 'https://x/y.wasm'])).err, /not an oci:\/\/ reference/);
    assert.match((await run(['/nonexistent/f.wasm', 'oci://127.0.0.1:1/x:1'])).err, /ENOENT|no such file/);
    const r = await run(['f.wasm', 'oci://127.0.0.1:1/x:1', '--username', 'u']);
    assert.equal(r.code, 1);
    assert.match(r.err, /go together/);
  });
});
