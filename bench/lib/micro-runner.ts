/** Runs bench/micro.ts in its own Node process pinned to the proxy core, and reads its JSON. */
import { join } from 'node:path';
import { CORES } from './contenders.ts';
import { BENCH, NODE } from './paths.ts';
import { pinnedCommand, runCapture } from './proc.ts';

export interface MicroRow {
  group: string;
  name: string;
  /** Mean time per operation in ns (NaN when not available). */
  ns: number;
  /** Relative margin of error, percent. */
  rme: number;
  opsPerSec: number;
  note?: string;
}

export interface MicroResult {
  status: 'ok' | 'failed';
  note?: string;
  rows: MicroRow[];
}

export async function runMicro(quick: boolean, wasmPaths: Partial<Record<string, string>>, log: (s: string) => void): Promise<MicroResult> {
  const [exe, args] = pinnedCommand(CORES.proxy, NODE, [join(BENCH, 'micro.ts'), '--json', ...(quick ? ['--quick'] : [])]);
  const r = await runCapture(exe, args, quick ? 120_000 : 300_000, { env: { ...process.env, BENCH_WASM_PATHS: JSON.stringify(wasmPaths) } });
  const line = r.stdout.split('\n').find((l) => l.startsWith('MICROJSON '));
  if (!line) {
    log(`micro: failed (exit ${r.code}): ${r.stderr.slice(-400)}`);
    return { status: 'failed', note: `exit ${r.code}: ${r.stderr.slice(-300)}`, rows: [] };
  }
  const rows = JSON.parse(line.slice('MICROJSON '.length)) as MicroRow[];
  for (const row of rows) log(`  ${row.group} / ${row.name}: ${Number.isFinite(row.ns) ? `${row.ns.toFixed(0)} ns` : `n/a (${row.note ?? ''})`}`);
  return { status: 'ok', rows };
}
