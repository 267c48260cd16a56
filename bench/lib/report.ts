/**
 * bench/results/results.md: the machine, the method, the targets of issue 6 with measured figures,
 * and one table per section. Every figure sits beside a ratio against a peer measured in the same
 * run (nginx, HAProxy, meshext's own passthrough or no-extension baseline); the Envoy memory
 * figures are published ones and say so.
 */
import { label, type LuaEngineSetting } from './contenders.ts';
import { GC_DEGRADED_SHARE, type CellResult } from './macro.ts';
import { BUSY_THRESHOLD_CORES, type BusyReport, type MachineInfo } from './machine.ts';
import { ENVOY_PUBLISHED, type MemoryPoint, type MemVariant } from './memory.ts';
import type { MicroResult } from './micro-runner.ts';
import type { ProfileResult } from './profile.ts';
import { fmt1, fmt2, fmtInt, fmtUs, median, pct } from './stats.ts';

export interface Report {
  quick: boolean;
  date: string;
  machine: MachineInfo;
  tools: Record<string, string>;
  idleBefore: BusyReport;
  cells: CellResult[];
  scenarios: Array<{ id: string; title: string; protocol: string; connections: number; streams?: number; bodyBytes?: number }>;
  memory: MemoryPoint[];
  /** MiB per idle Node worker_thread with no code (the floor under meshext's per-worker figure). */
  bareWorkerMiB?: number;
  micro: MicroResult | undefined;
  profile: ProfileResult | undefined;
  niceness: number;
  /** meshextNodeArgs: Node options of the measured meshext processes (absent in older runs: none). */
  settings: { warmSeconds: number; runSeconds: number; runs: number; latencySeconds: number; maxExtraRuns: number; meshextNodeArgs?: string[]; meshextTransport?: string };
  durationSeconds: number;
  /** Sections re-run later and merged in (run.ts --merge). */
  reruns?: Array<{ sections: string[]; scenarios?: string[]; date: string; seconds: number }>;
}

const ok = (c: CellResult | undefined): c is CellResult => c !== undefined && c.status === 'ok';
const statusText = (c: CellResult | undefined): string => (c === undefined ? 'not run' : c.status === 'unavailable' ? `not available yet: ${c.note ?? ''}` : `${c.status}: ${c.note ?? ''}`);

/** A cell by scenario and spec; `luaEngine` undefined = the proxy's default Lua engine (not forced). */
function find(r: Report, scenario: string, proxy: string, ext = 'none', stack = 1, luaEngine?: LuaEngineSetting): CellResult | undefined {
  return r.cells.find((c) => c.scenario === scenario && c.spec.proxy === proxy && c.spec.ext === ext && c.spec.stack === stack && c.spec.luaEngine === luaEngine);
}

/** A cell's name with the Lua engine the proxy reported using. */
const cellName = (c: CellResult) => label(c.spec, c.luaEngine);

/**
 * The cell a contender's extension cost is measured against: same proxy, no extension, same load;
 * the one in the same scenario when there is one (measured interleaved with it), else passthrough.
 */
function ownBaseline(r: Report, c: CellResult): CellResult | undefined {
  if (c.spec.ext === 'none') return undefined;
  const sc = r.scenarios.find((s) => s.id === c.scenario);
  const base = sc?.bodyBytes ? c.scenario : sc?.protocol === 'h2' ? c.scenario : 'passthrough';
  return find(r, c.scenario, c.spec.proxy) ?? find(r, base, c.spec.proxy);
}

/**
 * An extension's cost against its baseline, paired turn by turn: run i of both cells was measured
 * in the same turn of their interleaved group (meshext's cells back to back), so the ratio of the
 * two runs cancels the VM's drift between turns, which a ratio of the two medians does not. The
 * median over the turns is reported; runs flagged busy are left out.
 */
