/**
 * An incremental HTTP/1.1 message parser for both directions (requests downstream, responses
 * upstream), fed straight from socket reads.
 *
 * Written by hand rather than using node:http/undici because their object and stream layers cost
 * more per request than everything else meshext does (see bench/results: node:http server, undici
 * dispatch and their streams were ~45% of passthrough CPU). Node's llhttp binding is internal and
 * undici's llhttp build is not exported, so parsing here is JavaScript over latin1 strings: the head
 * is found with one native indexOf and decoded once; body bytes are handed on as zero-copy views.
 *
 * Strictness follows Envoy's defaults: bare CR/LF, control characters, obs-fold, invalid tokens,
 * Content-Length with Transfer-Encoding, conflicting Content-Lengths and unknown transfer codings are
 * rejected with the status Envoy answers (400, 431, 501, 505).
 */

/** A protocol error with the status a server answers it with (Envoy's codec errors). */
export class Http1ParseError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(message: string, status = 400, code = 'MESHEXT_ERR_HTTP1_PARSE') {
    super(message);
    this.name = 'Http1ParseError';
    this.code = code;
    this.status = status;
  }
}

/** The head of one message. Header names are lower-cased; values keep their bytes (latin1). */
export interface Http1Head {
  /** Request: method and request-target; empty for responses. */
  method: string;
  target: string;
  /** Response: status code and reason phrase; 0 for requests. */
  status: number;
  reason: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  versionMinor: number;
  names: string[];
  values: string[];
  /** Whether the connection may carry another message after this one. */
  keepAlive: boolean;
  /** Content-Length, or -1 when absent. */
  contentLength: number;
  chunked: boolean;
  /** True when no body follows the head (length 0, or a response that cannot have one). */
  bodyless: boolean;
  /** Request carries `Expect: 100-continue`. */
  expectContinue: boolean;
}

export interface Http1Events {
  /** A message head was parsed. For responses, 1xx interim heads are reported with `interim`. */
  onHead(head: Http1Head): void;
  /** Body bytes (chunk framing removed); a view into the socket's buffer. */
  onBody(chunk: Buffer): void;
  /** The message ended; trailers as parallel arrays (lower-cased names) when present. */
  onComplete(trailerNames: string[] | undefined, trailerValues: string[] | undefined): void;
}

const S_HEAD = 0;
const S_BODY_LENGTH = 1;
const S_CHUNK_SIZE = 2;
const S_CHUNK_DATA = 3;
const S_CHUNK_CRLF = 4;
const S_TRAILERS = 5;
const S_BODY_EOF = 6;
const S_PAUSED_AT_END = 7;

const CRLF = Buffer.from('\r\n', 'latin1');
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Control characters other than HTAB, CR and LF (DEL included): never valid in a head. */
const BAD_CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/;
/** tchar (RFC 9110 §5.6.2) by byte: header names are checked while scanning for the head's end. */
export const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 48; c <= 57; c++) TCHAR[c] = 1;
for (let c = 65; c <= 90; c++) TCHAR[c] = 1;
for (let c = 97; c <= 122; c++) TCHAR[c] = 1;
/** Bytes allowed in a start line or a header value: HTAB, visible ASCII, SP and obs-text (no CTL, no DEL). */
const FIELD_BYTE = new Uint8Array(256);
FIELD_BYTE[9] = 1;
for (let c = 32; c < 256; c++) if (c !== 127) FIELD_BYTE[c] = 1;
/** Envoy's max_headers_count default. */
const MAX_HEADER_LINES = 100;
const MAX_CHUNK_LINE = 4096;

/**
 * Header names common on the wire, as constant strings. #takeFields matches a name against these
 * case-insensitively in place instead of slicing and lower-casing it: no allocation, and the result
 * is an internalized string, so later `===` comparisons with literals and Set/Map lookups (its hash
 * is cached) are cheap all along the request. Other names are sliced and lower-cased as usual.
 */
