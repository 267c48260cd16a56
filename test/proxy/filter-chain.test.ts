/**
 * The filter manager's Envoy contract, through a real listener and upstream: iteration order,
 * StopIteration / StopAll* with continue*(), body buffering and rewriting, buffer limits (413 /
 * 500), local replies from the request and response paths, metadata and filter state, filter
 * exceptions, and the log()/onDestroy() lifecycle.
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import type { HttpFilterFactory } from '../../src/filters/types.ts';
import { DataStatus, HeadersStatus } from '../../src/filters/types.ts';
import { DataPlane } from '../../src/proxy/data-plane.ts';
import { bootstrap, cluster, listener, routeAll } from '../helpers/bootstrap.ts';
import { testFilter, type FilterLog } from '../helpers/filters.ts';
import { echoHandler, startHttp1, type TestServer } from '../helpers/upstream.ts';

let upstream: TestServer;
let bigUpstream: TestServer;
let dp: DataPlane;
let port: number;

function useChain(...filters: HttpFilterFactory[]): void {
  dp.httpListeners[0]!.setChain([...filters, dp.routerFactory]);
}

before(async () => {
  upstream = await startHttp1(echoHandler);
  // Sends a response body larger than the buffer limit used below.
  bigUpstream = await startHttp1((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.end(Buffer.alloc(64 * 1024, 7));
  });
  dp = new DataPlane(
    bootstrap({
      listeners: [listener({ bufferLimitBytes: 16 * 1024 })],
      clusters: [cluster('echo', upstream.port), cluster('big', bigUpstream.port)],
      routeTables: [
        {
          name: 'default',
          virtualHosts: [
            {
              name: 'all',
              domains: ['*'],
              routes: [
                { name: 'big', match: { prefix: '/big' }, route: { cluster: 'big' } },
                ...routeAll('echo').virtualHosts[0]!.routes,
              ],
            },
          ],
        },
      ],
    }),
  );
  await dp.start();
  port = dp.ports().http!;
});

after(async () => {
  await dp.close();
  await upstream.close();
  await bigUpstream.close();
});

async function get(path: string, init: Parameters<typeof request>[1] = {}) {
  const res = await request(`http://127.0.0.1:${port}${path}`, init);
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) as { headers: Record<string, string>; bodyLength: number } };
}

const settle = () => new Promise((r) => setTimeout(r, 20));

describe('iteration order', () => {
  test('decoders run in chain order, encoders in reverse', async () => {
    useChain(testFilter({ name: 'a', tag: '1' }), testFilter({ name: 'b', tag: '2' }), testFilter({ name: 'c', tag: '3' }));
    const r = await get('/');
    assert.equal(r.json().headers['x-order'], '123');
    assert.equal(r.headers['x-order-resp'], '321');
  });

  test('log() then onDestroy() run once per filter after the stream completes', async () => {
    const log: FilterLog = { events: [] };
    useChain(testFilter({ name: 'a' }, log));
    await get('/');
    await settle();
    const tail = log.events.filter((e) => e === 'a:log' || e === 'a:onDestroy');
    assert.deepEqual(tail, ['a:log', 'a:onDestroy']);
  });
});

describe('stopping and resuming', () => {
  test('StopIteration on request headers holds the request until continueDecoding()', async () => {
    const log: FilterLog = { events: [] };
    useChain(testFilter({ name: 'a', decodeHeaders: HeadersStatus.StopIteration, resumeAfterMs: 50 }, log), testFilter({ name: 'b', tag: 'B' }, log));
    const r = await get('/');
    assert.equal(r.status, 200);
    assert.equal(r.json().headers['x-order'], 'B');
    const i = log.events.indexOf('a:continueDecoding');
    const j = log.events.indexOf('b:decodeHeaders(end=true)');
    assert.ok(i >= 0 && j > i, `b ran after a resumed: ${log.events.join(' ')}`);
  });

  test('StopAllIterationAndBuffer holds the body too, then gives the whole body to the filter itself', async () => {
    const log: FilterLog = { events: [] };
    useChain(testFilter({ name: 'a', decodeHeaders: HeadersStatus.StopAllIterationAndBuffer, resumeAfterMs: 80 }, log), testFilter({ name: 'b' }, log));
    const r = await get('/post', { method: 'POST', body: 'hello world' });
    assert.equal(r.json().bodyLength, 11);
    const aData = log.events.filter((e) => e.startsWith('a:decodeData'));
    assert.ok(aData.length >= 1, 'a saw the buffered body after continue');
    assert.ok(log.events.indexOf('a:continueDecoding') < log.events.indexOf(aData[0]!));
  });

  test('StopIteration on response headers holds the response until continueEncoding()', async () => {
    const log: FilterLog = { events: [] };
    // Holding headers alone is not enough: body frames reach the filter, and Continue from
    // encodeData resumes it (Envoy's contract), so the filter buffers the body as well.
    useChain(testFilter({ name: 'a', encodeHeaders: HeadersStatus.StopIteration, encodeData: DataStatus.StopIterationAndBuffer, resumeAfterMs: 50 }, log));
    const r = await get('/');
    assert.equal(r.status, 200);
    assert.ok(log.events.includes('a:continueEncoding'));
  });

  test('StopIterationAndBuffer accumulates the body; the filter rewrites it when complete', async () => {
    useChain(testFilter({ name: 'upper', upperCaseRequestBody: true }));
    const upstreamSeen = await startHttp1((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => res.end(Buffer.concat(chunks)));
    });
    try {
      const local = new DataPlane(bootstrap({ clusters: [cluster('u', upstreamSeen.port)], routeTables: [routeAll('u')] }));
      await local.start();
      try {
        local.httpListeners[0]!.setChain([testFilter({ name: 'upper', upperCaseRequestBody: true }), local.routerFactory]);
        const res = await request(`http://127.0.0.1:${local.ports().http}/`, {
          method: 'POST',
          body: Readable.from(
            (async function* () {
              yield Buffer.from('hello ');
              await new Promise((r) => setTimeout(r, 20));
              yield Buffer.from('streaming world');
            })(),
          ),
        });
        assert.equal(await res.body.text(), 'HELLO STREAMING WORLD');
      } finally {
        await local.close();
      }
    } finally {
      await upstreamSeen.close();
    }
  });
});

describe('buffer limits', () => {
  test('413 when a buffering decoder exceeds the limit', async () => {
    useChain(testFilter({ name: 'buf', decodeData: DataStatus.StopIterationAndBuffer }));
    const r = await get('/post', { method: 'POST', body: Buffer.alloc(64 * 1024, 1) });
    assert.equal(r.status, 413);
    assert.equal(r.text, 'Payload Too Large');
  });

  test('500 when a buffering encoder exceeds the limit', async () => {
    useChain(testFilter({ name: 'buf', encodeHeaders: HeadersStatus.StopAllIterationAndBuffer }));
    const r = await get('/big');
    assert.equal(r.status, 500);
  });

  test('a response whose headers already left is reset when a later buffer overflows', async () => {
    useChain(testFilter({ name: 'buf', encodeData: (_d, end) => (end ? DataStatus.Continue : DataStatus.StopIterationAndBuffer) }));
    await assert.rejects(get('/big'));
    assert.equal((await get('/')).status, 200, 'the proxy keeps serving');
  });

  test('watermark buffering applies flow control instead of failing', async () => {
    let total = 0;
    useChain(
      testFilter({
        name: 'wm',
        decodeData: (data, end) => {
          total = data.length;
          return end ? DataStatus.Continue : DataStatus.StopIterationAndWatermark;
        },
      }),
    );
    const r = await get('/post', { method: 'POST', body: Buffer.alloc(40 * 1024, 1) });
    assert.equal(r.status, 200);
    assert.equal(r.json().bodyLength, 40 * 1024);
    assert.ok(total > 16 * 1024, 'the filter saw more than the limit (no 413)');
  });
});

describe('local replies', () => {
  test('from the request path: the upstream is not called, encoders still run', async () => {
    const log: FilterLog = { events: [] };
    useChain(testFilter({ name: 'outer', tag: 'O' }, log), testFilter({ name: 'deny', replyOnRequest: { status: 403, body: 'denied', details: 'test_deny' } }, log));
    const r = await get('/');
    assert.equal(r.status, 403);
    assert.equal(r.text, 'denied');
    assert.equal(r.headers['x-local'], 'deny');
    assert.equal(r.headers['x-order-resp'], 'O', 'encoder filters see the local reply');
  });

  test('from the response path: replaces the upstream response', async () => {
    useChain(testFilter({ name: 'r', replyOnResponse: { status: 502, body: 'bad gateway from filter', details: 'test_resp' } }));
    const r = await get('/');
    assert.equal(r.status, 502);
    assert.equal(r.text, 'bad gateway from filter');
  });

  test('an encoder that throws while a local reply passes through still answers the client (500)', async () => {
    const throwing: HttpFilterFactory = {
      name: 'enc-throws',
      create: () => ({
        encodeHeaders() {
          throw new Error('encoder failure');
        },
      }),
    };
    useChain(throwing, testFilter({ name: 'deny', replyOnRequest: { status: 403, body: 'denied', details: 'test_deny' } }));
    const r = await get('/');
    assert.equal(r.status, 500);
    useChain(throwing);
    const proxied = await get('/');
    assert.equal(proxied.status, 500, 'an encoder throwing on an upstream response answers 500 too');
  });

  test('a throwing filter produces a 500 and the proxy keeps serving', async () => {
    useChain(testFilter({ name: 't', throwOnRequest: true }));
    const r = await get('/');
    assert.equal(r.status, 500);
    useChain();
    assert.equal((await get('/')).status, 200);
  });
});

describe('stream state shared by filters', () => {
  test('dynamic metadata (namespaced) and filter state survive from request to response', async () => {
    useChain(testFilter({ name: 'md', metadata: true }));
    const r = await get('/meta/path');
    assert.equal(r.headers['x-md-md'], '/meta/path');
    assert.equal(r.headers['x-fs-md'], 'set-by-md');
  });
});
