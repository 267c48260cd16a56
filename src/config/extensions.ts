/**
 * Loads TrafficExtension resources the way `kubectl apply -f` takes them: files or directories
 * (recursively, *.yaml / *.yml / *.json, lexical order), multi-document YAML, `kind: List`.
 * Accepts extensions.istio.io/v1alpha1 TrafficExtension and WasmPlugin (translated to a synthetic
 * TrafficExtension as istiod 1.30 does) and `kubernetes.io/dockerconfigjson` Secrets. Every
 * resource is validated on its own: a bad one is excluded and reported, the rest load.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ConfigIssue } from '../errors.ts';
import { admissionProblems, normalizePullSecret, pruneNulls, runtimeLayer } from './extension-validate.ts';
import type { RuleProblem } from './extension-validate.ts';
import type { ExtensionSet, Phase, PullSecret, ResolvedExtension, TrafficExtension, TrafficExtensionSpec } from './types.ts';
import { goUrlParse } from './go-url.ts';
import { formatPath, NullLocator, parseYamlStream } from './yaml-source.ts';
import type { PathSeg, YamlLocator } from './yaml-source.ts';

export const EXTENSIONS_API_VERSION = 'extensions.istio.io/v1alpha1';
/** Suffix istiod gives TrafficExtensions synthesised from WasmPlugins (`~` cannot occur in K8s names). */
export const WASMPLUGIN_SYNTHETIC_SUFFIX = '~istio-translated-wasmplugin';
export const INT32_MIN = -2147483648;

export interface ExtensionLoadOptions {
  /** Namespace for resources without metadata.namespace (kubectl's default: `default`). */
  defaultNamespace?: string;
}

export interface ExtensionLoadResult {
  set: ExtensionSet;
  issues: ConfigIssue[];
  /** The files that were read, in load order. */
  files: string[];
}

export interface SourceText {
  file: string;
  text: string;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

const EXT_RE = /\.(ya?ml|json)$/i;

/** Expands files and directories (recursively, sorted like kubectl's filepath.Walk). */
export function collectExtensionFiles(paths: readonly string[], baseDir?: string): { files: string[]; issues: ConfigIssue[] } {
  const files: string[] = [];
  const issues: ConfigIssue[] = [];
  const walk = (dir: string): void => {
    let entries: string[];
    try {
      entries = readdirSync(dir).sort();
    } catch (err) {
      issues.push({ file: dir, line: 0, path: '', message: `cannot read directory: ${(err as Error).message}`, level: 'error' });
      return;
    }
    for (const e of entries) {
      const p = join(dir, e);
      let st;
      try {
        st = statSync(p);
      } catch {
        continue; // vanished between readdir and stat (an editor's temp file)
      }
      if (st.isDirectory()) walk(p);
      else if (st.isFile() && EXT_RE.test(e)) files.push(p);
    }
  };
  for (const raw of paths) {
    const p = baseDir ? resolve(baseDir, raw) : raw;
    let st;
    try {
      st = statSync(p);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      issues.push({
        file: p,
        line: 0,
        path: '',
        message: code === 'ENOENT' ? 'the path does not exist' : `cannot read: ${(err as Error).message}`,
        level: 'error',
      });
      continue;
    }
    if (st.isDirectory()) walk(p);
    else files.push(p);
  }
  return { files, issues };
}

/** Reads and loads extension files/directories (synchronously: config loading is startup work). */
export function loadExtensions(paths: readonly string[], opts: ExtensionLoadOptions & { baseDir?: string } = {}): ExtensionLoadResult {
  const { files, issues } = collectExtensionFiles(paths, opts.baseDir);
  const sources: SourceText[] = [];
  for (const f of files) {
    try {
      sources.push({ file: f, text: readFileSync(f, 'utf8') });
    } catch (err) {
      issues.push({ file: f, line: 0, path: '', message: `cannot read: ${(err as Error).message}`, level: 'error' });
    }
  }
  const r = loadExtensionSources(sources, opts);
  return { ...r, issues: [...issues, ...r.issues] };
}

/** Loads already-read sources (the watcher reads, hashes, then calls this). */
export function loadExtensionSources(sources: readonly SourceText[], opts: ExtensionLoadOptions = {}): ExtensionLoadResult {
  const loader = new Loader(opts);
  for (const s of sources) {
    // YAML 1.1 like kubectl, so `enabled: yes` is a boolean here exactly as it would be there.
    for (const doc of parseYamlStream(s.text, { version: '1.1' })) {
      if (doc.errors.length) {
        for (const e of doc.errors) loader.issues.push({ file: s.file, line: e.line, path: '', message: `YAML: ${e.message}`, level: 'error' });
        continue;
      }
      loader.object(doc.value, s.file, doc.locator);
    }
  }
  return loader.finish(sources.map((s) => s.file));
}

/** Loads plain JS objects (tests, the demo, programmatic use). */
export function loadExtensionObjects(objects: readonly unknown[], opts: ExtensionLoadOptions & { file?: string } = {}): ExtensionLoadResult {
  const loader = new Loader(opts);
  for (const o of objects) loader.object(o, opts.file ?? '<embedded>', new NullLocator());
  return loader.finish([]);
}

/**
 * `istioctl analyze`-style line: `Error [IST0106] (TrafficExtension parity.default) spec.wasm.sha256: ...`.
 * With `withOrigin`, the file and line are added inside the parentheses as istioctl does for files.
 */
export function formatAnalyzeLine(issue: ConfigIssue, opts: { withOrigin?: boolean } = {}): string {
  const level = issue.level === 'error' ? 'Error' : 'Warning';
  const code = issue.analyzerCode ? ` [${issue.analyzerCode}]` : '';
  const origin = `${issue.file}:${issue.line}`;
  const subject = issue.resource ? (opts.withOrigin ? `${issue.resource} ${origin}` : issue.resource) : origin;
  const detail = issue.path ? `${issue.path}: ${issue.message}` : issue.message;
  return `${level}${code} (${subject}) ${detail}`;
}

/** Stable hash of a value (sorted keys), used as a resourceVersion for files that carry none. */
function contentHash(v: unknown): string {
  const canon = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(canon);
    if (isObj(x)) return Object.fromEntries(Object.keys(x).sort().map((k) => [k, canon(x[k])]));
    return x;
  };
  return createHash('sha256').update(JSON.stringify(canon(v))).digest('hex').slice(0, 16);
}

