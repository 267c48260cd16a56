/**
 * Load generators: wrk (HTTP/1.1 keep-alive, latency percentiles through its Lua done() hook) and
 * h2load (HTTP/2). Both are C programs, pinned to the load core, bounded in time.
 *
 * Constant-rate load: wrk2 is not packaged in Debian, so "fixed moderate rate" runs use wrk's own
 * Lua delay() hook: each connection waits a random 0/1 ms-rounded delay whose mean makes the
 * offered rate the target. Unlike wrk2 this does not correct for coordinated omission (a slow
 * response delays the next request of its connection), so the percentiles are service latencies at
 * that rate, not wrk2-style intended-start latencies; at a moderate rate the two stay close.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pinnedCommand, runCapture } from './proc.ts';

export interface WrkOptions {
  url: string;
  connections: number;
  seconds: number;
  cpus: string;
  headers?: Record<string, string>;
  method?: string;
  /** Request body size in bytes (filled with 'a'). */
  bodyBytes?: number;
  /** Target total rate in req/s (paced mode); undefined = as fast as possible. */
  rate?: number;
  workDir: string;
  tag: string;
}

export interface WrkResult {
  requests: number;
  seconds: number;
  rps: number;
  errors: number;
  nonOk: number;
  p50us: number;
  p90us: number;
  p99us: number;
  p999us: number;
  meanUs: number;
  maxUs: number;
}

function luaStr(s: string): string {
  return JSON.stringify(s); // JSON string escapes are valid Lua escapes for the text we use
}

function wrkScript(o: WrkOptions): string {
  const lines = [`wrk.method = ${luaStr(o.method ?? 'GET')}`];
  for (const [k, v] of Object.entries(o.headers ?? {})) lines.push(`wrk.headers[${luaStr(k)}] = ${luaStr(v)}`);
  if (o.bodyBytes) lines.push(`wrk.body = string.rep("a", ${o.bodyBytes})`);
  if (o.rate) {
    // Mean delay per connection = connections / rate seconds, rounded stochastically to whole ms
    // (wrk's timer granularity) so the average offered rate is the target.
    const meanMs = (o.connections * 1000) / o.rate;
    const lo = Math.floor(meanMs);
    const pHi = meanMs - lo;
    lines.push(`math.randomseed(os.time())`);
    lines.push(`function delay() if math.random() < ${pHi.toFixed(4)} then return ${lo + 1} end return ${lo} end`);
  }
  lines.push(
    `function done(summary, latency, requests)`,
    `  local e = summary.errors`,
    `  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"mean":%.1f,"max":%d}\\n',`,
    `    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,`,
    `    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.mean, latency.max))`,
    `end`,
  );
  return lines.join('\n') + '\n';
}

export async function runWrk(o: WrkOptions): Promise<WrkResult> {
  const script = join(o.workDir, `wrk-${o.tag}.lua`);
  writeFileSync(script, wrkScript(o));
  const [exe, args] = pinnedCommand(o.cpus, 'wrk', ['-t1', `-c${o.connections}`, `-d${Math.max(1, Math.round(o.seconds))}s`, '--timeout', '5s', '-s', script, o.url]);
  const r = await runCapture(exe, args, (o.seconds + 20) * 1000);
  const m = /WRKJSON (\{.*\})/.exec(r.stdout);
  if (!m) throw new Error(`wrk failed (exit ${r.code}): ${(r.stderr || r.stdout).slice(0, 400)}`);
  const j = JSON.parse(m[1]!) as Record<string, number>;
  const seconds = j.duration_us! / 1e6;
  return {
    requests: j.requests!,
    seconds,
    rps: j.requests! / seconds,
    errors: j.connect! + j.read! + j.write! + j.timeout!,
    nonOk: j.status!,
    p50us: j.p50!,
    p90us: j.p90!,
    p99us: j.p99!,
    p999us: j.p999!,
    meanUs: j.mean!,
    maxUs: j.max!,
  };
}

export interface H2Options {
  url: string;
  clients: number;
  streams: number;
  seconds: number;
  cpus: string;
  headers?: Record<string, string>;
}

export interface H2Result {
  requests: number;
  seconds: number;
  rps: number;
  errors: number;
  meanUs: number;
  maxUs: number;
}

function toUs(v: string, unit: string): number {
  const n = Number(v);
  return unit === 's' ? n * 1e6 : unit === 'ms' ? n * 1e3 : n;
}

export async function runH2load(o: H2Options): Promise<H2Result> {
  const h2args = ['-t1', '-c', String(o.clients), '-m', String(o.streams), '-D', String(Math.max(1, Math.round(o.seconds)))];
  for (const [k, v] of Object.entries(o.headers ?? {})) h2args.push('-H', `${k}: ${v}`);
  h2args.push(o.url);
  const [exe, args] = pinnedCommand(o.cpus, 'h2load', h2args);
  const r = await runCapture(exe, args, (o.seconds + 20) * 1000);
  const fin = /finished in ([\d.]+)s, ([\d.]+) req\/s/.exec(r.stdout);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(r.stdout);
  const t = /time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)/.exec(r.stdout);
  if (!fin || !req) throw new Error(`h2load failed (exit ${r.code}): ${(r.stderr || r.stdout).slice(0, 400)}`);
  const seconds = Number(fin[1]);
  const ok = Number(req[4]);
  return {
    requests: ok,
    seconds,
    rps: ok / seconds,
    errors: Number(req[5]) + Number(req[6]) + Number(req[7]),
    meanUs: t ? toUs(t[5]!, t[6]!) : NaN,
    maxUs: t ? toUs(t[3]!, t[4]!) : NaN,
  };
}
