/**
 * The seed's memory table, reproduced: meshext with the "coin flip" filter as Lua, as Wasm, and
 * with no extension, at --concurrency 1, 2, 4, 8, 16, under light sequential load; process RSS.
 *
 * Load: one request at a time, each on a new connection (as the study's `curl` loop did), so the
 * kernel's SO_REUSEPORT hashing spreads them over every worker and each worker's extension state
 * is instantiated and used. Requests carry an x-seq header so the coin lands on both faces.
 */
import http from 'node:http';
import { PORTS, startMeshext, type ExtKind, type Running } from './contenders.ts';
import { NODE } from './paths.ts';
import { runCapture, sleep, treeRssKiB } from './proc.ts';

/** The published Envoy figures (MiB) the issue cites: liamawhite/lua-vs-wasm-envoy. */
export const ENVOY_PUBLISHED: Record<number, { lua: number; wasm: number }> = {
  1: { lua: 19.79, wasm: 117.7 },
  2: { lua: 23.07, wasm: 132.5 },
  4: { lua: 22.63, wasm: 152.0 },
  8: { lua: 23.97, wasm: 190.9 },
  16: { lua: 25.66, wasm: 291.8 },
};

export type MemVariant = 'none' | 'lua' | 'wasm';

export interface MemoryPoint {
  concurrency: number;
  variant: MemVariant;
  status: 'ok' | 'unavailable' | 'failed';
  note?: string;
  rssMiB: number;
  /** RSS of each fresh start of this point (rssMiB is their median). */
  samplesMiB?: number[];
  heads: number;
  tails: number;
  other: number;
}

function oneRequest(port: number, seq: number): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/', agent: false, headers: { 'x-seq': String(seq), connection: 'close' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.setTimeout(10_000, () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

export async function memoryPoint(concurrency: number, variant: MemVariant, work: string, wasmPaths: Partial<Record<string, string>>, requestsPerWorker: number): Promise<MemoryPoint> {
  const ext: ExtKind = variant === 'none' ? 'none' : variant === 'lua' ? 'lua-coinflip' : 'wasm-coinflip';
  const point: MemoryPoint = { concurrency, variant, status: 'ok', rssMiB: NaN, heads: 0, tails: 0, other: 0 };
  let r: Running | undefined;
  try {
    r = await startMeshext({ proxy: 'meshext', ext, stack: 1 }, work, {
      port: PORTS.memory,
      adminPort: PORTS.memoryAdmin,
      concurrency,
      directResponse: true,
      wasmPaths,
      tag: `mem-${variant}-${concurrency}`,
      // Both cores: this is a memory measurement, and 16 workers start faster on two.
      cpus: '0-1',
    });
    const n = Math.max(40, requestsPerWorker * concurrency);
    for (let i = 0; i < n; i++) {
      const s = await oneRequest(PORTS.memory, i);
      if (s === 200) point.heads++;
      else if (s === 500) point.tails++;
      else point.other++;
    }
    // Let the last requests' garbage become collectable, then read RSS twice and keep the larger
    // (the study took one docker-stats snapshot under its load).
    await sleep(500);
    const a = treeRssKiB(r.proc!.pid);
    await sleep(500);
    const b = treeRssKiB(r.proc!.pid);
    point.rssMiB = Math.max(a, b) / 1024;
    const expectTails = variant !== 'none';
    if (point.other > 0 || (expectTails && point.tails === 0)) {
      point.status = variant === 'wasm' ? 'unavailable' : 'failed';
      point.note = `responses: ${point.heads}×200, ${point.tails}×500, ${point.other} other`;
    }
  } catch (e) {
    point.status = variant === 'wasm' ? 'unavailable' : 'failed';
    point.note = (e as Error).message.slice(0, 200);
  } finally {
    await r?.stop();
  }
  return point;
}

/** One point from several fresh starts: the median RSS; a failed start fails the point. */
export function medianPoint(points: MemoryPoint[]): MemoryPoint {
  const bad = points.find((p) => p.status !== 'ok');
  const sorted = points.map((p) => p.rssMiB).sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  const sum = (k: 'heads' | 'tails' | 'other') => points.reduce((a, p) => a + p[k], 0);
  return {
    ...points[0]!,
    status: bad?.status ?? 'ok',
    ...(bad?.note !== undefined ? { note: bad.note } : {}),
    rssMiB: median,
    samplesMiB: points.map((p) => p.rssMiB),
    heads: sum('heads'),
    tails: sum('tails'),
    other: sum('other'),
  };
}

/**
 * What one Node worker_thread costs with no code in it (an isolate, its heap, a libuv loop):
 * the floor under meshext's per-worker figure. RSS of a process
 * holding 1 and then 16 idle workers, fresh processes, median of `reps`; returns MiB per worker.
 */
export async function bareWorkerMiB(reps: number): Promise<number> {
  const script = `
    const { Worker } = require('node:worker_threads');
    const { readFileSync } = require('node:fs');
    (async () => {
      for (let i = 0; i < Number(process.argv[1]); i++) {
        const w = new Worker('require("node:worker_threads").parentPort.postMessage(1); setInterval(() => {}, 1000);', { eval: true });
        await new Promise((r) => w.once('message', r));
      }
      await new Promise((r) => setTimeout(r, 1000));
      console.log(readFileSync('/proc/self/status', 'utf8').match(/VmRSS:\\s+(\\d+)/)[1]);
      process.exit(0);
    })();`;
  const rssWith = async (n: number) => {
    const r = await runCapture(NODE, ['-e', script, String(n)], 60_000);
    return Number(r.stdout.trim()) / 1024;
  };
  const slopes: number[] = [];
  for (let i = 0; i < reps; i++) slopes.push(((await rssWith(16)) - (await rssWith(1))) / 15);
  slopes.sort((a, b) => a - b);
  return slopes[slopes.length >> 1]!;
}
