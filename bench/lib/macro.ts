/**
 * The macro suite: scenarios × contenders. Each cell: start the contender, check that it really
 * applies the extension (a request must come back with the expected header), warm up, N measured
 * runs (req/s, proxy CPU µs per request, foreign CPU on the machine), one latency run at a fixed
 * moderate rate, RSS, stop. Cells of a group run interleaved (see runGroup).
 */
import { readFileSync } from 'node:fs';
import { CORES, label, meshextLog, specTag, startContender, type ContenderSpec, type Running } from './contenders.ts';
import { runH2load, runWrk, type WrkResult } from './load.ts';
import { BusyWindow, isBusy, waitQuiet, type BusyReport, type QuietBudget } from './machine.ts';
import { CLK_TCK, sleep, threadTicksByName, treeRssKiB, treeTicks, type Started } from './proc.ts';
import { median, spread } from './stats.ts';

export interface Scenario {
  id: string;
  title: string;
  /** Consecutive scenarios with the same group run interleaved, as one group (see runGroup). */
  group?: string;
  protocol: 'h1' | 'h2';
  connections: number;
  /** HTTP/2 streams per connection (h2 only). */
  streams?: number;
  method?: string;
  bodyBytes?: number;
  contenders: ContenderSpec[];
  /** What the extension must have done to a request with x-number: 7. */
  expectHeader?: (spec: ContenderSpec) => [string, string] | undefined;
}

export interface RunSample {
  rps: number;
  requests: number;
  seconds: number;
  cpuUsPerReq: number;
  /** Proxy CPU as a fraction of one core over the run. */
  proxyCore: number;
  errors: number;
  busy: BusyReport;
  flagged: boolean;
  /** meshext: CPU of V8's platform worker threads (concurrent GC, background compilation), µs per request. */
  v8WorkerUsPerReq?: number;
  /** meshext: the same as a fraction of the process's CPU in the run. */
  v8WorkerShare?: number;
  /**
   * meshext: V8's worker threads took more than GC_DEGRADED_SHARE of the process's CPU: the mark of
   * V8's degraded GC mode (or of a turn where the machine slowed down for every contender at once).
   */
  gcDegraded?: boolean;
}

export interface CellResult {
  scenario: string;
  spec: ContenderSpec;
  label: string;
  status: 'ok' | 'unavailable' | 'failed';
  note?: string;
  runs: RunSample[];
  /** Median over unflagged runs (all runs when fewer than 2 are unflagged). */
  rps: number;
  rpsSpread: number;
  cpuUsPerReq: number;
  cpuSpread: number;
  proxyCore: number;
  busyRuns: number;
  rssMiB: number;
  latency?: { rate: number; achieved: number; p50us: number; p99us: number; p999us: number; errors: number; flagged: boolean };
  /** HTTP/2: h2load's mean request time under full load. */
  h2MeanUs?: number;
  /** The Lua engine meshext used for Lua cells (e.g. luajit, wasmoon), from /config_dump. */
  luaEngine?: string;
}

export interface MacroOptions {
  work: string;
  wasmPaths: Partial<Record<string, string>>;
  warmSeconds: number;
  runSeconds: number;
  runs: number;
  /** Extra runs allowed per cell when runs were flagged busy. */
  maxExtraRuns: number;
  latencySeconds: number;
  upstream: Started;
  log: (line: string) => void;
  /** Time the bench may spend waiting for a quiet machine before runs (shared by all cells). */
  quiet: QuietBudget;
  /** Longest wait before one run. */
  quietMaxMs: number;
  /** Node options for meshext's processes (contenders.ts MESHEXT_NODE_ARGS, or none). */
  meshextNodeArgs: string[];
}

const HEADERS = { 'x-number': '7' };

/** One request through the contender; returns status and the header the scenario expects. */
async function probe(r: Running, sc: Scenario): Promise<{ ok: boolean; detail: string }> {
  const want = sc.expectHeader?.(r.spec);
  const init: RequestInit = { method: sc.method ?? 'GET', headers: HEADERS };
  if (sc.bodyBytes) init.body = Buffer.alloc(sc.bodyBytes, 'a');
  try {
    const res = await fetch(`http://127.0.0.1:${r.port}/`, { ...init, signal: AbortSignal.timeout(10_000) });
    await res.arrayBuffer();
    if (res.status !== 200) return { ok: false, detail: `status ${res.status}` };
    if (want) {
      const got = res.headers.get(want[0]);
      if (got === null || !got.split(',').map((s) => s.trim()).includes(want[1])) return { ok: false, detail: `${want[0]}: ${got ?? '(absent)'} (expected ${want[1]})` };
    }
    return { ok: true, detail: 'ok' };
  } catch (e) {
    return { ok: false, detail: (e as Error).message };
  }
}

