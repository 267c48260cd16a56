/**
 * The three validation layers a TrafficExtension (or WasmPlugin) passes through in Istio 1.30
 * (traffic-extension.md §1.7), applied in the same order as a cluster would:
 *   1. apiserver: ObjectMeta rules, the CRD's OpenAPI schema, list-map uniqueness and CEL rules;
 *   2. istiod's validating webhook (errors and warnings);
 *   3. istiod's runtime "discard" checks, which drop a resource that got past admission.
 * A later layer only runs when the earlier ones found no error, as in a cluster (the apiserver
 * does not call the webhook for an object that fails the schema). Messages use Istio's and
 * Kubernetes' own wording where they have one.
 */
import { Ajv } from 'ajv';
import type { ValidateFunction } from 'ajv';
import { resourceSchema, trafficExtensionSpecSchema, wasmPluginSpecSchema } from './extension-schema.ts';
import { celIsURL, goUrlParse, goUrlParseRequestURI } from './go-url.ts';
import { schemaProblems } from './schema-messages.ts';
import { formatPath } from './yaml-source.ts';
import type { PathSeg } from './yaml-source.ts';

export type ValidationLayer = 'schema' | 'cel' | 'webhook' | 'runtime';

export interface RuleProblem {
  segs: PathSeg[];
  message: string;
  level: 'error' | 'warning';
  layer: ValidationLayer;
}

type Obj = Record<string, unknown>;

const ajv = new Ajv({ allErrors: true, strict: false });
const validateTE: ValidateFunction = ajv.compile(resourceSchema(trafficExtensionSpecSchema));
const validateWP: ValidateFunction = ajv.compile(resourceSchema(wasmPluginSpecSchema));

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const has = (o: unknown, k: string): boolean => isObj(o) && Object.hasOwn(o, k);

/**
 * Kubernetes prunes `null` for fields that are not nullable and treats a null nullable field as
 * unset, so nulls never reach validation. `pluginConfig` is a free-form Struct: left alone.
 */
export function pruneNulls(v: unknown, path: readonly PathSeg[] = []): unknown {
  if (Array.isArray(v)) return v.map((x, i) => pruneNulls(x, [...path, i]));
  if (!isObj(v)) return v;
  const out: Obj = {};
  for (const [k, x] of Object.entries(v)) {
    if (x === null) continue;
    out[k] = k === 'pluginConfig' ? x : pruneNulls(x, [...path, k]);
  }
  return out;
}

// ------------------------------------------------------------------ layer 1: apiserver

const dns1123Subdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const dns1123Label = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const subdomainMsg =
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const labelMsg =
  "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

function validateObjectMeta(meta: unknown, out: RuleProblem[]): void {
  const m = isObj(meta) ? meta : {};
  const name = m.name;
  if (name !== undefined && typeof name !== 'string') {
    // The schema reports the wrong type.
  } else if (typeof name !== 'string' || name === '') {
    out.push({ segs: ['metadata', 'name'], message: 'Required value: name or generateName is required', level: 'error', layer: 'schema' });
  } else {
    if (name.length > 253) out.push({ segs: ['metadata', 'name'], message: `Invalid value: ${JSON.stringify(name)}: must be no more than 253 characters`, level: 'error', layer: 'schema' });
    if (!dns1123Subdomain.test(name)) out.push({ segs: ['metadata', 'name'], message: `Invalid value: ${JSON.stringify(name)}: ${subdomainMsg}`, level: 'error', layer: 'schema' });
  }
  const ns = m.namespace;
  if (typeof ns === 'string' && ns !== '' && (!dns1123Label.test(ns) || ns.length > 63)) {
    out.push({ segs: ['metadata', 'namespace'], message: `Invalid value: ${JSON.stringify(ns)}: ${labelMsg}`, level: 'error', layer: 'schema' });
  }
}

/** `x-kubernetes-list-type: map` uniqueness. */
function listMapUnique(list: unknown, key: string, base: PathSeg[], out: RuleProblem[]): void {
  if (!Array.isArray(list)) return;
  const seen = new Set<unknown>();
  list.forEach((item, i) => {
    if (!isObj(item) || !has(item, key)) return;
    const k = item[key];
    if (seen.has(k)) out.push({ segs: [...base, i], message: `Duplicate value: {${JSON.stringify(key)}:${JSON.stringify(k)}}`, level: 'error', layer: 'schema' });
    seen.add(k);
  });
}

