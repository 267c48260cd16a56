/**
 * SSRF guard for module fetching (spec §3.2). A TrafficExtension author chooses the URL, and the
 * proxy dials it from inside the mesh, so the URL must not be a way to reach the node's metadata
 * service or the proxy's own loopback admin ports. The check runs at dial time, on the addresses
 * DNS actually returned, so redirects, bearer realms and blob hops are all covered, and a name that
 * resolves to a forbidden address is refused whatever it looks like.
 */
import dns from 'node:dns';
import net from 'node:net';
import type { LookupFunction } from 'node:net';

/** A parsed CIDR block, kept as bytes so IPv4 and IPv6 share one matcher. */
interface Cidr {
  readonly text: string;
  readonly bytes: Uint8Array;
  readonly prefix: number;
  readonly why: string;
}

/** Always refused: link-local (where every cloud's metadata endpoint lives) and known metadata IPs. */
const ALWAYS_BLOCKED: ReadonlyArray<readonly [string, string]> = [
  ['169.254.0.0/16', 'link-local address (cloud metadata range)'],
  ['fe80::/10', 'IPv6 link-local address'],
  ['fd00:ec2::254/128', 'AWS instance metadata (IPv6)'],
  ['100.100.100.200/32', 'Alibaba Cloud metadata address'],
  ['192.0.0.192/32', 'Oracle Cloud metadata address'],
  // NAT64 spelling of the IPv4 link-local range.
  ['64:ff9b::a9fe:0/112', 'NAT64-mapped link-local address'],
];

/** Refused unless the operator allows loopback (tests and single-host setups do). */
const LOOPBACK: ReadonlyArray<readonly [string, string]> = [
  ['127.0.0.0/8', 'loopback address'],
  ['::1/128', 'loopback address'],
  // Dialling the unspecified address reaches the local host on Linux: same risk as loopback.
  ['0.0.0.0/8', 'unspecified address'],
  ['::/128', 'unspecified address'],
];

/** Hostnames refused before any lookup (they only make sense from inside a cloud VM). */
const METADATA_HOSTNAMES = new Set(['metadata.google.internal', 'metadata.goog', 'metadata', 'instance-data', 'instance-data.ec2.internal']);

/** Parses an IP literal to 4 or 16 bytes; IPv4-mapped IPv6 (::ffff:a.b.c.d) collapses to 4 bytes. */
export function ipBytes(ip: string): Uint8Array | undefined {
  let s = ip.trim();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  const family = net.isIP(s);
  if (family === 4) return Uint8Array.from(s.split('.').map(Number));
  if (family !== 6) return undefined;
  const out = new Uint8Array(16);
  let head = s;
  let tail = '';
  const dbl = s.indexOf('::');
  if (dbl >= 0) {
    head = s.slice(0, dbl);
    tail = s.slice(dbl + 2);
  }
  const words = (part: string): number[] => {
    if (part === '') return [];
    const res: number[] = [];
    for (const g of part.split(':')) {
      if (g.includes('.')) {
        const v4 = g.split('.').map(Number);
        res.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else res.push(parseInt(g, 16));
    }
    return res;
  };
  const h = words(head);
  const t = words(tail);
  const all = [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
  for (let i = 0; i < 8; i++) {
    out[i * 2] = (all[i]! >> 8) & 0xff;
    out[i * 2 + 1] = all[i]! & 0xff;
  }
  const mapped = out.subarray(0, 10).every((b) => b === 0) && out[10] === 0xff && out[11] === 0xff;
  return mapped ? out.slice(12) : out;
}

export function parseCidr(text: string, why = 'blocked by operator (blockedCidrs)'): Cidr {
  const slash = text.indexOf('/');
  const addr = slash >= 0 ? text.slice(0, slash) : text;
  const raw = ipBytes(addr);
  if (!raw) throw new TypeError(`invalid CIDR '${text}'`);
  // A mapped-IPv6 block like ::ffff:10.0.0.0/104 is stored in its IPv4 form.
  const v6len = net.isIP(addr.replace(/^\[|\]$/g, '')) === 6;
  let prefix = slash >= 0 ? Number(text.slice(slash + 1)) : raw.length * 8;
  if (v6len && raw.length === 4 && slash >= 0) prefix -= 96;
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > raw.length * 8) throw new TypeError(`invalid CIDR prefix in '${text}'`);
  return { text, bytes: raw, prefix, why };
}

function contains(c: Cidr, ip: Uint8Array): boolean {
  if (c.bytes.length !== ip.length) return false;
  let bits = c.prefix;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((c.bytes[i]! & mask) !== (ip[i]! & mask)) return false;
  }
  return true;
}