/**
 * The Lua engine meshext used, from the extension descriptions in /config_dump (objects with
 * `kind: 'lua'` and an `engine`, src/lua/runtime.ts describe()); engines joined with '+' when the
 * stacked extensions ran on different ones.
 */
export async function luaEngineOf(adminPort: number): Promise<string | undefined> {
  let text: string;
  try {
    text = await (await fetch(`http://127.0.0.1:${adminPort}/config_dump`, { signal: AbortSignal.timeout(5000) })).text();
  } catch {
    return undefined;
  }
  const found = new Set<string>();
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) for (const x of v) walk(x);
    else if (typeof v === 'object' && v !== null) {
      const o = v as Record<string, unknown>;
      if (o.kind === 'lua' && typeof o.engine === 'string') found.add(o.engine);
      for (const x of Object.values(o)) walk(x);
    }
  };
  try {
    walk(JSON.parse(text));
  } catch {
    return undefined;
  }
  return found.size ? [...found].join('+') : undefined;
}

function lastLogLines(path: string, n: number): string {
  try {
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    return lines
      .slice(-n)
      .map((l) => {
        try {
          const j = JSON.parse(l) as { msg?: string };
          return j.msg ?? l;
        } catch {
          return l;
        }
      })
      .join(' | ')
      .slice(0, 400);
  } catch {
    return '';
  }
}

async function loadOnce(sc: Scenario, r: Running, seconds: number, tag: string, work: string, rate?: number): Promise<WrkResult> {
  if (sc.protocol === 'h2') {
    const h = await runH2load({ url: `http://127.0.0.1:${r.h2Port}/`, clients: sc.connections, streams: sc.streams ?? 10, seconds, cpus: CORES.load, headers: HEADERS });
    return { requests: h.requests, seconds: h.seconds, rps: h.rps, errors: h.errors, nonOk: 0, p50us: NaN, p90us: NaN, p99us: NaN, p999us: NaN, meanUs: h.meanUs, maxUs: h.maxUs };
  }
  return runWrk({
    url: `http://127.0.0.1:${r.port}/`,
    connections: sc.connections,
    seconds,
    cpus: CORES.load,
    headers: sc.bodyBytes ? { ...HEADERS, 'content-type': 'application/octet-stream' } : HEADERS,
    method: sc.method,
    bodyBytes: sc.bodyBytes,
    rate,
    workDir: work,
    tag,
  });
}

/** One contender of an interleaved group: its scenario, its spec, and (once started) its process. */
export interface GroupMember {
  sc: Scenario;
  spec: ContenderSpec;
}

interface Live {
  sc: Scenario;
  cell: CellResult;
  r: Running;
  tag: string;
  pids: number[];
}

function newCell(sc: Scenario, spec: ContenderSpec): CellResult {
  return { scenario: sc.id, spec, label: label(spec), status: 'ok', runs: [], rps: NaN, rpsSpread: 0, cpuUsPerReq: NaN, cpuSpread: 0, proxyCore: NaN, busyRuns: 0, rssMiB: NaN };
}

/** Starts a contender on the ports of `slot`, checks it applies its extension, warms it up. */
async function prepare(sc: Scenario, spec: ContenderSpec, slot: number, o: MacroOptions): Promise<{ cell: CellResult; live?: Live }> {
  const cell = newCell(sc, spec);
  let r: Running;
  try {
    r = await startContender(spec, o.work, o.wasmPaths, spec.proxy === 'meshext' ? o.meshextNodeArgs : [], slot);
  } catch (e) {
    cell.status = spec.ext.startsWith('wasm') ? 'unavailable' : 'failed';
    cell.note = `did not start: ${(e as Error).message}`;
    return { cell };
  }
  try {
    const p = await probe(r, sc);
    if (spec.proxy === 'meshext' && spec.ext.startsWith('lua') && r.adminPort) {
      cell.luaEngine = await luaEngineOf(r.adminPort);
      cell.label = label(spec, cell.luaEngine);
    }
    if (!p.ok) {
      const logTail = spec.proxy === 'meshext' ? lastLogLines(meshextLog(o.work, specTag(spec)), 2) : '';
      cell.status = spec.ext.startsWith('wasm') ? 'unavailable' : 'failed';
      cell.note = `check request failed: ${p.detail}${logTail ? ` — log: ${logTail}` : ''}`;
      await r.stop();
      return { cell };
    }
    const tag = `${sc.id}-${spec.proxy}-${specTag(spec)}`;
    await loadOnce(sc, r, o.warmSeconds, tag, o.work);
    return { cell, live: { sc, cell, r, tag, pids: [o.upstream.pid, ...(r.proc ? [r.proc.pid] : [])] } };
  } catch (e) {
    cell.status = 'failed';
    cell.note = (e as Error).message.slice(0, 300);
    await r.stop();
    return { cell };
  }
}

