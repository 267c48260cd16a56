/**
 * Route tables: virtual hosts chosen by authority (Envoy's domain matching order: exact, then the
 * longest `*.suffix`, then the longest `prefix.*`, then `*`), then the first route whose match holds.
 * Matchers are compiled once per table so request matching does no allocation.
 */
import type { HeaderMatcher, RouteConfig, RouteTableConfig, VirtualHostConfig } from '../config/types.ts';
import type { HeaderMap } from '../filters/header-map.ts';
import type { RouteInfo } from '../filters/types.ts';

export interface ResolvedRoute extends RouteInfo {
  readonly config: RouteConfig;
  readonly virtualHost: string;
}

interface CompiledHeaderMatcher {
  name: string;
  test: (value: string | undefined) => boolean;
}

interface CompiledRoute {
  route: ResolvedRoute;
  prefix: string | undefined;
  path: string | undefined;
  regex: RegExp | undefined;
  methods: Set<string> | undefined;
  headers: CompiledHeaderMatcher[];
}

interface CompiledVhost {
  config: VirtualHostConfig;
  routes: CompiledRoute[];
}

function compileHeader(m: HeaderMatcher): CompiledHeaderMatcher {
  let test: (v: string | undefined) => boolean;
  if (m.exact !== undefined) test = (v) => v === m.exact;
  else if (m.prefix !== undefined) test = (v) => v !== undefined && v.startsWith(m.prefix!);
  else if (m.regex !== undefined) {
    const re = new RegExp(`^(?:${m.regex})$`);
    test = (v) => v !== undefined && re.test(v);
  } else if (m.present === false) test = (v) => v === undefined;
  else test = (v) => v !== undefined;
  const name = m.name.toLowerCase();
  return { name, test: m.invert ? (v) => !test(v) : test };
}

function compileRoute(r: RouteConfig, vhost: string): CompiledRoute {
  return {
    route: {
      name: r.name,
      cluster: r.route?.cluster,
      filterMetadata: r.metadata ?? {},
      config: r,
      virtualHost: vhost,
    },
    prefix: r.match.prefix,
    path: r.match.path,
    regex: r.match.regex !== undefined ? new RegExp(`^(?:${r.match.regex})$`) : undefined,
    methods: r.match.methods ? new Set(r.match.methods.map((m) => m.toUpperCase())) : undefined,
    headers: (r.match.headers ?? []).map(compileHeader),
  };
}

export class RouteTable {
  readonly name: string;
  readonly #exact = new Map<string, CompiledVhost>();
  readonly #suffix: { suffix: string; vhost: CompiledVhost }[] = [];
  readonly #prefix: { prefix: string; vhost: CompiledVhost }[] = [];
  #any: CompiledVhost | undefined;

  constructor(config: RouteTableConfig) {
    this.name = config.name;
    for (const vh of config.virtualHosts) {
      const compiled: CompiledVhost = { config: vh, routes: vh.routes.map((r) => compileRoute(r, vh.name)) };
      for (const d of vh.domains) {
        const domain = d.toLowerCase();
        if (domain === '*') this.#any ??= compiled;
        else if (domain.startsWith('*')) this.#suffix.push({ suffix: domain.slice(1), vhost: compiled });
        else if (domain.endsWith('*')) this.#prefix.push({ prefix: domain.slice(0, -1), vhost: compiled });
        else if (!this.#exact.has(domain)) this.#exact.set(domain, compiled);
      }
    }
    // Longest wildcard wins, as in Envoy.
    this.#suffix.sort((a, b) => b.suffix.length - a.suffix.length);
    this.#prefix.sort((a, b) => b.prefix.length - a.prefix.length);
  }

  /**
   * Virtual host by the request's exact authority: clients send the same few Host values, and the
   * lower-casing, port stripping and wildcard scans below cost more than one Map lookup. Bounded;
   * a route table is rebuilt (and its cache dropped) on every config change.
   */
  readonly #byAuthority = new Map<string, CompiledVhost | undefined>();

  /** The last lookup, checked first: one string comparison, where the Map must hash a new string. */
  #lastAuthority: string | undefined;
  #lastVhost: CompiledVhost | undefined;

  #vhostFor(authority: string): CompiledVhost | undefined {
    if (authority === this.#lastAuthority) return this.#lastVhost;
    const vh = this.#cachedVhost(authority);
    this.#lastAuthority = authority;
    this.#lastVhost = vh;
    return vh;
  }

  #cachedVhost(authority: string): CompiledVhost | undefined {
    const cached = this.#byAuthority.get(authority);
    if (cached !== undefined || this.#byAuthority.has(authority)) return cached;
    const vh = this.#resolveVhost(authority);
    if (this.#byAuthority.size >= 1024) this.#byAuthority.clear();
    this.#byAuthority.set(authority, vh);
    return vh;
  }

  #resolveVhost(authority: string): CompiledVhost | undefined {
    let host = authority.toLowerCase();
    let vh = this.#exact.get(host);
    if (vh) return vh;
    // Envoy retries without the port.
    const colon = host.lastIndexOf(':');
    if (colon > 0 && host.indexOf(']') < colon) {
      host = host.slice(0, colon);
      vh = this.#exact.get(host);
      if (vh) return vh;
    }
    for (const s of this.#suffix) if (host.endsWith(s.suffix) && host.length > s.suffix.length) return s.vhost;
    for (const p of this.#prefix) if (host.startsWith(p.prefix) && host.length > p.prefix.length) return p.vhost;
    return this.#any;
  }

  match(headers: HeaderMap): ResolvedRoute | undefined {
    const vh = this.#vhostFor(headers.get(':authority') ?? '');
    if (!vh) return undefined;
    const fullPath = headers.get(':path') ?? '/';
    const q = fullPath.indexOf('?');
    const path = q < 0 ? fullPath : fullPath.slice(0, q);
    const method = headers.get(':method') ?? 'GET';
    for (const r of vh.routes) {
      if (r.path !== undefined && path !== r.path) continue;
      if (r.prefix !== undefined && !path.startsWith(r.prefix)) continue;
      if (r.regex !== undefined && !r.regex.test(path)) continue;
      if (r.methods !== undefined && !r.methods.has(method)) continue;
      let ok = true;
      for (const h of r.headers) {
        if (!h.test(headers.get(h.name))) {
          ok = false;
          break;
        }
      }
      if (ok) return r.route;
    }
    return undefined;
  }
}
