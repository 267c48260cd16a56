/**
 * Plaintext TCP for the HTTP/1.1 data path on meshext's native transport (native/transport.c):
 * NativeSocket and NativeServer offer the members of node:net's Socket and Server that the codec
 * uses (ByteStream), on libuv directly. node:net's stream layer costs about a third of Node's
 * per-request I/O floor; this skips it (docs/adr-native-transport.md).
 *
 * Optional like the LuaJIT addon: built by `npm run build:transport`; without it (or with
 * MESHEXT_TRANSPORT=node) everything runs on node:net.
 *
 * Differences from node:net, all on purpose:
 * - reads arrive as views into one buffer per thread, valid only during the 'data' callback (the
 *   codec's parser copies what it keeps, and body chunks are copied);
 * - setTimeout() is a one-shot timer (the codec uses it only while connecting).
 */
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';
import { logger } from '../../observability/log.ts';
import type { ByteStream } from './byte-stream.ts';

const log = logger('connection');

export const TRANSPORT_ADDON_PATH = fileURLToPath(new URL('../../../build/transport-native/meshext_transport.node', import.meta.url));

interface Addon {
  init(readBuffer: ArrayBuffer, writeBuffer: ArrayBuffer, onRead: (id: number, n: number) => void, onEvent: (kind: number, id: number, value: number) => void): void;
  listen(ip: string, port: number, backlog: number): number;
  connect(ip: string, port: number): number;
  read(id: number, on: boolean): number;
  write(id: number, bytes: Uint8Array): number;
  writeShared(id: number, length: number): number;
  shutdown(id: number): number;
  close(id: number): void;
  setRef(id: number, on: boolean): void;
  addresses(id: number): [string, number, string, number];
  detach(id: number): number;
}

const EV_ACCEPT = 1;
const EV_CONNECT = 2;
const EV_EOF = 3;
const EV_ERROR = 4;
const EV_DRAIN = 5;
const EV_SHUTDOWN = 6;

/** Like node:net's default writable high-water mark: write() says false above it. */
const HIGH_WATER_MARK = 16 * 1024;
const READ_BUFFER_BYTES = 64 * 1024;
const WRITE_BUFFER_BYTES = 64 * 1024;
/** Up to this, a framed message is assembled in the write buffer and written at once (as wire.ts). */
const COALESCE_LIMIT = 16 * 1024;

let addon: Addon | undefined;
let loadError: string | undefined;
let readArea: ArrayBuffer;
let writeArea: Buffer;
const sockets: Array<NativeSocket | undefined> = [];
const servers: Array<NativeServer | undefined> = [];

/**
 * The transport for this thread, loaded and initialized on first use; undefined when it is not
 * built or turned off (MESHEXT_TRANSPORT=node). `nativeTransportStatus()` says which and why.
 */
function transport(): Addon | undefined {
  if (addon !== undefined || loadError !== undefined) return addon;
  if (process.env.MESHEXT_TRANSPORT === 'node') {
    loadError = 'MESHEXT_TRANSPORT=node';
    return undefined;
  }
  const wanted = process.env.MESHEXT_TRANSPORT;
  if (wanted !== undefined && wanted !== '' && wanted !== 'native') {
    log.warn({ MESHEXT_TRANSPORT: wanted }, "MESHEXT_TRANSPORT is neither 'node' nor 'native'; using the native transport (set MESHEXT_TRANSPORT=node for node:net, or unset it)");
  }
  if (!existsSync(TRANSPORT_ADDON_PATH)) {
    loadError = 'not built (npm run build:transport)';
    return undefined;
  }
  try {
    const a = createRequire(import.meta.url)(TRANSPORT_ADDON_PATH) as Addon;
    readArea = new ArrayBuffer(READ_BUFFER_BYTES);
    const w = new ArrayBuffer(WRITE_BUFFER_BYTES);
    writeArea = Buffer.from(w);
    a.init(readArea, w, onRead, onEvent);
    addon = a;
  } catch (err) {
    loadError = `failed to load: ${(err as Error).message}`;
    log.warn({ err, path: TRANSPORT_ADDON_PATH }, 'native transport did not load; plaintext HTTP/1.1 runs on node:net (rebuild it: npm run build:transport)');
  }
  return addon;
}

/**
 * What plaintext HTTP/1.1 runs on, for /server_info, without loading anything in this thread:
 * "native", or "node:net" with the reason.
 */