/** WasmPlugin spec → TrafficExtension spec, as istiod's translateWasmPlugin (1.30). */
export function translateWasmPluginSpec(wp: Obj): TrafficExtensionSpec {
  const spec: TrafficExtensionSpec = {};
  if (wp.selector !== undefined) spec.selector = wp.selector as TrafficExtensionSpec['selector'];
  // The singular (deprecated) targetRef is folded into targetRefs; admission allows only one of them.
  const refs = [...(wp.targetRef !== undefined ? [wp.targetRef] : []), ...(Array.isArray(wp.targetRefs) ? wp.targetRefs : [])];
  if (refs.length > 0 || wp.targetRefs !== undefined) spec.targetRefs = refs as TrafficExtensionSpec['targetRefs'];
  // PluginPhase and ExecutionPhase share numbers; only the zero value's name differs.
  if (wp.phase !== undefined) spec.phase = (wp.phase === 'UNSPECIFIED_PHASE' ? 'UNSPECIFIED' : wp.phase) as Phase;
  if (wp.priority !== undefined) spec.priority = wp.priority as number;
  if (Array.isArray(wp.match) && wp.match.length > 0) {
    spec.match = wp.match.filter((m) => m !== null && m !== undefined).map((m: Obj) => {
      const out: Obj = {};
      if (m.mode !== undefined) out.mode = m.mode;
      if (m.ports !== undefined) out.ports = m.ports;
      return out;
    }) as TrafficExtensionSpec['match'];
  }
  const wasm: Obj = {};
  for (const k of ['url', 'sha256', 'imagePullPolicy', 'imagePullSecret', 'pluginConfig', 'pluginName', 'failStrategy', 'vmConfig', 'type']) {
    if (wp[k] !== undefined) wasm[k] = wp[k];
  }
  spec.wasm = wasm as unknown as TrafficExtensionSpec['wasm'];
  return spec;
}