/**
 * V8's degraded GC mode, why the bench runs meshext with --no-allocation-site-pretenuring
 * (contenders.ts MESHEXT_NODE_ARGS). Identical meshext processes measured side by side were not
 * alike: with V8's defaults about one in three (15 of 44 passthrough processes in 11 trials of 4
 * processes) fell, mostly when load resumed after an idle spell, into a state where V8's
 * allocation-site pretenuring allocates short-lived request objects straight into the old
 * generation. Those dead old objects keep the young ones they point to alive through the
 * remembered set, so every scavenge copies 20-30 MB (15-30 ms instead of ~1) and a mark-compact
 * follows every ~0.5 s under load, for minutes: CPU per request 18-20% higher (41 vs 35 µs in
 * passthrough), V8's platform worker threads (concurrent marking) at 10-23% of the process's CPU
 * instead of 0-3%. Which process falls into it is random: it did not follow the start order (3/11,
 * 4/11, 4/11, 4/11 by start position), so rotating the start order would not have helped, and
 * replacing the processes caught in it churned (under the bench's idle-then-load turns a fresh
 * process was often caught again a turn later). Under the bench's turns it was more frequent
 * still: in one partial run both passthrough baselines were in it for all five turns (Wasm parity
 * then "cost" −13%) and a 16-stack Lua cell fell into it at its fourth turn (65 → 97 µs/req).
 * With --no-allocation-site-pretenuring no process entered it (0 of 8; in a partial bench run no
 * cell stayed in it, only two turns raised every meshext cell's V8 workers at once, the machine)
 * and the CPU per request was that of the normal mode (34.4-36.6 µs), at no cost in bench time.
 *
 * Each meshext run still records its V8 workers' share of the process's CPU; a run above this
 * fraction is marked (log and summary.json), so the mode shows if it comes back (`--v8-pretenuring`
 * or another trigger). A turn where the machine slows down can raise every contender's share at
 * once; the turn-by-turn costs cancel that. A fraction rather than µs per request, so that heavier
 * extension cells are judged alike.
 */
export const GC_DEGRADED_SHARE = 0.08;

/** One measured run of a live contender. */
async function measure(m: Live, o: MacroOptions, n: number): Promise<RunSample> {
  const { sc, r } = m;
  await sleep(200);
  await waitQuiet(m.pids, o.quiet, o.quietMaxMs);
  const t0 = r.proc ? treeTicks(r.proc.pid) : 0;
  const isMeshext = r.spec.proxy === 'meshext' && r.proc !== undefined;
  const v0 = isMeshext ? (threadTicksByName(r.proc!.pid).get('V8Worker') ?? 0) : 0;
  const w = new BusyWindow(m.pids);
  const res = await loadOnce(sc, r, o.runSeconds, m.tag, o.work);
  const busy = w.end();
  const ticks = r.proc ? treeTicks(r.proc.pid) - t0 : NaN;
  const v8Us = isMeshext ? (((threadTicksByName(r.proc!.pid).get('V8Worker') ?? 0) - v0) / CLK_TCK) * 1e6 : NaN;
  const cpuUs = (ticks / CLK_TCK) * 1e6;
  const sample: RunSample = {
    rps: res.rps,
    requests: res.requests,
    seconds: res.seconds,
    cpuUsPerReq: res.requests > 0 ? cpuUs / res.requests : NaN,
    proxyCore: ticks / CLK_TCK / res.seconds,
    errors: res.errors + res.nonOk,
    busy,
    flagged: isBusy(busy),
  };
  if (isMeshext && res.requests > 0) {
    sample.v8WorkerUsPerReq = v8Us / res.requests;
    sample.v8WorkerShare = ticks > 0 ? v8Us / ((ticks / CLK_TCK) * 1e6) : 0;
    sample.gcDegraded = sample.v8WorkerShare > GC_DEGRADED_SHARE;
  }
  m.cell.runs.push(sample);
  o.log(`    ${m.cell.label} run ${n}: ${Math.round(sample.rps)} req/s, ${sample.cpuUsPerReq.toFixed(1)} µs/req, proxy ${(sample.proxyCore * 100).toFixed(0)}% core, foreign ${busy.foreignCores.toFixed(2)} cores${sample.v8WorkerUsPerReq !== undefined ? `, V8 workers ${sample.v8WorkerUsPerReq.toFixed(2)} µs/req (${((sample.v8WorkerShare ?? 0) * 100).toFixed(1)}%)` : ''}${sample.flagged ? ' [BUSY]' : ''}${sample.gcDegraded ? ' [V8 WORKERS HIGH]' : ''}${sample.errors ? ` errors=${sample.errors}` : ''}`);
  return sample;
}

