/**
 * A TCP listener: an L4 network filter chain (Envoy's read/write filters: new connection,
 * downstream data, upstream data, close; Continue / StopIteration) in front of a TCP proxy to a
 * cluster. type NETWORK Wasm plugins are placed here.
 *
 * Data held by a stopped filter accumulates; the filter is called again with the whole held
 * buffer on each new read (as the HTTP chain does), and continueReading() forwards it onward.
 */
import net from 'node:net';
import type { ListenerConfig, ProxyIdentity } from '../config/types.ts';
import { DataBuffer } from '../filters/data-buffer.ts';
import { StreamInfo } from '../filters/stream-info.ts';
import { NetworkFilterStatus, type NetworkFilter, type NetworkFilterCallbacks, type NetworkFilterFactory } from '../filters/types.ts';
import { recordIstioTcpOpen } from '../observability/istio-metrics.ts';
import { logger } from '../observability/log.ts';
import type { StatsStore } from '../observability/stats.ts';
import type { Clusters } from './upstream.ts';

const log = logger('connection');
let nextConnectionId = 1;

interface Held {
  index: number;
  data: DataBuffer;
  end: boolean;
  /**
   * The filter at `index` has seen this data and stopped (resume after it); false when the data
   * is parked in front of a filter that has not seen it (new-connection iteration stopped there).
   */
  seen: boolean;
}

class TcpSession implements NetworkFilterCallbacks {
  readonly connectionId = nextConnectionId++;
  readonly streamInfo = new StreamInfo();
  readonly #down: net.Socket;
  #up: net.Socket | undefined;
  readonly #filters: { name: string; filter: NetworkFilter }[] = [];
  readonly #listener: TcpListener;
  /** Filters whose onNewConnection has run (Envoy's `initialized_`). */
  #newConnIndex = 0;
  /** The last of those returned StopIteration and has not continued yet. */
  #newConnStopped = false;
  #connectStarted = false;
  #upConnected = false;
  /** Downstream data waiting for the upstream connection. */
  #pendingUp: Buffer[] = [];
  #pendingUpEnd = false;
  #heldDown: Held | undefined;
  #heldUp: Held | undefined;
  #closed = false;
  readonly #report: { report(): void; close(): void };