function celInvalid(segs: PathSeg[], type: string, message: string): RuleProblem {
  return { segs, message: `Invalid value: "${type}": ${message}`, level: 'error', layer: 'cel' };
}

/** CEL rule on `url`: the scheme must be '', http, https, file or oci (retrying as http://). */
export function celUrlSchemeOk(url: string): boolean {
  const allowed = new Set(['', 'http', 'https', 'oci', 'file']);
  if (celIsURL(url)) return allowed.has(goUrlParseRequestURI(url).scheme);
  return celIsURL(`http://${url}`);
}

function celSelector(sel: unknown, base: PathSeg[], out: RuleProblem[]): void {
  const labels = isObj(sel) ? sel.matchLabels : undefined;
  if (!isObj(labels)) return;
  for (const [k, v] of Object.entries(labels)) {
    if (typeof v === 'string' && v.includes('*')) out.push(celInvalid([...base, 'matchLabels', k], 'string', 'wildcard not allowed in label value match'));
  }
  const keys = Object.keys(labels);
  if (keys.some((k) => k.includes('*'))) out.push(celInvalid([...base, 'matchLabels'], 'object', 'wildcard not allowed in label key match'));
  if (keys.some((k) => k.length === 0)) out.push(celInvalid([...base, 'matchLabels'], 'object', 'key must not be empty'));
}

function celTargetRef(ref: unknown, base: PathSeg[], out: RuleProblem[]): void {
  if (isObj(ref) && typeof ref.namespace === 'string' && ref.namespace.length !== 0) {
    out.push(celInvalid([...base, 'namespace'], 'string', 'cross namespace referencing is not currently supported'));
  }
}

function celWasmFields(w: Obj, base: PathSeg[], out: RuleProblem[]): void {
  if (typeof w.url === 'string' && w.url.length > 0 && !celUrlSchemeOk(w.url)) {
    out.push(celInvalid([...base, 'url'], 'string', 'url must have schema one of [http, https, file, oci]'));
  }
  const env = isObj(w.vmConfig) ? w.vmConfig.env : undefined;
  if (Array.isArray(env)) {
    env.forEach((e, i) => {
      // (has(self.valueFrom) ? self.valueFrom : '') != 'HOST' || !has(self.value)
      if (isObj(e) && e.valueFrom === 'HOST' && has(e, 'value')) {
        out.push(celInvalid([...base, 'vmConfig', 'env', i], 'object', 'value may only be set when valueFrom is INLINE'));
      }
    });
  }
}

function listMaps(spec: Obj, wasmBase: PathSeg[], wasm: Obj | undefined, out: RuleProblem[]): void {
  if (Array.isArray(spec.match)) {
    spec.match.forEach((m, i) => {
      if (isObj(m)) listMapUnique(m.ports, 'number', ['spec', 'match', i, 'ports'], out);
    });
  }
  if (wasm && isObj(wasm.vmConfig)) listMapUnique(wasm.vmConfig.env, 'name', [...wasmBase, 'vmConfig', 'env'], out);
}

/** Layer 1 alone (exported for tests and `analyze`). */
export function apiserverProblems(obj: Obj, kind: 'TrafficExtension' | 'WasmPlugin'): RuleProblem[] {
  const out: RuleProblem[] = [];
  validateObjectMeta(obj.metadata, out);
  const validate = kind === 'TrafficExtension' ? validateTE : validateWP;
  if (!validate(obj)) {
    for (const p of schemaProblems(validate.errors, obj, 'k8s')) out.push({ ...p, level: 'error', layer: 'schema' });
  }
  const spec = obj.spec;
  if (!isObj(spec)) return out;
  const wasm = kind === 'TrafficExtension' ? (isObj(spec.wasm) ? spec.wasm : undefined) : spec;
  const wasmBase: PathSeg[] = kind === 'TrafficExtension' ? ['spec', 'wasm'] : ['spec'];
  listMaps(spec, wasmBase, wasm, out);

  // CEL rules (x-kubernetes-validations).
  if (kind === 'TrafficExtension') {
    if ((has(spec, 'selector') ? 1 : 0) + (has(spec, 'targetRefs') ? 1 : 0) > 1) out.push(celInvalid(['spec'], 'object', 'only one of targetRefs or selector can be set'));
    if (has(spec, 'wasm') === has(spec, 'lua')) out.push(celInvalid(['spec'], 'object', 'exactly one of wasm or lua must be set'));
  } else {
    if ((has(spec, 'selector') ? 1 : 0) + (has(spec, 'targetRef') ? 1 : 0) + (has(spec, 'targetRefs') ? 1 : 0) > 1) {
      out.push(celInvalid(['spec'], 'object', 'only one of targetRefs or selector can be set'));
    }
    celTargetRef(spec.targetRef, ['spec', 'targetRef'], out);
  }
  celSelector(spec.selector, ['spec', 'selector'], out);
  if (Array.isArray(spec.targetRefs)) spec.targetRefs.forEach((r, i) => celTargetRef(r, ['spec', 'targetRefs', i], out));
  if (wasm) celWasmFields(wasm, wasmBase, out);
  return out;
}