function summarize(cell: CellResult): void {
  const clean = cell.runs.filter((s) => !s.flagged);
  const use = clean.length >= 2 ? clean : cell.runs;
  cell.busyRuns = cell.runs.length - clean.length;
  cell.rps = median(use.map((s) => s.rps));
  cell.rpsSpread = spread(use.map((s) => s.rps));
  cell.cpuUsPerReq = median(use.map((s) => s.cpuUsPerReq));
  cell.cpuSpread = spread(use.map((s) => s.cpuUsPerReq));
  cell.proxyCore = median(use.map((s) => s.proxyCore));
  const totalReq = cell.runs.reduce((a, s) => a + s.requests, 0);
  const totalErr = cell.runs.reduce((a, s) => a + s.errors, 0);
  if (totalErr > totalReq * 0.01) {
    cell.status = 'failed';
    cell.note = `${totalErr} errors in ${totalReq} requests`;
  }
}

/**
 * Runs a group of cells interleaved: every contender is started (each on its own ports, all pinned
 * to the proxy core, idle when not measured) and warmed up, then the measured runs go round-robin
 * (run 1 of each, run 2 of each, ...). The host VM's speed drifts over minutes; measuring the
 * contenders one after another let that drift into their ratios, interleaving spreads it evenly.
 * `rateFor` picks the fixed rate for a cell's latency run once its throughput is known (the first
 * cell of a scenario family sets it for the others).
 */
export async function runGroup(members: GroupMember[], o: MacroOptions, rateFor: (cell: CellResult) => number | undefined): Promise<CellResult[]> {
  const cells: CellResult[] = [];
  const live: Live[] = [];
  try {
    for (let i = 0; i < members.length; i++) {
      const { sc, spec } = members[i]!;
      o.log(`${sc.id}: ${label(spec)} (start, check, ${o.warmSeconds} s warm-up)`);
      const { cell, live: l } = await prepare(sc, spec, i, o);
      cells.push(cell);
      if (cell.luaEngine) o.log(`    Lua engine in use: ${cell.luaEngine}`);
      if (l) live.push(l);
      else o.log(`    ${cell.status}: ${cell.note}`);
    }
    // meshext's cells go back to back in each turn (then the peers): an extension's cost is read
    // turn by turn against the baseline run seconds before it, not half a minute before.
    const turn = [...live.filter((m) => m.cell.spec.proxy === 'meshext'), ...live.filter((m) => m.cell.spec.proxy !== 'meshext')];
    for (let n = 1; n <= o.runs; n++) for (const m of turn) await measure(m, o, n);
    // A cell with busy runs gets extra runs (its own: the others' medians are already clean).
    for (const m of live) {
      for (let extra = 0; extra < o.maxExtraRuns && m.cell.runs.filter((s) => !s.flagged).length < o.runs; extra++) await measure(m, o, o.runs + extra + 1);
    }
    for (const m of live) {
      const { sc, cell, r } = m;
      summarize(cell);
      const rate = cell.status === 'ok' ? rateFor(cell) : undefined;
      if (rate !== undefined && sc.protocol === 'h1') {
        await sleep(200);
        await waitQuiet(m.pids, o.quiet, o.quietMaxMs);
        const w = new BusyWindow(m.pids);
        const lat = await loadOnce(sc, r, o.latencySeconds, `${m.tag}-lat`, o.work, rate);
        const busy = w.end();
        cell.latency = { rate, achieved: lat.rps, p50us: lat.p50us, p99us: lat.p99us, p999us: lat.p999us, errors: lat.errors + lat.nonOk, flagged: isBusy(busy) };
        o.log(`    ${cell.label}: latency at ${Math.round(rate)} req/s (achieved ${Math.round(lat.rps)}): p50 ${lat.p50us} µs, p99 ${lat.p99us} µs, p99.9 ${lat.p999us} µs${isBusy(busy) ? ' [BUSY]' : ''}`);
      }
      if (sc.protocol === 'h2') {
        // The last run's mean request time (h2load reports no percentiles).
        const last = await loadOnce(sc, r, Math.max(1, o.latencySeconds / 2), `${m.tag}-h2mean`, o.work);
        cell.h2MeanUs = last.meanUs;
      }
      cell.rssMiB = r.proc ? treeRssKiB(r.proc.pid) / 1024 : NaN;
    }
  } catch (e) {
    for (const m of live) {
      if (m.cell.status === 'ok' && !Number.isFinite(m.cell.rssMiB)) {
        m.cell.status = 'failed';
        m.cell.note = (e as Error).message.slice(0, 300);
      }
    }
  } finally {
    for (const m of live) await m.r.stop();
  }
  return cells;
}
