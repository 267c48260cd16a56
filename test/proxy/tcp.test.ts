/**
 * The TCP listener: a TCP proxy to an echo server (bytes both ways, large transfers, half-close in
 * both directions, connect failure), and the L4 network filter chain with test filters: one that
 * stops on the new connection and continues later (no upstream connection and no data forwarded
 * meanwhile), one that modifies data both ways, one that buffers until it has seen a whole line,
 * and one that answers and closes the connection itself.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, afterEach, before, beforeEach, test } from 'node:test';
import type { DataBuffer } from '../../src/filters/data-buffer.ts';
import { NetworkFilterStatus, type NetworkFilter, type NetworkFilterCallbacks, type NetworkFilterFactory } from '../../src/filters/types.ts';
import type { TcpListener } from '../../src/proxy/tcp-listener.ts';
import { cluster, listener } from '../helpers/bootstrap.ts';
import { startPlane, type RunningPlane } from '../helpers/conformance.ts';

let echo: net.Server;
let echoPort: number;
let echoConnections = 0;
const echoSockets = new Set<net.Socket>();
let plane: RunningPlane;
let port: number;
let closedPlane: RunningPlane;
let tcp: TcpListener;

/**
 * Echo server. Starts with allowHalfOpen so it can answer after the client's FIN. A connection
 * whose first bytes are "LATE\n" is echoed only when the client half-closes (after a delay); one
 * starting "GREET\n" gets "hello\n" and the server half-closes at once, then keeps reading and
 * reports what it got after its FIN through `lastAfterFin`.
 */
let lastAfterFin: Promise<string>;
const FLOOD_BYTES = 256 * 1024 * 1024;
let resolveAfterFin: (s: string) => void;