export function pairedCost(c: CellResult, base: CellResult): { rps: number; cpu: number; cpuUs: number } {
  const rps: number[] = [];
  const cpu: number[] = [];
  const cpuUs: number[] = [];
  const n = Math.min(c.runs.length, base.runs.length);
  for (let i = 0; i < n; i++) {
    const a = c.runs[i]!;
    const b = base.runs[i]!;
    if (a.flagged || b.flagged || !(b.rps > 0) || !(b.cpuUsPerReq > 0)) continue;
    rps.push(1 - a.rps / b.rps);
    cpu.push(a.cpuUsPerReq / b.cpuUsPerReq - 1);
    cpuUs.push(a.cpuUsPerReq - b.cpuUsPerReq);
  }
  if (rps.length === 0) return { rps: 1 - c.rps / base.rps, cpu: c.cpuUsPerReq / base.cpuUsPerReq - 1, cpuUs: c.cpuUsPerReq - base.cpuUsPerReq };
  return { rps: median(rps), cpu: median(cpu), cpuUs: median(cpuUs) };
}

/** The nginx peer of a cell: nginx in the same scenario with the same kind of extension, else nginx passthrough. */
function nginxPeer(r: Report, c: CellResult): CellResult | undefined {
  const kind = c.spec.ext === 'none' ? 'none' : c.spec.ext.replace('wasm', 'lua');
  return find(r, c.scenario, 'nginx', kind, c.spec.stack) ?? find(r, c.scenario, 'nginx') ?? find(r, 'passthrough', 'nginx');
}

const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : 'n/a');
const yes = (b: boolean | undefined) => (b === undefined ? '—' : b ? '**met**' : '**missed**');
/** A verdict from cells whose runs were all flagged busy is reported as inconclusive. */
const allBusy = (cells: Array<CellResult | undefined>) => cells.some((c) => c !== undefined && c.runs.length > 0 && c.busyRuns === c.runs.length);

function memAt(r: Report, c: number, v: MemVariant): number {
  const p = r.memory.find((m) => m.concurrency === c && m.variant === v);
  return p && p.status === 'ok' ? p.rssMiB : NaN;
}

/** Least-squares slope of RSS over workers: MiB per extra worker. */
function perWorker(r: Report, v: MemVariant): number {
  const pts = r.memory.filter((m) => m.variant === v && m.status === 'ok');
  if (pts.length < 2) return NaN;
  const n = pts.length;
  const mx = pts.reduce((a, p) => a + p.concurrency, 0) / n;
  const my = pts.reduce((a, p) => a + p.rssMiB, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of pts) {
    num += (p.concurrency - mx) * (p.rssMiB - my);
    den += (p.concurrency - mx) ** 2;
  }
  return den ? num / den : NaN;
}

