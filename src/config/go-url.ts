/**
 * A port of the acceptance rules of Go's `net/url` Parse / ParseRequestURI, which decide whether a
 * Wasm URL is valid in the CRD's CEL rule (`isURL`), in istiod's webhook (`strictParseURL`) and in
 * its runtime discard check (`url.Parse`). Only what affects acceptance and the scheme is kept:
 * `private-registry:5000/x` parses with scheme `private-registry` in Go, and that is what Istio
 * then rejects, so WHATWG URL parsing would give different answers.
 */

export interface GoUrl {
  scheme: string;
  opaque: string;
  host: string;
  path: string;
}

export class GoUrlError extends Error {
  constructor(raw: string, reason: string) {
    super(`parse ${JSON.stringify(raw)}: ${reason}`);
  }
}

const isLetter = (c: string): boolean => (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
const isDigit = (c: string): boolean => c >= '0' && c <= '9';

function getScheme(raw: string): { scheme: string; rest: string } | string {
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (isLetter(c)) continue;
    if (isDigit(c) || c === '+' || c === '-' || c === '.') {
      if (i === 0) return { scheme: '', rest: raw };
      continue;
    }
    if (c === ':') {
      if (i === 0) return 'missing protocol scheme';
      return { scheme: raw.slice(0, i), rest: raw.slice(i + 1) };
    }
    return { scheme: '', rest: raw };
  }
  return { scheme: '', rest: raw };
}

function hasCtl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const b = s.charCodeAt(i);
    if (b < 0x20 || b === 0x7f) return true;
  }
  return false;
}

const hexRe = /^[0-9a-fA-F]{2}$/;
// Characters Go accepts unescaped in a host (RFC 3986 sub-delims, ':' and brackets for IPv6, and
// the few extras Go tolerates).
const hostOk = /^[A-Za-z0-9\-_.~!$&'()*+,;=:[\]<>"]$/;

function checkEscapes(s: string, host: boolean): string | null {
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '%') {
      const h = s.slice(i + 1, i + 3);
      if (!hexRe.test(h)) return `invalid URL escape ${JSON.stringify(s.slice(i, i + 3))}`;
      i += 2;
    } else if (host && c.charCodeAt(0) < 0x80 && !hostOk.test(c)) {
      return `invalid character ${JSON.stringify(c)} in host name`;
    }
  }
  return null;
}

function validOptionalPort(port: string): boolean {
  if (port === '') return true;
  if (port[0] !== ':') return false;
  for (const c of port.slice(1)) if (!isDigit(c)) return false;
  return true;
}

function parseHost(host: string): string | null {
  if (host.startsWith('[')) {
    const i = host.lastIndexOf(']');
    if (i < 0) return "missing ']' in host";
    const colonPort = host.slice(i + 1);
    if (!validOptionalPort(colonPort)) return `invalid port ${JSON.stringify(colonPort)} after host`;
  } else {
    const i = host.lastIndexOf(':');
    if (i !== -1) {
      const colonPort = host.slice(i);
      if (!validOptionalPort(colonPort)) return `invalid port ${JSON.stringify(colonPort)} after host`;
    }
  }
  return checkEscapes(host, true);
}

const userinfoOk = /^[A-Za-z0-9\-._:~!$&'()*+,;=%@]*$/;

function parse(raw: string, viaRequest: boolean): GoUrl | string {
  if (hasCtl(raw)) return 'net/url: invalid control character in URL';
  if (raw === '' && viaRequest) return 'empty url';
  if (raw === '*') return { scheme: '', opaque: '', host: '', path: '*' };
  const sch = getScheme(raw);
  if (typeof sch === 'string') return sch;
  const scheme = sch.scheme.toLowerCase();
  let rest = sch.rest;
  if (rest.endsWith('?') && rest.split('?').length === 2) rest = rest.slice(0, -1);
  else rest = rest.split('?')[0]!;
  if (!rest.startsWith('/')) {
    if (scheme !== '') return { scheme, opaque: rest, host: '', path: '' };
    if (viaRequest) return 'invalid URI for request';
    const seg = rest.split('/')[0]!;
    if (seg.includes(':')) return 'first path segment in URL cannot contain colon';
  }
  let host = '';
  if ((scheme !== '' || (!viaRequest && !rest.startsWith('///'))) && rest.startsWith('//')) {
    const after = rest.slice(2);
    const slash = after.indexOf('/');
    const authority = slash < 0 ? after : after.slice(0, slash);
    rest = slash < 0 ? '' : after.slice(slash);
    const at = authority.lastIndexOf('@');
    if (at >= 0 && !userinfoOk.test(authority.slice(0, at))) return 'net/url: invalid userinfo';
    host = at >= 0 ? authority.slice(at + 1) : authority;
    const herr = parseHost(host);
    if (herr) return herr;
  }
  const perr = checkEscapes(rest, false);
  if (perr) return perr;
  return { scheme, opaque: '', host, path: rest };
}

/** Go's `url.Parse`: the fragment is split off first and must unescape. */
export function goUrlParse(raw: string): GoUrl {
  const hash = raw.indexOf('#');
  const u = hash < 0 ? raw : raw.slice(0, hash);
  const r = parse(u, false);
  if (typeof r === 'string') throw new GoUrlError(u, r);
  if (hash >= 0) {
    const ferr = checkEscapes(raw.slice(hash + 1), false);
    if (ferr) throw new GoUrlError(raw, ferr);
  }
  return r;
}

/** Go's `url.ParseRequestURI`: absolute URI or absolute path, no fragment handling. */
export function goUrlParseRequestURI(raw: string): GoUrl {
  const r = parse(raw, true);
  if (typeof r === 'string') throw new GoUrlError(raw, r);
  return r;
}

/** Kubernetes CEL `isURL(s)`. */
export function celIsURL(s: string): boolean {
  try {
    goUrlParseRequestURI(s);
    return true;
  } catch {
    return false;
  }
}