export function describeTransport(): string {
  if (process.env.MESHEXT_TRANSPORT === 'node') return 'node:net (MESHEXT_TRANSPORT=node)';
  if (!existsSync(TRANSPORT_ADDON_PATH)) return 'node:net (native transport not built: npm run build:transport)';
  return 'native';
}

/** Whether plaintext HTTP/1.1 runs on the native transport in this thread, and if not, why. */
export function nativeTransportStatus(): { native: boolean; reason?: string } {
  return transport() !== undefined ? { native: true } : { native: false, reason: loadError };
}

function onRead(id: number, n: number): void {
  sockets[id]?.onBytes(Buffer.from(readArea, 0, n));
}

function onEvent(kind: number, id: number, value: number): void {
  if (kind === EV_ACCEPT) {
    servers[id]?.onAccept(value);
    return;
  }
  const s = sockets[id];
  if (s === undefined) return;
  if (kind === EV_EOF) s.onEof();
  else if (kind === EV_DRAIN) s.onDrained();
  else if (kind === EV_ERROR) s.destroy(systemError(value, 'read'));
  else if (kind === EV_CONNECT) s.onConnected(value);
  else if (kind === EV_SHUTDOWN) s.onShutdown();
}

function systemError(errno: number, syscall: string): Error {
  let code: string;
  try {
    code = getSystemErrorName(errno);
  } catch {
    code = `E${-errno}`;
  }
  return Object.assign(new Error(`${syscall} ${code}`), { code, errno, syscall });
}

export class NativeSocket extends EventEmitter implements ByteStream {
  readonly #id: number;
  #addresses: [string, number, string, number] | undefined;
  #onData: ((chunk: Buffer) => void) | undefined;
  #reading = false;
  #paused = false;
  #eof = false;
  #shutDone = false;
  #needDrain = false;
  #corked: Array<string | Uint8Array> | undefined;
  #connectTimer: NodeJS.Timeout | undefined;
  connecting: boolean;
  destroyed = false;
  writableEnded = false;

  /** Wraps connection `id` of this thread's transport (use connectNative / NativeServer). */
  constructor(id: number, connecting: boolean) {
    super();
    this.#id = id;
    this.connecting = connecting;
    if (id >= 0) sockets[id] = this;
  }

  get remoteAddress(): string {
    return this.#addrs()[0];
  }
  get remotePort(): number {
    return this.#addrs()[1];
  }
  get localAddress(): string {
    return this.#addrs()[2];
  }
  get localPort(): number {
    return this.#addrs()[3];
  }
  get writableNeedDrain(): boolean {
    return this.#needDrain;
  }