function targets(r: Report): string[] {
  const L: string[] = [];
  const mx = find(r, 'passthrough', 'meshext');
  const ng = find(r, 'passthrough', 'nginx');
  const hp = find(r, 'passthrough', 'haproxy');
  const cost = (c: CellResult | undefined, base: CellResult | undefined) => (ok(c) && ok(base) ? pairedCost(c, base).rps : NaN);
  // CPU per request is steadier than req/s on a shared machine: give the cost both ways.
  const cpuCost = (c: CellResult, base: CellResult | undefined) => {
    if (!ok(base)) return 'n/a';
    const k = pairedCost(c, base);
    return `${fmt1(c.cpuUsPerReq)} vs ${fmt1(base.cpuUsPerReq)} µs/req (turn by turn **${k.cpu >= 0 ? '+' : ''}${pct(k.cpu)}**, ${k.cpuUs >= 0 ? '+' : ''}${fmt1(k.cpuUs)} µs)`;
  };
  const row = (t: string, measured: string, met: boolean | undefined, cells: Array<CellResult | undefined> = []) =>
    L.push(`| ${t} | ${measured} | ${yes(met)}${met !== undefined && allBusy(cells) ? ' (inconclusive: every run of a cell was on a busy machine)' : ''} |`);
  L.push('| target (issue 6) | measured in this run | |', '|---|---|---|');
  if (ok(mx) && ok(ng)) {
    const cpuRatio = mx.cpuUsPerReq / ng.cpuUsPerReq;
    row('passthrough: meshext proxy CPU per request ≤ 2x nginx', `${fmt1(mx.cpuUsPerReq)} µs vs nginx ${fmt1(ng.cpuUsPerReq)} µs = **${cpuRatio.toFixed(2)}x**`, cpuRatio <= 2, [mx, ng]);
    const rpsRatio = mx.rps / ng.rps;
    row('passthrough: meshext req/s ≥ 0.5x nginx', `${fmtInt(mx.rps)} vs ${fmtInt(ng.rps)} req/s = **${rpsRatio.toFixed(2)}x** (nginx proxy core ${pct(ng.proxyCore)}, meshext ${pct(mx.proxyCore)})`, rpsRatio >= 0.5, [mx, ng]);
  } else row('passthrough vs nginx', 'n/a (a cell failed)', undefined);
  const fw = find(r, 'passthrough', 'node-net');
  if (ok(fw) && ok(ng) && ok(mx)) {
    // Context, not a target: what Node's I/O alone costs on this machine, and meshext above it.
    L.push(`| (context, same run) Node byte forwarder: node:net, no HTTP, CPU per request | ${fmt1(fw.cpuUsPerReq)} µs = ${(fw.cpuUsPerReq / ng.cpuUsPerReq).toFixed(2)}x nginx; meshext costs ${fmt1(mx.cpuUsPerReq - fw.cpuUsPerReq)} µs above it | |`);
  }
  const engineNote = (c: CellResult) => (c.luaEngine ? ` (engine: ${c.luaEngine})` : '');
  // The Lua targets are read on meshext's default engine; the same script with `lua.engine: luajit`
  // forced, measured in the same turns, follows as context.
  const forcedLuajit = (scenario: string, stack: number, base: CellResult | undefined) => {
    const f = find(r, scenario, 'meshext', 'lua-parity', stack, 'luajit');
    if (!f) return;
    L.push(`| (context, same run) ${cellName(f)}: the same with \`lua.engine: luajit\` forced | ${ok(f) ? `${fmtInt(f.rps)} req/s: ${pct(cost(f, base))}; CPU ${cpuCost(f, base)}` : `n/a (${statusText(f)})`} | |`);
  };
  for (const [name, ext] of [['Lua', 'lua-parity'], ['Wasm', 'wasm-parity']] as const) {
    const c = find(r, `${ext === 'lua-parity' ? 'lua' : 'wasm'}-parity`, 'meshext', ext);
    const k = cost(c, mx);
    row(`${name} parity costs ≤ 10% of meshext passthrough req/s`, ok(c) ? `${fmtInt(c.rps)} req/s: **${pct(k)}**; CPU ${cpuCost(c, mx)}${engineNote(c)}` : `n/a (${statusText(c)})`, ok(c) ? k <= 0.1 : undefined, [c, mx]);
    if (ext === 'lua-parity') forcedLuajit('lua-parity', 1, mx);
  }
  for (const ext of ['lua-parity', 'wasm-parity'] as const) {
    const c = find(r, 'stack-16', 'meshext', ext, 16);
    const base = c ? ownBaseline(r, c) : mx;
    const k = cost(c, base);
    row(`16 stacked ${ext === 'lua-parity' ? 'Lua' : 'Wasm'} extensions cost ≤ 50%`, ok(c) ? `${fmtInt(c.rps)} req/s: **${pct(k)}**; CPU ${cpuCost(c, base)}${engineNote(c)}` : `n/a (${statusText(c)})`, ok(c) ? k <= 0.5 : undefined, [c, base]);
    if (ext === 'lua-parity') forcedLuajit('stack-16', 16, base);
  }
  const ngl = find(r, 'lua-parity', 'nginx', 'lua-parity');
  const hpl = find(r, 'lua-parity', 'haproxy', 'lua-parity');
  L.push(`| (peers, same run) nginx + Lua parity cost / HAProxy + Lua parity cost | ${pct(cost(ngl, ng))} / ${pct(cost(hpl, hp))} (issue's reference machine: 21% / 35%) | |`);
  if (r.memory.length) {
    const cs = [...new Set(r.memory.map((m) => m.concurrency))].sort((a, b) => a - b);
    const maxC = cs[cs.length - 1]!;
    const w = memAt(r, maxC, 'wasm');
    const none = memAt(r, maxC, 'none');
    const envoyLua = ENVOY_PUBLISHED[maxC]?.lua ?? NaN;
    row(`memory: Wasm coin flip at concurrency ${maxC} < Envoy's published Lua figure + our no-extension baseline`, `${fmt1(w)} MiB vs ${fmt2(envoyLua)} + ${fmt1(none)} = ${fmt1(envoyLua + none)} MiB`, Number.isFinite(w) && Number.isFinite(none) ? w < envoyLua + none : undefined);
    const ratios = cs.map((c) => memAt(r, c, 'wasm') / memAt(r, c, 'lua'));
    const allOk = ratios.every((x) => Number.isFinite(x));
    row('memory: Wasm/Lua RSS ≤ 1.3 at every concurrency (Envoy: 6x–11x)', ratios.map((x, i) => `c${cs[i]}: ${fmt2(x)}`).join(', '), allOk ? ratios.every((x) => x <= 1.3) : undefined);
    const base = perWorker(r, 'none');
    const wl = perWorker(r, 'wasm') - base;
    const ll = perWorker(r, 'lua') - base;
    row('memory: each extra worker ≤ 2 MiB with Wasm over the same worker without extensions', `${fmt2(wl)} MiB/worker (slope ${fmt2(perWorker(r, 'wasm'))} − ${fmt2(base)})`, Number.isFinite(wl) ? wl <= 2 : undefined);
    row('memory: each extra worker ≤ 0.5 MiB with Lua over the same worker without extensions', `${fmt2(ll)} MiB/worker (slope ${fmt2(perWorker(r, 'lua'))} − ${fmt2(base)})`, Number.isFinite(ll) ? ll <= 0.5 : undefined);
  }
  return L;
}

