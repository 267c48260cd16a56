/** TrafficExtension / WasmPlugin / Secret loading and the three validation layers (§1.7). */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { ConfigIssue } from '../../src/errors.ts';
import { formatAnalyzeLine, loadExtensionObjects, loadExtensions, loadExtensionSources } from '../../src/config/extensions.ts';
import { apiserverProblems, celUrlSchemeOk, normalizePullSecret, webhookProblems } from '../../src/config/extension-validate.ts';
import { LUA, names } from './helpers.ts';

const API = 'extensions.istio.io/v1alpha1';
const fixtures = new URL('./fixtures/', import.meta.url);
const SHA = '1ef0c9a92b0420cf25f7fe5d481b231464bc88f486ca3b9c83ed5cc21d2f6210';

function load(spec: unknown, opts: { kind?: string; metadata?: Record<string, unknown> } = {}) {
  return loadExtensionObjects([{ apiVersion: API, kind: opts.kind ?? 'TrafficExtension', metadata: { name: 'x', namespace: 'ns', ...opts.metadata }, spec }]);
}
const errors = (issues: ConfigIssue[]) => issues.filter((i) => i.level === 'error');
const warnings = (issues: ConfigIssue[]) => issues.filter((i) => i.level === 'warning');

function assertValid(spec: unknown, kind?: string): void {
  const r = load(spec, kind ? { kind } : {});
  assert.deepEqual(errors(r.issues).map((i) => `${i.path}: ${i.message}`), []);
  assert.equal(r.set.extensions.length, 1);
}

function assertRejected(spec: unknown, path: string, message: string | RegExp, opts: { kind?: string; metadata?: Record<string, unknown>; resource?: string } = {}): void {
  const r = load(spec, opts);
  assert.equal(r.set.extensions.length, 0, 'the resource must be excluded');
  const errs = errors(r.issues);
  const hit = errs.find((i) => i.path === path && (typeof message === 'string' ? i.message === message : message.test(i.message)));
  assert.ok(hit, `expected an error at ${path} matching ${String(message)}; got:\n${errs.map((i) => `  ${i.path}: ${i.message}`).join('\n')}`);
  assert.equal(hit.analyzerCode, 'IST0106');
  assert.equal(hit.resource, opts.resource ?? `${opts.kind ?? 'TrafficExtension'} x.ns`);
}

const wasm = (extra: Record<string, unknown> = {}) => ({ wasm: { url: 'oci://ghcr.io/x/y:1.0', ...extra } });

describe('spec examples load cleanly (§7)', () => {
  for (const f of readdirSync(fixtures).filter((n) => n.endsWith('.yaml')).sort()) {
    it(f, () => {
      const r = loadExtensions([new URL(f, fixtures).pathname]);
      const bad = errors(r.issues);
      assert.deepEqual(bad.map((i) => formatAnalyzeLine(i)), []);
      assert.ok(r.set.extensions.length >= 1);
    });
  }

  it('the ambient parity variants (§7.2) are valid', () => {
    const spec = (targeting: Record<string, unknown>) => ({ ...targeting, phase: 'STATS', lua: LUA });
    assertValid(spec({ targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'bookinfo-gateway' }] }));
    assertValid(spec({ targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'waypoint' }] }));
    assertValid(spec({ targetRefs: [{ kind: 'Service', group: '', name: 'reviews' }], match: [{ mode: 'SERVER' }] }));
  });

  it('the message-doc fragments (§7.1h): lua is valid, the placeholder sha256 is not', () => {
    assertValid({ lua: { inlineCode: 'function envoy_on_request(request_handle)\n  request_handle:headers():add("x-custom-header", "custom-value")\nend\n' } });
    const w = { url: 'oci://gcr.io/myproject/filter:v1.0.0', sha256: 'abc123...', imagePullPolicy: 'IfNotPresent', imagePullSecret: 'gcr-secret', pluginName: 'my-filter', pluginConfig: { key1: 'value1', key2: 'value2' }, failStrategy: 'FAIL_CLOSE', vmConfig: { env: [{ name: 'SOME_ENV_VAR', value: 'some_value' }] }, type: 'HTTP' };
    assertRejected({ wasm: w }, 'spec.wasm.sha256', `Invalid value: "abc123...": spec.wasm.sha256 in body should match '(^$|^[a-f0-9]{64}$)'`);
    assertValid({ wasm: { ...w, sha256: SHA } });
  });

  it('parity example: resolved values and origin', () => {
    const r = loadExtensions([new URL('parity.yaml', fixtures).pathname]);
    const [p] = r.set.extensions;
    assert.equal(p!.metadata.namespace, 'istio-system');
    assert.equal(p!.origin.line, 3);
    assert.equal(p!.origin.kind, 'TrafficExtension');
    assert.deepEqual(p!.resolved, { resourceName: 'extensions.istio.io/trafficextension/istio-system.parity', engine: 'lua', chain: 'HTTP', phase: 'AUTHN', priority: -2147483648 });
  });
});

