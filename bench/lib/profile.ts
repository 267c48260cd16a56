/**
 * CPU profile of meshext's request path: a passthrough run under wrk with `node --cpu-prof`, then
 * the V8 profiles (one per thread) are folded into self time per function and per file.
 */
import { readdirSync, readFileSync, mkdirSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { CORES, PORTS, startMeshext, type Running } from './contenders.ts';
import { runWrk } from './load.ts';
import { ROOT } from './paths.ts';
import { sleep, type Started } from './proc.ts';

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  startTime: number;
  endTime: number;
  nodes: CpuProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface HotSpot {
  fn: string;
  where: string;
  selfPct: number;
}

export interface ProfileResult {
  status: 'ok' | 'failed';
  note?: string;
  rps: number;
  /** Thread profiles found, busiest first: [label, busy ms]. */
  threads: Array<[string, number]>;
  topFunctions: HotSpot[];
  topFiles: HotSpot[];
  categories: HotSpot[];
  /** Inclusive time of meshext's own functions (src/): time with the function on the stack. */
  meshextInclusive?: HotSpot[];
  /** Where native self time (socket writes, string encoding) is spent: nearest JS frame that called it. */
  nativeCallers?: HotSpot[];
}

function where(url: string, line: number): string {
  if (!url) return '(native/VM)';
  const path = url.startsWith('file://') ? url.slice(7) : url;
  // The type-stripped copy keeps line numbers, so name the source file.
  const rel = (path.startsWith(ROOT) ? relative(ROOT, path) : path).replace(/^\.meshext-js\/(.*)\.js$/, 'src/$1.ts');
  return line >= 0 ? `${rel}:${line + 1}` : rel;
}

function fileOf(url: string): string {
  if (!url) return '(native/VM)';
  const path = url.startsWith('file://') ? url.slice(7) : url;
  return (path.startsWith(ROOT) ? relative(ROOT, path) : path).replace(/^\.meshext-js\/(.*)\.js$/, 'src/$1.ts');
}

function category(url: string, fn: string): string {
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(program)') return 'V8/native (program)';
  if (!url) return 'native/VM';
  if (url.startsWith('wasm://')) return 'wasm code (extensions)';
  if (url.startsWith('node:')) return url.startsWith('node:internal/deps/undici') ? 'undici (bundled)' : `node core (${url.split('/').slice(0, 3).join('/').replace('node:internal/', '')})`;
  if (url.includes('node_modules/undici')) return 'undici (npm)';
  if (url.includes('node_modules/')) return `npm: ${url.split('node_modules/')[1]!.split('/')[0]}`;
  const f = fileOf(url).replace(/^\.meshext-js\//, 'src/').replace(/\.js$/, '.ts');
  return f.startsWith('src/') ? `meshext ${f.split('/').slice(0, 2).join('/')}` : f;
}

/**
 * A time window relative to the end of the profile (ms, negative = before the end): only samples
 * inside it count, so module loading and VM compilation at startup stay out of the request path.
 */
export interface Window {
  fromMs: number;
  toMs: number;
}

/**
 * Frames that say who asked for native work: meshext itself or undici (the upstream side). node's
 * own stream and http frames are skipped: both directions go through them.
 */
function isAttributable(url: string): boolean {
  return isMeshext(url) || url.includes('node_modules/undici');
}

/**
 * meshext's own code: src/ when run from the TypeScript sources, .meshext-js/ when workers run the
 * type-stripped copy the proxy builds at startup.
 */
function isMeshext(url: string): boolean {
  return url.startsWith(`file://${ROOT}/src/`) || url.startsWith(`file://${ROOT}/.meshext-js/`) || url.startsWith(`${ROOT}/src/`) || url.startsWith(`${ROOT}/.meshext-js/`);
}

/** Self time (µs) per node of one profile, with idle excluded. */
function selfTimes(p: CpuProfile, w: Window | undefined): { byNode: Map<number, number>; busyUs: number } {
  const byNode = new Map<number, number>();
  let busyUs = 0;
  const idle = new Set(p.nodes.filter((n) => n.callFrame.functionName === '(idle)').map((n) => n.id));
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i]!;
    t += p.timeDeltas[i] ?? 0;
    const dt = p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0;
    if (w) {
      const rel = (t - p.endTime) / 1000;
      if (rel < w.fromMs || rel > w.toMs) continue;
    }
    if (idle.has(id)) continue;
    byNode.set(id, (byNode.get(id) ?? 0) + dt);
    busyUs += dt;
  }
  return { byNode, busyUs };
}

function top(m: Map<string, number>, total: number, n: number, split = false): HotSpot[] {
  return [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => {
      if (split) {
        const [fn, w] = k.split('\u0000') as [string, string];
        return { fn, where: w, selfPct: (v / total) * 100 };
      }
      return { fn: k, where: '', selfPct: (v / total) * 100 };
    });
}