function resolveExtension(spec: TrafficExtensionSpec, ns: string, name: string): ResolvedExtension {
  const r: ResolvedExtension = {
    resourceName: `extensions.istio.io/trafficextension/${ns}.${name}`,
    engine: spec.lua ? 'lua' : 'wasm',
    chain: spec.wasm?.type === 'NETWORK' ? 'NETWORK' : 'HTTP',
    phase: spec.phase ?? 'UNSPECIFIED',
    priority: spec.priority ?? INT32_MIN,
  };
  if (spec.wasm) {
    const u = goUrlParse(spec.wasm.url);
    r.url = u.scheme === '' ? `oci://${spec.wasm.url}` : spec.wasm.url;
    if (spec.wasm.imagePullSecret) {
      const ps = normalizePullSecret(spec.wasm.imagePullSecret, ns);
      if (ps) r.pullSecret = ps;
    }
  }
  return r;
}

class Loader {
  readonly issues: ConfigIssue[] = [];
  readonly #defaultNs: string;
  readonly #extensions = new Map<string, TrafficExtension>();
  readonly #secrets = new Map<string, PullSecret & { file: string; line: number }>();
  /** Line of each extension's imagePullSecret field, for the missing-secret warning. */
  readonly #secretRefLines = new Map<TrafficExtension, number>();

  constructor(opts: ExtensionLoadOptions) {
    this.#defaultNs = opts.defaultNamespace ?? 'default';
  }

  object(value: unknown, file: string, loc: YamlLocator): void {
    if (value === undefined || value === null) return; // empty document
    if (!isObj(value)) {
      this.issues.push({ file, line: loc.startLine, path: '', message: 'not a Kubernetes object (expected a mapping with apiVersion and kind)', level: 'error' });
      return;
    }
    const kind = value.kind;
    const apiVersion = value.apiVersion;
    if (typeof kind !== 'string' || kind === '' || typeof apiVersion !== 'string' || apiVersion === '') {
      const missing = [typeof apiVersion !== 'string' || apiVersion === '' ? 'apiVersion not set' : '', typeof kind !== 'string' || kind === '' ? 'kind not set' : ''].filter(Boolean);
      this.issues.push({ file, line: loc.startLine, path: '', message: `error validating data: [${missing.join(', ')}]`, level: 'error' });
      return;
    }
    if (kind === 'List' || (kind.endsWith('List') && Array.isArray(value.items))) {
      const items = Array.isArray(value.items) ? value.items : [];
      items.forEach((item, i) => this.object(item, file, loc.child(['items', i])));
      return;
    }
    if (kind === 'TrafficExtension' || kind === 'WasmPlugin') {
      if (apiVersion !== EXTENSIONS_API_VERSION) {
        this.issues.push({ file, line: loc.lineOf(['apiVersion']), path: 'apiVersion', message: `no matches for kind ${JSON.stringify(kind)} in version ${JSON.stringify(apiVersion)}; use apiVersion: ${EXTENSIONS_API_VERSION}`, level: 'error', resource: this.#label(kind, value) });
        return;
      }
      this.#extension(kind, value, file, loc);
      return;
    }
    if (kind === 'Secret' && apiVersion === 'v1') {
      this.#secret(value, file, loc);
      return;
    }
    const name = isObj(value.metadata) ? String(value.metadata.name ?? '') : '';
    this.issues.push({
      file,
      line: loc.startLine,
      path: '',
      message: `ignoring ${apiVersion}/${kind}${name ? ` ${JSON.stringify(name)}` : ''}: meshext reads only TrafficExtension, WasmPlugin and kubernetes.io/dockerconfigjson Secret resources`,
      level: 'warning',
    });
  }

  #label(kind: string, obj: Obj): string {
    const m = isObj(obj.metadata) ? obj.metadata : {};
    const ns = typeof m.namespace === 'string' && m.namespace !== '' ? m.namespace : this.#defaultNs;
    return `${kind} ${String(m.name ?? '')}.${ns}`;
  }