describe('layer 1: CRD schema', () => {
  const rules: { name: string; valid: unknown; invalid: unknown; path: string; message: string | RegExp; kind?: string }[] = [
    { name: 'spec is required', valid: { lua: LUA }, invalid: undefined, path: 'spec', message: 'Required value' },
    { name: 'unknown fields are rejected (kubectl strict)', valid: { lua: LUA }, invalid: { lua: LUA, phases: 'AUTHN' }, path: 'spec.phases', message: 'unknown field "spec.phases"' },
    { name: 'phase enum', valid: { lua: LUA, phase: 'STATS' }, invalid: { lua: LUA, phase: 'AUTHX' }, path: 'spec.phase', message: 'Unsupported value: "AUTHX": supported values: "UNSPECIFIED", "AUTHN", "AUTHZ", "STATS"' },
    { name: 'WasmPlugin phase names its zero value UNSPECIFIED_PHASE', kind: 'WasmPlugin', valid: { url: 'oci://r/x:1', phase: 'UNSPECIFIED_PHASE' }, invalid: { url: 'oci://r/x:1', phase: 'UNSPECIFIED' }, path: 'spec.phase', message: /^Unsupported value: "UNSPECIFIED"/ },
    { name: 'priority is an integer', valid: { lua: LUA, priority: -7 }, invalid: { lua: LUA, priority: '10' }, path: 'spec.priority', message: 'Invalid value: "string": spec.priority in body must be of type integer: "string"' },
    { name: 'priority is an int32', valid: { lua: LUA, priority: 2147483647 }, invalid: { lua: LUA, priority: 2147483648 }, path: 'spec.priority', message: /should be less than or equal to 2147483647/ },
    { name: 'match mode enum', valid: { lua: LUA, match: [{ mode: 'CLIENT_AND_SERVER' }] }, invalid: { lua: LUA, match: [{ mode: 'BOTH' }] }, path: 'spec.match[0].mode', message: 'Unsupported value: "BOTH": supported values: "UNDEFINED", "CLIENT", "SERVER", "CLIENT_AND_SERVER"' },
    { name: 'port number >= 1', valid: { lua: LUA, match: [{ ports: [{ number: 1 }] }] }, invalid: { lua: LUA, match: [{ ports: [{ number: 0 }] }] }, path: 'spec.match[0].ports[0].number', message: 'Invalid value: 0: spec.match[0].ports[0].number in body should be greater than or equal to 1' },
    { name: 'port number <= 65535', valid: { lua: LUA, match: [{ ports: [{ number: 65535 }] }] }, invalid: { lua: LUA, match: [{ ports: [{ number: 65536 }] }] }, path: 'spec.match[0].ports[0].number', message: 'Invalid value: 65536: spec.match[0].ports[0].number in body should be less than or equal to 65535' },
    { name: 'port number is required', valid: { lua: LUA, match: [{ ports: [{ number: 80 }] }] }, invalid: { lua: LUA, match: [{ ports: [{}] }] }, path: 'spec.match[0].ports[0].number', message: 'Required value' },
    { name: 'ports are a list-map keyed by number', valid: { lua: LUA, match: [{ ports: [{ number: 80 }, { number: 81 }] }] }, invalid: { lua: LUA, match: [{ ports: [{ number: 80 }, { number: 80 }] }] }, path: 'spec.match[0].ports[1]', message: 'Duplicate value: {"number":80}' },
    { name: 'wasm.url is required', valid: wasm(), invalid: { wasm: { sha256: SHA } }, path: 'spec.wasm.url', message: 'Required value' },
    { name: 'wasm.url minLength 1', valid: wasm(), invalid: { wasm: { url: '' } }, path: 'spec.wasm.url', message: 'Invalid value: "": spec.wasm.url in body should be at least 1 chars long' },
    { name: 'WasmPlugin url is required', kind: 'WasmPlugin', valid: { url: 'oci://r/x:1' }, invalid: { phase: 'AUTHN' }, path: 'spec.url', message: 'Required value' },
    { name: 'sha256 is 64 lower-case hex', valid: wasm({ sha256: SHA }), invalid: wasm({ sha256: SHA.toUpperCase() }), path: 'spec.wasm.sha256', message: /should match '\(\^\$\|\^\[a-f0-9\]\{64\}\$\)'$/ },
    { name: 'sha256 may be empty', valid: wasm({ sha256: '' }), invalid: wasm({ sha256: 'abc' }), path: 'spec.wasm.sha256', message: /should match/ },
    { name: 'imagePullPolicy enum', valid: wasm({ imagePullPolicy: 'Always' }), invalid: wasm({ imagePullPolicy: 'Never' }), path: 'spec.wasm.imagePullPolicy', message: 'Unsupported value: "Never": supported values: "UNSPECIFIED_POLICY", "IfNotPresent", "Always"' },
    { name: 'imagePullSecret minLength 1', valid: wasm({ imagePullSecret: 's' }), invalid: wasm({ imagePullSecret: '' }), path: 'spec.wasm.imagePullSecret', message: /should be at least 1 chars long/ },
    { name: 'imagePullSecret maxLength 253', valid: wasm({ imagePullSecret: 's'.repeat(253) }), invalid: wasm({ imagePullSecret: 's'.repeat(254) }), path: 'spec.wasm.imagePullSecret', message: 'Too long: may not be more than 253 bytes' },
    { name: 'pluginName minLength 1', valid: wasm({ pluginName: 'p' }), invalid: wasm({ pluginName: '' }), path: 'spec.wasm.pluginName', message: /at least 1 chars long/ },
    { name: 'pluginName maxLength 256', valid: wasm({ pluginName: 'p'.repeat(256) }), invalid: wasm({ pluginName: 'p'.repeat(257) }), path: 'spec.wasm.pluginName', message: 'Too long: may not be more than 256 bytes' },
    { name: 'failStrategy enum (FAIL_RELOAD since 1.27)', valid: wasm({ failStrategy: 'FAIL_RELOAD' }), invalid: wasm({ failStrategy: 'FAIL_SAFE' }), path: 'spec.wasm.failStrategy', message: 'Unsupported value: "FAIL_SAFE": supported values: "FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"' },
    { name: 'type enum', valid: wasm({ type: 'NETWORK' }), invalid: wasm({ type: 'TCP' }), path: 'spec.wasm.type', message: 'Unsupported value: "TCP": supported values: "UNSPECIFIED_PLUGIN_TYPE", "HTTP", "NETWORK"' },
    { name: 'pluginConfig is an object', valid: wasm({ pluginConfig: { a: [1, { b: null }] } }), invalid: wasm({ pluginConfig: 'a=b' }), path: 'spec.wasm.pluginConfig', message: /must be of type object/ },
    { name: 'env maxItems 256', valid: wasm({ vmConfig: { env: Array.from({ length: 256 }, (_, i) => ({ name: `E${i}` })) } }), invalid: wasm({ vmConfig: { env: Array.from({ length: 257 }, (_, i) => ({ name: `E${i}` })) } }), path: 'spec.wasm.vmConfig.env', message: 'Too many: 257: must have at most 256 items' },
    { name: 'env name is required', valid: wasm({ vmConfig: { env: [{ name: 'A' }] } }), invalid: wasm({ vmConfig: { env: [{ value: 'v' }] } }), path: 'spec.wasm.vmConfig.env[0].name', message: 'Required value' },
    { name: 'env name maxLength 256', valid: wasm({ vmConfig: { env: [{ name: 'A'.repeat(256) }] } }), invalid: wasm({ vmConfig: { env: [{ name: 'A'.repeat(257) }] } }), path: 'spec.wasm.vmConfig.env[0].name', message: 'Too long: may not be more than 256 bytes' },
    { name: 'env value maxLength 2048', valid: wasm({ vmConfig: { env: [{ name: 'A', value: 'v'.repeat(2048) }] } }), invalid: wasm({ vmConfig: { env: [{ name: 'A', value: 'v'.repeat(2049) }] } }), path: 'spec.wasm.vmConfig.env[0].value', message: 'Too long: may not be more than 2048 bytes' },
    { name: 'env valueFrom enum', valid: wasm({ vmConfig: { env: [{ name: 'A', valueFrom: 'HOST' }] } }), invalid: wasm({ vmConfig: { env: [{ name: 'A', valueFrom: 'FILE' }] } }), path: 'spec.wasm.vmConfig.env[0].valueFrom', message: 'Unsupported value: "FILE": supported values: "INLINE", "HOST"' },
    { name: 'env is a list-map keyed by name', valid: wasm({ vmConfig: { env: [{ name: 'A' }, { name: 'B' }] } }), invalid: wasm({ vmConfig: { env: [{ name: 'A' }, { name: 'A' }] } }), path: 'spec.wasm.vmConfig.env[1]', message: 'Duplicate value: {"name":"A"}' },
    { name: 'lua.inlineCode is required', valid: { lua: LUA }, invalid: { lua: {} }, path: 'spec.lua.inlineCode', message: 'Required value' },
    { name: 'lua.inlineCode minLength 1', valid: { lua: { inlineCode: ' ' } }, invalid: { lua: { inlineCode: '' } }, path: 'spec.lua.inlineCode', message: /at least 1 chars long/ },
    { name: 'lua.inlineCode maxLength 65536', valid: { lua: { inlineCode: '-'.repeat(65536) } }, invalid: { lua: { inlineCode: '-'.repeat(65537) } }, path: 'spec.lua.inlineCode', message: 'Too long: may not be more than 65536 bytes' },
    { name: 'label values maxLength 63', valid: { lua: LUA, selector: { matchLabels: { app: 'v'.repeat(63) } } }, invalid: { lua: LUA, selector: { matchLabels: { app: 'v'.repeat(64) } } }, path: 'spec.selector.matchLabels.app', message: 'Too long: may not be more than 63 bytes' },
    { name: 'label values are strings', valid: { lua: LUA, selector: { matchLabels: { version: '1' } } }, invalid: { lua: LUA, selector: { matchLabels: { version: 1 } } }, path: 'spec.selector.matchLabels.version', message: /must be of type string/ },
    { name: 'matchLabels maxProperties 4096', valid: { lua: LUA, selector: { matchLabels: Object.fromEntries(Array.from({ length: 4096 }, (_, i) => [`k${i}`, 'v'])) } }, invalid: { lua: LUA, selector: { matchLabels: Object.fromEntries(Array.from({ length: 4097 }, (_, i) => [`k${i}`, 'v'])) } }, path: 'spec.selector.matchLabels', message: 'Too many: 4097: must have at most 4096 items' },
    { name: 'targetRefs maxItems 16', valid: { lua: LUA, targetRefs: Array.from({ length: 16 }, (_, i) => ({ kind: 'Service', name: `s${i}` })) }, invalid: { lua: LUA, targetRefs: Array.from({ length: 17 }, (_, i) => ({ kind: 'Service', name: `s${i}` })) }, path: 'spec.targetRefs', message: 'Too many: 17: must have at most 16 items' },
    { name: 'targetRef kind is required', valid: { lua: LUA, targetRefs: [{ kind: 'Service', name: 's' }] }, invalid: { lua: LUA, targetRefs: [{ name: 's' }] }, path: 'spec.targetRefs[0].kind', message: 'Required value' },
    { name: 'targetRef kind pattern', valid: { lua: LUA, targetRefs: [{ kind: 'Service', name: 's' }] }, invalid: { lua: LUA, targetRefs: [{ kind: '1Service', name: 's' }] }, path: 'spec.targetRefs[0].kind', message: /should match '\^\[a-zA-Z\]/ },
    { name: 'targetRef name is required', valid: { lua: LUA, targetRefs: [{ kind: 'Service', name: 's' }] }, invalid: { lua: LUA, targetRefs: [{ kind: 'Service' }] }, path: 'spec.targetRefs[0].name', message: 'Required value' },
    { name: 'targetRef name maxLength 253', valid: { lua: LUA, targetRefs: [{ kind: 'Service', name: 's'.repeat(253) }] }, invalid: { lua: LUA, targetRefs: [{ kind: 'Service', name: 's'.repeat(254) }] }, path: 'spec.targetRefs[0].name', message: 'Too long: may not be more than 253 bytes' },
    { name: 'targetRef group is a DNS subdomain or empty', valid: { lua: LUA, targetRefs: [{ group: '', kind: 'Service', name: 's' }] }, invalid: { lua: LUA, targetRefs: [{ group: 'Gateway.Networking', kind: 'Gateway', name: 's' }] }, path: 'spec.targetRefs[0].group', message: /in body should match/ },
  ];
  for (const r of rules) {
    it(r.name, () => {
      assertValid(r.valid, r.kind);
      assertRejected(r.invalid, r.path, r.message, r.kind ? { kind: r.kind } : {});
    });
  }

  it('metadata.name is required and must be a DNS-1123 subdomain', () => {
    assertRejected({ lua: LUA }, 'metadata.name', 'Required value: name or generateName is required', { metadata: { name: undefined }, resource: 'TrafficExtension .ns' });
    assertRejected({ lua: LUA }, 'metadata.name', /^Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain/, { metadata: { name: 'Bad_Name' }, resource: 'TrafficExtension Bad_Name.ns' });
  });

  it('metadata.namespace must be a DNS-1123 label', () => {
    assertRejected({ lua: LUA }, 'metadata.namespace', /^Invalid value: "my\.ns": a lowercase RFC 1123 label/, { metadata: { namespace: 'my.ns' }, resource: 'TrafficExtension x.my.ns' });
  });

  it('null fields are pruned as by the apiserver (priority: null means unset)', () => {
    const r = load({ lua: LUA, priority: null, phase: null });
    assert.deepEqual(errors(r.issues), []);
    assert.equal(r.set.extensions[0]!.spec.priority, undefined);
    assert.equal(r.set.extensions[0]!.resolved!.priority, -2147483648);
  });

  it('reports all schema problems of a resource at once', () => {
    const r = load({ phase: 'X', priority: 'y', lua: {} });
    assert.deepEqual(errors(r.issues).map((i) => i.path).sort(), ['spec.lua.inlineCode', 'spec.phase', 'spec.priority']);
  });
});

describe('layer 1: CEL rules', () => {
  const rules: { name: string; valid: unknown; invalid: unknown; path: string; message: string }[] = [
    { name: 'only one of targetRefs or selector', valid: { lua: LUA, selector: { matchLabels: { a: 'b' } } }, invalid: { lua: LUA, selector: { matchLabels: { a: 'b' } }, targetRefs: [{ kind: 'Service', name: 's' }] }, path: 'spec', message: 'Invalid value: "object": only one of targetRefs or selector can be set' },
    { name: 'only one of targetRefs or selector counts presence (empty list too)', valid: { lua: LUA, targetRefs: [] }, invalid: { lua: LUA, selector: { matchLabels: { a: 'b' } }, targetRefs: [] }, path: 'spec', message: 'Invalid value: "object": only one of targetRefs or selector can be set' },
    { name: 'exactly one of wasm or lua: both', valid: { lua: LUA }, invalid: { lua: LUA, wasm: { url: 'oci://r/x:1' } }, path: 'spec', message: 'Invalid value: "object": exactly one of wasm or lua must be set' },
    { name: 'exactly one of wasm or lua: neither', valid: wasm(), invalid: { phase: 'AUTHN' }, path: 'spec', message: 'Invalid value: "object": exactly one of wasm or lua must be set' },
    { name: 'no wildcard in label values', valid: { lua: LUA, selector: { matchLabels: { app: 'a' } } }, invalid: { lua: LUA, selector: { matchLabels: { app: 'a*' } } }, path: 'spec.selector.matchLabels.app', message: 'Invalid value: "string": wildcard not allowed in label value match' },
    { name: 'no wildcard in label keys', valid: { lua: LUA, selector: { matchLabels: { app: 'a' } } }, invalid: { lua: LUA, selector: { matchLabels: { 'ap*': 'a' } } }, path: 'spec.selector.matchLabels', message: 'Invalid value: "object": wildcard not allowed in label key match' },
    { name: 'no empty label keys', valid: { lua: LUA, selector: { matchLabels: { app: 'a' } } }, invalid: { lua: LUA, selector: { matchLabels: { '': 'a' } } }, path: 'spec.selector.matchLabels', message: 'Invalid value: "object": key must not be empty' },
    { name: 'no cross-namespace targetRefs', valid: { lua: LUA, targetRefs: [{ kind: 'Service', name: 's', namespace: '' }] }, invalid: { lua: LUA, targetRefs: [{ kind: 'Service', name: 's', namespace: 'other' }] }, path: 'spec.targetRefs[0].namespace', message: 'Invalid value: "string": cross namespace referencing is not currently supported' },
    { name: 'url scheme in [http, https, file, oci]', valid: wasm({ url: 'https://example.com/f.wasm' }), invalid: wasm({ url: 'ftp://example.com/f.wasm' }), path: 'spec.wasm.url', message: 'Invalid value: "string": url must have schema one of [http, https, file, oci]' },
    { name: 'env value only with INLINE', valid: wasm({ vmConfig: { env: [{ name: 'A', valueFrom: 'INLINE', value: 'x' }] } }), invalid: wasm({ vmConfig: { env: [{ name: 'A', valueFrom: 'HOST', value: 'x' }] } }), path: 'spec.wasm.vmConfig.env[0]', message: 'Invalid value: "object": value may only be set when valueFrom is INLINE' },
    { name: 'env value presence counts even when empty (CEL has())', valid: wasm({ vmConfig: { env: [{ name: 'A', valueFrom: 'HOST' }] } }), invalid: wasm({ vmConfig: { env: [{ name: 'A', valueFrom: 'HOST', value: '' }] } }), path: 'spec.wasm.vmConfig.env[0]', message: 'Invalid value: "object": value may only be set when valueFrom is INLINE' },
  ];
  for (const r of rules) {
    it(r.name, () => {
      assertValid(r.valid);
      assertRejected(r.invalid, r.path, r.message);
    });
  }

  it('WasmPlugin: only one of selector, targetRef, targetRefs', () => {
    assertValid({ url: 'oci://r/x:1', targetRef: { kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'gw' } }, 'WasmPlugin');
    assertRejected({ url: 'oci://r/x:1', selector: { matchLabels: { a: 'b' } }, targetRef: { kind: 'Service', name: 's' } }, 'spec', 'Invalid value: "object": only one of targetRefs or selector can be set', { kind: 'WasmPlugin' });
    assertRejected({ url: 'oci://r/x:1', targetRef: { kind: 'Service', name: 's', namespace: 'x' } }, 'spec.targetRef.namespace', 'Invalid value: "string": cross namespace referencing is not currently supported', { kind: 'WasmPlugin' });
  });

  const urls: [string, boolean][] = [
    ['oci://ghcr.io/istio-ecosystem/wasm-extensions/basic_auth:1.12.0', true],
    ['ghcr.io/istio-ecosystem/wasm-extensions/basic_auth:1.12.0', true], // no scheme: re-tested as http://
    ['file:///opt/filters/openid.wasm', true],
    ['https://private-bucket/filters/openid.wasm', true],
    ['http://10.0.0.1:8080/x.wasm', true],
    ['/opt/plugin.wasm', true], // an absolute path parses with an empty scheme
    ['oci://registry/x@sha256:' + SHA, true],
    ['private-registry:5000/openid-connect/openid:latest', false], // Go sees scheme "private-registry"
    ['ftp://x/y', false],
    ['s3://bucket/x.wasm', false],
    ['HTTPS://EXAMPLE.COM/X.WASM', true], // schemes are case-insensitive
  ];
  for (const [url, ok] of urls) {
    it(`url CEL rule: ${url} → ${ok ? 'accepted' : 'rejected'}`, () => assert.equal(celUrlSchemeOk(url), ok));
  }
});

describe('layer 2: istiod webhook', () => {
  const spec = (s: Record<string, unknown>) => s;
  const msgs = (s: Record<string, unknown>, kind: 'TrafficExtension' | 'WasmPlugin' = 'TrafficExtension') => webhookProblems(s, kind).map((p) => `${p.level} ${p.segs.join('.')}: ${p.message}`);

  it('empty selector: a warning, the resource still loads', () => {
    const r = load({ lua: LUA, selector: {} });
    assert.equal(r.set.extensions.length, 1);
    assert.deepEqual(warnings(r.issues).map((i) => [i.path, i.message, i.analyzerCode]), [['spec.selector', 'workload selector specified without labels', 'IST0106']]);
    // A selector with labels: no warning.
    assert.deepEqual(warnings(load({ lua: LUA, selector: { matchLabels: { a: 'b' } } }).issues), []);
  });

  it('targetRef group/kind must be one of the four allowed pairs', () => {
    assertValid({ lua: LUA, targetRefs: [{ kind: 'Service', group: '', name: 's' }, { kind: 'Service', group: 'core', name: 't' }, { kind: 'ServiceEntry', group: 'networking.istio.io', name: 'e' }, { kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'g' }, { kind: 'GatewayClass', group: 'gateway.networking.k8s.io', name: 'istio-waypoint' }] });
    assertRejected({ lua: LUA, targetRefs: [{ kind: 'Deployment', group: 'apps', name: 'd' }] }, 'spec.targetRefs[0]',
      'targetRef must be to one of [core/v1/Service networking.istio.io/v1/ServiceEntry gateway.networking.k8s.io/v1/Gateway gateway.networking.k8s.io/v1/GatewayClass] but was apps/Deployment');
    assertRejected({ lua: LUA, targetRefs: [{ kind: 'Gateway', name: 'g' }] }, 'spec.targetRefs[0]', /but was \/Gateway$/);
  });

  it('WasmPlugin singular targetRef is checked too', () => {
    assertRejected({ url: 'oci://r/x:1', targetRef: { kind: 'Pod', name: 'p' } }, 'spec.targetRef', /^targetRef must be to one of .* but was \/Pod$/, { kind: 'WasmPlugin' });
  });

  it('lua: byte length over 64 KiB is rejected even when the CRD (characters) accepts it', () => {
    const code = 'é'.repeat(40000); // 40000 chars, 80000 bytes
    assertRejected({ lua: { inlineCode: code } }, 'spec.lua.inlineCode', 'lua inlineCode must be at most 65536 bytes, got 80000');
  });

  it('imagePullSecret and pluginName limits are in bytes', () => {
    assertRejected(wasm({ imagePullSecret: 'é'.repeat(200) }), 'spec.wasm.imagePullSecret', 'imagePullSecret field must be less than 253 characters long');
    assertRejected(wasm({ pluginName: 'é'.repeat(200) }), 'spec.wasm.pluginName', 'pluginName field must be less than 255 characters long');
  });

  it('rules shadowed by the CRD keep istiod\'s own messages', () => {
    assert.deepEqual(msgs(spec({ selector: { matchLabels: { a: 'b' } }, targetRefs: [{ kind: 'Service', name: 's' }], lua: LUA })), ['error spec: only one of targetRefs or workloadSelector can be set']);
    assert.deepEqual(msgs(spec({ lua: LUA, wasm: { url: 'oci://r/x' } })), ['error spec: exactly one of wasm or lua must be set']);
    assert.deepEqual(msgs(spec({})), ['error spec: exactly one of wasm or lua must be set']);
    assert.deepEqual(msgs(spec({ lua: { inlineCode: '' } })), ['error spec.lua.inlineCode: lua inlineCode must be set']);
    assert.deepEqual(msgs(spec({ lua: LUA, selector: { matchLabels: { '': 'v' } } })), ['error spec.selector.matchLabels: empty key is not supported in selector: "=v"']);
    assert.deepEqual(msgs(spec({ lua: LUA, selector: { matchLabels: { a: 'b*' } } })), ['error spec.selector.matchLabels.a: wildcard is not supported in selector: "a=b*"']);
    assert.deepEqual(msgs(spec({ lua: LUA, targetRefs: [{ kind: 'Service' }] })), ['error spec.targetRefs.0.name: targetRef name must be set']);
    assert.deepEqual(msgs(spec({ lua: LUA, targetRefs: [{ kind: 'Service', name: 's', namespace: 'o' }] })), ['error spec.targetRefs.0.namespace: targetRef namespace must not be set; cross namespace referencing is not supported']);
    assert.deepEqual(msgs(spec({ wasm: { url: '' } })), ['error spec.wasm.url: url field needs to be set']);
    assert.deepEqual(msgs(spec({ wasm: { url: 'ftp://x/y' } })), ['error spec.wasm.url: url contains unsupported scheme: ftp']);
    assert.deepEqual(msgs(spec({ wasm: { url: 'oci://x', sha256: 'abc' } })), ['error spec.wasm.sha256: sha256 field must be 64 characters long']);
    assert.deepEqual(msgs(spec({ wasm: { url: 'oci://x', sha256: SHA.toUpperCase() } })), ['error spec.wasm.sha256: sha256 field must match [a-f0-9]{64} pattern']);
    assert.deepEqual(msgs(spec({ wasm: { url: 'oci://x', vmConfig: { env: [{ name: '' }] } } })), ['error spec.wasm.vmConfig.env.0.name: spec.vmConfig.env invalid']);
    assert.deepEqual(msgs(spec({ wasm: { url: 'oci://x', vmConfig: { env: [{ name: 'A'.repeat(257) }] } } })), ['error spec.wasm.vmConfig.env.0.name: env.name field must be less than 255 characters long']);
    assert.deepEqual(msgs(spec({ wasm: { url: 'oci://x', vmConfig: { env: [{ name: 'A' }, { name: 'A' }] } } })), ['error spec.wasm.vmConfig.env.1.name: duplicate env']);
    assert.deepEqual(msgs(spec({ wasm: { url: 'oci://x', vmConfig: { env: [{ name: 'A', valueFrom: 'HOST', value: 'v' }] } } })), ['error spec.wasm.vmConfig.env.0.value: value may only be set when valueFrom is INLINE']);
    // Empty value with HOST passes the webhook (it checks value != ""), unlike the CEL rule.
    assert.deepEqual(msgs(spec({ wasm: { url: 'oci://x', vmConfig: { env: [{ name: 'A', valueFrom: 'HOST', value: '' }] } } })), []);
    assert.deepEqual(msgs(spec({ lua: LUA, match: [null] })), ['error spec.match.0: spec.Match[0] is nil']);
    assert.deepEqual(msgs(spec({ lua: LUA, match: [{ ports: [null] }] })), ['error spec.match.0.ports.0: spec.Match[0].Ports[0] is nil']);
    assert.deepEqual(msgs(spec({ lua: LUA, match: [{ ports: [{ number: 70000 }] }] })), ['error spec.match.0.ports.0.number: spec.Match[0].Ports[0] is out of range: 70000']);
    assert.deepEqual(msgs(spec({ url: 'oci://x', selector: { matchLabels: { a: 'b' } }, targetRef: { kind: 'Service', name: 's' } }), 'WasmPlugin'), ['error spec: only one of targetRefs or workloadSelector can be set']);
    assert.deepEqual(msgs(spec({ lua: LUA, selector: { matchLabels: { a: 'b' } } })), []);
  });

  it('the webhook runs only when the apiserver layer passed (as in a cluster)', () => {
    const r = load({ phase: 'BAD', selector: {}, lua: LUA });
    assert.deepEqual(r.issues.map((i) => i.path), ['spec.phase'], 'no webhook warning for a schema-rejected object');
    assert.equal(apiserverProblems({ apiVersion: API, kind: 'TrafficExtension', metadata: { name: 'a' }, spec: { lua: LUA } }, 'TrafficExtension').length, 0);
  });
});

describe('layer 3: istiod runtime discard', () => {
  it('a URL that passes admission but not url.Parse is discarded', () => {
    // isURL('http://host:abc') fails, but the CEL retry isURL('http://http://host:abc') passes, and so
    // does the webhook's retry; istiod's later url.Parse then rejects the port.
    assertRejected(wasm({ url: 'http://host:abc' }), 'spec.wasm.url', 'trafficextension ns/x discarded due to failure to parse wasm URL: parse "http://host:abc": invalid port ":abc" after host');
  });

  it('pluginConfig that cannot be marshalled to JSON (NaN) is discarded', () => {
    const r = loadExtensionSources([{ file: 'nan.yaml', text: `apiVersion: ${API}\nkind: TrafficExtension\nmetadata: {name: x, namespace: ns}\nspec:\n  wasm:\n    url: oci://r/x:1\n    pluginConfig:\n      ratio: .nan\n` }]);
    assert.equal(r.set.extensions.length, 0);
    assert.deepEqual(errors(r.issues).map((i) => `${i.line} ${i.path}: ${i.message}`), ['7 spec.wasm.pluginConfig: trafficextension ns/x discarded due to json marshaling error: unsupported value NaN or Infinity']);
  });

  it('WasmPlugin discards are reported at the WasmPlugin field path, with the synthetic name', () => {
    assertRejected({ url: 'http://host:abc' }, 'spec.url', /^trafficextension ns\/x~istio-translated-wasmplugin discarded due to failure to parse wasm URL/, { kind: 'WasmPlugin' });
  });
});

describe('WasmPlugin translation (§1.8)', () => {
  it('spec §7.5: synthetic name, fields under spec.wasm, phase/targeting copied', () => {
    const r = loadExtensions([new URL('spec-7.5-wasmplugin.yaml', fixtures).pathname]);
    assert.deepEqual(errors(r.issues), []);
    const [t] = r.set.extensions;
    assert.equal(t!.kind, 'TrafficExtension');
    assert.equal(t!.metadata.name, 'basic-auth-at-waypoint~istio-translated-wasmplugin');
    assert.equal(t!.metadata.namespace, 'default');
    assert.equal(t!.metadata.annotations?.['istio.io/translated-from'], 'WasmPlugin');
    assert.equal(t!.origin.kind, 'WasmPlugin');
    assert.deepEqual(t!.spec, {
      targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'waypoint' }],
      phase: 'AUTHN',
      wasm: {
        url: 'oci://ghcr.io/istio-ecosystem/wasm-extensions/basic_auth:1.12.0',
        pluginConfig: { basic_auth_rules: [{ prefix: '/productpage', request_methods: ['GET', 'POST'], credentials: ['ok:test', 'YWRtaW4zOmFkbWluMw=='] }] },
      },
    });
    assert.equal(t!.resolved!.resourceName, 'extensions.istio.io/trafficextension/default.basic-auth-at-waypoint~istio-translated-wasmplugin');
  });

  it('maps UNSPECIFIED_PHASE, merges the singular targetRef, copies every wasm field, priority and match', () => {
    const r = load({
      url: 'ghcr.io/x/y:1', sha256: SHA, imagePullPolicy: 'Always', imagePullSecret: 'reg', verificationKey: 'k', pluginConfig: { a: 1 }, pluginName: 'root',
      failStrategy: 'FAIL_OPEN', vmConfig: { env: [{ name: 'A', value: 'b' }] }, type: 'NETWORK', phase: 'UNSPECIFIED_PHASE', priority: 7,
      targetRef: { kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'gw' }, match: [{ mode: 'CLIENT', ports: [{ number: 80 }] }],
    }, { kind: 'WasmPlugin', metadata: { creationTimestamp: '2026-05-01T00:00:00Z', resourceVersion: '42' } });
    const t = r.set.extensions[0]!;
    assert.deepEqual(t.spec, {
      targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'gw' }],
      phase: 'UNSPECIFIED',
      priority: 7,
      match: [{ mode: 'CLIENT', ports: [{ number: 80 }] }],
      // verificationKey is not carried over (istiod does not copy it either).
      wasm: { url: 'ghcr.io/x/y:1', sha256: SHA, imagePullPolicy: 'Always', imagePullSecret: 'reg', pluginConfig: { a: 1 }, pluginName: 'root', failStrategy: 'FAIL_OPEN', vmConfig: { env: [{ name: 'A', value: 'b' }] }, type: 'NETWORK' },
    });
    assert.equal(t.metadata.creationTimestamp, '2026-05-01T00:00:00Z');
    assert.equal(t.metadata.resourceVersion, '42');
    assert.equal(t.resolved!.url, 'oci://ghcr.io/x/y:1', 'no scheme → oci://');
    assert.equal(t.resolved!.chain, 'NETWORK');
    assert.equal(t.resolved!.phase, 'UNSPECIFIED');
  });

  it('a WasmPlugin and a TrafficExtension with the same name coexist', () => {
    const r = loadExtensionObjects([
      { apiVersion: API, kind: 'TrafficExtension', metadata: { name: 'same' }, spec: { lua: LUA } },
      { apiVersion: API, kind: 'WasmPlugin', metadata: { name: 'same' }, spec: { url: 'oci://r/x:1' } },
    ]);
    assert.deepEqual(names(r.set.extensions).sort(), ['same', 'same~istio-translated-wasmplugin']);
  });
});

