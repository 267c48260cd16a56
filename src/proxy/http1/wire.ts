/**
 * Writing HTTP/1.1 messages: heads are built as one latin1 string and, when the body that follows
 * in the same tick is small, coalesced with it into one Buffer so a response costs one write.
 */
import type { HeaderMap } from '../../filters/header-map.ts';
import { logger } from '../../observability/log.ts';
import { http } from '../node-builtins.ts';
import { TCHAR } from './parser.ts';
import type { ByteStream } from '../transport/byte-stream.ts';

const log = logger('http');


/** Headers that describe one hop and never cross the proxy (RFC 9110 §7.6.1, as Envoy strips them). */
export const HOP_BY_HOP: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'http2-settings']);

/**
 * HOP_BY_HOP.has(name) without hashing `name` (header names are often fresh strings): the length
 * picks at most two candidates to compare.
 */
export function isHopByHop(name: string): boolean {
  switch (name.length) {
    case 2: return name === 'te';
    case 7: return name === 'upgrade';
    case 10: return name === 'connection' || name === 'keep-alive';
    case 14: return name === 'http2-settings';
    case 16: return name === 'proxy-connection';
    case 17: return name === 'transfer-encoding';
    default: return false;
  }
}

/** Below this, head and body are copied into one Buffer (one syscall); above, written separately. */
const COALESCE_LIMIT = 16 * 1024;

const { STATUS_CODES } = http;
const REASONS: Record<number, string> = {};
for (const [code, text] of Object.entries(STATUS_CODES)) REASONS[Number(code)] = text ?? '';

export function reasonPhrase(status: number): string {
  return REASONS[status] ?? 'Unknown';
}


/**
 * Names that passed the token check: a head's usual names (constant strings from the parser's
 * table and the proxy's own code, hashes cached) then cost one Set lookup instead of a loop over
 * their characters. Bounded in count and name length, since request header names are the
 * client's: other names are checked every time.
 */
const TOKEN_NAMES = new Set<string>();
const MAX_TOKEN_NAMES = 1024;
const MAX_REMEMBERED_NAME = 64;

function isTokenName(name: string): boolean {
  if (TOKEN_NAMES.has(name)) return true;
  const nl = name.length;
  if (nl === 0) return false;
  for (let i = 0; i < nl; i++) {
    const c = name.charCodeAt(i);
    if (c > 255 || TCHAR[c] === 0) return false;
  }
  if (nl <= MAX_REMEMBERED_NAME && TOKEN_NAMES.size < MAX_TOKEN_NAMES) TOKEN_NAMES.add(name);
  return true;
}

/**
 * Whether a header may be written on an HTTP/1.1 wire (valid token name, no CR/LF/NUL/controls in
 * the value). A char loop for the value: these strings are short, and a regular expression call
 * per header costs more.
 */
export function isWritableHeader(name: string, value: string): boolean {
  if (!isTokenName(name)) return false;
  const vl = value.length;
  for (let i = 0; i < vl; i++) {
    const c = value.charCodeAt(i);
    if (c < 32 ? c !== 9 : c === 127 || c > 255) return false;
  }
  return true;
}

function isDigits(v: string): boolean {
  if (v.length === 0 || v.length > 15) return false;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** Facts about a head's headers gathered while serializing them. */
export interface SerializedHeaders {
  text: string;
  contentLength: string | undefined;
}

/**
 * Serializes the regular headers of `headers` as `name: value\r\n` lines, skipping pseudo-headers,
 * hop-by-hop headers (except `te: trailers` when `keepTeTrailers`) and headers that could not be
 * written safely (a filter-set value with CR/LF would otherwise split the message).
 */
export function serializeHeaders(headers: HeaderMap, keepTeTrailers: boolean, skipHost: boolean): SerializedHeaders {
  const names = headers.names;
  const values = headers.values;
  let text = '';
  let contentLength: string | undefined;
  for (let i = 0; i < names.length; i++) {
    const n = names[i]!;
    if (n.charCodeAt(0) === 58) continue;
    const v = values[i]!;
    if (isHopByHop(n)) {
      if (!(keepTeTrailers && n === 'te' && v === 'trailers')) continue;
    } else if (n === 'content-length') {
      if (contentLength !== undefined) continue; // duplicates were rejected or joined upstream; write one
      // A filter-set value that is not a number is not framing (the body would go out undelimited).
      if (!isDigits(v)) continue;
      contentLength = v;
    } else if (skipHost && n === 'host') {
      continue;
    }
    if (!isWritableHeader(n, v)) {
      dropped(n, v);
      continue;
    }
    text += n + ': ' + v + '\r\n';
  }
  return { text, contentLength };
}

/** Serializes trailers (same rules as headers; framing headers never appear in trailers). */
export function serializeTrailers(trailers: HeaderMap): string {
  let text = '';
  const names = trailers.names;
  const values = trailers.values;
  for (let i = 0; i < names.length; i++) {
    const n = names[i]!;
    if (n.charCodeAt(0) === 58 || isHopByHop(n) || n === 'content-length') continue;
    const v = values[i]!;
    if (isWritableHeader(n, v)) text += n + ': ' + v + '\r\n';
    else dropped(n, v);
  }
  return text;
}

/** A header a filter set that HTTP/1.1 cannot carry: say which and why, then leave it out. */
function dropped(name: string, value: string): void {
  log.warn(
    { header: name, value: JSON.stringify(value.length > 80 ? value.slice(0, 80) + '…' : value) },
    'header not written to HTTP/1.1: names must be tokens and values may not contain CR, LF, NUL or other control characters (a filter or extension set it; fix the value it sets)',
  );
}

/**
 * Writes `prefix`, the data chunks and `suffix` (latin1 strings around the body) as one Buffer when
 * small, otherwise corked. Returns socket.write's backpressure result.
 */
export function writeFramed(socket: ByteStream, prefix: string, data: readonly Buffer[], suffix: string): boolean {
  if (socket.writeParts !== undefined) return socket.writeParts(prefix, data, suffix);
  let total = prefix.length + suffix.length;
  for (let i = 0; i < data.length; i++) total += data[i]!.length;
  if (data.length === 0) {
    if (total === 0) return !socket.writableNeedDrain;
    return socket.write(suffix.length === 0 ? prefix : prefix + suffix, 'latin1');
  }
  if (total <= COALESCE_LIMIT) {
    const out = Buffer.allocUnsafe(total);
    let at = prefix.length === 0 ? 0 : out.write(prefix, 0, 'latin1');
    for (let i = 0; i < data.length; i++) at += data[i]!.copy(out, at);
    if (suffix.length !== 0) out.write(suffix, at, 'latin1');
    return socket.write(out);
  }
  socket.cork();
  if (prefix.length !== 0) socket.write(prefix, 'latin1');
  let ok = true;
  for (let i = 0; i < data.length; i++) ok = socket.write(data[i]!);
  if (suffix.length !== 0) ok = socket.write(suffix, 'latin1');
  socket.uncork();
  return ok;
}