function cellTable(r: Report, cells: CellResult[], h2: boolean): string[] {
  const L = [
    `| contender | req/s (median) | spread | vs nginx | proxy CPU µs/req | spread | vs nginx | proxy core busy | cost vs own passthrough | RSS MiB | runs (busy) |${h2 ? ' mean latency |' : ''}`,
    `|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|${h2 ? '---:|' : ''}`,
  ];
  for (const c of cells) {
    if (c.status !== 'ok') {
      L.push(`| ${cellName(c)} | ${c.status === 'unavailable' ? '*not available yet*' : '*failed*'} | | | | | | | | | | ${h2 ? ' |' : ''}`);
      continue;
    }
    const peer = nginxPeer(r, c);
    const base = ownBaseline(r, c);
    const k = ok(base) ? pairedCost(c, base) : undefined;
    const costStr = k ? `${pct(k.rps)} req/s, ${k.cpuUs >= 0 ? '+' : ''}${fmt1(k.cpuUs)} µs` : '';
    const peerOk = ok(peer) && peer !== c;
    L.push(
      `| ${cellName(c)} | ${fmtInt(c.rps)} | ±${pct(c.rpsSpread / 2)} | ${peerOk ? ratio(c.rps, peer.rps) : '—'} | ${c.spec.proxy === 'direct' ? '—' : fmt1(c.cpuUsPerReq)} | ${c.spec.proxy === 'direct' ? '' : `±${pct(c.cpuSpread / 2)}`} | ${peerOk && c.spec.proxy !== 'direct' ? ratio(c.cpuUsPerReq, peer.cpuUsPerReq) : '—'} | ${c.spec.proxy === 'direct' ? '—' : pct(c.proxyCore)} | ${costStr} | ${c.spec.proxy === 'direct' ? '—' : fmt1(c.rssMiB)} | ${c.runs.length} (${c.busyRuns}) |${h2 ? ` ${fmtUs(c.h2MeanUs ?? NaN)} |` : ''}`,
    );
  }
  const notes = cells.filter((c) => c.status !== 'ok' && c.note).map((c) => `- ${cellName(c)}: ${c.note}`);
  if (notes.length) L.push('', ...notes);
  return L;
}