describe('pull secrets (§3.5)', () => {
  const docker = JSON.stringify({ auths: { 'private-registry:5000': { auth: Buffer.from('u:p').toString('base64') } } });
  const secret = (extra: Record<string, unknown>) => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'private-registry-pull-secret', namespace: 'istio-ingress' }, type: 'kubernetes.io/dockerconfigjson', ...extra });
  const ext = (pull: string) => ({ apiVersion: API, kind: 'TrafficExtension', metadata: { name: 'openid-connect', namespace: 'istio-ingress' }, spec: { wasm: { url: 'oci://private-registry:5000/openid:latest', imagePullSecret: pull } } });

  it('reads base64 data[.dockerconfigjson]', () => {
    const r = loadExtensionObjects([secret({ data: { '.dockerconfigjson': Buffer.from(docker).toString('base64') } }), ext('private-registry-pull-secret')]);
    assert.deepEqual(r.set.secrets, [{ name: 'private-registry-pull-secret', namespace: 'istio-ingress', dockerConfigJson: docker }]);
    assert.deepEqual(r.issues, []);
    assert.deepEqual(r.set.extensions[0]!.resolved!.pullSecret, { namespace: 'istio-ingress', name: 'private-registry-pull-secret', resourceName: 'kubernetes://istio-ingress/private-registry-pull-secret' });
  });

  it('accepts stringData, which wins over data', () => {
    const r = loadExtensionObjects([secret({ data: { '.dockerconfigjson': Buffer.from('{"auths":{}}').toString('base64') }, stringData: { '.dockerconfigjson': docker } })]);
    assert.equal(r.set.secrets[0]!.dockerConfigJson, docker);
  });

  it('rejects a missing key, bad base64 or non-JSON content without echoing it', () => {
    const missing = loadExtensionObjects([secret({ data: {} })]);
    assert.deepEqual(missing.issues.map((i) => [i.path, i.message, i.level, i.resource]), [['data[.dockerconfigjson]', 'Required value', 'error', 'Secret private-registry-pull-secret.istio-ingress']]);
    const b64 = loadExtensionObjects([secret({ data: { '.dockerconfigjson': '%%%' } })]);
    assert.match(b64.issues[0]!.message, /illegal base64/);
    const notJson = loadExtensionObjects([secret({ stringData: { '.dockerconfigjson': 'hunter2-not-json' } })]);
    assert.match(notJson.issues[0]!.message, /^Invalid value: "<secret contents redacted>"/);
    assert.doesNotMatch(notJson.issues[0]!.message, /hunter2/);
    assert.equal(notJson.set.secrets.length, 0);
  });

  it('ignores other secret types with a warning', () => {
    const r = loadExtensionObjects([{ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'tls' }, type: 'kubernetes.io/tls', data: {} }]);
    assert.equal(r.set.secrets.length, 0);
    assert.equal(r.issues[0]!.level, 'warning');
    assert.match(r.issues[0]!.message, /only kubernetes\.io\/dockerconfigjson/);
  });

  it('warns (IST0101) when the referenced secret is not among the sources, in the extension namespace', () => {
    const r = loadExtensionObjects([ext('private-registry-pull-secret'), { ...secret({ stringData: { '.dockerconfigjson': docker } }), metadata: { name: 'private-registry-pull-secret', namespace: 'elsewhere' } }]);
    assert.equal(r.set.extensions.length, 1, 'a missing secret does not reject the extension');
    const w = warnings(r.issues);
    assert.equal(w.length, 1);
    assert.equal(w[0]!.analyzerCode, 'IST0101');
    assert.equal(w[0]!.path, 'spec.wasm.imagePullSecret');
    assert.match(w[0]!.message, /Referenced secret not found: "private-registry-pull-secret" in namespace istio-ingress/);
  });

  it('forces the secret namespace to the extension namespace; drops unparsable names with a warning', () => {
    assert.deepEqual(normalizePullSecret('other/reg', 'ns'), { namespace: 'ns', name: 'reg', resourceName: 'kubernetes://ns/reg' });
    assert.deepEqual(normalizePullSecret('kubernetes://reg', 'ns'), { namespace: 'ns', name: 'reg', resourceName: 'kubernetes://ns/reg' });
    assert.equal(normalizePullSecret('a/b/c', 'ns'), null);
    const r = load(wasm({ imagePullSecret: 'a/b/c' }));
    assert.equal(r.set.extensions.length, 1);
    assert.equal(r.set.extensions[0]!.resolved!.pullSecret, undefined);
    assert.match(warnings(r.issues)[0]!.message, /^invalid secret name "a\/b\/c"/);
  });
});

