/**
 * Unit tests of the HTTP/1.1 parser: every message is fed whole, byte by byte and split at every
 * offset (the result must not depend on how the socket cut the bytes); Envoy's default strictness
 * (the status each malformed head is answered with); chunked framing, trailers, pipelining with
 * pause()/resume(); response framing (1xx skipped, bodyless statuses, HEAD, close-delimited).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Http1ParseError, Http1Parser, type Http1Head } from './parser.ts';

interface Message {
  head: Http1Head;
  body: string;
  trailers: [string, string][] | undefined;
  complete: boolean;
}

interface Collector {
  parser: Http1Parser;
  messages: Message[];
}

function collector(isRequest: boolean, opts: { pauseOnComplete?: boolean; noBody?: boolean; maxHeaderBytes?: number } = {}): Collector {
  const messages: Message[] = [];
  const parser: Http1Parser = new Http1Parser(
    isRequest,
    {
      onHead(head) {
        messages.push({ head, body: '', trailers: undefined, complete: false });
      },
      onBody(chunk) {
        const m = messages[messages.length - 1]!;
        assert.equal(m.complete, false, 'body after completion');
        m.body += chunk.toString('latin1');
      },
      onComplete(names, values) {
        const m = messages[messages.length - 1]!;
        assert.equal(m.complete, false, 'completed twice');
        m.complete = true;
        if (names !== undefined) m.trailers = names.map((n, i) => [n, values![i]!]);
        if (opts.pauseOnComplete) parser.pause();
      },
    },
    opts.maxHeaderBytes,
  );
  if (opts.noBody) parser.noBodyExpected = true;
  return { parser, messages };
}

/** The ways a byte string can arrive: whole, one byte at a time, and split in two at every offset. */
function splits(raw: string): string[][] {
  const out: string[][] = [[raw], [...raw]];
  for (let i = 1; i < raw.length; i++) out.push([raw.slice(0, i), raw.slice(i)]);
  return out;
}

function feed(c: Collector, parts: string[]): void {
  for (const p of parts) c.parser.execute(Buffer.from(p, 'latin1'));
}

/** Parses `raw` in every split; asserts all splits agree and returns the messages. */
function parseAll(isRequest: boolean, raw: string, opts: { finish?: boolean; noBody?: boolean } = {}): Message[] {
  let first: Message[] | undefined;
  for (const parts of splits(raw)) {
    const c = collector(isRequest, opts);
    feed(c, parts);
    if (opts.finish) c.parser.finish();
    const simple = c.messages;
    if (first === undefined) first = simple;
    else assert.deepEqual(summary(simple), summary(first), `split ${JSON.stringify(parts.map((p) => p.length))}`);
  }
  return first!;
}

function summary(ms: Message[]) {
  return ms.map((m) => ({ ...m, head: { ...m.head } }));
}

/** Asserts `raw` is rejected with `status` however it is split. */
function rejects(isRequest: boolean, raw: string, status: number): void {
  for (const parts of splits(raw)) {
    const c = collector(isRequest);
    assert.throws(
      () => feed(c, parts),
      (err: unknown) => err instanceof Http1ParseError && err.status === status,
      `expected ${status} for ${JSON.stringify(raw)} split ${JSON.stringify(parts.map((p) => p.length))}`,
    );
    assert.equal(c.messages.length, 0, 'no head reported for a rejected message');
  }
}