// ------------------------------------------------------------------ layer 2: istiod webhook

/** gvk.Service, gvk.ServiceEntry, gvk.KubernetesGateway, gvk.GatewayClass as istiod prints them. */
const allowedTargetRefs = [
  { group: 'core', kind: 'Service', printed: 'core/v1/Service' },
  { group: 'networking.istio.io', kind: 'ServiceEntry', printed: 'networking.istio.io/v1/ServiceEntry' },
  { group: 'gateway.networking.k8s.io', kind: 'Gateway', printed: 'gateway.networking.k8s.io/v1/Gateway' },
  { group: 'gateway.networking.k8s.io', kind: 'GatewayClass', printed: 'gateway.networking.k8s.io/v1/GatewayClass' },
];

function webhookErr(segs: PathSeg[], message: string): RuleProblem {
  return { segs, message, level: 'error', layer: 'webhook' };
}

function webhookSelector(sel: unknown, out: RuleProblem[]): void {
  if (sel === undefined) return;
  const labels = isObj(sel) && isObj(sel.matchLabels) ? sel.matchLabels : {};
  for (const [k, v] of Object.entries(labels)) {
    const kv = JSON.stringify(`${k}=${String(v)}`);
    if (k === '') out.push(webhookErr(['spec', 'selector', 'matchLabels'], `empty key is not supported in selector: ${kv}`));
    if (k.includes('*') || String(v).includes('*')) out.push(webhookErr(['spec', 'selector', 'matchLabels', k], `wildcard is not supported in selector: ${kv}`));
  }
  if (Object.keys(labels).length === 0) {
    out.push({ segs: ['spec', 'selector'], message: 'workload selector specified without labels', level: 'warning', layer: 'webhook' });
  }
}

function webhookTargetRef(ref: unknown, base: PathSeg[], out: RuleProblem[]): void {
  if (!isObj(ref)) return;
  if (!ref.name) out.push(webhookErr([...base, 'name'], 'targetRef name must be set'));
  if (ref.namespace) out.push(webhookErr([...base, 'namespace'], 'targetRef namespace must not be set; cross namespace referencing is not supported'));
  const group = typeof ref.group === 'string' ? ref.group : '';
  const canonical = group === '' ? 'core' : group;
  if (!allowedTargetRefs.some((a) => a.kind === ref.kind && a.group === canonical)) {
    out.push(webhookErr(base, `targetRef must be to one of [${allowedTargetRefs.map((a) => a.printed).join(' ')}] but was ${group}/${String(ref.kind ?? '')}`));
  }
}

/** istiod's strictParseURL: ParseRequestURI, retried with `http://` prepended. */
function strictParseURL(original: string): { scheme: string } | string {
  try {
    const u = goUrlParseRequestURI(original);
    try {
      goUrlParse(original);
    } catch (e) {
      return `failed to strict parse url: ${(e as Error).message}`;
    }
    return u;
  } catch (err) {
    const retry = `http://${original}`;
    try {
      const u = goUrlParseRequestURI(retry);
      try {
        goUrlParse(retry);
      } catch (e) {
        return `failed to strict parse url: ${(e as Error).message}`;
      }
      return u;
    } catch {
      return `failed to parse url: ${(err as Error).message}`;
    }
  }
}

