/**
 * The native transport (src/proxy/transport/): NativeSocket/NativeServer against real node:net peers
 * on 127.0.0.1 — data both ways, backpressure and 'drain', the peer's FIN, connect errors, ref/unref,
 * and the fd hand-over used for HTTP/2 prior knowledge. Skipped when the addon is not built
 * (`npm run build:transport`); the HTTP/1.1 suites then run on node:net, and
 * transport-fallback.test.ts runs them on node:net in any case.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import { NativeServer, connectNative, nativeTransportStatus, type NativeSocket } from '../../src/proxy/transport/native-socket.ts';

const status = nativeTransportStatus();
const skip = status.native ? false : `native transport unavailable: ${status.reason}`;

/** A node:net server; resolves with its port and the sockets it accepts. */
async function nodeServer(onSocket: (s: net.Socket) => void): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer(onSocket);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

test('connects, writes strings and bytes, reads the reply, reports addresses', { skip }, async () => {
  const srv = await nodeServer((s) => s.on('data', (b) => s.write(Buffer.concat([Buffer.from('echo:'), b]))));
  try {
    const c = connectNative('127.0.0.1', srv.port)!;
    c.on('error', () => {});
    await once(c, 'connect');
    assert.equal(c.remotePort, srv.port);
    assert.equal(c.remoteAddress, '127.0.0.1');
    assert.ok(c.localPort > 0);
    const got: Buffer[] = [];
    c.on('data', (b: Buffer) => got.push(Buffer.from(b))); // views into a reused buffer: copy
    assert.equal(c.write('caf\u00e9 ', 'latin1'), true);
    c.write(new Uint8Array([0xff, 0x00, 0x41]));
    const want = Buffer.concat([Buffer.from('caf\u00e9 ', 'latin1'), Buffer.from([0xff, 0x00, 0x41])]);
    while (Buffer.concat(got).length < want.length + 5) await new Promise((r) => setTimeout(r, 5));
    const all = Buffer.concat(got);
    assert.equal(all.includes(want.subarray(0, 6)), true);
    assert.equal(all.subarray(0, 5).toString(), 'echo:');
    c.destroy();
    await once(c, 'close');
    assert.equal(c.destroyed, true);
  } finally {
    await srv.close();
  }
});

test('writes before the connection is up are sent once it is', { skip }, async () => {
  let received = '';
  const srv = await nodeServer((s) => s.on('data', (b) => (received += b.toString('latin1'))));
  try {
    const c = connectNative('127.0.0.1', srv.port)!;
    assert.equal(c.connecting, true);
    c.write('GET / HTTP/1.1\r\n', 'latin1');
    c.cork();
    c.write('host: a\r\n', 'latin1');
    c.write(Buffer.from('\r\n'));
    c.uncork();
    await once(c, 'connect');
    while (received.length < 27) await new Promise((r) => setTimeout(r, 5));
    assert.equal(received, 'GET / HTTP/1.1\r\nhost: a\r\n\r\n');
    c.destroy();
  } finally {
    await srv.close();
  }
});

test('backpressure: write() says false above the high-water mark and drain follows; no byte is lost', { skip }, async () => {
  let peer!: net.Socket;
  let total = 0;
  let sum = 0;
  const srv = await nodeServer((s) => {
    peer = s;
    s.pause(); // let the kernel buffers fill
    s.on('data', (b) => {
      total += b.length;
      for (const x of b) sum = (sum + x) % 65521;
    });
  });
  try {
    const c = connectNative('127.0.0.1', srv.port)!;
    await once(c, 'connect');
    const chunk = Buffer.alloc(256 * 1024);
    for (let i = 0; i < chunk.length; i++) chunk[i] = i % 251;
    let expectSum = 0;
    for (const x of chunk) expectSum = (expectSum + x) % 65521;
    let writes = 0;
    let ok = true;
    while (ok && writes < 200) {
      ok = c.write(chunk);
      writes++;
    }
    assert.equal(ok, false, 'a paused reader must make write() return false');
    assert.equal(c.writableNeedDrain, true);
    const drained = once(c, 'drain');
    peer.resume();
    await drained;
    assert.equal(c.writableNeedDrain, false);
    c.end();
    await once(peer, 'end');
    assert.equal(total, writes * chunk.length);
    assert.equal(sum, (expectSum * writes) % 65521);
    await once(c, 'close');
  } finally {
    await srv.close();
  }
});

test("the peer's FIN: 'end', then our side ends too and the socket closes", { skip }, async () => {
  const srv = await nodeServer((s) => s.end('bye'));
  try {
    const c = connectNative('127.0.0.1', srv.port)!;
    let data = '';
    c.on('data', (b: Buffer) => (data += b.toString()));
    await once(c, 'end');
    assert.equal(data, 'bye');
    await once(c, 'close');
    assert.equal(c.writableEnded, true);
  } finally {
    await srv.close();
  }
});