  constructor(listener: TcpListener, socket: net.Socket, factories: readonly NetworkFilterFactory[], identity: ProxyIdentity, stats: StatsStore) {
    this.#listener = listener;
    this.#down = socket;
    const si = this.streamInfo;
    si.protocol = 'TCP';
    si.listenerName = listener.config.name;
    si.direction = listener.config.direction;
    si.downstreamRemoteAddress = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
    si.downstreamDirectRemoteAddress = si.downstreamRemoteAddress;
    si.downstreamLocalAddress = { address: socket.localAddress ?? '', port: socket.localPort ?? 0 };
    si.upstreamCluster = listener.config.cluster;
    for (const factory of factories) {
      try {
        const f = factory.create(this);
        if (f) this.#filters.push({ name: factory.name, filter: f });
      } catch (err) {
        log.error({ err, filter: factory.name }, 'network filter factory threw; skipping it for this connection');
      }
    }
    this.#report = recordIstioTcpOpen(stats, identity, si);
    socket.on('data', (chunk: Buffer) => {
      si.bytesReceived += chunk.length;
      this.#downstreamData(0, new DataBuffer(chunk), false);
    });
    socket.on('end', () => this.#downstreamData(0, new DataBuffer(), true));
    socket.on('error', () => {});
    socket.on('close', () => this.#onDownstreamClose());
    this.#runNewConnection();
  }

  #runNewConnection(): void {
    const filters = this.#filters;
    while (this.#newConnIndex < filters.length) {
      const { filter, name } = filters[this.#newConnIndex]!;
      this.#newConnIndex++;
      if (!filter.onNewConnection) continue;
      let status: NetworkFilterStatus;
      try {
        status = filter.onNewConnection();
      } catch (err) {
        log.error({ err, filter: name }, 'onNewConnection threw; closing the connection');
        this.close(false, 'filter_exception');
        return;
      }
      if (this.#closed) return;
      if (status === NetworkFilterStatus.StopIteration) {
        this.#newConnStopped = true;
        return;
      }
    }
    this.#connectUpstream();
  }

  #connectUpstream(): void {
    if (this.#connectStarted || this.#closed) return;
    this.#connectStarted = true;
    const clusterName = this.#listener.config.cluster!;
    const cluster = this.#listener.clusters.get(clusterName);
    const ep = cluster?.pick();
    if (!cluster || !ep) {
      this.streamInfo.responseFlags.add(cluster ? 'UH' : 'NC');
      this.close(false, cluster ? 'no_healthy_upstream' : 'cluster_not_found');
      return;
    }
    this.streamInfo.upstreamHost = ep.config;
    // Half-open: a FIN from one side is passed on, the other direction keeps flowing.
    const up = net.connect({ host: ep.config.address, port: ep.config.port, noDelay: true, allowHalfOpen: true });
    this.#up = up;
    const timer = setTimeout(() => {
      this.streamInfo.responseFlags.add('UF');
      up.destroy();
      this.close(false, 'upstream_connect_timeout');
    }, cluster.config.connectTimeoutMs);
    up.once('connect', () => {
      clearTimeout(timer);
      this.#upConnected = true;
      this.streamInfo.upstreamLocalAddress = { address: up.localAddress ?? '', port: up.localPort ?? 0 };
      for (const c of this.#pendingUp) up.write(c);
      this.#pendingUp = [];
      if (this.#pendingUpEnd) up.end();
    });
    up.on('data', (chunk: Buffer) => this.#upstreamData(0, new DataBuffer(chunk), false));
    up.on('end', () => this.#upstreamData(0, new DataBuffer(), true));
    up.on('error', (err) => {
      clearTimeout(timer);
      if (!this.#upConnected) {
        this.streamInfo.responseFlags.add('UF');
        log.debug({ err, cluster: clusterName }, 'upstream connect failed');
      }
    });
    up.on('close', () => {
      clearTimeout(timer);
      for (const { filter } of this.#filters) filter.onUpstreamClose?.();
      // Envoy closes the downstream once the upstream is gone (after flushing).
      if (!this.#closed) this.close(true, 'upstream_closed');
    });
    // Backpressure both ways.
    this.#down.on('drain', () => up.resume());
    up.on('drain', () => this.#down.resume());
  }

  /**
   * Runs downstream data through read filters from `from`. As Envoy's read filter manager: data
   * never passes a filter whose onNewConnection has not run yet (an earlier filter stopped the
   * new-connection iteration), nor one that stopped there and has no data callback; a filter that
   * stopped on the new connection but lets data through continues the new-connection iteration.
   */
  #downstreamData(from: number, data: DataBuffer, end: boolean): void {
    const filters = this.#filters;
    for (let i = from; i < filters.length; i++) {
      const { filter, name } = filters[i]!;
      const held = this.#heldDown;
      if (held && held.index === i) {
        held.data.move(data);
        held.end ||= end;
        if (!held.seen) return;
        data = held.data;
        end = held.end;
      } else if (held && held.index < i) {
        held.data.move(data);
        held.end ||= end;
        return;
      }
      const stoppedHere = this.#newConnStopped && i === this.#newConnIndex - 1;
      if (i >= this.#newConnIndex || (stoppedHere && !filter.onDownstreamData)) {
        if (!held || held.index !== i) this.#heldDown = { index: i, data, end, seen: false };
        return;
      }
      if (!filter.onDownstreamData) continue;
      let status: NetworkFilterStatus;
      try {
        status = filter.onDownstreamData(data, end);
      } catch (err) {
        log.error({ err, filter: name }, 'onDownstreamData threw; closing the connection');
        this.close(false, 'filter_exception');
        return;
      }
      if (this.#closed) return;
      if (status === NetworkFilterStatus.StopIteration) {
        this.#heldDown = { index: i, data, end, seen: true };
        return;
      }
      if (held && held.index === i) this.#heldDown = undefined;
      if (stoppedHere) {
        this.#newConnStopped = false;
        this.#runNewConnection();
        if (this.#closed) return;
      }
    }
    this.#writeUpstream(data, end);
  }

  #upstreamData(from: number, data: DataBuffer, end: boolean): void {
    // Write filters run in reverse order.
    const filters = this.#filters;
    for (let j = from; j < filters.length; j++) {
      const i = filters.length - 1 - j;
      const { filter, name } = filters[i]!;
      if (!filter.onUpstreamData) continue;
      let payload = data;
      const held = this.#heldUp;
      if (held && held.index === j) {
        held.data.move(data);
        held.end ||= end;
        payload = held.data;
      }
      let status: NetworkFilterStatus;
      try {
        status = filter.onUpstreamData(payload, end || (held?.end ?? false));
      } catch (err) {
        log.error({ err, filter: name }, 'onUpstreamData threw; closing the connection');
        this.close(false, 'filter_exception');
        return;
      }
      if (this.#closed) return;
      if (status === NetworkFilterStatus.StopIteration) {
        this.#heldUp = { index: j, data: payload, end: end || (held?.end ?? false), seen: true };
        return;
      }
      if (held && held.index === j) this.#heldUp = undefined;
      data = payload;
    }
    this.writeDownstream(data.length ? data.toBuffer() : Buffer.alloc(0));
    if (end) this.#down.end();
  }

  #writeUpstream(data: DataBuffer, end: boolean): void {
    const up = this.#up;
    if (!this.#upConnected || !up) {
      for (const c of data.chunks()) this.#pendingUp.push(c);
      if (end) this.#pendingUpEnd = true;
      if (!this.#connectStarted && this.#newConnIndex >= this.#filters.length && !this.#newConnStopped) this.#connectUpstream();
      return;
    }
    let ok = true;
    for (const c of data.chunks()) ok = up.write(c);
    if (!ok) this.#down.pause();
    if (end) up.end();
  }

  // ------------------------------------------------------------------ callbacks

  continueReading(): void {
    if (this.#closed) return;
    queueMicrotask(() => {
      if (this.#closed) return;
      if (this.#newConnStopped || this.#newConnIndex < this.#filters.length || !this.#connectStarted) {
        this.#newConnStopped = false;
        this.#runNewConnection();
        if (this.#closed) return;
      }
      const held = this.#heldDown;
      if (held) {
        this.#heldDown = undefined;
        this.#downstreamData(held.seen ? held.index + 1 : held.index, held.data, held.end);
      }
      const heldUp = this.#heldUp;
      if (heldUp) {
        this.#heldUp = undefined;
        this.#upstreamData(heldUp.index + 1, heldUp.data, heldUp.end);
      }
    });
  }

  /** Periodic TCP metrics report (Istio reports long-lived connections' bytes as they flow). */
  reportMetrics(): void {
    if (!this.#finished) this.#report.report();
  }

  writeDownstream(data: Buffer): void {
    if (this.#closed || data.length === 0) return;
    this.streamInfo.bytesSent += data.length;
    if (!this.#down.write(data)) this.#up?.pause();
  }

  close(flush = true, details?: string): void {
    if (this.#closed) return;
    this.#closed = true;
    if (details) this.streamInfo.responseCodeDetails = details;
    if (flush) this.#down.end();
    else this.#down.destroy();
    this.#up?.destroy();
    this.#finish();
  }

  #onDownstreamClose(): void {
    for (const { filter } of this.#filters) filter.onDownstreamClose?.();
    if (!this.#closed) {
      this.#closed = true;
      this.#up?.destroy();
    }
    this.#finish();
  }

  #finished = false;
  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#report.close();
    for (const { filter, name } of this.#filters) {
      try {
        filter.onDestroy?.();
      } catch (err) {
        log.error({ err, filter: name }, 'network filter onDestroy threw');
      }
    }
    this.#listener.sessionDone(this);
  }
}

export class TcpListener {
  readonly config: ListenerConfig;
  readonly clusters: Clusters;
  chain: readonly NetworkFilterFactory[];
  readonly #stats: StatsStore;
  readonly #identity: ProxyIdentity;
  #server: net.Server | undefined;
  readonly #sessions = new Set<TcpSession>();
  readonly #sockets = new Set<net.Socket>();
  #drainWaiters: (() => void)[] = [];
  #reportTimer: NodeJS.Timeout | undefined;

  constructor(config: ListenerConfig, chain: readonly NetworkFilterFactory[], clusters: Clusters, stats: StatsStore, identity: ProxyIdentity) {
    this.config = config;
    this.chain = chain;
    this.clusters = clusters;
    this.#stats = stats;
    this.#identity = identity;
  }

  get port(): number {
    const a = this.#server?.address();
    return typeof a === 'object' && a ? a.port : this.config.port;
  }

  setChain(chain: readonly NetworkFilterFactory[]): void {
    this.chain = chain;
  }

  async listen(): Promise<void> {
    const cx = this.#stats.counter(`listener.${this.config.address}_${this.config.port}.downstream_cx_total`);
    // Half-open: the client's FIN goes upstream and the upstream's answer still comes back.
    const server = net.createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
      cx.inc();
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      this.#sessions.add(new TcpSession(this, socket, this.chain, this.#identity, this.#stats));
    });
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.config.address, port: this.config.port, reusePort: true }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // Istio's TCP metrics report open connections periodically (its stats filter flushes every 15 s).
    this.#reportTimer = setInterval(() => {
      for (const s of this.#sessions) s.reportMetrics();
    }, 15_000);
    this.#reportTimer.unref();
  }

  sessionDone(s: TcpSession): void {
    this.#sessions.delete(s);
    if (this.#sessions.size === 0 && this.#drainWaiters.length) {
      const w = this.#drainWaiters;
      this.#drainWaiters = [];
      for (const f of w) f();
    }
  }

  async drain(timeoutMs: number): Promise<void> {
    this.#server?.close();
    if (this.#sessions.size === 0) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, timeoutMs);
      this.#drainWaiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    clearInterval(this.#reportTimer);
    for (const s of this.#sockets) s.destroy();
    const server = this.#server;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }
}
