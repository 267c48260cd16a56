/**
 * Shared key-value data with CAS (spec §4.8) and shared queues (§4.9), partitioned by vm_id.
 * One store per isolate: with worker threads each worker has its own (a documented difference from
 * Envoy, whose store is process-wide); the interface is small so a cross-thread store can replace it.
 */

export interface SharedEntry {
  value: Uint8Array;
  cas: number;
}

export interface QueueReceiver {
  /** Delivers proxy_on_queue_ready(root, token) later (never re-entrantly). */
  notify(token: number): void;
}

interface Queue {
  vmId: string;
  name: string;
  items: Uint8Array[];
  receiver: QueueReceiver | undefined;
}

export class SharedState {
  readonly #data = new Map<string, Map<string, SharedEntry>>();
  #cas = 0;
  readonly #queues = new Map<number, Queue>();
  readonly #queueByName = new Map<string, number>();
  #nextQueue = 1;

  #nextCas(): number {
    this.#cas = (this.#cas + 1) >>> 0;
    if (this.#cas === 0) this.#cas = 1;
    return this.#cas;
  }

  get(vmId: string, key: string): SharedEntry | undefined {
    return this.#data.get(vmId)?.get(key);
  }

  /** Returns false on CAS mismatch. */
  set(vmId: string, key: string, value: Uint8Array, cas: number): boolean {
    let m = this.#data.get(vmId);
    if (!m) {
      m = new Map();
      this.#data.set(vmId, m);
    }
    const cur = m.get(key);
    if (cur && cas !== 0 && cas !== cur.cas) return false;
    m.set(key, { value, cas: this.#nextCas() });
    return true;
  }

  registerQueue(vmId: string, name: string, receiver: QueueReceiver): number {
    const k = `${vmId}\u0000${name}`;
    let token = this.#queueByName.get(k);
    if (token === undefined) {
      token = this.#nextQueue++;
      this.#queueByName.set(k, token);
      this.#queues.set(token, { vmId, name, items: [], receiver });
    } else {
      // The latest registrant receives the notifications (cpp-host).
      this.#queues.get(token)!.receiver = receiver;
    }
    return token;
  }

  resolveQueue(vmId: string, name: string): number | undefined {
    return this.#queueByName.get(`${vmId}\u0000${name}`);
  }

  enqueue(token: number, value: Uint8Array): boolean {
    const q = this.#queues.get(token);
    if (!q) return false;
    q.items.push(value);
    q.receiver?.notify(token);
    return true;
  }

  /** undefined = unknown queue; null = empty. */
  dequeue(token: number): Uint8Array | null | undefined {
    const q = this.#queues.get(token);
    if (!q) return undefined;
    return q.items.shift() ?? null;
  }

  /** Drops the receiver when its VM goes away (items stay for a later registrant). */
  forgetReceiver(receiver: QueueReceiver): void {
    for (const q of this.#queues.values()) if (q.receiver === receiver) q.receiver = undefined;
  }

  clear(): void {
    this.#data.clear();
    this.#queues.clear();
    this.#queueByName.clear();
  }
}

/** The isolate-wide default store. */
export const sharedState = new SharedState();
