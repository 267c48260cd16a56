/**
 * Unit tests of HTTP/1.1 head serialization: what may be written on the wire (tokens, field-value
 * bytes), hop-by-hop stripping, one content-length, and that nothing a filter sets can add a line.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HeaderMap } from '../../filters/header-map.ts';
import { HOP_BY_HOP, isHopByHop, isWritableHeader, serializeHeaders, serializeTrailers } from './wire.ts';

function map(pairs: [string, string][]): HeaderMap {
  const h = new HeaderMap();
  for (const [n, v] of pairs) h.add(n, v);
  return h;
}

test('isWritableHeader: token names; values of HTAB, SP, VCHAR and obs-text only', () => {
  assert.equal(isWritableHeader('x-ok', 'a value\twith tab ~!'), true);
  assert.equal(isWritableHeader('x-latin', 'caf\xe9'), true);
  assert.equal(isWritableHeader('x-empty', ''), true);
  for (const v of ['a\r\nb: c', 'a\nb', 'a\rb', 'a\x00b', 'a\x01b', 'a\x7fb', 'a\u0100b', '\u2028']) assert.equal(isWritableHeader('x', v), false, JSON.stringify(v));
  for (const n of ['', 'a b', 'a:b', 'a\r\nb', 'caf\xe9', '(x)', 'a\tb']) assert.equal(isWritableHeader(n, 'v'), false, JSON.stringify(n));
});

test('serializeHeaders: pseudo and hop-by-hop headers dropped, te: trailers kept on request, unsafe ones dropped', () => {
  const h = map([
    [':status', '200'],
    ['x-a', '1'],
    ['connection', 'keep-alive'],
    ['keep-alive', 'timeout=5'],
    ['transfer-encoding', 'chunked'],
    ['upgrade', 'websocket'],
    ['te', 'trailers'],
    ['x-evil', 'v\r\nx-injected: 1'],
    ['host', 'example.com'],
    ['content-length', '5'],
    ['content-length', '5'],
  ]);
  const req = serializeHeaders(h, true, true);
  assert.equal(req.text, 'x-a: 1\r\nte: trailers\r\ncontent-length: 5\r\n');
  assert.equal(req.contentLength, '5');
  const res = serializeHeaders(h, false, false);
  assert.equal(res.text, 'x-a: 1\r\nhost: example.com\r\ncontent-length: 5\r\n');
});

test('serializeHeaders: a content-length that cannot be written does not count as framing', () => {
  // Otherwise the body would go out with neither a length nor chunked framing on a kept-alive connection.
  for (const bad of ['5\r\nx-injected: 1', 'abc', '', '-1', '1, 2']) {
    const r = serializeHeaders(map([['content-length', bad], ['x-a', '1']]), false, false);
    assert.doesNotMatch(r.text, /content-length/, JSON.stringify(bad));
    assert.equal(r.contentLength, undefined, JSON.stringify(bad));
  }
});

test('serializeTrailers: framing, hop-by-hop, pseudo and unsafe fields never written', () => {
  const t = map([
    ['grpc-status', '0'],
    ['content-length', '3'],
    ['transfer-encoding', 'chunked'],
    [':status', '200'],
    ['x-evil', 'a\nb'],
    ['x-b', 'two'],
  ]);
  assert.equal(serializeTrailers(t), 'grpc-status: 0\r\nx-b: two\r\n');
});

test('isHopByHop agrees with HOP_BY_HOP', () => {
  for (const n of HOP_BY_HOP) assert.equal(isHopByHop(n), true, n);
  for (const n of ['', 't', 'tE', 'TE', 'host', 'content-length', 'connections', 'keep-alive2', 'upgrades', 'x-connection', 'http2-setting', 'proxy-connectio', 'transfer-encodin']) {
    assert.equal(isHopByHop(n), HOP_BY_HOP.has(n), n);
  }
});

test('isWritableHeader: the same answer the second time (remembered names), long names included', () => {
  const long = 'x-' + 'a'.repeat(200);
  for (let round = 0; round < 2; round++) {
    assert.equal(isWritableHeader('x-ok', 'v'), true);
    assert.equal(isWritableHeader(long, 'v'), true);
    assert.equal(isWritableHeader('x-ok', 'a\r\nb'), false);
    assert.equal(isWritableHeader('a b', 'v'), false);
    assert.equal(isWritableHeader('', 'v'), false);
  }
});