/** The method line on V8's degraded GC mode (bench/lib/contenders.ts MESHEXT_NODE_ARGS), with this run's counts. */
function gcModeText(r: Report): string[] {
  const args = r.settings.meshextNodeArgs;
  if (args === undefined) return [];
  const runs = r.cells.filter((c) => c.spec.proxy === 'meshext').flatMap((c) => c.runs.filter((x) => x.v8WorkerShare !== undefined));
  const marked = runs.filter((x) => x.gcDegraded).length;
  const off = args.includes('--no-allocation-site-pretenuring');
  return [
    `- **V8's degraded GC mode (meshext):** ${off ? 'meshext runs here under `node --no-allocation-site-pretenuring`' : 'meshext runs here with V8\'s default allocation-site pretenuring (`--v8-pretenuring`)'}. With V8's default, identical meshext processes are not alike: a third to a half of them fall, at random (not by their start order; mostly when load resumes after an idle spell, as between the turns here), into a mode where pretenuring sends short-lived request objects to the old generation, scavenges copy 20-30 MB each and a mark-compact follows every ~0.5 s; CPU per request is 20-50% higher for minutes. A cell measured on such a process shifted its extension cost against its baseline by as much (a Wasm parity cost of −13% in one run). Without pretenuring no process entered the mode and the CPU per request was that of the normal mode. Each meshext run records the CPU of V8's worker threads (concurrent marking, background compilation); ${marked} of ${runs.length} meshext runs here had them above ${Math.round(GC_DEGRADED_SHARE * 100)}% of the process's CPU (0-3% normally, 10-23% in the mode; a turn where the machine slowed down can raise every contender's at once, which the turn-by-turn costs cancel).`,
  ];
}

