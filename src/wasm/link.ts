/**
 * Each worker thread's link to the main thread, for Wasm work done once per process: compiling a
 * module (the main thread compiles and posts the WebAssembly.Module back; V8 shares a module's
 * compiled code between the isolates of a process, so workers only instantiate).
 *
 * A MessageChannel with Node-style listeners, not a BroadcastChannel: a BroadcastChannel delivers
 * MessageEvents, whose class Node loads from its bundled undici on the first message received
 * (measured: ~1 MiB of RSS in every worker). The main thread creates one channel per worker and
 * the worker's port travels in workerData (with the store handle, see SharedState.workerHandle).
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads';

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

// ---- main thread ------------------------------------------------------------------------------

/** A new link for one worker: this thread serves `port1`; `port2` goes to the worker (transfer it). */
export function workerLink(): MessagePort {
  const { port1, port2 } = new MessageChannel();
  port1.on('message', (req: Request) => {
    void serve(req).then((reply) => port1.postMessage(reply));
  });
  // The link never keeps the process alive; it closes with the worker.
  port1.unref();
  return port2;
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

/** Called once in a worker with the port from workerData. */
export function attachLink(port: MessagePort): void {
  link = port;
  port.on('message', (r: Reply) => {
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
