/**
 * Each worker thread's link to the main thread, for Wasm work done once per process: compiling a
 * module (the main thread compiles and posts the WebAssembly.Module back; V8 shares a module's
 * compiled code between the isolates of a process, so workers only instantiate), and relaying
 * shared-queue notifications to the thread that owns the receiving queue (shared.ts).
 *
 * A MessageChannel with Node-style listeners, not a BroadcastChannel: a BroadcastChannel delivers
 * MessageEvents, whose class Node loads from its bundled undici on the first message received
 * (measured: ~1 MiB of RSS in every worker). The main thread creates one channel per worker and
 * the worker's port travels in workerData (with the store handle, see SharedState.workerHandle).
 */
import { BroadcastChannel, MessageChannel, type MessagePort } from 'node:worker_threads';

export interface LinkError {
  readonly message: string;
  /** WasmLoadError's stage, when the failure was one. */
  readonly stage?: string;
}

interface Request {
  readonly id: number;
  readonly op: 'compile';
  readonly arg: unknown;
}
type Reply = { readonly id: number; readonly ok: true; readonly value: unknown } | { readonly id: number; readonly ok: false; readonly error: LinkError };
/** One-way messages about shared queues: `store` is the store's channel name, `tag` a receiving instance. */
type QueueMsg = { readonly q: 'listen'; readonly store: string; readonly tag: number } | { readonly q: 'notify'; readonly store: string; readonly tag: number; readonly id: number; readonly token: number };

// ---- main thread ------------------------------------------------------------------------------

/** A new link for one worker: this thread serves `port1`; `port2` goes to the worker (transfer it). */
export function workerLink(): MessagePort {
  const { port1, port2 } = new MessageChannel();
  port1.on('message', (m: Request | QueueMsg) => {
    if ('q' in m) relay(m, port1);
    else void serve(m).then((reply) => port1.postMessage(reply));
  });
  links.add(port1);
  port1.on('close', () => {
    links.delete(port1);
    for (const r of routes.values()) for (const [tag, p] of r.tags) if (p === port1) r.tags.delete(tag);
  });
  // The link never keeps the process alive; it closes with the worker.
  port1.unref();
  return port2;
}

/**
 * Per store: which worker's link owns each listening tag. Other tags belong to this thread or to
 * threads without a link (tests, embedders), which listen on the store's BroadcastChannel: this
 * thread bridges the two. A notification for a tag not known yet goes to every link and the
 * channel: the owner's 'listen' may still be on its way (it was sent before the queue could be
 * found, but over another port), and workers drop notifications for tags they do not own.
 */
const routes = new Map<string, { readonly tags: Map<number, MessagePort>; readonly bc: BroadcastChannel }>();
const links = new Set<MessagePort>();

function route(store: string) {
  let r = routes.get(store);
  if (!r) {
    const tags = new Map<number, MessagePort>();
    const bc = new BroadcastChannel(store);
    bc.onmessage = (ev: unknown) => {
      const [tag, id, token] = (ev as { data: [number, number, number] }).data;
      const m: QueueMsg = { q: 'notify', store, tag, id, token };
      const to = tags.get(tag);
      if (to) to.postMessage(m);
      else for (const p of links) p.postMessage(m);
    };
    (bc as unknown as { unref(): void }).unref();
    r = { tags, bc };
    routes.set(store, r);
  }
  return r;
}

function relay(m: QueueMsg, from: MessagePort): void {
  const r = route(m.store);
  if (m.q === 'listen') {
    r.tags.set(m.tag, from);
    return;
  }
  const to = r.tags.get(m.tag);
  if (to) to.postMessage(m);
  else {
    for (const p of links) p.postMessage(m);
    r.bc.postMessage([m.tag, m.id, m.token]);
  }
}

async function serve(req: Request): Promise<Reply> {
  try {
    // Imported on the first request: a process without Wasm extensions never loads the compiler side.
    const { serveCompile } = await import('./module.ts');
    return { id: req.id, ok: true, value: await serveCompile(req.arg) };
  } catch (err) {
    const e = err as Error & { stage?: string };
    return { id: req.id, ok: false, error: { message: e.message, ...(typeof e.stage === 'string' ? { stage: e.stage } : {}) } };
  }
}

// ---- worker thread ----------------------------------------------------------------------------

let link: MessagePort | undefined;
let nextId = 1;
const pending = new Map<number, { resolve(v: unknown): void; reject(e: LinkError): void }>();

/** Queue notification handlers of this thread's store instances, by store and tag. */
const listeners = new Map<string, (id: number, token: number) => void>();

/** Called once in a worker with the port from workerData. */
export function attachLink(port: MessagePort): void {
  link = port;
  port.on('message', (r: Reply | QueueMsg) => {
    if ('q' in r) {
      if (r.q === 'notify') listeners.get(`${r.store}\0${r.tag}`)?.(r.id, r.token);
      return;
    }
    const p = pending.get(r.id);
    if (!p) return;
    pending.delete(r.id);
    if (pending.size === 0) port.unref();
    if (r.ok) p.resolve(r.value);
    else p.reject(r.error);
  });
  port.on('close', () => {
    link = undefined;
    for (const p of pending.values()) p.reject({ message: 'the link to the main thread closed' });
    pending.clear();
  });
  port.unref();
}

/** Asks the main thread; undefined when this thread has no link (main thread, or a bare worker). */
export function callMain(op: Request['op'], arg: unknown): Promise<unknown> | undefined {
  const port = link;
  if (!port) return undefined;
  const id = nextId++;
  return new Promise((resolve, reject) => {
    // Referenced while an answer is awaited, so the wait itself keeps the thread alive.
    if (pending.size === 0) port.ref();
    pending.set(id, { resolve, reject });
    port.postMessage({ id, op, arg } satisfies Request);
  });
}

/**
 * Shared-queue notifications over the link: `deliver` receives those for (store, tag); the result
 * sends one to another tag. Undefined when this thread has no link (it uses a BroadcastChannel).
 */
export function linkQueueNotifier(store: string, tag: number, deliver: (id: number, token: number) => void): { send(tag: number, id: number, token: number): void; close(): void } | undefined {
  const port = link;
  if (!port) return undefined;
  const key = `${store}\0${tag}`;
  listeners.set(key, deliver);
  port.postMessage({ q: 'listen', store, tag } satisfies QueueMsg);
  return {
    send: (to, id, token) => link?.postMessage({ q: 'notify', store, tag: to, id, token } satisfies QueueMsg),
    close: () => void listeners.delete(key),
  };
}