function webhookWasm(w: Obj, base: PathSeg[], out: RuleProblem[]): void {
  const url = typeof w.url === 'string' ? w.url : '';
  if (url === '') {
    out.push(webhookErr([...base, 'url'], 'url field needs to be set'));
  } else {
    const r = strictParseURL(url);
    if (typeof r === 'string') out.push(webhookErr([...base, 'url'], r));
    else if (!['', 'file', 'http', 'https', 'oci'].includes(r.scheme)) out.push(webhookErr([...base, 'url'], `url contains unsupported scheme: ${r.scheme}`));
  }
  const sha = typeof w.sha256 === 'string' ? w.sha256 : '';
  if (sha !== '') {
    if (sha.length !== 64) out.push(webhookErr([...base, 'sha256'], 'sha256 field must be 64 characters long'));
    else if (!/^[a-f0-9]{64}$/.test(sha)) out.push(webhookErr([...base, 'sha256'], 'sha256 field must match [a-f0-9]{64} pattern'));
  }
  if (typeof w.imagePullSecret === 'string' && Buffer.byteLength(w.imagePullSecret) > 253) {
    out.push(webhookErr([...base, 'imagePullSecret'], 'imagePullSecret field must be less than 253 characters long'));
  }
  if (typeof w.pluginName === 'string' && Buffer.byteLength(w.pluginName) > 256) {
    // Istio's text says 255 while checking 256; kept verbatim.
    out.push(webhookErr([...base, 'pluginName'], 'pluginName field must be less than 255 characters long'));
  }
  const env = isObj(w.vmConfig) && Array.isArray(w.vmConfig.env) ? w.vmConfig.env : [];
  const names = new Set<string>();
  // istiod stops at the first env problem.
  for (let i = 0; i < env.length; i++) {
    const e = env[i];
    if (!isObj(e)) continue;
    const seg = [...base, 'vmConfig', 'env', i];
    const name = typeof e.name === 'string' ? e.name : '';
    if (name === '') { out.push(webhookErr([...seg, 'name'], 'spec.vmConfig.env invalid')); break; }
    if (Buffer.byteLength(name) > 256) { out.push(webhookErr([...seg, 'name'], 'env.name field must be less than 255 characters long')); break; }
    if (names.has(name)) { out.push(webhookErr([...seg, 'name'], 'duplicate env')); break; }
    names.add(name);
    const valueFrom = e.valueFrom ?? 'INLINE';
    if (valueFrom !== 'INLINE' && typeof e.value === 'string' && e.value !== '') {
      out.push(webhookErr([...seg, 'value'], 'value may only be set when valueFrom is INLINE'));
      break;
    }
  }
}

function webhookMatch(match: unknown, out: RuleProblem[]): void {
  if (!Array.isArray(match)) return;
  // istiod stops at the first match problem.
  for (let s = 0; s < match.length; s++) {
    const sel = match[s];
    if (sel === null || sel === undefined) { out.push(webhookErr(['spec', 'match', s], `spec.Match[${s}] is nil`)); return; }
    const ports = isObj(sel) && Array.isArray(sel.ports) ? sel.ports : [];
    for (let p = 0; p < ports.length; p++) {
      const port = ports[p];
      if (port === null || port === undefined) { out.push(webhookErr(['spec', 'match', s, 'ports', p], `spec.Match[${s}].Ports[${p}] is nil`)); return; }
      const n = isObj(port) && typeof port.number === 'number' ? port.number : 0;
      if (n <= 0 || n > 65535) { out.push(webhookErr(['spec', 'match', s, 'ports', p, 'number'], `spec.Match[${s}].Ports[${p}] is out of range: ${n}`)); return; }
    }
  }
}

/** Layer 2 alone, on a spec (exported for tests: most of its checks are shadowed by layer 1). */
export function webhookProblems(spec: Obj, kind: 'TrafficExtension' | 'WasmPlugin'): RuleProblem[] {
  const out: RuleProblem[] = [];
  const refsSet = Array.isArray(spec.targetRefs) && spec.targetRefs.length > 0;
  const count = (spec.selector !== undefined ? 1 : 0) + (kind === 'WasmPlugin' && spec.targetRef !== undefined ? 1 : 0) + (refsSet ? 1 : 0);
  if (count > 1) out.push(webhookErr(['spec'], 'only one of targetRefs or workloadSelector can be set'));
  webhookSelector(spec.selector, out);
  if (kind === 'WasmPlugin') webhookTargetRef(spec.targetRef, ['spec', 'targetRef'], out);
  if (Array.isArray(spec.targetRefs)) spec.targetRefs.forEach((r, i) => webhookTargetRef(r, ['spec', 'targetRefs', i], out));
  if (kind === 'TrafficExtension') {
    const w = isObj(spec.wasm) ? spec.wasm : undefined;
    const l = isObj(spec.lua) ? spec.lua : undefined;
    if ((w ? 1 : 0) + (l ? 1 : 0) !== 1) out.push(webhookErr(['spec'], 'exactly one of wasm or lua must be set'));
    if (w) webhookWasm(w, ['spec', 'wasm'], out);
    if (l) {
      const code = typeof l.inlineCode === 'string' ? l.inlineCode : '';
      if (code === '') out.push(webhookErr(['spec', 'lua', 'inlineCode'], 'lua inlineCode must be set'));
      else if (Buffer.byteLength(code) > 65536) out.push(webhookErr(['spec', 'lua', 'inlineCode'], `lua inlineCode must be at most 65536 bytes, got ${Buffer.byteLength(code)}`));
    }
  } else {
    webhookWasm(spec, ['spec'], out);
  }
  webhookMatch(spec.match, out);
  return out;
}