export function renderReport(r: Report, plots: string[]): string {
  const m = r.machine;
  const s = r.settings;
  const L: string[] = [];
  L.push(
    '# meshext benchmark results',
    '',
    `Generated by \`npm run bench\` (bench/run.ts${r.quick ? ' --quick' : ''}) on ${r.date.slice(0, 16).replace('T', ' ')} UTC in ${Math.round(r.durationSeconds / 60)} min. Do not edit by hand: re-run the bench.`,
    '',
    '## Machine and method',
    '',
    ...(r.reruns ?? []).map((x) => `- **Re-run and merged:** ${x.sections.join(', ')}${x.scenarios ? ` (${x.scenarios.join(', ')})` : ''} on ${x.date.slice(0, 16).replace('T', ' ')} UTC (${Math.round(x.seconds)} s).`),
    `- **Machine:** \`nproc\` = ${m.nproc}, ${m.model}, Linux ${m.kernel}, ${m.memGiB} GiB RAM; Node ${m.node} for meshext.`,
    `- **Peers and tools:** ${Object.entries(r.tools).map(([k, v]) => `${k} ${v.replace(/^(nginx\/|HAProxy version |wrk |h2load )/, '')}`).join('; ')}.`,
    `- **Priority:** ${r.niceness ? `proxies, upstream and load generators ran under \`nice -n ${r.niceness}\`` : 'normal (nice 0), competing equally with whatever else ran on the machine'}.`,
    '- **Layout:** wrk/h2load and the upstream (nginx `return 200` with a 30-byte body, reading POST bodies before answering, one worker) share core 0; the proxy under test runs alone on core 1 (`taskset`), the same for every contender; one worker/thread each (meshext `--concurrency 1`). All traffic on 127.0.0.1.',
    `- **Runs:** per cell, a ${s.warmSeconds} s warm-up, then ${s.runs} runs of ${s.runSeconds} s, interleaved: the contenders of a group (passthrough, Lua and Wasm parity; each stack with its own meshext baseline; upload; HTTP/2) all run at once on their own ports, idle except when measured, and take turns run by run, so a drift in the VM's speed lands on all of them alike (HTTP/1.1: wrk, 1 thread, 50 keep-alive connections; HTTP/2: h2load 10 connections x 10 streams). Tables give the median and the spread (± half the max–min range over the median).`,
    `- **Proxy CPU per request:** utime+stime of the proxy's process tree from /proc/<pid>/stat over each run, divided by the requests served. It is the fairest figure where the load core saturates before the proxy core ("proxy core busy" shows how loaded core 1 was).`,
    `- **Busy machine:** this is a shared development machine. Each run records the CPU used by processes outside the measurement (all CPU minus the proxy, the upstream, the load generator and the bench). A run with more than ${BUSY_THRESHOLD_CORES} cores of such foreign CPU (or any steal) is flagged; the bench waits briefly for a quiet machine before each run, re-runs flagged cells up to ${s.maxExtraRuns} times, and computes the median over unflagged runs when at least two exist. "runs (busy)" counts them. Before this run: ${r.idleBefore.foreignCores.toFixed(2)} cores foreign, load average ${r.idleBefore.loadavg1}.`,
    ...(r.settings.meshextTransport !== undefined ? [`- **meshext's HTTP/1.1 transport:** ${r.settings.meshextTransport} (as its /server_info reports: \`native\` is the libuv socket transport of src/proxy/transport/, see docs/adr-native-transport.md; node:net otherwise). The Node byte forwarder row stays on node:net: it is the floor of Node's own stream layer.`] : []),
    ...gcModeText(r),
    `- **Latency at a fixed rate:** wrk2 (constant-rate wrk) is not packaged in Debian, so the bench paces wrk with its Lua \`delay()\` hook (per-connection random whole-ms delays whose mean gives the target rate). The rate is the same for every contender: half of meshext's passthrough maximum measured at the start of the run. This pacing is not coordinated-omission-corrected like wrk2: the percentiles are service latencies at that offered rate. p99/p99.9 on a shared machine are noisy: reported, not gated on.`,
    '- **Extensions:** the same logic everywhere. Parity = Istio\'s Lua example (x-number → dynamic metadata → x-parity response header); nginx runs it in `access_by_lua_block` + `header_filter_by_lua_block`, HAProxy as `http-request`/`http-response` Lua actions, meshext as a TrafficExtension (Lua inlineCode, or the AssemblyScript plugin in bench/plugins/parity.as). N stacked = N TrafficExtensions (meshext), N action pairs (HAProxy), N repetitions inside the one handler nginx allows per phase. Every cell first sends a check request and must see `x-parity: odd` (or `x-body-bytes`), else the cell is reported as failed / not available. meshext\'s Lua rows name the engine meshext reported using (admin /config_dump); in the Lua parity and stacked scenarios a second meshext Lua row runs the same script with the bootstrap\'s `lua.engine: luajit` forced, measured in the same turns.',
    '',
  );
  L.push('## Targets', '', ...targets(r), '');
  for (const p of plots) L.push(`![${p}](${p})`, '');
  const byScenario = new Map<string, CellResult[]>();
  for (const c of r.cells) byScenario.set(c.scenario, [...(byScenario.get(c.scenario) ?? []), c]);
  if (r.cells.length) {
    L.push('## Throughput and CPU per request', '', '"vs nginx" compares with nginx running the same kind of logic in the same scenario (nginx passthrough for passthrough rows, nginx + Lua for extension rows); "cost vs own passthrough" compares each extension row with the same proxy without extensions, turn by turn: the median over the turns of the run-by-run ratio (req/s) and difference (CPU µs) against the baseline run of the same turn.', '');
    for (const sc of r.scenarios) {
      const cells = byScenario.get(sc.id);
      if (!cells) continue;
      L.push(`### ${sc.title}${sc.bodyBytes ? ` (POST ${sc.bodyBytes} bytes, ${sc.connections} connections)` : ''}`, '', ...cellTable(r, cells, sc.protocol === 'h2'), '');
    }
    const lat = r.cells.filter((c) => c.latency);
    if (lat.length) {
      L.push('## Latency at a fixed moderate rate', '', '| scenario | contender | offered req/s | achieved | p50 | p99 | p99.9 | p50 vs nginx | busy |', '|---|---|---:|---:|---:|---:|---:|---:|---|');
      for (const c of lat) {
        const l = c.latency!;
        const peer = nginxPeer(r, c);
        const pl = peer?.latency;
        L.push(`| ${c.scenario} | ${cellName(c)} | ${fmtInt(l.rate)} | ${fmtInt(l.achieved)} | ${fmtUs(l.p50us)} | ${fmtUs(l.p99us)} | ${fmtUs(l.p999us)} | ${pl && peer !== c ? ratio(l.p50us, pl.p50us) : '—'} | ${l.flagged ? 'busy' : ''} |`);
      }
      L.push('');
    }
  }
  if (r.memory.length) {
    const cs = [...new Set(r.memory.map((p) => p.concurrency))].sort((a, b) => a - b);
    L.push(
      '## Memory: the coin-flip filter by concurrency',
      '',
      'The Lua-vs-Wasm study that Istio\'s docs cite (liamawhite/lua-vs-wasm-envoy): a filter that concatenates all request headers as `k:v;`, hashes them with `h = h*31 + byte` and replies 200 or 500 locally; light sequential load (one request at a time, a new connection each so every worker serves some); process RSS of meshext (VmRSS, all threads) after the load; each point is the median of several fresh starts (3 in a full run, taken in turns over the whole grid), the range in the last table. The Envoy columns are the published figures (docker stats of the Envoy container, Envoy 1.33, Go-compiled Wasm on V8), not measured here; the ratios in the last columns are within each proxy.',
      '',
      '| --concurrency | meshext, no extension | meshext + Lua | meshext + Wasm | meshext Wasm/Lua | Lua over none | Wasm over none | Envoy Lua (published) | Envoy Wasm (published) | Envoy Wasm/Lua |',
      '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    );
    for (const c of cs) {
      const n = memAt(r, c, 'none');
      const l = memAt(r, c, 'lua');
      const w = memAt(r, c, 'wasm');
      const e = ENVOY_PUBLISHED[c];
      L.push(`| ${c} | ${fmt1(n)} MiB | ${fmt1(l)} MiB | ${fmt1(w)} MiB | ${fmt2(w / l)} | +${fmt1(l - n)} | +${fmt1(w - n)} | ${e ? fmt2(e.lua) : '—'} | ${e ? fmt1(e.wasm) : '—'} | ${e ? fmt1(e.wasm / e.lua) : '—'} |`);
    }
    const base = perWorker(r, 'none');
    L.push(
      '',
      '| per extra worker (least-squares slope of RSS over --concurrency) | MiB/worker | over no extension |',
      '|---|---:|---:|',
      `| meshext, no extension | ${fmt2(base)} | — |`,
      `| meshext + Lua | ${fmt2(perWorker(r, 'lua'))} | ${fmt2(perWorker(r, 'lua') - base)} |`,
      `| meshext + Wasm | ${fmt2(perWorker(r, 'wasm'))} | ${fmt2(perWorker(r, 'wasm') - base)} |`,
      `| Envoy + Lua (published, 1→16) | ${fmt2((ENVOY_PUBLISHED[16]!.lua - ENVOY_PUBLISHED[1]!.lua) / 15)} | |`,
      `| Envoy + Wasm (published, 1→16) | ${fmt2((ENVOY_PUBLISHED[16]!.wasm - ENVOY_PUBLISHED[1]!.wasm) / 15)} | |`,
      '',
    );
    const n1 = memAt(r, cs[0]!, 'none');
    const nMax = memAt(r, cs[cs.length - 1]!, 'none');
    L.push(
      `In absolute terms meshext's own baseline dominates: ${fmt1(n1)} MiB with no extension at --concurrency ${cs[0]} (Envoy + Lua: ${ENVOY_PUBLISHED[cs[0]!]?.lua ?? 'n/a'} MiB) and ${fmt1(nMax)} MiB at ${cs[cs.length - 1]}, about ${fmt1(perWorker(r, 'none'))} MiB per worker thread (each worker is a Node worker_thread with its own V8 isolate and heap${r.bareWorkerMiB !== undefined && Number.isFinite(r.bareWorkerMiB) ? `; an idle worker_thread with no code at all costs ${fmt1(r.bareWorkerMiB)} MiB here, measured in this run` : ''}). The extensions themselves add little on top of that, which is what the Wasm/Lua and per-worker targets measure.`,
      '',
    );
    const bad = r.memory.filter((p) => p.status !== 'ok');
    if (bad.length) L.push(...bad.map((p) => `- concurrency ${p.concurrency}, ${p.variant}: ${p.status === 'unavailable' ? 'not available yet' : 'failed'} (${p.note})`), '');
    if (r.memory.some((p) => (p.samplesMiB?.length ?? 0) > 1)) {
      const range = (p: { samplesMiB?: number[] }) => (p.samplesMiB?.length ? `${fmt1(Math.min(...p.samplesMiB))}–${fmt1(Math.max(...p.samplesMiB))}` : '—');
      L.push('| RSS of each fresh start, min–max MiB | none | Lua | Wasm |', '|---:|---:|---:|---:|');
      for (const c of cs) {
        const at = (v: string) => r.memory.find((p) => p.concurrency === c && p.variant === v);
        L.push(`| ${c} | ${[at('none'), at('lua'), at('wasm')].map((p) => (p ? range(p) : '—')).join(' | ')} |`);
      }
      L.push('');
    }
    L.push(`Responses seen (200 heads / 500 tails): ${r.memory.filter((p) => p.variant !== 'none').map((p) => `${p.variant}@${p.concurrency} ${p.heads}/${p.tails}`).join(', ')}.`, '');
  }
  if (r.micro) {
    L.push('## Micro-benchmarks (tinybench, pinned to core 1)', '');
    if (r.micro.status !== 'ok') L.push(`Failed: ${r.micro.note}`, '');
    else {
      L.push('| group | operation | time per op | ± | ops/s | vs first row of the group |', '|---|---|---:|---:|---:|---:|');
      const first = new Map<string, number>();
      for (const row of r.micro.rows) {
        if (!first.has(row.group) && Number.isFinite(row.ns)) first.set(row.group, row.ns);
        const f = first.get(row.group);
        const t = Number.isFinite(row.ns) ? (row.ns >= 1000 ? `${(row.ns / 1000).toFixed(2)} µs` : `${row.ns.toFixed(0)} ns`) : `n/a${row.note ? ` (${row.note})` : ''}`;
        L.push(`| ${row.group} | ${row.name} | ${t} | ${Number.isFinite(row.rme) ? `${row.rme.toFixed(1)}%` : ''} | ${Number.isFinite(row.opsPerSec) ? fmtInt(row.opsPerSec) : ''} | ${f && Number.isFinite(row.ns) ? `${(row.ns / f).toFixed(2)}x` : ''} |`);
      }
      L.push('');
    }
  }
  if (r.profile) {
    const p = r.profile;
    L.push('## Hot spots: CPU profile of meshext passthrough', '');
    if (p.status !== 'ok') L.push(`Failed: ${p.note}`, '');
    else {
      L.push(
        `\`node --cpu-prof --cpu-prof-interval 250\` on the proxy (core 1) during a wrk passthrough run (${fmtInt(p.rps)} req/s under the profiler). Self time, idle excluded, all threads (${p.threads.map(([t, ms]) => `${t.replace(/^CPU\.\d+\.\d+\./, '').replace('.cpuprofile', '')}: ${fmtInt(ms)} ms`).join(', ')}).`,
        '',
        '| by area | self time |',
        '|---|---:|',
        ...p.categories.map((h) => `| ${h.fn} | ${h.selfPct.toFixed(1)}% |`),
        '',
        '| top functions | where | self time |',
        '|---|---|---:|',
        ...p.topFunctions.map((h) => `| \`${h.fn}\` | ${h.where} | ${h.selfPct.toFixed(1)}% |`),
        '',
        '| native self time (socket writes, string encoding, ...) ← nearest caller in meshext or undici | where | self time |',
        '|---|---|---:|',
        ...(p.nativeCallers ?? []).map((h) => `| \`${h.fn}\` | ${h.where} | ${h.selfPct.toFixed(1)}% |`),
        '',
        '| meshext functions by inclusive time (the function and everything it called) | where | inclusive |',
        '|---|---|---:|',
        ...(p.meshextInclusive ?? []).map((h) => `| \`${h.fn}\` | ${h.where} | ${h.selfPct.toFixed(1)}% |`),
        '',
        '| by file | self time |',
        '|---|---:|',
        ...p.topFiles.map((h) => `| ${h.fn} | ${h.selfPct.toFixed(1)}% |`),
        '',
      );
    }
  }
  return L.join('\n') + '\n';
}