export function foldProfiles(files: string[], w?: Window): Omit<ProfileResult, 'status' | 'rps'> {
  const fnTime = new Map<string, number>();
  const fileTime = new Map<string, number>();
  const catTime = new Map<string, number>();
  const threads: Array<[string, number]> = [];
  const inclusive = new Map<string, number>();
  const nativeCallers = new Map<string, number>();
  let total = 0;
  for (const f of files) {
    const p = JSON.parse(readFileSync(f, 'utf8')) as CpuProfile;
    const { byNode, busyUs } = selfTimes(p, w);
    threads.push([f.split('/').pop()!, busyUs / 1000]);
    total += busyUs;
    const nodes = new Map(p.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    for (const [id, us] of byNode) {
      // Inclusive time of meshext functions: each function once per stack.
      const seen = new Set<string>();
      let attributed = false;
      const leaf = nodes.get(id)!.callFrame;
      for (let a: number | undefined = id; a !== undefined; a = parent.get(a)) {
        const f = nodes.get(a)!.callFrame;
        if (!attributed && !leaf.url && a !== id && isAttributable(f.url)) {
          attributed = true;
          const k = `${leaf.functionName || '(native)'} ← ${f.functionName || '(anonymous)'}\u0000${where(f.url, f.lineNumber)}`;
          nativeCallers.set(k, (nativeCallers.get(k) ?? 0) + us);
        }
        if (isMeshext(f.url)) {
          const k = `${f.functionName || '(anonymous)'}\u0000${where(f.url, f.lineNumber)}`;
          if (!seen.has(k)) {
            seen.add(k);
            inclusive.set(k, (inclusive.get(k) ?? 0) + us);
          }
        }
      }
      const cf = leaf;
      const fn = cf.functionName || '(anonymous)';
      const key = `${fn}\u0000${where(cf.url, cf.lineNumber)}`;
      fnTime.set(key, (fnTime.get(key) ?? 0) + us);
      const file = fileOf(cf.url);
      fileTime.set(file, (fileTime.get(file) ?? 0) + us);
      const cat = category(cf.url, fn);
      catTime.set(cat, (catTime.get(cat) ?? 0) + us);
    }
  }
  threads.sort((a, b) => b[1] - a[1]);
  return {
    threads,
    topFunctions: top(fnTime, total, 25, true),
    topFiles: top(fileTime, total, 15),
    categories: top(catTime, total, 15),
    meshextInclusive: top(inclusive, total, 15, true),
    nativeCallers: top(nativeCallers, total, 10, true),
  };
}

/** `nodeArgs`: Node options of the measured meshext (run.ts passes contenders.ts MESHEXT_NODE_ARGS). */
export async function runProfile(work: string, upstream: Started, seconds: number, log: (s: string) => void, nodeArgs: string[] = []): Promise<ProfileResult> {
  void upstream;
  const dir = join(work, 'cpuprof');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  let r: Running | undefined;
  let rps = NaN;
  let loadStart = 0;
  let loadEnd = 0;
  try {
    r = await startMeshext({ proxy: 'meshext', ext: 'none', stack: 1 }, work, {
      port: PORTS.profile,
      adminPort: PORTS.profileAdmin,
      concurrency: 1,
      wasmPaths: {},
      tag: 'profile',
      nodeArgs: [...nodeArgs, '--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-interval', '250'],
    });
    await runWrk({ url: `http://127.0.0.1:${PORTS.profile}/`, connections: 50, seconds: 1, cpus: CORES.load, workDir: work, tag: 'profile-warm' });
    loadStart = Date.now();
    const res = await runWrk({ url: `http://127.0.0.1:${PORTS.profile}/`, connections: 50, seconds, cpus: CORES.load, workDir: work, tag: 'profile' });
    loadEnd = Date.now();
    rps = res.rps;
  } catch (e) {
    await r?.stop();
    return { status: 'failed', note: (e as Error).message, rps, threads: [], topFunctions: [], topFiles: [], categories: [] };
  }
  // SIGINT: meshext drains and exits normally, which is when V8 writes the profiles.
  await r.stop();
  const exitAt = Date.now();
  await sleep(500);
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(dir, f));
  if (files.length === 0) return { status: 'failed', note: 'no .cpuprofile written (did the proxy exit normally?)', rps, threads: [], topFunctions: [], topFiles: [], categories: [] };
  log(`profile: ${files.length} thread profile(s), ${Math.round(rps)} req/s during profiling`);
  // Each profile ends when the process exits: keep the measured wrk run, trimmed by 100 ms a side.
  return { status: 'ok', rps, ...foldProfiles(files, { fromMs: loadStart - exitAt + 100, toMs: loadEnd - exitAt - 100 }) };
}