const KNOWN_NAMES = [
  'host', 'user-agent', 'accept', 'accept-encoding', 'accept-language', 'accept-charset', 'authorization',
  'cache-control', 'connection', 'content-length', 'content-type', 'content-encoding', 'cookie', 'expect',
  'keep-alive', 'origin', 'pragma', 'proxy-connection', 'referer', 'te', 'transfer-encoding', 'upgrade',
  'via', 'forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port',
  'x-real-ip', 'x-request-id', 'traceparent', 'tracestate', 'x-b3-traceid', 'x-b3-spanid',
  'x-b3-parentspanid', 'x-b3-sampled', 'b3', 'if-none-match', 'if-modified-since', 'range',
  'grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'grpc-status', 'grpc-message',
  'x-envoy-attempt-count', 'x-envoy-expected-rq-timeout-ms', 'x-envoy-original-path',
  'x-envoy-upstream-service-time', 'server', 'date', 'etag', 'last-modified', 'location', 'set-cookie',
  'vary', 'expires', 'age', 'accept-ranges', 'content-range', 'content-disposition', 'trailer',
  'alt-svc', 'access-control-allow-origin', 'strict-transport-security', 'x-content-type-options',
  'x-frame-options', 'www-authenticate', 'retry-after',
];
/** KNOWN_NAMES by length, each with its bytes. */
const KNOWN_BY_LENGTH: { name: string; bytes: Uint8Array }[][] = [];
for (const name of KNOWN_NAMES) (KNOWN_BY_LENGTH[name.length] ??= []).push({ name, bytes: Buffer.from(name, 'latin1') });

/** The known name equal to the bytes `buf[start, end)` ignoring ASCII case, or undefined. */
function knownName(buf: Buffer, start: number, end: number): string | undefined {
  const candidates = KNOWN_BY_LENGTH[end - start];
  if (candidates === undefined) return undefined;
  for (let k = 0; k < candidates.length; k++) {
    const known = candidates[k]!;
    const bytes = known.bytes;
    let i = 0;
    for (; i < bytes.length; i++) {
      const c = buf[start + i]!;
      if ((c >= 65 && c <= 90 ? c + 32 : c) !== bytes[i]) break;
    }
    if (i === bytes.length) return known.name;
  }
  return undefined;
}

