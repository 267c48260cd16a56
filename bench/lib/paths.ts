/** Where things are: the repository, the bench directory, the pinned Node 24. */
import { join, resolve } from 'node:path';

export const BENCH = resolve(import.meta.dirname, '..');
export const ROOT = resolve(BENCH, '..');
export const NODE = join(ROOT, 'node_modules', 'node', 'bin', 'node');
export const MESHEXT = join(ROOT, 'bin', 'meshext.js');
export const RESULTS = join(BENCH, 'results');
/** Scratch space for generated configs and logs (gitignored). */
export const WORK = join(BENCH, '.work');
/** The node:net byte forwarder measured as the floor of Node's I/O. */
export const FORWARDER = join(BENCH, 'lib', 'node-forwarder.ts');