export interface SsrfGuardOptions {
  /** Allow loopback and unspecified addresses (operator opt-in; the test suites set it). */
  allowLoopback?: boolean;
  /** Extra CIDRs to refuse (Istio's BLOCKED_CIDRS_IN_WASM_FETCH). */
  blockedCidrs?: readonly string[];
}

export class SsrfGuard {
  readonly allowLoopback: boolean;
  readonly #rules: Cidr[];

  constructor(opts: SsrfGuardOptions = {}) {
    this.allowLoopback = opts.allowLoopback === true;
    this.#rules = ALWAYS_BLOCKED.map(([c, why]) => parseCidr(c, why));
    if (!this.allowLoopback) this.#rules.push(...LOOPBACK.map(([c, why]) => parseCidr(c, why)));
    for (const c of opts.blockedCidrs ?? []) {
      const t = c.trim();
      if (t) this.#rules.push(parseCidr(t, `in blocked CIDR ${t} (blockedCidrs)`));
    }
  }

  /** Why `ip` must not be dialled, or undefined when it may. */
  checkAddress(ip: string): string | undefined {
    const b = ipBytes(ip);
    if (!b) return `not an IP address: ${ip}`;
    for (const r of this.#rules) if (contains(r, b)) return `${ip}: ${r.why}`;
    return undefined;
  }

  /** Why a hostname must not be dialled before resolving it, or undefined. */
  checkHostname(host: string): string | undefined {
    const h = host.toLowerCase().replace(/\.$/, '');
    if (METADATA_HOSTNAMES.has(h)) return `${host} is a cloud metadata hostname`;
    if (!this.allowLoopback && (h === 'localhost' || h.endsWith('.localhost'))) return `${host} is a loopback hostname`;
    if (net.isIP(h.replace(/^\[|\]$/g, ''))) return this.checkAddress(h);
    return undefined;
  }

  /**
   * A `lookup` for net/tls.connect: resolves, then refuses the host when ANY returned address is
   * forbidden (a mixed answer is how DNS-rebinding attacks slip through "first address" checks).
   */
  readonly lookup: LookupFunction = (hostname, options, callback) => {
    const hostWhy = this.checkHostname(hostname);
    if (hostWhy) {
      callback(blockedErr(hostname, hostWhy), '', 4);
      return;
    }
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) {
        callback(err, '', 4);
        return;
      }
      for (const a of addresses) {
        const why = this.checkAddress(a.address);
        if (why) {
          callback(blockedErr(hostname, why), '', 4);
          return;
        }
      }
      if (options.all) (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, addresses);
      else callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };

  /**
   * Bearer realm restrictions (Istio 1.30 `wasm-ssrf-bearer-realm`): the token endpoint named by a
   * registry's 401 challenge must be http(s), not a metadata/localhost name, and not a private,
   * loopback or link-local IP literal. Loopback is accepted only when the operator allows loopback.
   */
  checkRealm(realm: string): string | undefined {
    let u: URL;
    try {
      u = new URL(realm);
    } catch {
      return `bearer realm '${realm}' is not a URL`;
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return `bearer realm scheme '${u.protocol}' is not http(s)`;
    const host = u.hostname.replace(/^\[|\]$/g, '').toLowerCase();
    const hostWhy = this.checkHostname(host);
    if (hostWhy) return `bearer realm refused: ${hostWhy}`;
    const b = ipBytes(host);
    if (b) {
      const priv = b.length === 4
        ? ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10']
        : ['fc00::/7'];
      for (const c of priv) if (contains(parseCidr(c), b)) return `bearer realm refused: ${host} is a private address`;
      const why = this.checkAddress(host);
      if (why) return `bearer realm refused: ${why}`;
    }
    return undefined;
  }
}

export function blockedErr(host: string, why: string): NodeJS.ErrnoException {
  const e: NodeJS.ErrnoException = new Error(`SSRF guard refused to dial ${host}: ${why}`);
  e.code = 'MESHEXT_SSRF_BLOCKED';
  return e;
}