// ------------------------------------------------------------------ layer 3: istiod discard

function runtimeErr(segs: PathSeg[], message: string): RuleProblem {
  return { segs, message, level: 'error', layer: 'runtime' };
}

/** True when JSON.stringify would lose data that protojson refuses (NaN, Infinity). */
function hasNonFinite(v: unknown): boolean {
  if (typeof v === 'number') return !Number.isFinite(v);
  if (Array.isArray(v)) return v.some(hasNonFinite);
  if (isObj(v)) return Object.values(v).some(hasNonFinite);
  return false;
}

/** `convertToTrafficExtensionWrapper`'s checks, on a (native or translated) TrafficExtension. */
export function runtimeLayer(spec: Obj, ns: string, name: string): RuleProblem[] {
  const who = `trafficextension ${ns}/${name}`;
  const wasm = isObj(spec.wasm) ? spec.wasm : undefined;
  const lua = isObj(spec.lua) ? spec.lua : undefined;
  if (wasm) {
    const url = typeof wasm.url === 'string' ? wasm.url : '';
    if (url === '') return [runtimeErr(['spec', 'wasm', 'url'], `${who} discarded: wasm.url is required`)];
    try {
      goUrlParse(url);
    } catch (e) {
      return [runtimeErr(['spec', 'wasm', 'url'], `${who} discarded due to failure to parse wasm URL: ${(e as Error).message}`)];
    }
    if (isObj(wasm.pluginConfig) && hasNonFinite(wasm.pluginConfig)) {
      return [runtimeErr(['spec', 'wasm', 'pluginConfig'], `${who} discarded due to json marshaling error: unsupported value NaN or Infinity`)];
    }
    return [];
  }
  if (lua) {
    const code = typeof lua.inlineCode === 'string' ? lua.inlineCode : '';
    if (code.length === 0) return [runtimeErr(['spec', 'lua', 'inlineCode'], `${who} discarded: lua.inlineCode cannot be empty`)];
    if (Buffer.byteLength(code) > 65536) return [runtimeErr(['spec', 'lua', 'inlineCode'], `${who} discarded: lua.inlineCode exceeds maximum size of 64KB`)];
    return [];
  }
  return [runtimeErr(['spec'], `${who} discarded: neither wasm nor lua is set`)];
}

// ------------------------------------------------------------------ entry points

/**
 * Layers 1 and 2 for a TrafficExtension or WasmPlugin object (nulls already pruned). Layer 3 runs
 * on the TrafficExtension form, after WasmPlugin translation: see runtimeLayer.
 */
export function admissionProblems(obj: Obj, kind: 'TrafficExtension' | 'WasmPlugin'): RuleProblem[] {
  const l1 = apiserverProblems(obj, kind);
  if (l1.some((p) => p.level === 'error')) return l1;
  return [...l1, ...webhookProblems(obj.spec as Obj, kind)];
}

export function problemPath(p: RuleProblem): string {
  return formatPath(p.segs);
}

/**
 * istiod's pull-secret normalisation (`credentials.ToResourceName` + `ParseResourceName`, then the
 * namespace forced to the extension's): returns the namespace/name, or null when unparsable (istiod
 * then silently drops the secret).
 */
export function normalizePullSecret(secret: string, extNamespace: string): { namespace: string; name: string; resourceName: string } | null {
  let rn = secret.startsWith('sds://') ? secret.slice('sds://'.length) : secret;
  if (!rn.startsWith('kubernetes://')) rn = `kubernetes://${rn}`;
  const parts = rn.slice('kubernetes://'.length).split('/');
  let name: string;
  if (parts.length === 1) name = parts[0]!;
  else if (parts.length === 2) name = parts[1]!;
  else return null;
  return { namespace: extNamespace, name, resourceName: `kubernetes://${extNamespace}/${name}` };
}