describe('requests', () => {
  test('a GET with headers: method, target, version, lower-cased names, trimmed values', () => {
    const [m, ...rest] = parseAll(true, 'GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nX-Multi:  one \r\nx-multi:two\r\nEmpty:\r\n\r\n');
    assert.equal(rest.length, 0);
    assert.ok(m!.complete);
    assert.equal(m!.head.method, 'GET');
    assert.equal(m!.head.target, '/a/b?c=d');
    assert.equal(m!.head.versionMinor, 1);
    assert.deepEqual(m!.head.names, ['host', 'x-multi', 'x-multi', 'empty']);
    assert.deepEqual(m!.head.values, ['example.com', 'one', 'two', '']);
    assert.equal(m!.head.keepAlive, true);
    assert.equal(m!.head.bodyless, true);
    assert.equal(m!.body, '');
  });

  test('header names in any case: common ones and others lower-cased alike', () => {
    const [m] = parseAll(true, 'GET / HTTP/1.1\r\nHOST: h\r\nContent-Type: a\r\nX-Request-ID: b\r\nX-Custom-Thing: c\r\ncontent_type: d\r\nHosts: e\r\n\r\n');
    assert.deepEqual(m!.head.names, ['host', 'content-type', 'x-request-id', 'x-custom-thing', 'content_type', 'hosts']);
    assert.deepEqual(m!.head.values, ['h', 'a', 'b', 'c', 'd', 'e']);
  });

  test('content-length: up to 15 digits', () => {
    const [m] = parseAll(true, 'POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 000000000000012\r\n\r\nhello world!');
    assert.equal(m!.head.contentLength, 12);
    for (const v of ['1000000000000000', '-1', '+1', '1a', '1 1', '0x1']) rejects(true, `POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: ${v}\r\n\r\n`, 400);
  });

  test('content-length body', () => {
    const [m] = parseAll(true, 'POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world');
    assert.equal(m!.head.contentLength, 11);
    assert.equal(m!.head.bodyless, false);
    assert.equal(m!.body, 'hello world');
    assert.ok(m!.complete);
  });

  test('a body is not complete until all of it arrived', () => {
    const c = collector(true);
    feed(c, ['POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n12345']);
    assert.equal(c.messages[0]!.complete, false);
    feed(c, ['67890']);
    assert.equal(c.messages[0]!.complete, true);
    assert.equal(c.messages[0]!.body, '1234567890');
  });

  test('chunked body with extensions and trailers', () => {
    const raw = 'POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n6 ; x="y"\r\n world\r\nA\r\n0123456789\r\n0\r\nX-Checksum: abc\r\nX-Other:  v \r\n\r\n';
    const [m, ...rest] = parseAll(true, raw);
    assert.equal(rest.length, 0);
    assert.equal(m!.head.chunked, true);
    assert.equal(m!.body, 'hello world0123456789');
    assert.deepEqual(m!.trailers, [['x-checksum', 'abc'], ['x-other', 'v']]);
    assert.ok(m!.complete);
  });

  test('chunked body without trailers; upper-case hex sizes', () => {
    const [m] = parseAll(true, 'POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n1A\r\n' + 'z'.repeat(26) + '\r\n0\r\n\r\n');
    assert.equal(m!.body, 'z'.repeat(26));
    assert.ok(m!.trailers === undefined || m!.trailers.length === 0);
    assert.ok(m!.complete);
  });

  test('leading empty lines before a request line are ignored', () => {
    const ms = parseAll(true, '\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n');
    assert.equal(ms.length, 1);
    assert.equal(ms[0]!.head.target, '/');
    // After a body (clients add a CRLF after a POST body).
    const two = parseAll(true, 'POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n');
    assert.deepEqual(
      two.map((m) => [m.head.target, m.body, m.complete]),
      [['/a', 'x', true], ['/b', '', true]],
    );
  });

  test('pipelined requests parse in order', () => {
    let raw = '';
    for (let i = 0; i < 5; i++) raw += `GET /r${i} HTTP/1.1\r\nHost: h\r\n\r\n`;
    raw += 'POST /body HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc';
    raw += 'POST /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n';
    const ms = parseAll(true, raw);
    assert.deepEqual(
      ms.map((m) => [m.head.target, m.body, m.complete]),
      [['/r0', '', true], ['/r1', '', true], ['/r2', '', true], ['/r3', '', true], ['/r4', '', true], ['/body', 'abc', true], ['/chunked', 'xyz', true]],
    );
  });

  test('pause() in onComplete holds the next request until resume()', () => {
    const raw = 'GET /1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok' + 'GET /3 HTTP/1.1\r\nHost: h\r\n\r\n';
    for (const parts of splits(raw)) {
      const c = collector(true, { pauseOnComplete: true });
      feed(c, parts);
      assert.deepEqual(c.messages.map((m) => m.head.target), ['/1'], `split ${parts.map((p) => p.length)}`);
      assert.equal(c.parser.idle, false, 'bytes are buffered');
      c.parser.resume();
      assert.deepEqual(c.messages.map((m) => m.head.target), ['/1', '/2']);
      assert.equal(c.messages[1]!.body, 'ok');
      c.parser.resume();
      assert.deepEqual(c.messages.map((m) => m.head.target), ['/1', '/2', '/3']);
      c.parser.resume();
      assert.equal(c.messages.length, 3);
      assert.ok(c.messages.every((m) => m.complete));
      assert.equal(c.parser.idle, true);
    }
  });

  test('bytes arriving while paused stay buffered', () => {
    const c = collector(true, { pauseOnComplete: true });
    feed(c, ['GET /1 HTTP/1.1\r\nHost: h\r\n\r\n']);
    feed(c, ['GET /2 HTTP/1.1\r\nHo', 'st: h\r\n\r\nGET /3 HTTP/1.1\r\nHost: h\r\n\r\n']);
    assert.equal(c.messages.length, 1);
    c.parser.resume();
    assert.equal(c.messages.length, 2);
    c.parser.resume();
    assert.deepEqual(c.messages.map((m) => m.head.target), ['/1', '/2', '/3']);
  });

  test('keep-alive: HTTP/1.1 default, Connection: close, HTTP/1.0 default and keep-alive', () => {
    assert.equal(parseAll(true, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n')[0]!.head.keepAlive, true);
    assert.equal(parseAll(true, 'GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n')[0]!.head.keepAlive, false);
    assert.equal(parseAll(true, 'GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, close\r\n\r\n')[0]!.head.keepAlive, false);
    const h10 = parseAll(true, 'GET / HTTP/1.0\r\n\r\n')[0]!.head;
    assert.equal(h10.versionMinor, 0);
    assert.equal(h10.keepAlive, false);
    assert.equal(parseAll(true, 'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n')[0]!.head.keepAlive, true);
  });

  test('Expect: 100-continue is reported', () => {
    assert.equal(parseAll(true, 'POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\nx')[0]!.head.expectContinue, true);
    assert.equal(parseAll(true, 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx')[0]!.head.expectContinue, false);
  });

  test('identical repeated Content-Length is accepted', () => {
    const [m] = parseAll(true, 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc');
    assert.equal(m!.body, 'abc');
  });

  test('obs-text (bytes >= 0x80) in a value is kept', () => {
    const [m] = parseAll(true, 'GET / HTTP/1.1\r\nHost: h\r\nX-Latin: caf\xe9\r\n\r\n');
    assert.equal(m!.head.values[1], 'caf\xe9');
  });
});

describe('request strictness (Envoy defaults)', () => {
  const cases: [string, string, number][] = [
    ['bare LF line ending', 'GET / HTTP/1.1\nHost: h\r\n\r\n', 400],
    ['bare LF inside a header line', 'GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n', 400],
    ['bare CR', 'GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n', 400],
    ['NUL in a value', 'GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n', 400],
    ['control character in a value', 'GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n', 400],
    ['DEL in a value', 'GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fb\r\n\r\n', 400],
    ['control character in the target', 'GET /a\x01b HTTP/1.1\r\nHost: h\r\n\r\n', 400],
    ['obs-fold (space)', 'GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n  folded\r\n\r\n', 400],
    ['obs-fold (tab)', 'GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tfolded\r\n\r\n', 400],
    ['space before the colon', 'GET / HTTP/1.1\r\nHost : h\r\n\r\n', 400],
    ['empty header name', 'GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n', 400],
    ['invalid character in a header name', 'GET / HTTP/1.1\r\nHost: h\r\nX(y): v\r\n\r\n', 400],
    ['header line without a colon', 'GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n', 400],
    ['invalid method token', 'G(T / HTTP/1.1\r\nHost: h\r\n\r\n', 400],
    ['missing request target', 'GET  HTTP/1.1\r\nHost: h\r\n\r\n', 400],
    ['HTTP/0.9 request line without a version', 'GET /\r\n\r\n', 400],
    ['garbage version', 'GET / HTTX/1.1\r\nHost: h\r\n\r\n', 400],
    ['lower-case version', 'GET / http/1.1\r\nHost: h\r\n\r\n', 400],
    ['HTTP/2.0 version', 'GET / HTTP/2.0\r\nHost: h\r\n\r\n', 505],
    ['HTTP/0.9 version', 'GET / HTTP/0.9\r\nHost: h\r\n\r\n', 505],
    ['HTTP/1.2 version', 'GET / HTTP/1.2\r\nHost: h\r\n\r\n', 505],
    ['Content-Length with Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
    ['Transfer-Encoding with Content-Length', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n', 400],
    ['conflicting Content-Length', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd', 400],
    ['non-numeric Content-Length', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n', 400],
    ['negative Content-Length', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n', 400],
    ['signed Content-Length', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\nx', 400],
    ['list Content-Length', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 1\r\n\r\nx', 400],
    ['huge Content-Length', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n', 400],
    ['unknown transfer coding', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n', 501],
    ['identity transfer coding', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n', 501],
    ['chunked not the only coding', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', 501],
    ['chunked then another coding', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n', 501],
  ];
  for (const [name, raw, status] of cases) {
    test(`${name} → ${status}`, () => rejects(true, raw, status));
  }

  test('headers over the limit → 431, whether or not the end of the head arrived', () => {
    const big = 'GET / HTTP/1.1\r\nHost: h\r\nX-Big: ' + 'a'.repeat(2000) + '\r\n\r\n';
    for (const parts of [[big], [big.slice(0, 1500)], [big.slice(0, 700), big.slice(700, 1400), big.slice(1400)]]) {
      const c = collector(true, { maxHeaderBytes: 1024 });
      assert.throws(() => feed(c, parts), (e: unknown) => e instanceof Http1ParseError && e.status === 431);
    }
    // Just under the limit is fine.
    const c = collector(true, { maxHeaderBytes: 4096 });
    feed(c, [big]);
    assert.equal(c.messages.length, 1);
  });

  test('a bare LF or CR is rejected as soon as it arrives, without waiting for the end of the head', () => {
    for (const partial of ['GET / HTTP/1.1\nHost: h\n\n', 'GET / HTTP/1.1\r\nHost: h\nX: y', 'GET / HTTP/1.1\r\nHost: h\rX: y']) {
      for (const parts of splits(partial)) {
        const c = collector(true);
        assert.throws(() => feed(c, parts), (e: unknown) => e instanceof Http1ParseError && e.status === 400, JSON.stringify(partial));
      }
    }
  });

  test('more than 100 header lines (Envoy max_headers_count) → 431; 100 are fine', () => {
    const head = (n: number) => 'GET / HTTP/1.1\r\n' + Array.from({ length: n }, (_, i) => `x-h${i}: v\r\n`).join('') + '\r\n';
    const ok = collector(true);
    feed(ok, [head(100)]);
    assert.equal(ok.messages[0]!.head.names.length, 100);
    const c = collector(true);
    assert.throws(() => feed(c, [head(101)]), (e: unknown) => e instanceof Http1ParseError && e.status === 431);
  });

  test('trailers over the limit → 431', () => {
    const c = collector(true, { maxHeaderBytes: 1024 });
    assert.throws(
      () => feed(c, ['POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: ' + 'b'.repeat(3000)]),
      (e: unknown) => e instanceof Http1ParseError && e.status === 431,
    );
  });

  const chunked = 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n';
  const bodyCases: [string, string][] = [
    ['non-hex chunk size', 'zz\r\nhello\r\n0\r\n\r\n'],
    ['empty chunk size', '\r\nhello\r\n0\r\n\r\n'],
    ['negative chunk size', '-5\r\nhello\r\n0\r\n\r\n'],
    ['chunk size with 0x prefix', '0x5\r\nhello\r\n0\r\n\r\n'],
    ['chunk size overflowing', 'fffffffffffffffffff\r\nhello\r\n0\r\n\r\n'],
    ['data longer than the chunk size', '3\r\nhello\r\n0\r\n\r\n'],
    ['missing CRLF after chunk data', '5\r\nhello0\r\n\r\n'],
    ['LF only after chunk data', '5\r\nhello\n0\r\n\r\n'],
    ['bare LF after the chunk size', '5\nhello\r\n0\r\n\r\n'],
    ['control character in a chunk extension', '5;a=\x01\r\nhello\r\n0\r\n\r\n'],
    ['bare LF in a chunk extension', '5;a\nb\r\nhello\r\n0\r\n\r\n'],
    ['obs-fold in trailers', '0\r\nX-T: a\r\n b\r\n\r\n'],
    ['bare LF in trailers', '0\r\nX-T: a\nX-U: b\r\n\r\n'],
    ['trailer without a colon', '0\r\nNoColon\r\n\r\n'],
  ];
  for (const [name, body] of bodyCases) {
    test(`chunked: ${name} → 400`, () => {
      for (const parts of splits(chunked + body)) {
        const c = collector(true);
        assert.throws(
          () => feed(c, parts),
          (e: unknown) => e instanceof Http1ParseError && e.status === 400,
          `split ${parts.map((p) => p.length)}`,
        );
        assert.ok(!c.messages.some((m) => m.complete), 'a malformed body never completes the message');
      }
    });
  }

  test('Transfer-Encoding in an HTTP/1.0 request is rejected', () => {
    const c = collector(true);
    assert.throws(() => feed(c, ['POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n']), Http1ParseError);
  });
});

describe('responses', () => {
  test('content-length response', () => {
    const [m] = parseAll(false, 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello');
    assert.equal(m!.head.status, 200);
    assert.equal(m!.head.reason, 'OK');
    assert.equal(m!.body, 'hello');
    assert.equal(m!.head.keepAlive, true);
    assert.ok(m!.complete);
  });

  test('reason phrase may be empty or missing', () => {
    assert.equal(parseAll(false, 'HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n')[0]!.head.status, 404);
    const [m] = parseAll(false, 'HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n');
    assert.equal(m!.head.status, 404);
    assert.equal(m!.head.reason, '');
    assert.equal(parseAll(false, 'HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n')[0]!.head.reason, 'Internal Server Error');
  });

  test('chunked response with trailers', () => {
    const [m] = parseAll(false, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5\r\npedia\r\n0\r\nGrpc-Status: 0\r\nGrpc-Message: fine\r\n\r\n');
    assert.equal(m!.body, 'wikipedia');
    assert.deepEqual(m!.trailers, [['grpc-status', '0'], ['grpc-message', 'fine']]);
    assert.ok(m!.complete);
  });

  test('1xx interim responses (100, 103) are skipped; the final response is reported', () => {
    const ms = parseAll(false, 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok');
    assert.equal(ms.length, 1);
    assert.equal(ms[0]!.head.status, 201);
    assert.equal(ms[0]!.body, 'ok');
    assert.ok(ms[0]!.complete);
  });

  test('101 Switching Protocols is rejected', () => {
    for (const parts of splits('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')) {
      const c = collector(false);
      assert.throws(() => feed(c, parts), Http1ParseError);
      assert.equal(c.messages.length, 0);
    }
  });

  test('204 and 304 have no body whatever their headers say', () => {
    for (const status of [204, 304]) {
      const ms = parseAll(false, `HTTP/1.1 ${status} X\r\nContent-Length: 10\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok`);
      assert.deepEqual(ms.map((m) => [m.head.status, m.body, m.complete, m.head.bodyless]), [[status, '', true, true], [200, 'ok', true, false]]);
      assert.equal(ms[0]!.head.keepAlive, true, 'a bodyless response keeps the connection');
      const [t] = parseAll(false, `HTTP/1.1 ${status} X\r\nTransfer-Encoding: chunked\r\n\r\n`);
      assert.equal(t!.complete, true);
      assert.equal(t!.head.chunked, false);
    }
    const [n] = parseAll(false, 'HTTP/1.1 204 No Content\r\n\r\n');
    assert.equal(n!.complete, true);
    assert.equal(n!.head.keepAlive, true);
  });

  test('response to HEAD: no body even with content-length or chunked', () => {
    const ms = parseAll(false, 'HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n', { noBody: true });
    assert.equal(ms.length, 1);
    assert.equal(ms[0]!.complete, true);
    assert.equal(ms[0]!.head.contentLength >= 0 ? ms[0]!.head.values[0] : '', '1234');
    const [c] = parseAll(false, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', { noBody: true });
    assert.equal(c!.complete, true);
  });

  test('close-delimited body (no length): read until finish()', () => {
    for (const parts of splits('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of this\r\n\r\nis body')) {
      const c = collector(false);
      feed(c, parts);
      assert.equal(c.messages.length, 1);
      assert.equal(c.messages[0]!.complete, false);
      assert.equal(c.parser.readingUntilClose, true);
      assert.equal(c.messages[0]!.head.keepAlive, false);
      assert.equal(c.parser.finish(), true);
      assert.equal(c.messages[0]!.complete, true);
      assert.equal(c.messages[0]!.body, 'all of this\r\n\r\nis body');
    }
  });

  test('finish() does not complete a length-delimited body that is short', () => {
    const c = collector(false);
    feed(c, ['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc']);
    assert.equal(c.parser.finish(), false);
    assert.equal(c.messages[0]!.complete, false);
  });

  test('non-chunked final transfer coding is close-delimited', () => {
    const c = collector(false);
    feed(c, ['HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxyz']);
    assert.equal(c.messages[0]!.head.keepAlive, false);
    assert.equal(c.parser.finish(), true);
    assert.equal(c.messages[0]!.body, 'xyz');
  });

  test('HTTP/1.0 response: no keep-alive unless asked', () => {
    assert.equal(parseAll(false, 'HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n')[0]!.head.keepAlive, false);
    assert.equal(parseAll(false, 'HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n')[0]!.head.keepAlive, true);
    assert.equal(parseAll(false, 'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')[0]!.head.keepAlive, false);
  });

  const bad: [string, string][] = [
    ['garbage', 'garbage garbage\r\n\r\n'],
    ['HTTP/2.0 status line', 'HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n'],
    ['non-numeric status', 'HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n'],
    ['four-digit status', 'HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n'],
    ['bare LF', 'HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n'],
    ['conflicting content-length', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab'],
    ['header without colon', 'HTTP/1.1 200 OK\r\nbroken\r\n\r\n'],
    ['obs-fold', 'HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n'],
  ];
  for (const [name, raw] of bad) {
    test(`malformed response: ${name}`, () => {
      for (const parts of splits(raw)) {
        const c = collector(false);
        assert.throws(() => feed(c, parts), Http1ParseError);
        assert.ok(!c.messages.some((m) => m.complete));
      }
    });
  }
});