/** The value of 1 to 15 decimal digits, or -1 (a char loop: a regular expression and Number() cost more). */
function decimalValue(v: string): number {
  const l = v.length;
  if (l === 0 || l > 15) return -1;
  let n = 0;
  for (let i = 0; i < l; i++) {
    const d = v.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

function isOws(c: number): boolean {
  return c === 32 || c === 9;
}

/** Whether a comma-separated header value lists `token` (case-insensitive). */
function listHas(value: string, token: string): boolean {
  const v = value.toLowerCase();
  if (v === token) return true;
  if (!v.includes(token)) return false;
  for (const part of v.split(',')) if (part.trim() === token) return true;
  return false;
}

export class Http1Parser {
  readonly isRequest: boolean;
  readonly maxHeaderBytes: number;
  #events: Http1Events;
  #state = S_HEAD;
  /** Unconsumed bytes that did not form a whole head / chunk line / trailer section yet. */
  #pending: Buffer | undefined;
  #remaining = 0;
  #paused = false;
  #crlfSeen = 0;
  /**
   * Head scan state, kept across reads so a head arriving in pieces is scanned once, not again
   * from its start on every read. Offsets are relative to the head's first byte; `#fields` holds
   * (start, colon, end) per header line.
   */
  #scanAt = 0;
  #lineStart = 0;
  #colon = -1;
  #firstLineEnd = -1;
  readonly #fields: number[] = [];
  /** Entries of #fields in use: the array is reused, its capacity kept, between heads. */
  #fieldCount = 0;
  /** Responses: the request was HEAD, so the response has no body whatever its headers say. */
  noBodyExpected = false;

  constructor(isRequest: boolean, events: Http1Events, maxHeaderBytes = 60 * 1024) {
    this.isRequest = isRequest;
    this.#events = events;
    this.maxHeaderBytes = maxHeaderBytes;
  }

  /** True when between messages with nothing buffered. */
  get idle(): boolean {
    return this.#state === S_HEAD && this.#pending === undefined;
  }

  /** Bytes are buffered behind a pause (a pipelined request waiting for its turn). */
  get hasBuffered(): boolean {
    return this.#pending !== undefined;
  }

  /** True while a close-delimited response body is being read (ends with the connection). */
  get readingUntilClose(): boolean {
    return this.#state === S_BODY_EOF;
  }

  /**
   * Stops after the current message completes (call from onComplete): later bytes stay buffered
   * until resume(). HTTP/1.1 pipelining is served one request at a time this way.
   */
  pause(): void {
    this.#paused = true;
  }

  /** Continues with buffered bytes (a pipelined next request). */
  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    if (this.#state === S_PAUSED_AT_END) this.#state = S_HEAD;
    const p = this.#pending;
    if (p !== undefined) {
      this.#pending = undefined;
      this.execute(p);
    }
  }

  /** The connection closed: completes a close-delimited body; true if that ended a message. */
  finish(): boolean {
    if (this.#state !== S_BODY_EOF) return false;
    this.#state = S_HEAD;
    this.#events.onComplete(undefined, undefined);
    return true;
  }

  /** Feeds bytes read from the socket. Throws Http1ParseError on malformed input. */
  execute(chunk: Buffer): void {
    let buf = chunk;
    if (this.#pending !== undefined) {
      buf = Buffer.concat([this.#pending, chunk]);
      this.#pending = undefined;
    }
    let pos = 0;
    const len = buf.length;
    while (pos < len) {
      if (this.#paused && this.#state === S_PAUSED_AT_END) {
        this.#pending = Buffer.from(buf.subarray(pos)); // a copy: the reader may reuse its buffer
        return;
      }
      switch (this.#state) {
        case S_HEAD: {
          // RFC 9112 §2.2: ignore empty lines before a request-line (clients add CRLF after bodies).
          while (pos + 1 < len && buf[pos] === 13 && buf[pos + 1] === 10) pos += 2;
          if (pos >= len) return;
          const end = this.#scanHead(buf, pos, len);
          if (end < 0) {
            this.#pending = Buffer.from(buf.subarray(pos)); // a copy: the reader may reuse its buffer
            return;
          }
          const head = this.#parseHead(buf, pos, buf.toString('latin1', pos, end));
          pos = end + 4;
          if (head.status >= 100 && head.status < 200) {
            // Interim responses (100 Continue, 103 Early Hints) precede the final one.
            if (head.status === 101) throw new Http1ParseError('upgrade responses are not supported', 502, 'MESHEXT_ERR_HTTP1_UPGRADE');
            continue;
          }
          this.#events.onHead(head);
          if (head.bodyless) {
            this.#complete(undefined, undefined);
          } else if (head.chunked) {
            this.#state = S_CHUNK_SIZE;
          } else if (head.contentLength >= 0) {
            this.#state = S_BODY_LENGTH;
            this.#remaining = head.contentLength;
          } else {
            this.#state = S_BODY_EOF;
          }
          break;
        }
        case S_BODY_LENGTH: {
          const n = Math.min(this.#remaining, len - pos);
          const piece = pos === 0 && n === len ? buf : buf.subarray(pos, pos + n);
          pos += n;
          this.#remaining -= n;
          this.#events.onBody(piece);
          if (this.#remaining === 0) this.#complete(undefined, undefined);
          break;
        }
        case S_BODY_EOF: {
          this.#events.onBody(pos === 0 ? buf : buf.subarray(pos));
          return;
        }
        case S_CHUNK_SIZE: {
          const eol = buf.indexOf(CRLF, pos);
          if (eol < 0) {
            if (len - pos > MAX_CHUNK_LINE) throw new Http1ParseError('chunk size line too long');
            this.#pending = Buffer.from(buf.subarray(pos)); // a copy: the reader may reuse its buffer
            return;
          }
          let size = 0;
          let i = pos;
          for (; i < eol; i++) {
            const c = buf[i]!;
            let d: number;
            if (c >= 48 && c <= 57) d = c - 48;
            else if (c >= 97 && c <= 102) d = c - 87;
            else if (c >= 65 && c <= 70) d = c - 55;
            else break;
            size = size * 16 + d;
            if (size > Number.MAX_SAFE_INTEGER / 16) throw new Http1ParseError('chunk size too large');
          }
          // At least one hex digit; anything after the digits must be a chunk extension.
          if (i === pos || (i < eol && buf[i] !== 59 /* ; */ && !isOws(buf[i]!))) throw new Http1ParseError('invalid chunk size');
          if (i < eol) {
            const ext = buf.toString('latin1', i, eol);
            if (BAD_CONTROL.test(ext) || ext.includes('\r') || ext.includes('\n')) throw new Http1ParseError('invalid chunk extension');
          }
          pos = eol + 2;
          if (size === 0) {
            this.#state = S_TRAILERS;
          } else {
            this.#state = S_CHUNK_DATA;
            this.#remaining = size;
          }
          break;
        }
        case S_CHUNK_DATA: {
          const n = Math.min(this.#remaining, len - pos);
          this.#events.onBody(buf.subarray(pos, pos + n));
          pos += n;
          this.#remaining -= n;
          if (this.#remaining === 0) {
            this.#state = S_CHUNK_CRLF;
            this.#crlfSeen = 0;
          }
          break;
        }
        case S_CHUNK_CRLF: {
          const c = buf[pos++]!;
          if (this.#crlfSeen === 0 ? c !== 13 : c !== 10) throw new Http1ParseError('missing CRLF after chunk data');
          if (++this.#crlfSeen === 2) this.#state = S_CHUNK_SIZE;
          break;
        }
        case S_TRAILERS: {
          if (len - pos >= 2 && buf[pos] === 13 && buf[pos + 1] === 10) {
            pos += 2;
            this.#firstLineEnd = -1;
            this.#scanAt = 0;
            this.#complete(undefined, undefined);
            break;
          }
          // The trailer section is a head without a start line: same scan, same field rules.
          if (this.#firstLineEnd < 0) this.#firstLineEnd = 0;
          const end = this.#scanHead(buf, pos, len);
          if (end < 0) {
            this.#pending = Buffer.from(buf.subarray(pos)); // a copy: the reader may reuse its buffer
            return;
          }
          this.#firstLineEnd = -1;
          const names: string[] = [];
          const values: string[] = [];
          this.#takeFields(buf, pos, buf.toString('latin1', pos, end), names, values);
          pos = end + 4;
          this.#complete(names, values);
          break;
        }
        default:
          // S_PAUSED_AT_END without pause (resume raced): continue with the next message.
          this.#state = S_HEAD;
      }
    }
  }

  #complete(names: string[] | undefined, values: string[] | undefined): void {
    this.#state = S_HEAD;
    this.#events.onComplete(names, values);
    if (this.#paused) this.#state = S_PAUSED_AT_END;
  }

  /**
   * Finds the end of a head starting at `start` (the index of its final CRLFCRLF, or -1 while
   * incomplete) and validates every byte on the way: no bare CR/LF, no control characters, header
   * names made of tchars, at most MAX_HEADER_LINES lines, maxHeaderBytes in all. One pass in
   * JavaScript over the bytes costs a fraction of a native indexOf plus two regular expressions.
   */
  #scanHead(buf: Buffer, start: number, len: number): number {
    const limit = Math.min(len, start + this.maxHeaderBytes + 4);
    let i = start + this.#scanAt;
    let lineStart = start + this.#lineStart;
    let colon = this.#colon < 0 ? -1 : start + this.#colon;
    const fields = this.#fields;
    let n = this.#fieldCount;
    // Runs of ordinary bytes are skipped with one table lookup each (tchar in names, FIELD_BYTE in
    // values and the start line); only the byte that ends a run is examined further.
    while (i < limit) {
      let c = buf[i]!;
      if (colon < 0 && this.#firstLineEnd >= 0) {
        while (TCHAR[c] === 1) {
          if (++i === limit) break;
          c = buf[i]!;
        }
        if (i === limit) break;
        if (c === 58) {
          if (i === lineStart) throw new Http1ParseError('empty header name');
          colon = i++;
          continue;
        }
        if (c !== 13) {
          if (c === 10) throw new Http1ParseError('bare LF in message head');
          if ((c < 32 && c !== 9) || c === 127) throw new Http1ParseError('invalid character in message head');
          throw new Http1ParseError(c === 32 || c === 9 ? (i === lineStart ? 'obsolete line folding is not allowed' : 'whitespace in header name') : 'invalid header name');
        }
      } else {
        while (FIELD_BYTE[c] === 1) {
          if (++i === limit) break;
          c = buf[i]!;
        }
        if (i === limit) break;
        if (c !== 13) throw new Http1ParseError(c === 10 ? 'bare LF in message head' : 'invalid character in message head');
      }
      // c is CR at i.
      if (i + 1 >= len) break; // the LF has not arrived yet: rescan this CR next time
      if (buf[i + 1] !== 10) throw new Http1ParseError('bare CR in message head');
      if (i === lineStart) {
        // The empty line: the head ends here.
        this.#fieldCount = n;
        this.#scanAt = 0;
        this.#lineStart = 0;
        this.#colon = -1;
        return i - 2;
      }
      if (this.#firstLineEnd < 0) {
        this.#firstLineEnd = i - start;
      } else {
        if (colon < 0) throw new Http1ParseError('header line without a colon');
        if (n >= MAX_HEADER_LINES * 3) throw new Http1ParseError('too many headers', 431, 'MESHEXT_ERR_HTTP1_HEADERS_TOO_LARGE');
        fields[n] = lineStart - start;
        fields[n + 1] = colon - start;
        fields[n + 2] = i - start;
        n += 3;
      }
      i += 2;
      lineStart = i;
      colon = -1;
    }
    if (i - start > this.maxHeaderBytes) throw new Http1ParseError('headers too large', 431, 'MESHEXT_ERR_HTTP1_HEADERS_TOO_LARGE');
    this.#fieldCount = n;
    this.#scanAt = i - start;
    this.#lineStart = lineStart - start;
    this.#colon = colon < 0 ? -1 : colon - start;
    return -1;
  }

  /** Builds the head from its text (without the final CRLFCRLF, from `buf` at `at`) and the scanned field offsets. */
  #parseHead(buf: Buffer, at: number, text: string): Http1Head {
    let lineEnd = this.#firstLineEnd;
    this.#firstLineEnd = -1;
    if (lineEnd < 0) lineEnd = text.length; // a head that is only a start line
    const head: Http1Head = {
      method: '',
      target: '',
      status: 0,
      reason: '',
      versionMinor: 1,
      names: [],
      values: [],
      keepAlive: true,
      contentLength: -1,
      chunked: false,
      bodyless: false,
      expectContinue: false,
    };
    if (this.isRequest) parseRequestLine(text, lineEnd, head);
    else parseStatusLine(text, lineEnd, head);
    this.#takeFields(buf, at, text, head.names, head.values);
    this.#frame(head);
    return head;
  }

  /**
   * Header fields of `text` (the bytes of `buf` from `at`) at the scanned offsets: lower-cased
   * names, values without OWS.
   */
  #takeFields(buf: Buffer, at: number, text: string, names: string[], values: string[]): void {
    const f = this.#fields;
    const count = this.#fieldCount;
    // Index stores rather than push(): V8 did not inline push() here.
    let j = names.length;
    for (let k = 0; k < count; k += 3) {
      let vs = f[k + 1]! + 1;
      let ve = f[k + 2]!;
      while (vs < ve && isOws(text.charCodeAt(vs))) vs++;
      while (ve > vs && isOws(text.charCodeAt(ve - 1))) ve--;
      const ns = f[k]!;
      const ne = f[k + 1]!;
      names[j] = knownName(buf, at + ns, at + ne) ?? text.slice(ns, ne).toLowerCase();
      values[j++] = text.slice(vs, ve);
    }
    this.#fieldCount = 0;
  }

  /** Message framing and connection persistence from the parsed headers (RFC 9112 §6, §9.3). */
  #frame(head: Http1Head): void {
    const names = head.names;
    const values = head.values;
    let te: string | undefined;
    let cl: string | undefined;
    let contentLength = -1;
    let connection: string | undefined;
    for (let i = 0; i < names.length; i++) {
      const n = names[i]!;
      // Only a few names matter for framing; compare lengths first.
      switch (n.length) {
        case 6:
          if (n === 'expect' && values[i]!.toLowerCase() === '100-continue') head.expectContinue = true;
          break;
        case 10:
          if (n === 'connection') connection = connection === undefined ? values[i]! : `${connection}, ${values[i]!}`;
          break;
        case 14:
          if (n === 'content-length') {
            const v = values[i]!;
            const length = decimalValue(v);
            if (length < 0) throw new Http1ParseError(`invalid content-length "${v}"`);
            if (cl !== undefined && cl !== v) throw new Http1ParseError('conflicting content-length headers');
            cl = v;
            contentLength = length;
          }
          break;
        case 17:
          if (n === 'transfer-encoding') te = te === undefined ? values[i]! : `${te}, ${values[i]!}`;
          break;
      }
    }
    if (connection !== undefined) {
      if (listHas(connection, 'close')) head.keepAlive = false;
      else if (head.versionMinor === 0 && !listHas(connection, 'keep-alive')) head.keepAlive = false;
      else if (head.versionMinor === 0) head.keepAlive = true;
    } else if (head.versionMinor === 0) {
      head.keepAlive = false;
    }
    const noBodyStatus = !this.isRequest && (head.status === 204 || head.status === 304 || this.noBodyExpected);
    if (te !== undefined) {
      if (cl !== undefined && this.isRequest) throw new Http1ParseError('content-length with transfer-encoding');
      const last = te.toLowerCase().split(',').pop()!.trim();
      if (last === 'chunked') {
        if (this.isRequest && te.trim().toLowerCase() !== 'chunked') throw new Http1ParseError(`unsupported transfer-encoding "${te}"`, 501, 'MESHEXT_ERR_HTTP1_TRANSFER_ENCODING');
        head.chunked = true;
      } else if (this.isRequest) {
        throw new Http1ParseError(`unsupported transfer-encoding "${te}"`, 501, 'MESHEXT_ERR_HTTP1_TRANSFER_ENCODING');
      } else {
        // A response whose final coding is not chunked is delimited by the connection close.
        head.keepAlive = false;
      }
      if (head.versionMinor === 0 && this.isRequest) throw new Http1ParseError('transfer-encoding in an HTTP/1.0 request');
    } else if (cl !== undefined) {
      head.contentLength = contentLength;
    } else if (this.isRequest) {
      head.contentLength = 0;
    } else if (!noBodyStatus) {
      head.keepAlive = false; // read until close
    }
    if (noBodyStatus) {
      head.chunked = false;
      head.bodyless = true;
    } else if (!head.chunked && head.contentLength === 0) {
      head.bodyless = true;
    }
  }
}


function parseRequestLine(text: string, end: number, head: Http1Head): void {
  const sp1 = text.indexOf(' ');
  const sp2 = sp1 < 0 ? -1 : text.indexOf(' ', sp1 + 1);
  if (sp1 <= 0 || sp2 < 0 || sp2 >= end || sp2 === sp1 + 1) throw new Http1ParseError('malformed request line');
  // Common methods and versions are recognized in place: the method is then a constant string
  // (its hash cached for the Set lookups downstream), and no version string is made.
  let method: string;
  if (sp1 === 3 && text.startsWith('GET')) method = 'GET';
  else if (sp1 === 4 && text.startsWith('POST')) method = 'POST';
  else {
    method = text.slice(0, sp1);
    if (!TOKEN.test(method)) throw new Http1ParseError('invalid method');
  }
  if (end - sp2 === 9 && text.startsWith('HTTP/1.1', sp2 + 1)) head.versionMinor = 1;
  else if (end - sp2 === 9 && text.startsWith('HTTP/1.0', sp2 + 1)) head.versionMinor = 0;
  else {
    const version = text.slice(sp2 + 1, end);
    if (/^HTTP\/[0-9]\.[0-9]$/.test(version)) throw new Http1ParseError(`unsupported version ${version}`, 505, 'MESHEXT_ERR_HTTP1_VERSION');
    throw new Http1ParseError('malformed request line');
  }
  head.method = method;
  head.target = text.slice(sp1 + 1, sp2);
}

function parseStatusLine(text: string, end: number, head: Http1Head): void {
  // "HTTP/1.1 200 OK" (the reason may be empty, and the space before it may be missing).
  if (end < 12 || text.charCodeAt(8) !== 32 || !text.startsWith('HTTP/1.')) throw new Http1ParseError('malformed status line', 502);
  const minor = text.charCodeAt(7) - 48;
  if (minor !== 0 && minor !== 1) throw new Http1ParseError('unsupported version', 502);
  const d0 = text.charCodeAt(9) - 48;
  const d1 = text.charCodeAt(10) - 48;
  const d2 = text.charCodeAt(11) - 48;
  if (d0 < 1 || d0 > 9 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) throw new Http1ParseError('malformed status code', 502);
  if (end > 12 && text.charCodeAt(12) !== 32) throw new Http1ParseError('malformed status line', 502);
  head.versionMinor = minor;
  head.status = d0 * 100 + d1 * 10 + d2;
  head.reason = end > 13 ? text.slice(13, end) : '';
}

