/**
 * Shared key-value data with CAS (spec §4.8) and shared queues (§4.9), partitioned by vm_id and
 * process-wide as in Envoy: every worker thread attaches to the same SharedArrayBuffers (made by
 * the main thread, handed over in workerData), so the synchronous host calls see one store.
 *
 * Layout and trade-offs are explained in docs/adr-wasm-shared-data.md. In short:
 *  - ctl   (fixed Int32Array): a futex-style mutex, the global CAS counter, the heap's bump
 *          pointer, size-class free lists and the queue token table.
 *  - index (growable SAB): open addressing, 2 words per slot (hash, entry offset), load <= 1/2,
 *          doubled and rehashed in place under the mutex.
 *  - heap  (growable SAB): power-of-two blocks holding entries (vm_id, key, value, cas), queue
 *          headers and queue items. Growable buffers grow for every thread at once (views are
 *          length-tracking), so no thread ever has to be told about a new buffer.
 * Every operation holds the one mutex for a few hundred nanoseconds; nothing in a critical section
 * calls plugin code (values are copied out and written into the plugin after unlocking).
 *
 * Queue notifications cross threads as [tag, id, token]: over the worker's link to the main thread
 * (link.ts), or on a BroadcastChannel in threads without one; the instance whose tag owns the
 * receiving root schedules proxy_on_queue_ready itself.
 */
import { randomUUID } from 'node:crypto';
import { BroadcastChannel, type MessagePort } from 'node:worker_threads';
import { logger } from '../observability/log.ts';
import { Status } from './abi.ts';
import { attachLink, linkQueueNotifier, workerLink } from './link.ts';

export interface SharedEntry {
  value: Uint8Array;
  cas: number;
}

export interface QueueReceiver {
  /** Delivers proxy_on_queue_ready(root, token) later (never re-entrantly). */
  notify(token: number): void;
}

/** What a thread needs to attach to a store (structured-cloneable: goes through workerData). */
export interface SharedStoreHandle {
  readonly ctl: SharedArrayBuffer;
  readonly index: SharedArrayBuffer;
  readonly heap: SharedArrayBuffer;
  readonly channel: string;
}

export interface SharedStoreLimits {
  /** Upper bound of the value heap (reserved as address space, committed as it grows). */
  maxHeapBytes?: number;
  /** Upper bound on keys + queues (the index keeps twice as many slots). */
  maxEntries?: number;
  maxQueues?: number;
}

export const SharedDefaults = {
  maxHeapBytes: 256 * 1024 * 1024,
  maxEntries: 1 << 20,
  maxQueues: 4096,
  initialHeapBytes: 64 * 1024,
  initialSlots: 1024,
} as const;

// ctl word indices
const LOCK = 0;
const CAS = 1;
const TOP = 2;
const SLOTS = 3;
const ENTRIES = 4;
const QUEUES = 5;
const TAGS = 6;
const MAX_QUEUES = 7;
const GEN = 39; // bumped whenever the index or heap grows: threads then remake their views
const FREE = 8; // FREE + class: head of that class's free list (0 = empty)
const CLASSES = 27; // block sizes 16 B .. 1 GiB
const QTAB = 40; // QTAB + token: heap offset of the queue header

// heap block kinds (word 1 of a live block; word 1 of a free block is the next-free link)
const KIND_DATA = 1;
const KIND_QUEUE = 2;
const KIND_ITEM = 3;
// Entry header: [class, kind, cas|token, vmIdLen, keyLen, valLen|head, tail, recvTag, recvId, count]
const DATA_HDR = 24;
const QUEUE_HDR = 40;
const ITEM_HDR = 16; // [class, kind, next, len]
const HEAP_START = 16; // offset 0 stays unused so 0 can mean "none"

const MAX_HEAP = 1 << 30; // offsets must stay int32

interface Backing {
  handle: SharedStoreHandle;
  ctl: Int32Array;
  idx: Int32Array;
  h8: Uint8Array;
  h32: Int32Array;
  tag: number;
  /** Made on first queue use: data-only threads never listen. */
  notifier: Notifier | undefined;
  /** ctl[GEN] when the views were made. */
  gen: number;
}

interface Notifier {
  send(tag: number, id: number, token: number): void;
  close(): void;
}

