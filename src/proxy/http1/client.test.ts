/**
 * The upstream keep-alive pool against a real HTTP/1.1 server on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { HeaderMap } from '../../filters/header-map.ts';
import { Http1Pool, type Http1Exchange, type Http1ResponseHandler } from './client.ts';

let server: http.Server;
let port: number;
let connections = 0;

before(async () => {
  server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end(`hello ${req.url}`));
  });
  server.on('connection', () => connections++);
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as AddressInfo).port;
});
after(() => new Promise<void>((r) => server.close(() => r())));

function get(pool: Http1Pool, path: string, onHeaders?: (ex: Http1Exchange) => void): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    let ex: Http1Exchange;
    const timer = setTimeout(() => reject(new Error(`no response for ${path} within 3 s`)), 3000);
    const handler: Http1ResponseHandler = {
      onHeaders: () => onHeaders?.(ex),
      onData: (d, end) => {
        for (const c of d.chunks()) body += c.toString('latin1');
        if (end) {
          clearTimeout(timer);
          resolve(body);
        }
      },
      onTrailers: () => {
        clearTimeout(timer);
        resolve(body);
      },
      onFailure: (reason, err) => {
        clearTimeout(timer);
        reject(new Error(`${reason}: ${String(err)}`));
      },
    };
    const headers = HeaderMap.fromPairs([[':method', 'GET'], [':path', path], [':authority', 'up'], [':scheme', 'http']]);
    ex = pool.request(headers, true, handler);
  });
}

test('a connection whose exchange paused its reads (downstream above its watermark) is not reused paused: the next request on it completes', async () => {
  const pool = new Http1Pool({ endpoint: { address: '127.0.0.1', port }, host: '127.0.0.1', port, maxConnections: 1, connectTimeoutMs: 1000 });
  try {
    const before = connections;
    // The router pauses upstream reads when the downstream cannot take more; here the whole
    // response is already in the same read, so the exchange completes with its socket paused.
    assert.equal(await get(pool, '/first', (ex) => ex.setResponsePaused(true)), 'hello /first');
    assert.equal(await get(pool, '/second'), 'hello /second');
    assert.equal(connections - before, 1, 'the second request reused the keep-alive connection');
  } finally {
    pool.close();
  }
});