before(async () => {
  echo = net.createServer({ allowHalfOpen: true }, (s) => {
    echoConnections++;
    echoSockets.add(s);
    s.on('close', () => echoSockets.delete(s));
    s.on('error', () => {});
    let mode: 'echo' | 'late' | 'greet' | 'flood' | undefined;
    const held: Buffer[] = [];
    let afterFin = '';
    s.on('data', (c: Buffer) => {
      if (mode === undefined) {
        const head = c.subarray(0, 6).toString();
        if (head.startsWith('LATE\n')) mode = 'late';
        else if (head.startsWith('FLOOD\n')) {
          // Sends FLOOD_BYTES honouring backpressure, then ends.
          mode = 'flood';
          const chunk = Buffer.alloc(64 * 1024, 0x62);
          let sent = 0;
          const pump = () => {
            while (sent < FLOOD_BYTES) {
              sent += chunk.length;
              if (!s.write(chunk)) return void s.once('drain', pump);
            }
            s.end();
          };
          pump();
          return;
        }
        else if (head.startsWith('GREET\n')) {
          mode = 'greet';
          s.end('hello\n');
          afterFin += c.subarray(6).toString();
          return;
        } else mode = 'echo';
      }
      if (mode === 'echo') s.write(c);
      else if (mode === 'late') held.push(c);
      else afterFin += c.toString();
    });
    s.on('end', () => {
      if (mode === 'late') setTimeout(() => s.end(Buffer.concat(held)), 100);
      else if (mode === 'greet') resolveAfterFin(afterFin);
      else s.end();
    });
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  echoPort = (echo.address() as net.AddressInfo).port;
  plane = await startPlane({
    listeners: [listener({ name: 'tcp', protocol: 'TCP', cluster: 'echo' })],
    clusters: [cluster('echo', echoPort)],
  });
  port = plane.ports.tcp!;
  tcp = plane.dp.tcpListeners[0]!;
  // A closed port for the connect-failure case.
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
  const closed = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  closedPlane = await startPlane({ listeners: [listener({ name: 'tcp', protocol: 'TCP', cluster: 'gone' })], clusters: [cluster('gone', closed)] });
});
beforeEach(() => {
  tcp.setChain([]);
  lastAfterFin = new Promise((r) => (resolveAfterFin = r));
});
after(async () => {
  await plane.close();
  await closedPlane.close();
  for (const s of echoSockets) s.destroy();
  await new Promise<void>((r) => echo.close(() => r()));
});

const clientSockets = new Set<net.Socket>();
afterEach(() => {
  for (const s of clientSockets) s.destroy();
  clientSockets.clear();
});

/** Connects to the proxy; collects what comes back until the proxy ends the connection. */
function connect(p = port): { socket: net.Socket; received: Promise<Buffer>; connected: Promise<void> } {
  const socket = net.connect({ host: '127.0.0.1', port: p, allowHalfOpen: true });
  clientSockets.add(socket);
  const chunks: Buffer[] = [];
  const received = new Promise<Buffer>((resolve, reject) => {
    socket.on('data', (c: Buffer) => chunks.push(c));
    // allowHalfOpen: after the proxy's FIN this side may still write (tests end it themselves).
    socket.on('end', () => resolve(Buffer.concat(chunks)));
    socket.on('close', () => resolve(Buffer.concat(chunks)));
    socket.on('error', reject);
  });
  const connected = new Promise<void>((r) => socket.once('connect', () => r()));
  return { socket, received, connected };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('TCP proxy: bytes both ways to an echo server (8 MiB random, written in pieces)', async () => {
  const data = randomBytes(8 * 1024 * 1024);
  const c = connect();
  await c.connected;
  for (let i = 0; i < data.length; i += 1 << 20) c.socket.write(data.subarray(i, i + (1 << 20)));
  c.socket.end();
  const got = await c.received;
  assert.equal(got.length, data.length);
  assert.equal(sha(got), sha(data));
});

test('TCP proxy: client half-close — the upstream answers after the client FIN and the answer arrives', async () => {
  const c = connect();
  await c.connected;
  c.socket.write('LATE\npart one, ');
  c.socket.end('part two');
  const got = await c.received;
  assert.equal(got.toString(), 'LATE\npart one, part two');
});

test('TCP proxy: upstream half-close — the client keeps sending after the server FIN and the server gets it', async () => {
  const c = connect();
  await c.connected;
  let sawGreeting!: () => void;
  const greeted = new Promise<void>((r) => (sawGreeting = r));
  c.socket.on('data', (d: Buffer) => {
    if (d.toString().includes('hello')) sawGreeting();
  });
  c.socket.write('GREET\n');
  await greeted;
  // The server has half-closed; the client may still write.
  await new Promise((r) => setTimeout(r, 100));
  c.socket.end('after-fin data');
  const got = await c.received;
  assert.equal(got.toString(), 'hello\n');
  assert.equal(await lastAfterFin, 'after-fin data');
});

test('TCP proxy: connect failure closes the downstream connection', async () => {
  const c = connect(closedPlane.ports.tcp!);
  await c.connected;
  c.socket.write('anyone?');
  const got = await c.received;
  assert.equal(got.length, 0);
});

test('network filter that stops on new connection and continues later: nothing reaches the upstream before', async () => {
  let cbs!: NetworkFilterCallbacks;
  let onNew!: () => void;
  const newConnection = new Promise<void>((r) => (onNew = r));
  const factory: NetworkFilterFactory = {
    name: 'test.hold',
    create(cb) {
      cbs = cb;
      return {
        onNewConnection() {
          onNew();
          return NetworkFilterStatus.StopIteration;
        },
      };
    },
  };
  tcp.setChain([factory]);
  const before = echoConnections;
  const c = connect();
  await c.connected;
  await newConnection;
  c.socket.write('early bytes;');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(echoConnections, before, 'the upstream connection waits for the filter');
  cbs.continueReading();
  c.socket.write('later bytes');
  c.socket.end();
  const got = await c.received;
  assert.equal(got.toString(), 'early bytes;later bytes');
  assert.equal(echoConnections, before + 1);
});

test('network filter that modifies data both ways (read and write filters, write filters in reverse order)', async () => {
  const order: string[] = [];
  const mk = (name: string, fn: (dir: 'down' | 'up', d: DataBuffer) => void): NetworkFilterFactory => ({
    name,
    create(): NetworkFilter {
      return {
        onDownstreamData(data) {
          order.push(`${name}:down`);
          fn('down', data);
          return NetworkFilterStatus.Continue;
        },
        onUpstreamData(data) {
          if (data.length > 0) order.push(`${name}:up`);
          fn('up', data);
          return NetworkFilterStatus.Continue;
        },
      };
    },
  });
  tcp.setChain([
    mk('upper', (dir, d) => {
      if (dir === 'down' && d.length) d.set(d.toString().toUpperCase());
    }),
    mk('tag', (dir, d) => {
      if (dir === 'up' && d.length) d.set(`[${d.toString()}]`);
    }),
  ]);
  const c = connect();
  await c.connected;
  c.socket.end('hello tcp');
  const got = await c.received;
  assert.equal(got.toString(), '[HELLO TCP]');
  assert.equal(order.indexOf('upper:down') < order.indexOf('tag:down'), true);
  assert.equal(order.indexOf('tag:up') < order.indexOf('upper:up'), true, `write filters run in reverse: ${order.join(',')}`);
});

test('network filter that buffers (StopIteration) until a whole line arrived, then forwards it all', async () => {
  const seen: number[] = [];
  tcp.setChain([
    {
      name: 'line',
      create(): NetworkFilter {
        let passed = false;
        return {
          onDownstreamData(data) {
            if (passed) return NetworkFilterStatus.Continue;
            seen.push(data.length);
            if (!data.toString().includes('\n')) return NetworkFilterStatus.StopIteration;
            passed = true;
            return NetworkFilterStatus.Continue;
          },
        };
      },
    },
  ]);
  const seenLength = async (n: number) => {
    const deadline = Date.now() + 10_000;
    while (seen.at(-1) !== n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  };
  const c = connect();
  await c.connected;
  c.socket.write('abc');
  await seenLength(3);
  c.socket.write('def');
  await seenLength(6);
  c.socket.write('\nrest');
  c.socket.end();
  const got = await c.received;
  assert.equal(got.toString(), 'abcdef\nrest');
  // Called again with the whole held buffer each time: 3, then 6, then 11 bytes (7 if the
  // last write arrived in two reads; the filter lets everything through once it saw the newline).
  assert.deepEqual(seen.slice(0, 2), [3, 6]);
  assert.ok(seen[2] === 11 || seen[2] === 7, `third call saw ${seen[2]} bytes`);
  assert.equal(seen.length, 3);
});

test('network filter that answers and closes the connection itself (no upstream)', async () => {
  tcp.setChain([
    {
      name: 'deny',
      create(cb): NetworkFilter {
        return {
          onNewConnection() {
            cb.writeDownstream(Buffer.from('denied\n'));
            cb.close(true, 'test_denied');
            return NetworkFilterStatus.StopIteration;
          },
        };
      },
    },
  ]);
  const before = echoConnections;
  const c = connect();
  await c.connected;
  const got = await c.received;
  assert.equal(got.toString(), 'denied\n');
  assert.equal(echoConnections, before);
});

test('TCP proxy backpressure: a client that stops reading pauses the upstream (256 MiB, bounded memory)', { timeout: 60_000 }, async () => {
  const c = connect();
  await c.connected;
  (globalThis as { gc?: () => void }).gc?.();
  const base = process.memoryUsage().arrayBuffers;
  let peak = base;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().arrayBuffers)), 50);
  let n = 0;
  c.socket.pause();
  c.socket.on('data', (d: Buffer) => (n += d.length));
  c.socket.write('FLOOD\n');
  await new Promise((r) => setTimeout(r, 1500));
  clearInterval(sampler);
  const growth = peak - base;
  c.socket.resume();
  await c.received;
  assert.equal(n, FLOOD_BYTES);
  assert.ok(growth < 64 * 1024 * 1024, `arrayBuffers grew by ${(growth / 1048576).toFixed(1)} MiB while the client was not reading`);
});