/** Notifications as [tag, id, token] on the store's BroadcastChannel (threads without a link). */
function broadcastNotifier(name: string, tag: number, deliver: (id: number, token: number) => void): Notifier {
  const channel = new BroadcastChannel(name);
  channel.onmessage = (ev: unknown) => {
    const [t, id, token] = (ev as { data: [number, number, number] }).data;
    if (t === tag) deliver(id, token);
  };
  // Notifications must not keep a process (or a draining worker) alive.
  (channel as unknown as { unref(): void }).unref();
  return { send: (to, id, token) => channel.postMessage([to, id, token]), close: () => channel.close() };
}

const utf8 = new TextEncoder();

function createHandle(limits: SharedStoreLimits): SharedStoreHandle {
  const maxQueues = Math.max(1, limits.maxQueues ?? SharedDefaults.maxQueues);
  const maxHeap = Math.min(MAX_HEAP, Math.max(SharedDefaults.initialHeapBytes, limits.maxHeapBytes ?? SharedDefaults.maxHeapBytes));
  const maxSlots = Math.max(SharedDefaults.initialSlots, 2 ** Math.ceil(Math.log2(Math.max(1, limits.maxEntries ?? SharedDefaults.maxEntries) * 2)));
  const ctl = new SharedArrayBuffer((QTAB + maxQueues + 1) * 4);
  const index = new SharedArrayBuffer(Math.min(SharedDefaults.initialSlots, maxSlots) * 8, { maxByteLength: maxSlots * 8 });
  const heap = new SharedArrayBuffer(SharedDefaults.initialHeapBytes, { maxByteLength: maxHeap });
  const c = new Int32Array(ctl);
  c[TOP] = HEAP_START;
  c[SLOTS] = index.byteLength / 8;
  c[MAX_QUEUES] = maxQueues;
  return { ctl, index, heap, channel: `meshext-wasm-shared-${randomUUID()}` };
}

export class SharedState {
  #init: SharedStoreHandle | SharedStoreLimits;
  #b: Backing | undefined;
  // Receivers registered through this instance (this thread): local id <-> object.
  readonly #receivers = new Map<number, QueueReceiver>();
  readonly #receiverIds = new Map<QueueReceiver, number>();
  #nextReceiver = 1;
  // Scratch for the (vm_id, key) bytes of the current call.
  #kb = new Uint8Array(256);
  #vl = 0;
  #kl = 0;
  readonly #vmIds = new Map<string, Uint8Array>();

  /** A new store (allocated on first use), or an attachment to one made elsewhere. */
  constructor(from: SharedStoreHandle | SharedStoreLimits = {}) {
    this.#init = from;
  }

  /** The buffers to hand to another thread (allocates the store if not yet done). */
  handle(): SharedStoreHandle {
    return this.#backing().handle;
  }

  /**
   * What one new worker thread gets in workerData: the store, plus its own link to this thread
   * (link.ts: modules compiled once per process). The link is a MessagePort: the Worker must list
   * it in its transferList.
   */
  workerHandle(): SharedStoreHandle & { readonly link: MessagePort } {
    return { ...this.handle(), link: workerLink() };
  }

  /** Re-points this instance at another store (a worker attaching to the main thread's). */
  attach(handle: SharedStoreHandle & { readonly link?: MessagePort }): void {
    this.close();
    const { link, ...store } = handle;
    if (link) attachLink(link);
    this.#init = store;
    this.#receivers.clear();
    this.#receiverIds.clear();
  }

  /** Stops listening for queue notifications (the buffers stay valid for other threads). */
  close(): void {
    this.#b?.notifier?.close();
    this.#b = undefined;
  }

  #backing(): Backing {
    if (this.#b) return this.#b;
    const handle = 'ctl' in this.#init ? this.#init : createHandle(this.#init);
    this.#init = handle;
    const ctl = new Int32Array(handle.ctl);
    const b: Backing = {
      handle,
      ctl,
      idx: new Int32Array(0),
      h8: new Uint8Array(0),
      h32: new Int32Array(0),
      tag: Atomics.add(ctl, TAGS, 1) + 1,
      notifier: undefined,
      gen: -1,
    };
    this.#b = b;
    return b;
  }