  #push(problems: readonly RuleProblem[], file: string, loc: YamlLocator, resource: string, segMap?: (s: PathSeg[]) => PathSeg[]): void {
    for (const p of problems) {
      const segs = segMap ? segMap(p.segs) : p.segs;
      this.issues.push({ file, line: loc.lineOf(segs), path: formatPath(p.segs), message: p.message, level: p.level, resource, analyzerCode: 'IST0106' });
    }
  }

  #extension(kind: 'TrafficExtension' | 'WasmPlugin', raw: Obj, file: string, loc: YamlLocator): void {
    const resource = this.#label(kind, raw);
    const obj = pruneNulls(raw) as Obj;
    const admission = admissionProblems(obj, kind);
    this.#push(admission, file, loc, resource);
    if (admission.some((p) => p.level === 'error')) return;

    const meta = obj.metadata as Obj;
    const ns = typeof meta.namespace === 'string' && meta.namespace !== '' ? meta.namespace : this.#defaultNs;
    const origName = meta.name as string;
    const name = kind === 'WasmPlugin' ? origName + WASMPLUGIN_SYNTHETIC_SUFFIX : origName;
    const spec: TrafficExtensionSpec = kind === 'WasmPlugin' ? translateWasmPluginSpec(obj.spec as Obj) : (obj.spec as TrafficExtensionSpec);