describe('loading files like kubectl apply -f', () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshext-ext-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const doc = (name: string, ns?: string) => `apiVersion: ${API}\nkind: TrafficExtension\nmetadata:\n  name: ${name}\n${ns ? `  namespace: ${ns}\n` : ''}spec:\n  lua:\n    inlineCode: "x"\n`;

  it('reads directories recursively (.yaml/.yml/.json), in lexical order, multi-document, kind: List', () => {
    mkdirSync(join(dir, 'tree/sub'), { recursive: true });
    writeFileSync(join(dir, 'tree/b.yaml'), `${doc('b1')}---\n${doc('b2')}\n---\n`);
    writeFileSync(join(dir, 'tree/a.yml'), doc('a'));
    writeFileSync(join(dir, 'tree/sub/c.json'), JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [{ apiVersion: API, kind: 'TrafficExtension', metadata: { name: 'c' }, spec: { lua: LUA } }] }));
    writeFileSync(join(dir, 'tree/notes.txt'), 'not yaml: [');
    const r = loadExtensions([join(dir, 'tree')]);
    assert.deepEqual(r.issues, []);
    assert.deepEqual(r.files.map((f) => f.slice(dir.length)), ['/tree/a.yml', '/tree/b.yaml', '/tree/sub/c.json']);
    assert.deepEqual(names(r.set.extensions), ['a', 'b1', 'b2', 'c']);
  });

  it('defaults the namespace to "default", configurable', () => {
    assert.equal(loadExtensionSources([{ file: 'f', text: doc('a') }]).set.extensions[0]!.metadata.namespace, 'default');
    assert.equal(loadExtensionSources([{ file: 'f', text: doc('a') }], { defaultNamespace: 'team' }).set.extensions[0]!.metadata.namespace, 'team');
    assert.equal(loadExtensionSources([{ file: 'f', text: doc('a', 'explicit') }], { defaultNamespace: 'team' }).set.extensions[0]!.metadata.namespace, 'explicit');
  });

  it('one bad resource does not reject the others; issues carry file, line and path', () => {
    const text = `${doc('good1')}---\napiVersion: ${API}\nkind: TrafficExtension\nmetadata:\n  name: parity\nspec:\n  wasm:\n    url: oci://r/x:1\n    sha256: nothex\n---\n${doc('good2')}`;
    const r = loadExtensionSources([{ file: 'exts.yaml', text }]);
    assert.deepEqual(names(r.set.extensions), ['good1', 'good2']);
    assert.equal(r.issues.length, 1);
    const i = r.issues[0]!;
    assert.deepEqual([i.file, i.line, i.path, i.resource, i.analyzerCode], ['exts.yaml', 16, 'spec.wasm.sha256', 'TrafficExtension parity.default', 'IST0106']);
    assert.equal(formatAnalyzeLine(i), `Error [IST0106] (TrafficExtension parity.default) spec.wasm.sha256: Invalid value: "nothex": spec.wasm.sha256 in body should match '(^$|^[a-f0-9]{64}$)'`);
    assert.ok(formatAnalyzeLine(i, { withOrigin: true }).startsWith('Error [IST0106] (TrafficExtension parity.default exts.yaml:16) spec.wasm.sha256: '));
  });

  it('points a missing field at its parent line', () => {
    const r = loadExtensionSources([{ file: 'f.yaml', text: `apiVersion: ${API}\nkind: TrafficExtension\nmetadata:\n  name: m\nspec:\n  phase: AUTHN\n  wasm:\n    sha256: ""\n` }]);
    assert.deepEqual(r.issues.map((i) => [i.line, i.path, i.message]), [[7, 'spec.wasm.url', 'Required value']]);
  });

  it('ignores other kinds with a warning; rejects wrong versions and objects without kind', () => {
    const text = `apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\napiVersion: extensions.istio.io/v1beta1\nkind: TrafficExtension\nmetadata: {name: t}\nspec: {lua: {inlineCode: x}}\n---\nmetadata: {name: nokind}\n---\n`;
    const r = loadExtensionSources([{ file: 'mixed.yaml', text }]);
    assert.deepEqual(r.issues.map((i) => [i.level, i.line]), [['warning', 1], ['error', 5], ['error', 10]]);
    assert.match(r.issues[0]!.message, /^ignoring apps\/v1\/Deployment "d"/);
    assert.match(r.issues[1]!.message, /^no matches for kind "TrafficExtension" in version "extensions\.istio\.io\/v1beta1"/);
    assert.equal(r.issues[2]!.message, 'error validating data: [apiVersion not set, kind not set]');
  });

  it('reports YAML syntax errors with their line and keeps the other documents', () => {
    const r = loadExtensionSources([{ file: 'broken.yaml', text: `${doc('ok')}---\nmetadata:\n  name: [unclosed\n` }]);
    assert.deepEqual(names(r.set.extensions), ['ok']);
    assert.equal(r.issues.length >= 1, true);
    assert.equal(r.issues[0]!.file, 'broken.yaml');
    assert.ok(r.issues[0]!.line >= 10, `line ${r.issues[0]!.line}`);
    assert.match(r.issues[0]!.message, /^YAML: /);
  });

  it('a later definition of the same resource replaces the earlier one, with a warning', () => {
    const r = loadExtensionSources([{ file: 'one.yaml', text: doc('dup') }, { file: 'two.yaml', text: doc('dup').replace('"x"', '"y"') }]);
    assert.equal(r.set.extensions.length, 1);
    assert.equal(r.set.extensions[0]!.spec.lua!.inlineCode, 'y');
    assert.match(r.issues[0]!.message, /replaces the one at one\.yaml:1/);
  });

  it('reports a missing path and still loads the others', () => {
    writeFileSync(join(dir, 'single.yaml'), doc('single'));
    const r = loadExtensions([join(dir, 'nope.yaml'), join(dir, 'single.yaml')]);
    assert.deepEqual(names(r.set.extensions), ['single']);
    assert.equal(r.issues[0]!.message, 'the path does not exist');
  });

  it('derives a stable resourceVersion from content when the file has none', () => {
    const v1 = loadExtensionSources([{ file: 'f', text: doc('a') }]).set.extensions[0]!.metadata.resourceVersion;
    const again = loadExtensionSources([{ file: 'g', text: `# comment\n${doc('a')}` }]).set.extensions[0]!.metadata.resourceVersion;
    const changed = loadExtensionSources([{ file: 'f', text: doc('a').replace('"x"', '"z"') }]).set.extensions[0]!.metadata.resourceVersion;
    assert.equal(v1, again);
    assert.notEqual(v1, changed);
  });

  it('parses YAML 1.1 like kubectl: an unquoted yes is a boolean', () => {
    const text = `apiVersion: ${API}\nkind: TrafficExtension\nmetadata: {name: ok}\nspec:\n  selector:\n    matchLabels: {sidecar: yes, version: "1"}\n  lua: {inlineCode: x}\n`;
    const r = loadExtensionSources([{ file: 'f', text }]);
    assert.deepEqual(r.issues.map((i) => `${i.line} ${i.path}: ${i.message}`), ['6 spec.selector.matchLabels.sidecar: Invalid value: "boolean": spec.selector.matchLabels.sidecar in body must be of type string: "boolean"']);
  });

  it('YAML 1.1: even a name of y is a boolean, as kubectl would read it', () => {
    const r = loadExtensionSources([{ file: 'f', text: `apiVersion: ${API}\nkind: TrafficExtension\nmetadata: {name: y}\nspec: {lua: {inlineCode: x}}\n` }]);
    assert.deepEqual(r.issues.map((i) => `${i.path}: ${i.message}`), ['metadata.name: Invalid value: "boolean": metadata.name in body must be of type string: "boolean"']);
  });

  it('YAML 1.1 still keeps timestamps and h:mm values as strings (as kubectl sends them)', () => {
    const text = `apiVersion: ${API}\nkind: TrafficExtension\nmetadata:\n  name: ts\n  creationTimestamp: 2026-05-18T10:00:00Z\nspec:\n  wasm:\n    url: oci://r/x:1\n    pluginConfig: {at: 12:30}\n`;
    const r = loadExtensionSources([{ file: 'f', text }]);
    assert.deepEqual(r.issues, []);
    assert.equal(r.set.extensions[0]!.metadata.creationTimestamp, '2026-05-18T10:00:00Z');
    assert.deepEqual(r.set.extensions[0]!.spec.wasm!.pluginConfig, { at: '12:30' });
  });

  it('rejects duplicate keys like kubectl strict decoding', () => {
    const r = loadExtensionSources([{ file: 'f', text: `apiVersion: ${API}\nkind: TrafficExtension\nmetadata: {name: d}\nspec:\n  lua: {inlineCode: x}\n  phase: AUTHN\n  phase: AUTHZ\n` }]);
    assert.equal(r.set.extensions.length, 0);
    assert.match(r.issues[0]!.message, /^YAML: Map keys must be unique/);
    assert.equal(r.issues[0]!.line, 7);
  });

  it('reads the shared parity example from disk', () => {
    const text = readFileSync(new URL('parity.yaml', fixtures), 'utf8');
    assert.deepEqual(names(loadExtensionSources([{ file: 'parity.yaml', text }]).set.extensions), ['parity']);
  });
});