test('connecting to a closed port fails with ECONNREFUSED, then close', { skip }, async () => {
  const srv = await nodeServer(() => {});
  const port = srv.port;
  await srv.close();
  const c = connectNative('127.0.0.1', port)!;
  // 'error' and 'close' come in the same tick, as with node:net.
  const closed = new Promise((r) => c.once('close', r));
  const [err] = (await once(c, 'error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNREFUSED');
  await closed;
});

test('an address that is not an IP fails with EINVAL (names go through node:net)', { skip }, async () => {
  const c = connectNative('localhost', 80)!;
  const [err] = (await once(c, 'error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'EINVAL');
});

test('NativeServer accepts node:net clients; pause stops reading, resume continues', { skip }, async () => {
  const accepted: NativeSocket[] = [];
  const got: string[] = [];
  const server = new NativeServer('127.0.0.1', 0, 64, (s) => {
    accepted.push(s);
    s.on('data', (b: Buffer) => {
      got.push(b.toString());
      s.write(`ok ${b.length}\n`, 'latin1');
    });
    s.on('end', () => got.push('<end>'));
  });
  const port = server.address().port;
  assert.ok(port > 0);
  const client = net.connect(port, '127.0.0.1');
  await once(client, 'connect');
  client.write('one');
  const [reply] = (await once(client, 'data')) as [Buffer];
  assert.equal(reply.toString(), 'ok 3\n');
  assert.equal(accepted.length, 1);
  assert.equal(accepted[0]!.remotePort, client.localPort);
  accepted[0]!.pause();
  assert.equal(accepted[0]!.isPaused(), true);
  client.write('two');
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(got, ['one'], 'no read while paused');
  accepted[0]!.resume();
  await once(client, 'data');
  assert.deepEqual(got, ['one', 'two']);
  client.end();
  await once(client, 'close');
  assert.deepEqual(got, ['one', 'two', '<end>']);
  await new Promise<void>((r) => server.close(() => r()));
  // Closed: new connections are refused.
  const late = net.connect(port, '127.0.0.1');
  const [err] = (await once(late, 'error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNREFUSED');
});

test('listening on an address that is not an IP throws a system error', { skip }, () => {
  assert.throws(() => new NativeServer('not-an-ip', 0, 16, () => {}), (e: NodeJS.ErrnoException) => e.code === 'EINVAL');
});

test('detachFd hands a live connection to node:net with nothing lost', { skip }, async () => {
  let handed: net.Socket | undefined;
  const server = new NativeServer('127.0.0.1', 0, 16, (s) => {
    s.on('data', (first: Buffer) => {
      const kept = Buffer.from(first);
      const fd = s.detachFd();
      handed = new net.Socket({ fd, readable: true, writable: true });
      handed.unshift(kept);
      handed.on('data', (b) => handed!.write(`node:${b.toString()}`));
    });
  });
  const client = net.connect(server.address().port, '127.0.0.1');
  await once(client, 'connect');
  client.write('hello');
  const [a] = (await once(client, 'data')) as [Buffer];
  assert.equal(a.toString(), 'node:hello');
  client.write('again');
  const [b] = (await once(client, 'data')) as [Buffer];
  assert.equal(b.toString(), 'node:again');
  client.destroy();
  handed?.destroy();
  server.close();
});

test('an unref-ed idle connection does not keep the thread alive', { skip }, async () => {
  // Checked in a child process: it must exit on its own with an open, unref-ed connection.
  const { spawnSync } = await import('node:child_process');
  const srv = await nodeServer(() => {});
  try {
    const script = `
      import { connectNative } from ${JSON.stringify(new URL('../../src/proxy/transport/native-socket.ts', import.meta.url).href)};
      const c = connectNative('127.0.0.1', ${srv.port});
      c.on('connect', () => { c.unref(); console.log('connected'); });
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 10_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /connected/);
  } finally {
    await srv.close();
  }
});

test('an unknown MESHEXT_TRANSPORT value is named in a warning, and the native transport is used', { skip }, async () => {
  const { spawnSync } = await import('node:child_process');
  const script = `
    import { nativeTransportStatus } from ${JSON.stringify(new URL('../../src/proxy/transport/native-socket.ts', import.meta.url).href)};
    console.log('status', JSON.stringify(nativeTransportStatus()));
  `;
  const { NODE_TEST_CONTEXT: _ctx, ...env } = process.env;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 10_000, env: { ...env, MESHEXT_TRANSPORT: 'fast' } });
  assert.equal(r.status, 0, r.stderr);
  const out = r.stdout + r.stderr;
  assert.match(out, /MESHEXT_TRANSPORT is neither 'node' nor 'native'/);
  assert.match(out, /"fast"/);
  assert.match(out, /status \{"native":true\}/);
});
