/**
 * meshext benchmark suite (`npm run bench`, or `node bench/run.ts [--quick]`).
 *
 *   --quick          smoke run (~3 min): short runs, fewer scenarios and concurrencies
 *   --only=a,b       sections: macro, memory, micro, profile (default: all)
 *   --scenarios=a,b  macro scenarios by id (default: all of the mode)
 *   --no-setup       do not install missing Debian packages
 *   --merge          re-run only the --only sections and merge them into bench/results/summary.json
 *                    (without it, a partial run writes bench/results/raw/results-partial.md)
 *   --nice=N         run proxies, upstream and load generators under `nice -n N` (default 0;
 *                    a negative N takes priority over other work on a shared machine)
 *   --v8-pretenuring run meshext with V8's default allocation-site pretenuring (by default the macro
 *                    suite and the profile run it with --no-allocation-site-pretenuring: see
 *                    MESHEXT_NODE_ARGS in bench/lib/contenders.ts)
 *
 * Layout (2-core machine): wrk/h2load and the upstream on core 0, the proxy under test alone on
 * core 1, the same for every contender. Results: bench/results/results.md, PNG plots and
 * summary.json; raw logs under bench/results/raw/ (gitignored).
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MESHEXT_NODE_ARGS, startUpstream, type ContenderSpec } from './lib/contenders.ts';
import { describeMachine, probeBusy } from './lib/machine.ts';
import { buildTransportAddon, TRANSPORT_TARGET } from '../src/proxy/transport/native/build.ts';
import { describeTransport } from '../src/proxy/transport/native-socket.ts';
import { runGroup, type Scenario } from './lib/macro.ts';
import { bareWorkerMiB, medianPoint, memoryPoint, type MemoryPoint, type MemVariant } from './lib/memory.ts';
import { runMicro } from './lib/micro-runner.ts';
import { buildPlugins } from './lib/plugins.ts';
import { writePlots } from './lib/plot.ts';
import { killAllStarted, setNiceness, stop, type Started } from './lib/proc.ts';
import { runProfile } from './lib/profile.ts';
import { renderReport, type Report } from './lib/report.ts';
import { ensurePeers, toolVersions } from './lib/setup.ts';
import { RESULTS, WORK } from './lib/paths.ts';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const opt = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1]?.split(',');
const sections = new Set(opt('only') ?? ['macro', 'memory', 'micro', 'profile']);
const onlyScenarios = opt('scenarios');
const niceness = Number(opt('nice')?.[0] ?? 0);
const meshextNodeArgs = argv.includes('--v8-pretenuring') ? [] : MESHEXT_NODE_ARGS;
// meshext turns pretenuring off by itself unless told not to (src/proxy/proxy.ts)
if (argv.includes('--v8-pretenuring')) process.env.MESHEXT_V8_PRETENURING = '1';
setNiceness(niceness);

const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)}s`;
const log = (s: string) => console.log(`[${elapsed()}] ${s}`);

const c = (proxy: ContenderSpec['proxy'], ext: ContenderSpec['ext'] = 'none', stack = 1, luaEngine?: ContenderSpec['luaEngine']): ContenderSpec => ({ proxy, ext, stack, ...(luaEngine ? { luaEngine } : {}) });

const parityHeader = (s: ContenderSpec): [string, string] | undefined => (s.ext.endsWith('parity') ? ['x-parity', 'odd'] : undefined);
const bodyHeader = (s: ContenderSpec): [string, string] | undefined => (s.ext.endsWith('body') ? ['x-body-bytes', String(1 << 20)] : undefined);

function scenarios(): Scenario[] {
  const h1 = { protocol: 'h1' as const, connections: 50, expectHeader: parityHeader };
  const stacks = quick ? [16] : [4, 16];
  // Scenarios of one group run interleaved (bench/lib/macro.ts runGroup), so the ratios inside a
  // group (meshext vs nginx, an extension vs meshext's own passthrough) compare runs made minutes
  // apart at most, turn by turn. Each stack scenario carries its own meshext baseline for that reason.
  // meshext's Lua rows come twice: the default engine ('auto': the compiled tier when the script is
  // eligible, else LuaJIT; the row names the engine used) and `lua.engine: luajit` forced beside it.
  const all: Scenario[] = [
    { id: 'passthrough', title: 'Passthrough', group: 'parity', ...h1, contenders: [c('meshext'), c('direct'), c('nginx'), c('haproxy'), c('node-net')] },
    { id: 'lua-parity', title: 'Parity logic in Lua', group: 'parity', ...h1, contenders: [c('nginx', 'lua-parity'), c('haproxy', 'lua-parity'), c('meshext', 'lua-parity'), c('meshext', 'lua-parity', 1, 'luajit')] },
    { id: 'wasm-parity', title: 'Parity logic as a Wasm plugin', group: 'parity', ...h1, contenders: [c('meshext', 'wasm-parity')] },
    ...stacks.map((n) => ({
      id: `stack-${n}`,
      title: `${n} parity extensions stacked`,
      ...h1,
      contenders: [c('meshext'), c('nginx', 'lua-parity', n), c('haproxy', 'lua-parity', n), c('meshext', 'lua-parity', n), c('meshext', 'lua-parity', n, 'luajit'), c('meshext', 'wasm-parity', n)],
    })),
    {
      id: 'upload-1mib',
      title: '1 MiB upload through a body-reading extension',
      protocol: 'h1',
      connections: 8,
      method: 'POST',
      bodyBytes: 1 << 20,
      expectHeader: bodyHeader,
      contenders: quick
        ? [c('meshext'), c('nginx'), c('meshext', 'lua-body'), c('meshext', 'wasm-body')]
        : [c('meshext'), c('direct'), c('nginx'), c('nginx', 'lua-body'), c('haproxy'), c('meshext', 'lua-body'), c('meshext', 'wasm-body')],
    },
    {
      id: 'h2',
      title: 'HTTP/2 downstream (h2load, 10 connections x 10 streams)',
      protocol: 'h2',
      connections: 10,
      streams: 10,
      expectHeader: parityHeader,
      contenders: quick ? [c('meshext'), c('nginx')] : [c('meshext'), c('nginx'), c('haproxy'), c('meshext', 'lua-parity')],
    },
  ];
  return onlyScenarios ? all.filter((s) => onlyScenarios.includes(s.id)) : all;
}

async function main(): Promise<void> {
  const rawDir = join(RESULTS, 'raw');
  mkdirSync(rawDir, { recursive: true });
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  if (!argv.includes('--no-setup')) {
    const installed = await ensurePeers(log);
    if (installed.length) log(`setup: installed ${installed.join(', ')}`);
    // meshext's default data path: the native transport, when it can be built here
    if (!existsSync(TRANSPORT_TARGET)) log(buildTransportAddon(log) ? 'setup: built the native transport' : 'setup: native transport not built; meshext runs on node:net');
  }
  const meshextTransport = describeTransport();
  log(`meshext HTTP/1.1 transport: ${meshextTransport}`);
  const machine = describeMachine();
  const tools = await toolVersions();
  log(`machine: ${machine.nproc} CPUs, ${machine.model}, kernel ${machine.kernel}; ${JSON.stringify(tools)}`);
  const idle = await probeBusy(1000);
  log(`before the run: foreign CPU ${idle.foreignCores.toFixed(2)} cores, load average ${idle.loadavg1}`);

  log('building the Wasm plugins (AssemblyScript)...');
  const built = await buildPlugins();
  const wasmPaths: Record<string, string> = {};
  const buildErrors: string[] = [];
  for (const [name, v] of Object.entries(built)) {
    if (typeof v === 'string') wasmPaths[name] = v;
    else buildErrors.push(`${name}: ${v.message.split('\n')[0]}`);
  }
  if (buildErrors.length) log(`plugin build errors: ${buildErrors.join('; ')}`);

  let report: Report = {
    quick,
    date: new Date().toISOString(),
    machine,
    tools,
    idleBefore: idle,
    cells: [],
    scenarios: [],
    memory: [],
    micro: undefined,
    profile: undefined,
    niceness,
    settings: quick
      ? { warmSeconds: 2, runSeconds: 1, runs: 3, latencySeconds: 1, maxExtraRuns: 0, meshextNodeArgs, meshextTransport }
      : // 6 s: V8 takes several seconds under load to optimize meshext's request path (measured:
        // the first 3 s run costs up to 2x the CPU per request of later ones); nginx and HAProxy
        // need no warm-up, and every contender gets the same.
        // 9 turns: on this shared VM one run's speed varies by ±10-15% turn to turn, so the median
        // of 5 turn-by-turn ratios moved by ±5 points between full runs of the same build (Lua
        // parity 6-11% in three runs), too coarse against 10% thresholds. 9 turns narrow that by
        // about a quarter, in either direction.
        { warmSeconds: 6, runSeconds: 4, runs: 9, latencySeconds: 5, maxExtraRuns: 1, meshextNodeArgs, meshextTransport },
    durationSeconds: 0,
  };

  let upstream: Started | undefined;
  try {
    if (sections.has('macro') || sections.has('profile')) upstream = await startUpstream(WORK);
    if (sections.has('macro') && upstream) {
      const list = scenarios();
      report.scenarios = list.map((s) => ({ id: s.id, title: s.title, protocol: s.protocol, connections: s.connections, streams: s.streams, bodyBytes: s.bodyBytes }));
      // Latency runs use one fixed rate for every contender of a scenario family: half of meshext's
      // passthrough maximum (its cell runs first), so the percentiles compare like with like.
      const rates = new Map<string, number>();
      // Full mode may spend up to 2 minutes in total waiting for other work on the machine to pause.
      const quiet = { ms: quick ? 0 : 120_000 };
      const groups: Scenario[][] = [];
      for (const sc of list) {
        const last = groups[groups.length - 1];
        if (last && sc.group !== undefined && last[0]!.group === sc.group) last.push(sc);
        else groups.push([sc]);
      }
      for (const g of groups) {
        const members = g.flatMap((sc) => sc.contenders.map((spec) => ({ sc, spec })));
        log(`group ${g.map((sc) => sc.id).join(', ')}: ${members.length} contenders, runs interleaved`);
        const cells = await runGroup(members, { ...report.settings, meshextNodeArgs, work: WORK, wasmPaths, upstream, log, quiet, quietMaxMs: quick ? 0 : 5000 }, (done) => {
          const sc = g.find((x) => x.id === done.scenario)!;
          const family = sc.bodyBytes ? 'upload' : sc.protocol;
          if (!rates.has(family) && sc.protocol === 'h1') {
            rates.set(family, Math.max(100, Math.round((done.rps * 0.5) / 100) * 100));
            log(`    fixed rate for the ${family} latency runs: ${rates.get(family)} req/s (half of this cell's maximum)`);
          }
          return rates.get(family);
        });
        report.cells.push(...cells);
      }
    }
    if (sections.has('profile') && upstream) {
      log('profile: meshext passthrough under wrk with --cpu-prof');
      report.profile = await runProfile(WORK, upstream, quick ? 3 : 8, log, meshextNodeArgs);
    }
    await stop(upstream);
    upstream = undefined;

    if (sections.has('memory')) {
      const concurrencies = quick ? [1, 2] : [1, 2, 4, 8, 16];
      const variants: MemVariant[] = ['none', 'lua', 'wasm'];
      // Each point is started afresh `reps` times, the repetitions in turns over the whole grid so a
      // drift of the machine lands on every point alike; the median RSS is reported (one start
      // moved the per-worker slopes by 0.2-0.5 MiB between runs of the same build).
      const reps = quick ? 1 : 3;
      const samples = new Map<string, MemoryPoint[]>();
      for (let rep = 1; rep <= reps; rep++) {
        for (const cc of concurrencies) {
          for (const v of variants) {
            const p: MemoryPoint = await memoryPoint(cc, v, WORK, wasmPaths, quick ? 6 : 12);
            log(`memory ${rep}/${reps}: concurrency ${cc}, ${v}: ${p.rssMiB.toFixed(1)} MiB (${p.heads}×200, ${p.tails}×500${p.other ? `, ${p.other} other` : ''})${p.status !== 'ok' ? ` ${p.status}: ${p.note}` : ''}`);
            const key = `${cc}/${v}`;
            samples.set(key, [...(samples.get(key) ?? []), p]);
          }
        }
      }
      for (const points of samples.values()) report.memory.push(medianPoint(points));
      report.bareWorkerMiB = await bareWorkerMiB(reps);
      log(`memory: an idle Node worker_thread with no code: ${report.bareWorkerMiB.toFixed(2)} MiB per worker`);
    }
    if (sections.has('micro')) {
      log('micro-benchmarks (tinybench), pinned to the proxy core');
      report.micro = await runMicro(quick, wasmPaths, log);
    }
  } finally {
    await stop(upstream);
    killAllStarted();
  }
  report.durationSeconds = (Date.now() - started) / 1000;
  writeFileSync(join(rawDir, `results-${quick ? 'quick' : 'full'}.json`), JSON.stringify(report, null, 2));
  const summary = join(RESULTS, 'summary.json');
  if (argv.includes('--merge') && existsSync(summary)) {
    // Keep the committed run and replace only the sections run now (e.g. a profile re-run).
    const base = JSON.parse(readFileSync(summary, 'utf8')) as Report;
    if (sections.has('macro')) {
      if (onlyScenarios) {
        // Replace only the scenarios re-run now; the others keep their committed cells.
        const rerun = new Set(onlyScenarios);
        const order = scenarios().map((sc) => sc.id);
        base.cells = [...base.cells.filter((c) => !rerun.has(c.scenario)), ...report.cells].sort((a, b) => order.indexOf(a.scenario) - order.indexOf(b.scenario));
        base.scenarios = [...base.scenarios.filter((sc) => !rerun.has(sc.id)), ...report.scenarios].sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id));
      } else {
        base.cells = report.cells;
        base.scenarios = report.scenarios;
      }
    }
    if (sections.has('memory')) {
      base.memory = report.memory;
      base.bareWorkerMiB = report.bareWorkerMiB;
    }
    if (sections.has('micro')) base.micro = report.micro;
    if (sections.has('profile')) base.profile = report.profile;
    base.reruns = [...(base.reruns ?? []), { sections: [...sections], scenarios: onlyScenarios, date: report.date, seconds: report.durationSeconds }];
    report = base;
  }
  // bench/results/ holds a complete run: a partial one (--only / --scenarios) goes there only
  // when merged into it (--merge) or asked for (--write), never by overwriting it.
  const partial = opt('only') !== undefined || onlyScenarios !== undefined;
  if ((!quick && !partial) || argv.includes('--write') || argv.includes('--merge')) {
    const plots = await writePlots(report, RESULTS);
    writeFileSync(join(RESULTS, 'results.md'), renderReport(report, plots));
    writeFileSync(join(RESULTS, 'summary.json'), JSON.stringify(report, null, 2));
    log(`wrote ${join(RESULTS, 'results.md')} and ${plots.length} plots`);
  } else {
    const plots = await writePlots(report, rawDir);
    const name = `results-${quick ? 'quick' : 'partial'}.md`;
    writeFileSync(join(rawDir, name), renderReport(report, plots));
    log(`${quick ? 'quick' : 'partial'} run: wrote ${join(rawDir, name)} (bench/results/ keeps the last full run; --merge adds these sections to it)`);
  }
  log(`done in ${elapsed()}`);
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    killAllStarted();
    process.exit(130);
  });
}
process.on('exit', () => killAllStarted());

await main();