  /** Starts receiving this instance's queue notifications (once); sends them to other instances. */
  #notifier(b: Backing): Notifier {
    if (b.notifier) return b.notifier;
    const deliver = (id: number, token: number) => this.#receivers.get(id)?.notify(token);
    // A worker with a link to the main thread uses it: a BroadcastChannel would load Node's
    // bundled undici (its MessageEvent class) into the worker on the first notification received.
    b.notifier = linkQueueNotifier(b.handle.channel, b.tag, deliver) ?? broadcastNotifier(b.handle.channel, b.tag, deliver);
    return b.notifier;
  }

  /**
   * Fixed-length views over the growable buffers, remade when another thread grew them. V8 reads
   * elements of length-tracking views of a growable buffer about 6x slower than of fixed-length
   * ones, so the views are fixed and ctl[GEN] (read under the mutex) says when they are stale.
   */
  #views(b: Backing): void {
    b.gen = b.ctl[GEN]!;
    const idxBytes = b.handle.index.byteLength;
    const heapBytes = b.handle.heap.byteLength;
    b.idx = new Int32Array(b.handle.index, 0, idxBytes / 4);
    b.h8 = new Uint8Array(b.handle.heap, 0, heapBytes);
    b.h32 = new Int32Array(b.handle.heap, 0, heapBytes >> 2);
  }

  #lockB(b: Backing): void {
    this.#lock(b.ctl);
    if (b.ctl[GEN] !== b.gen) this.#views(b);
  }

  /** Called with the mutex held after growing a buffer. */
  #grown(b: Backing): void {
    b.ctl[GEN] = (b.ctl[GEN]! + 1) | 0;
    this.#views(b);
  }

  // ---------------------------------------------------------------- mutex
  // Three-state futex mutex (0 free, 1 locked, 2 locked with waiters): uncontended lock and
  // unlock are one atomic each; waiters sleep in Atomics.wait instead of spinning.
  #lock(ctl: Int32Array): void {
    let c = Atomics.compareExchange(ctl, LOCK, 0, 1);
    if (c === 0) return;
    for (let i = 0; i < 64; i++) {
      if (Atomics.load(ctl, LOCK) === 0 && Atomics.compareExchange(ctl, LOCK, 0, 1) === 0) return;
    }
    if (c !== 2) c = Atomics.exchange(ctl, LOCK, 2);
    let waited = 0;
    while (c !== 0) {
      // Timed only to say something: a critical section lasts microseconds, so seconds of
      // waiting mean a thread died holding the mutex (see the ADR) and this thread is stuck.
      if (Atomics.wait(ctl, LOCK, 2, 5000) === 'timed-out' && ++waited === 2) {
        logger('wasm').error('proxy-wasm shared data mutex held for over 10 s; a thread probably died inside the store');
      }
      c = Atomics.exchange(ctl, LOCK, 2);
    }
  }

  #unlock(ctl: Int32Array): void {
    if (Atomics.sub(ctl, LOCK, 1) !== 1) {
      Atomics.store(ctl, LOCK, 0);
      Atomics.notify(ctl, LOCK, 1);
    }
  }

  // ---------------------------------------------------------------- keys and index
  /** Puts vm_id and key bytes into the scratch buffer; returns the hash for `kind`. */
  #encode(kind: number, vmId: string, key: string): number {
    let v = this.#vmIds.get(vmId);
    if (!v) {
      v = utf8.encode(vmId);
      if (this.#vmIds.size < 64) this.#vmIds.set(vmId, v);
    }
    const need = v.length + key.length * 3;
    if (this.#kb.length < need) this.#kb = new Uint8Array(need * 2);
    const kb = this.#kb;
    kb.set(v, 0);
    let n = v.length;
    let ascii = true;
    for (let i = 0; i < key.length; i++) {
      const ch = key.charCodeAt(i);
      if (ch > 0x7f) {
        ascii = false;
        break;
      }
      kb[n++] = ch;
    }
    if (!ascii) n = v.length + utf8.encodeInto(key, kb.subarray(v.length)).written;
    this.#vl = v.length;
    this.#kl = n - v.length;
    // FNV-1a over kind, vm_id, a separator and the key.
    let h = (0x811c9dc5 ^ kind) | 0;
    for (let i = 0; i < this.#vl; i++) h = Math.imul(h ^ kb[i]!, 0x01000193);
    h = Math.imul(h ^ 0xff, 0x01000193);
    for (let i = this.#vl; i < n; i++) h = Math.imul(h ^ kb[i]!, 0x01000193);
    return h;
  }

  /** Slot of the entry for the scratch key (>= 0), or ~slot of the empty slot where it belongs. */
  #find(b: Backing, kind: number, h: number): number {
    const { idx, h32, h8 } = b;
    const mask = b.ctl[SLOTS]! - 1;
    const vl = this.#vl;
    const kl = this.#kl;
    const kb = this.#kb;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const off = idx[2 * i + 1]!;
      if (off === 0) return ~i;
      if (idx[2 * i] !== h) continue;
      const w = off >> 2;
      if (h32[w + 1] !== kind || h32[w + 3] !== vl || h32[w + 4] !== kl) continue;
      const p = off + (kind === KIND_DATA ? DATA_HDR : QUEUE_HDR);
      let same = true;
      for (let j = 0; j < vl + kl; j++) {
        if (h8[p + j] !== kb[j]) {
          same = false;
          break;
        }
      }
      if (same) return i;
    }
  }

  /** Makes room for one more entry (doubling and rehashing the index). False when at its cap. */
  #indexRoom(b: Backing): boolean {
    const { ctl } = b;
    let { idx } = b;
    const slots = ctl[SLOTS]!;
    if ((ctl[ENTRIES]! + 1) * 2 <= slots) return true;
    const bigger = slots * 2;
    if (bigger * 8 > b.handle.index.maxByteLength) return false;
    const old = idx.slice(0, slots * 2);
    try {
      if (b.handle.index.byteLength < bigger * 8) b.handle.index.grow(bigger * 8);
    } catch {
      return false;
    }
    this.#grown(b);
    idx = b.idx;
    idx.fill(0, 0, bigger * 2);
    const mask = bigger - 1;
    for (let s = 0; s < slots; s++) {
      const off = old[2 * s + 1]!;
      if (off === 0) continue;
      const h = old[2 * s]!;
      let i = h & mask;
      while (idx[2 * i + 1] !== 0) i = (i + 1) & mask;
      idx[2 * i] = h;
      idx[2 * i + 1] = off;
    }
    ctl[SLOTS] = bigger;
    return true;
  }

  // ---------------------------------------------------------------- heap
  /** A block of at least `size` bytes (word 0 = its class), or 0 when the heap is at its cap. */
  #alloc(b: Backing, size: number): number {
    let c = 0;
    while (16 * 2 ** c < size) c++;
    if (c >= CLASSES) return 0;
    const { ctl } = b;
    const head = ctl[FREE + c]!;
    if (head !== 0) {
      ctl[FREE + c] = b.h32[(head >> 2) + 1]!;
      return head;
    }
    const bytes = 16 * 2 ** c;
    const top = ctl[TOP]!;
    const end = top + bytes;
    if (end > b.h8.length) {
      const heap = b.handle.heap;
      if (end > heap.maxByteLength) return 0;
      try {
        // Doubling keeps the number of grows (and of view remakes in every thread) logarithmic.
        heap.grow(Math.min(heap.maxByteLength, Math.max(end, heap.byteLength * 2)));
      } catch {
        return 0;
      }
      this.#grown(b);
    }
    ctl[TOP] = end;
    b.h32[top >> 2] = c;
    return top;
  }

  #free(b: Backing, off: number): void {
    const c = b.h32[off >> 2]!;
    b.h32[(off >> 2) + 1] = b.ctl[FREE + c]!;
    b.ctl[FREE + c] = off;
  }

  #nextCas(ctl: Int32Array): number {
    const n = ((ctl[CAS]! >>> 0) + 1) >>> 0 || 1;
    ctl[CAS] = n | 0;
    return n;
  }

  // ---------------------------------------------------------------- shared data
  get(vmId: string, key: string): SharedEntry | undefined {
    const b = this.#backing();
    const h = this.#encode(KIND_DATA, vmId, key);
    this.#lockB(b);
    try {
      const s = this.#find(b, KIND_DATA, h);
      if (s < 0) return undefined;
      const off = b.idx[2 * s + 1]!;
      const w = off >> 2;
      const start = off + DATA_HDR + this.#vl + this.#kl;
      // slice copies into an ordinary ArrayBuffer: the caller may keep it past the unlock.
      return { value: b.h8.slice(start, start + b.h32[w + 5]!), cas: b.h32[w + 2]! >>> 0 };
    } finally {
      this.#unlock(b.ctl);
    }
  }

  /** Ok, CasMismatch, or InternalFailure when the store is full. */
  set(vmId: string, key: string, value: Uint8Array, cas: number): number {
    const b = this.#backing();
    const h = this.#encode(KIND_DATA, vmId, key);
    const names = this.#vl + this.#kl;
    const need = DATA_HDR + names + value.length;
    if (need > MAX_HEAP) return Status.InternalFailure;
    this.#lockB(b);
    try {
      let s = this.#find(b, KIND_DATA, h);
      let off: number;
      if (s >= 0) {
        off = b.idx[2 * s + 1]!;
        const cur = b.h32[(off >> 2) + 2]! >>> 0;
        if (cas !== 0 && cas !== cur) return Status.CasMismatch;
        if (need > 16 * 2 ** b.h32[off >> 2]!) {
          const moved = this.#alloc(b, need);
          if (moved === 0) return Status.InternalFailure;
          b.h8.copyWithin(moved + 4, off + 4, off + DATA_HDR + names);
          this.#free(b, off);
          b.idx[2 * s + 1] = moved;
          off = moved;
        }
      } else {
        if (!this.#indexRoom(b)) return Status.InternalFailure;
        s = ~this.#find(b, KIND_DATA, h);
        off = this.#alloc(b, need);
        if (off === 0) return Status.InternalFailure;
        const w = off >> 2;
        b.h32[w + 1] = KIND_DATA;
        b.h32[w + 3] = this.#vl;
        b.h32[w + 4] = this.#kl;
        b.h8.set(this.#kb.subarray(0, names), off + DATA_HDR);
        b.idx[2 * s] = h;
        b.idx[2 * s + 1] = off;
        b.ctl[ENTRIES]!++;
      }
      const w = off >> 2;
      b.h32[w + 5] = value.length;
      b.h8.set(value, off + DATA_HDR + names);
      b.h32[w + 2] = this.#nextCas(b.ctl) | 0;
      return Status.Ok;
    } finally {
      this.#unlock(b.ctl);
    }
  }

  // ---------------------------------------------------------------- queues
  #receiverId(r: QueueReceiver): number {
    let id = this.#receiverIds.get(r);
    if (id === undefined) {
      id = this.#nextReceiver++;
      this.#receiverIds.set(r, id);
      this.#receivers.set(id, r);
    }
    return id;
  }

  /** Header offset of a queue token, or 0 for an unknown token (tokens come from plugins). */
  #queue(b: Backing, token: number): number {
    return token >= 1 && token <= b.ctl[QUEUES]! ? b.ctl[QTAB + token]! : 0;
  }

  /** The queue's token (the caller becomes its receiver), or 0 when no queue can be created. */
  registerQueue(vmId: string, name: string, receiver: QueueReceiver): number {
    const b = this.#backing();
    const h = this.#encode(KIND_QUEUE, vmId, name);
    const rid = this.#receiverId(receiver);
    this.#notifier(b); // listening before anyone can learn that this instance is the receiver
    this.#lockB(b);
    try {
      let s = this.#find(b, KIND_QUEUE, h);
      let off: number;
      if (s >= 0) {
        off = b.idx[2 * s + 1]!;
      } else {
        if (b.ctl[QUEUES]! >= b.ctl[MAX_QUEUES]! || !this.#indexRoom(b)) return 0;
        s = ~this.#find(b, KIND_QUEUE, h);
        const names = this.#vl + this.#kl;
        off = this.#alloc(b, QUEUE_HDR + names);
        if (off === 0) return 0;
        const token = b.ctl[QUEUES]! + 1;
        const w = off >> 2;
        b.h32.fill(0, w + 1, w + QUEUE_HDR / 4);
        b.h32[w + 1] = KIND_QUEUE;
        b.h32[w + 2] = token;
        b.h32[w + 3] = this.#vl;
        b.h32[w + 4] = this.#kl;
        b.h8.set(this.#kb.subarray(0, names), off + QUEUE_HDR);
        b.idx[2 * s] = h;
        b.idx[2 * s + 1] = off;
        b.ctl[ENTRIES]!++;
        b.ctl[QTAB + token] = off;
        b.ctl[QUEUES] = token;
      }
      // The latest registrant receives the notifications (cpp-host), whichever thread it is on.
      const w = off >> 2;
      b.h32[w + 7] = b.tag;
      b.h32[w + 8] = rid;
      return b.h32[w + 2]!;
    } finally {
      this.#unlock(b.ctl);
    }
  }

  resolveQueue(vmId: string, name: string): number | undefined {
    const b = this.#backing();
    const h = this.#encode(KIND_QUEUE, vmId, name);
    this.#lockB(b);
    try {
      const s = this.#find(b, KIND_QUEUE, h);
      return s < 0 ? undefined : b.h32[(b.idx[2 * s + 1]! >> 2) + 2]!;
    } finally {
      this.#unlock(b.ctl);
    }
  }

  /** Ok, NotFound (unknown token), or InternalFailure when the store is full. */
  enqueue(token: number, value: Uint8Array): number {
    const b = this.#backing();
    if (ITEM_HDR + value.length > MAX_HEAP) return Status.InternalFailure;
    let tag: number;
    let rid: number;
    this.#lockB(b);
    try {
      const q = this.#queue(b, token);
      if (q === 0) return Status.NotFound;
      const item = this.#alloc(b, ITEM_HDR + value.length);
      if (item === 0) return Status.InternalFailure;
      const { h32 } = b;
      const iw = item >> 2;
      h32[iw + 1] = KIND_ITEM;
      h32[iw + 2] = 0;
      h32[iw + 3] = value.length;
      b.h8.set(value, item + ITEM_HDR);
      const qw = q >> 2;
      const tail = h32[qw + 6]!;
      if (tail === 0) h32[qw + 5] = item;
      else h32[(tail >> 2) + 2] = item;
      h32[qw + 6] = item;
      h32[qw + 9]!++;
      tag = h32[qw + 7]!;
      rid = h32[qw + 8]!;
    } finally {
      this.#unlock(b.ctl);
    }
    // One notification per enqueue, as Envoy. No receiver: the item waits for a registrant.
    if (tag === b.tag) this.#receivers.get(rid)?.notify(token);
    else if (tag !== 0) this.#notifier(b).send(tag, rid, token);
    return Status.Ok;
  }

  /** undefined = unknown queue; null = empty. */
  dequeue(token: number): Uint8Array | null | undefined {
    const b = this.#backing();
    this.#lockB(b);
    try {
      const q = this.#queue(b, token);
      if (q === 0) return undefined;
      const { h32 } = b;
      const qw = q >> 2;
      const head = h32[qw + 5]!;
      if (head === 0) return null;
      const iw = head >> 2;
      const value = b.h8.slice(head + ITEM_HDR, head + ITEM_HDR + h32[iw + 3]!);
      const next = h32[iw + 2]!;
      h32[qw + 5] = next;
      if (next === 0) h32[qw + 6] = 0;
      h32[qw + 9]!--;
      this.#free(b, head);
      return value;
    } finally {
      this.#unlock(b.ctl);
    }
  }

  /** Drops the receiver when its VM goes away (items stay for a later registrant). */
  forgetReceiver(receiver: QueueReceiver): void {
    const id = this.#receiverIds.get(receiver);
    if (id === undefined) return;
    this.#receiverIds.delete(receiver);
    this.#receivers.delete(id);
    const b = this.#b;
    if (!b) return;
    this.#lockB(b);
    try {
      const n = b.ctl[QUEUES]!;
      for (let t = 1; t <= n; t++) {
        const w = b.ctl[QTAB + t]! >> 2;
        if (b.h32[w + 7] === b.tag && b.h32[w + 8] === id) {
          b.h32[w + 7] = 0;
          b.h32[w + 8] = 0;
        }
      }
    } finally {
      this.#unlock(b.ctl);
    }
  }

  /** Empties the store for every attached thread (tests). The heap keeps its size. */
  clear(): void {
    const b = this.#backing();
    this.#lockB(b);
    try {
      b.idx.fill(0);
      b.ctl.fill(0, CAS, TAGS);
      b.ctl.fill(0, FREE, FREE + CLASSES);
      b.ctl.fill(0, QTAB, b.ctl.length); // GEN stays: views made before a growth must stay stale
      b.ctl[TOP] = HEAP_START;
      b.ctl[SLOTS] = b.idx.length / 2;
    } finally {
      this.#unlock(b.ctl);
    }
    this.#receivers.clear();
    this.#receiverIds.clear();
  }

  /** Occupancy, for tests and diagnostics. */
  usage(): { entries: number; queues: number; heapBytes: number; heapUsed: number; slots: number } {
    const b = this.#backing();
    this.#lockB(b);
    try {
      return { entries: b.ctl[ENTRIES]!, queues: b.ctl[QUEUES]!, heapBytes: b.handle.heap.byteLength, heapUsed: b.ctl[TOP]!, slots: b.ctl[SLOTS]! };
    } finally {
      this.#unlock(b.ctl);
    }
  }
}

/**
 * The isolate-wide default store. The main thread's is the process's store: Proxy passes its
 * handle to every worker, which attaches its own default to it.
 */
export const sharedState = new SharedState();