    // Layer 3 runs on the TrafficExtension form; for a WasmPlugin map spec.wasm.* back to spec.*.
    const runtime = runtimeLayer(spec as unknown as Obj, ns, name);
    const back = kind === 'WasmPlugin' ? (s: PathSeg[]): PathSeg[] => (s[0] === 'spec' && s[1] === 'wasm' ? ['spec', ...s.slice(2)] : s) : undefined;
    this.#push(
      runtime.map((p) => (back ? { ...p, segs: back(p.segs) } : p)),
      file,
      loc,
      resource,
    );
    if (runtime.length > 0) return;

    const annotations = isObj(meta.annotations) ? { ...(meta.annotations as Record<string, string>) } : undefined;
    const metadata: TrafficExtension['metadata'] = {
      name,
      namespace: ns,
      // Files rarely carry a resourceVersion; a content hash changes exactly when the resource does,
      // which is what imagePullPolicy: Always keys on.
      resourceVersion: typeof meta.resourceVersion === 'string' ? meta.resourceVersion : contentHash({ metadata: { ...meta, namespace: ns }, spec: obj.spec }),
    };
    if (typeof meta.creationTimestamp === 'string') metadata.creationTimestamp = meta.creationTimestamp;
    if (typeof meta.generation === 'number') metadata.generation = meta.generation;
    if (isObj(meta.labels)) metadata.labels = { ...(meta.labels as Record<string, string>) };
    if (kind === 'WasmPlugin') metadata.annotations = { ...annotations, 'istio.io/translated-from': 'WasmPlugin' };
    else if (annotations) metadata.annotations = annotations;

    const ext: TrafficExtension = {
      apiVersion: EXTENSIONS_API_VERSION,
      kind: 'TrafficExtension',
      metadata,
      spec,
      origin: { file, line: loc.startLine, kind },
      resolved: resolveExtension(spec, ns, name),
    };
    if (ext.resolved?.pullSecret === undefined && spec.wasm?.imagePullSecret) {
      this.issues.push({
        file, line: loc.lineOf(kind === 'WasmPlugin' ? ['spec', 'imagePullSecret'] : ['spec', 'wasm', 'imagePullSecret']),
        path: kind === 'WasmPlugin' ? 'spec.imagePullSecret' : 'spec.wasm.imagePullSecret',
        message: `invalid secret name ${JSON.stringify(spec.wasm.imagePullSecret)}, expected <name> or <namespace>/<name>; istiod ignores it and pulls without credentials`,
        level: 'warning', resource, analyzerCode: 'IST0106',
      });
    }
    if (spec.wasm?.imagePullSecret) this.#secretRefLines.set(ext, loc.lineOf(kind === 'WasmPlugin' ? ['spec', 'imagePullSecret'] : ['spec', 'wasm', 'imagePullSecret']));
    const key = `${ns}/${name}`;
    const prev = this.#extensions.get(key);
    if (prev) {
      this.issues.push({
        file, line: loc.startLine, path: '',
        message: `${kind} ${origName}.${ns} is defined again; this definition replaces the one at ${prev.origin.file}:${prev.origin.line} (kubectl apply semantics)`,
        level: 'warning', resource,
      });
      this.#extensions.delete(key);
    }
    this.#extensions.set(key, ext);
  }

  #secret(obj: Obj, file: string, loc: YamlLocator): void {
    const resource = this.#label('Secret', obj);
    if (obj.type !== 'kubernetes.io/dockerconfigjson') {
      this.issues.push({ file, line: loc.startLine, path: 'type', message: `ignoring Secret of type ${JSON.stringify(obj.type ?? 'Opaque')}: only kubernetes.io/dockerconfigjson secrets are used (as wasm imagePullSecret)`, level: 'warning', resource });
      return;
    }
    const meta = isObj(obj.metadata) ? obj.metadata : {};
    const name = meta.name;
    const errors: ConfigIssue[] = [];
    const err = (segs: PathSeg[], message: string): void => {
      errors.push({ file, line: loc.lineOf(segs), path: formatPath(segs), message, level: 'error', resource });
    };
    if (typeof name !== 'string' || name === '') err(['metadata', 'name'], 'Required value: name or generateName is required');
    const ns = typeof meta.namespace === 'string' && meta.namespace !== '' ? meta.namespace : this.#defaultNs;
    let json: string | undefined;
    const sd = isObj(obj.stringData) ? obj.stringData['.dockerconfigjson'] : undefined;
    const d = isObj(obj.data) ? obj.data['.dockerconfigjson'] : undefined;
    if (typeof sd === 'string') {
      json = sd; // stringData wins over data, as the apiserver merges it
    } else if (typeof d === 'string') {
      const clean = d.replace(/\s+/g, '');
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(clean) || clean.length % 4 !== 0) err(['data', '.dockerconfigjson'], 'illegal base64 data');
      else json = Buffer.from(clean, 'base64').toString('utf8');
    } else {
      err(['data', '.dockerconfigjson'], 'Required value');
    }
    if (json !== undefined) {
      // Never echo secret contents (JSON.parse's messages quote the input).
      let parsed: unknown;
      try {
        parsed = JSON.parse(json);
      } catch {
        err(['data', '.dockerconfigjson'], 'Invalid value: "<secret contents redacted>": not valid JSON');
      }
      if (parsed !== undefined && !isObj(parsed)) err(['data', '.dockerconfigjson'], 'Invalid value: "<secret contents redacted>": must be a JSON object ({"auths": {...}})');
    }
    if (errors.length) {
      this.issues.push(...errors);
      return;
    }
    this.#secrets.set(`${ns}/${String(name)}`, { name: String(name), namespace: ns, dockerConfigJson: json!, file, line: loc.startLine });
  }

  finish(files: string[]): ExtensionLoadResult {
    const extensions = [...this.#extensions.values()];
    const secrets = [...this.#secrets.values()];
    for (const ext of extensions) {
      const ps = ext.resolved?.pullSecret;
      if (!ps) continue;
      if (this.#secrets.has(`${ps.namespace}/${ps.name}`)) continue;
      const viaWp = ext.origin.kind === 'WasmPlugin';
      const name = viaWp ? ext.metadata.name.slice(0, -WASMPLUGIN_SYNTHETIC_SUFFIX.length) : ext.metadata.name;
      this.issues.push({
        file: ext.origin.file,
        line: this.#secretRefLines.get(ext) ?? ext.origin.line,
        path: viaWp ? 'spec.imagePullSecret' : 'spec.wasm.imagePullSecret',
        message: `Referenced secret not found: ${JSON.stringify(ps.name)} in namespace ${ps.namespace}; the module fetch will fail with "missing image pulling secret" (add a kubernetes.io/dockerconfigjson Secret to the extension sources)`,
        level: 'warning',
        resource: `${ext.origin.kind} ${name}.${ext.metadata.namespace}`,
        analyzerCode: 'IST0101',
      });
    }
    return {
      set: { extensions, secrets: secrets.map(({ name, namespace, dockerConfigJson }) => ({ name, namespace, dockerConfigJson })) },
      issues: this.issues,
      files,
    };
  }
}