  #addrs(): [string, number, string, number] {
    if (this.#addresses === undefined) {
      if (this.destroyed) return ['', 0, '', 0];
      this.#addresses = addon!.addresses(this.#id);
    }
    return this.#addresses;
  }

  // ------------------------------------------------------------ events

  override on(event: string | symbol, listener: (...args: any[]) => void): this {
    if (event === 'data') {
      // One reader per socket (the codec): called directly, without the emitter.
      this.#onData = listener;
      if (!this.#paused) this.#startReading();
      return this;
    }
    return super.on(event, listener);
  }

  override off(event: string | symbol, listener: (...args: any[]) => void): this {
    if (event === 'data') {
      if (this.#onData === listener) this.#onData = undefined;
      return this;
    }
    return super.off(event, listener);
  }

  /** A read: `chunk` is a view into the thread's read buffer, valid during this call only. */
  onBytes(chunk: Buffer): void {
    this.#onData?.(chunk);
  }

  onEof(): void {
    this.#eof = true;
    this.#reading = false;
    this.emit('end');
    if (this.writableEnded) {
      if (this.#shutDone) this.#close();
      return;
    }
    // No half-open connections, as node:net's default (allowHalfOpen: false) and Envoy: the peer's
    // FIN ends our side too, after what is already queued.
    process.nextTick(() => this.end());
  }

  onShutdown(): void {
    this.#shutDone = true;
    if (this.#eof) this.#close();
    // Our FIN is out: the socket closes when the peer's arrives, so read for it (node:net reads
    // unless paused, whether or not anyone listens).
    else if (!this.#paused) this.#startReading();
  }

  onDrained(): void {
    if (this.#needDrain) {
      this.#needDrain = false;
      this.emit('drain');
    }
  }

  onConnected(status: number): void {
    if (this.#connectTimer !== undefined) clearTimeout(this.#connectTimer);
    this.#connectTimer = undefined;
    if (this.destroyed) return;
    if (status < 0) {
      this.destroy(systemError(status, 'connect'));
      return;
    }
    this.connecting = false;
    this.emit('connect');
    if (this.#onData !== undefined && !this.#paused) this.#startReading();
    this.#flushCorked();
  }

  // ------------------------------------------------------------ reading

  #startReading(): void {
    if (this.#reading || this.destroyed || this.#eof || this.connecting) return;
    // (Without a 'data' listener the bytes are dropped: only the FIN matters then.)
    this.#reading = true;
    addon!.read(this.#id, true);
  }

  pause(): this {
    this.#paused = true;
    if (this.#reading) {
      this.#reading = false;
      addon!.read(this.#id, false);
    }
    return this;
  }

  resume(): this {
    this.#paused = false;
    if (this.#onData !== undefined) this.#startReading();
    return this;
  }

  isPaused(): boolean {
    return this.#paused;
  }

  // ------------------------------------------------------------ writing

  write(data: string | Uint8Array, encoding?: BufferEncoding): boolean {
    if (this.destroyed || this.writableEnded) return false;
    if (this.#corked !== undefined || this.connecting) {
      (this.#corked ??= []).push(typeof data === 'string' && encoding !== 'latin1' ? Buffer.from(data, encoding ?? 'utf8') : data);
      return !this.#needDrain;
    }
    let r: number;
    if (typeof data === 'string') {
      if (encoding === 'latin1') {
        // Heads are latin1 strings: written into the shared write buffer, no allocation.
        if (data.length <= WRITE_BUFFER_BYTES) r = addon!.writeShared(this.#id, writeArea.write(data, 0, 'latin1'));
        else r = addon!.write(this.#id, Buffer.from(data, 'latin1'));
      } else {
        r = addon!.write(this.#id, Buffer.from(data, encoding ?? 'utf8'));
      }
    } else {
      r = addon!.write(this.#id, data);
    }
    return this.#afterWrite(r);
  }

  /**
   * `prefix`, the chunks and `suffix` (latin1 strings around a body) as one write, assembled in the
   * shared write buffer: no Buffer of its own, one copy of the body. False above the high-water mark.
   */
  writeParts(prefix: string, chunks: readonly Uint8Array[], suffix: string): boolean {
    let total = prefix.length + suffix.length;
    for (let i = 0; i < chunks.length; i++) total += chunks[i]!.length;
    if (total > COALESCE_LIMIT || this.#corked !== undefined || this.connecting || this.destroyed || this.writableEnded) {
      // Large bodies go out from their own memory (a copy costs more than the extra syscalls).
      let ok = true;
      if (prefix.length !== 0) ok = this.write(prefix, 'latin1');
      for (let i = 0; i < chunks.length; i++) ok = this.write(chunks[i]!);
      if (suffix.length !== 0) ok = this.write(suffix, 'latin1');
      return ok;
    }
    const area = writeArea;
    let at = prefix.length === 0 ? 0 : area.write(prefix, 0, 'latin1');
    for (let i = 0; i < chunks.length; i++) {
      area.set(chunks[i]!, at);
      at += chunks[i]!.length;
    }
    if (suffix.length !== 0) at += area.write(suffix, at, 'latin1');
    return this.#afterWrite(addon!.writeShared(this.#id, at));
  }

  #afterWrite(r: number): boolean {
    if (r < 0) {
      const err = systemError(r, 'write');
      process.nextTick(() => this.destroy(err));
      return false;
    }
    if (r >= HIGH_WATER_MARK) this.#needDrain = true;
    return !this.#needDrain;
  }

  cork(): void {
    this.#corked ??= [];
  }

  uncork(): void {
    if (!this.connecting) this.#flushCorked();
  }

  #flushCorked(): void {
    const parts = this.#corked;
    if (parts === undefined) return;
    this.#corked = undefined;
    if (parts.length === 0) return;
    if (parts.length === 1) {
      this.write(parts[0]!, 'latin1');
      return;
    }
    this.write(Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p))));
  }

  end(data?: string, encoding?: BufferEncoding): this {
    if (this.destroyed || this.writableEnded) return this;
    if (data !== undefined) this.write(data, encoding);
    this.writableEnded = true;
    if (this.connecting) {
      this.once('connect', () => this.#shutdown());
      return this;
    }
    this.#flushCorked();
    this.#shutdown();
    return this;
  }

  /** Sends our FIN after what is queued. A shutdown that cannot start (the peer reset) counts as done. */
  #shutdown(): void {
    if (this.destroyed) return;
    if (addon!.shutdown(this.#id) < 0) this.onShutdown();
  }

  // ------------------------------------------------------------ lifetime

  destroy(err?: Error): this {
    this.#close(err);
    return this;
  }

  /** Closes now; 'error' (with `err`) and 'close' follow on the next tick, as with node:net. */
  #close(err?: Error): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.writableEnded = true;
    this.#reading = false;
    if (this.#connectTimer !== undefined) clearTimeout(this.#connectTimer);
    addon!.close(this.#id);
    sockets[this.#id] = undefined;
    process.nextTick(() => {
      if (err !== undefined) this.emit('error', err);
      this.emit('close');
    });
  }

  ref(): this {
    if (!this.destroyed) addon!.setRef(this.#id, true);
    return this;
  }

  unref(): this {
    if (!this.destroyed) addon!.setRef(this.#id, false);
    return this;
  }

  setNoDelay(): this {
    return this; // always on (set by the transport on every connection)
  }

  /** A one-shot timer (the codec uses it only while connecting); 0 clears it. */
  setTimeout(ms: number, callback?: () => void): this {
    if (this.#connectTimer !== undefined) clearTimeout(this.#connectTimer);
    this.#connectTimer = undefined;
    if (ms > 0) {
      this.#connectTimer = setTimeout(() => {
        this.#connectTimer = undefined;
        if (callback !== undefined) callback();
        this.emit('timeout');
      }, ms);
      this.#connectTimer.unref();
    }
    return this;
  }

  /** Hands the connection's file descriptor over (a duplicate) and closes this socket. */
  detachFd(): number {
    const fd = addon!.detach(this.#id);
    this.destroyed = true;
    sockets[this.#id] = undefined;
    if (fd < 0) throw systemError(fd, 'dup');
    return fd;
  }
}

/** Connects to `ip:port` (an IP address: names go through node:net). Undefined without the transport. */
export function connectNative(ip: string, port: number): NativeSocket | undefined {
  const a = transport();
  if (a === undefined) return undefined;
  const id = a.connect(ip, port);
  if (id >= 0) return new NativeSocket(id, true);
  // Reported like a failed connect, on the next tick (as node:net does).
  const s = new NativeSocket(-1, false);
  s.destroyed = true;
  s.writableEnded = true;
  const err = systemError(id, 'connect');
  process.nextTick(() => {
    s.emit('error', err);
    s.emit('close');
  });
  return s;
}

/** A listening socket on the native transport (SO_REUSEPORT, as node:net's `reusePort`). */
export class NativeServer {
  readonly #id: number;
  readonly #onConnection: (socket: NativeSocket) => void;
  #closed = false;
  readonly port: number;

  /** Throws a system error (EADDRINUSE, ...) when it cannot listen. */
  constructor(ip: string, port: number, backlog: number, onConnection: (socket: NativeSocket) => void) {
    const a = transport();
    if (a === undefined) throw new Error(`native transport unavailable: ${loadError}`);
    const id = a.listen(ip, port, backlog);
    if (id < 0) {
      const err = systemError(id, 'listen');
      Object.assign(err, { address: ip, port });
      throw err;
    }
    this.#id = id;
    this.#onConnection = onConnection;
    servers[id] = this;
    this.port = a.addresses(id)[3];
  }

  onAccept(connId: number): void {
    if (this.#closed) {
      addon!.close(connId);
      return;
    }
    this.#onConnection(new NativeSocket(connId, false));
  }

  address(): { address: string; port: number; family: string } {
    const [, , address, port] = this.#closed ? ['', 0, '', this.port] : addon!.addresses(this.#id);
    return { address, port, family: address.includes(':') ? 'IPv6' : 'IPv4' };
  }

  /** Stops accepting; `callback` runs on the next tick (open connections are the caller's). */
  close(callback?: () => void): this {
    if (!this.#closed) {
      this.#closed = true;
      servers[this.#id] = undefined;
      addon!.close(this.#id);
    }
    if (callback !== undefined) process.nextTick(callback);
    return this;
  }
}

