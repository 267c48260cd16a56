/**
 * Module URL parsing: scheme detection (no scheme means oci://, as istiod rewrites it), OCI
 * references `host[:port]/repo[:tag][@sha256:hex]`, and the two cache identities Istio uses:
 * the module name (OCI: URL without tag/digest; HTTP: the full URL) and the tagged URL.
 */
import { FetchError, FetchErrorCode } from './errors.ts';

export type Scheme = 'oci' | 'http' | 'https' | 'file';

export interface OciReference {
  /** `host[:port]` as written (Docker Hub normalised to `index.docker.io`). */
  registry: string;
  /** Host the API is served from (Docker Hub's is registry-1.docker.io). */
  apiHost: string;
  repository: string;
  tag: string | undefined;
  /** `sha256:<hex>` when the URL pins a digest. */
  digest: string | undefined;
}

export interface ParsedModuleUrl {
  scheme: Scheme;
  /** URL with an explicit scheme (`oci://` added when none was given). */
  url: string;
  /** Istio's module name: `oci://host/repo` for OCI, the full URL otherwise. */
  moduleName: string;
  oci?: OciReference;
  /** Local path for file://. */
  path?: string;
  /** Hex digest from `@sha256:` in an OCI URL. */
  urlDigest?: string;
}

const SCHEME_RE = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//;
const REPO_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;

export function parseModuleUrl(raw: string): ParsedModuleUrl {
  const input = raw.trim();
  const bad = (why: string): never => {
    throw new FetchError(FetchErrorCode.InvalidUrl, `invalid module URL '${raw}': ${why}`, { url: raw, step: 'resolve' });
  };
  if (!input) bad('empty');
  const m = SCHEME_RE.exec(input);
  const scheme = (m ? m[1]!.toLowerCase() : 'oci') as string;
  if (scheme === 'http' || scheme === 'https') {
    let u: URL;
    try {
      u = new URL(input);
    } catch {
      return bad('not a URL');
    }
    return { scheme, url: u.href, moduleName: u.href };
  }
  if (scheme === 'file') {
    let u: URL;
    try {
      u = new URL(input);
    } catch {
      return bad('not a URL');
    }
    const path = decodeURIComponent(u.pathname);
    if (!path || path === '/') bad('no path');
    return { scheme: 'file', url: input, moduleName: input, path };
  }
  if (scheme !== 'oci') return bad(`unsupported scheme '${scheme}' (oci, http, https, file)`);
  const rest = m ? input.slice(m[0].length) : input;
  const oci = parseOciReference(rest, raw);
  const base = `oci://${oci.registry}/${oci.repository}`;
  let url = base;
  if (oci.tag) url += `:${oci.tag}`;
  if (oci.digest) url += `@${oci.digest}`;
  const out: ParsedModuleUrl = { scheme: 'oci', url, moduleName: base, oci };
  if (oci.digest?.startsWith('sha256:')) out.urlDigest = oci.digest.slice(7);
  return out;
}

export function parseOciReference(ref: string, raw = ref): OciReference {
  const bad = (why: string): never => {
    throw new FetchError(FetchErrorCode.InvalidUrl, `invalid OCI reference '${raw}': ${why}`, { url: raw, step: 'resolve' });
  };
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!/^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(digest)) bad(`bad digest '${digest}'`);
    if (digest.startsWith('sha256:') && !/^sha256:[a-f0-9]{64}$/.test(digest)) bad('sha256 digest must be 64 lower-case hex digits');
  }
  const slash = rest.indexOf('/');
  let registry: string;
  let path: string;
  const first = slash >= 0 ? rest.slice(0, slash) : '';
  if (slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('['))) {
    registry = first.toLowerCase();
    path = rest.slice(slash + 1);
  } else {
    // A bare `name[:tag]` or `org/name` refers to Docker Hub, as docker and go-containerregistry read it.
    registry = 'index.docker.io';
    path = slash >= 0 ? rest : `library/${rest}`;
  }
  let tag: string | undefined;
  const lastSlash = path.lastIndexOf('/');
  const colon = path.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = path.slice(colon + 1);
    path = path.slice(0, colon);
    if (!TAG_RE.test(tag)) bad(`bad tag '${tag}'`);
  }
  if (!path) bad('no repository');
  for (const c of path.split('/')) if (!REPO_COMPONENT.test(c)) bad(`bad repository component '${c}'`);
  if (!tag && !digest) tag = 'latest';
  if (registry === 'docker.io' || registry === 'registry-1.docker.io') registry = 'index.docker.io';
  const apiHost = registry === 'index.docker.io' ? 'registry-1.docker.io' : registry;
  return { registry, apiHost, repository: path, tag, digest };
}

/** Host matching for the insecure-registries list: `*`, `host:port` or bare `host`. */
export function isInsecureHost(list: readonly string[], hostPort: string): boolean {
  const h = hostPort.toLowerCase();
  const bare = h.startsWith('[') ? h.slice(0, h.indexOf(']') + 1) : h.replace(/:\d+$/, '');
  return list.some((e) => {
    const x = e.trim().toLowerCase();
    return x === '*' || x === h || x === bare;
  });
}
