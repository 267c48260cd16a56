/**
 * The machine a run happened on, and whether something else was using it. This is a shared
 * development machine, so every measurement window records how much CPU went to processes that are
 * not part of the measurement ("foreign" CPU); busy windows are flagged in the results.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism, totalmem, release } from 'node:os';
import { CLK_TCK, cpuTicks, treeTicks } from './proc.ts';

export interface MachineInfo {
  nproc: number;
  model: string;
  kernel: string;
  memGiB: number;
  node: string;
}

export function describeMachine(): MachineInfo {
  let model = 'unknown';
  try {
    model = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? model;
  } catch {
    /* not Linux */
  }
  return { nproc: availableParallelism(), model, kernel: release(), memGiB: Math.round(totalmem() / 2 ** 30), node: process.version };
}

interface CpuSample {
  /** Non-idle ticks over all CPUs (user+nice+system+irq+softirq+steal). */
  busy: number;
  steal: number;
  at: number;
}

function sampleCpu(): CpuSample {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user).
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
  return { busy: user + nice + system + irq + softirq + steal, steal, at: performance.now() };
}

export interface BusyReport {
  /** CPU used by processes outside the measurement, in cores (0.5 = half a core). */
  foreignCores: number;
  /** Hypervisor steal, in cores. */
  stealCores: number;
  /** 1-minute load average when the window ended. */
  loadavg1: number;
}

/**
 * A measurement window. `ours` lists the pids whose CPU is part of the measurement (the bench's
 * own process counts too, with the load generators it has already reaped).
 */
export class BusyWindow {
  readonly #start: CpuSample;
  readonly #pids: number[];
  readonly #startOurs: number;
  constructor(pids: number[]) {
    this.#pids = pids;
    this.#startOurs = this.#ours();
    this.#start = sampleCpu();
  }
  #ours(): number {
    let t = cpuTicks(process.pid, true);
    // Whole trees: an nginx master's CPU is nothing, its worker's is the measurement.
    for (const p of this.#pids) t += treeTicks(p);
    return t;
  }
  end(): BusyReport {
    const s = sampleCpu();
    const ours = this.#ours() - this.#startOurs;
    const secs = Math.max(0.001, (s.at - this.#start.at) / 1000);
    const foreign = Math.max(0, s.busy - this.#start.busy - ours);
    let loadavg1 = 0;
    try {
      loadavg1 = Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
    } catch {
      /* ignore */
    }
    return { foreignCores: foreign / CLK_TCK / secs, stealCores: (s.steal - this.#start.steal) / CLK_TCK / secs, loadavg1 };
  }
}

/** Foreign CPU above this (in cores, averaged over the window) marks the run as busy. */
export const BUSY_THRESHOLD_CORES = 0.15;

export function isBusy(b: BusyReport): boolean {
  return b.foreignCores > BUSY_THRESHOLD_CORES || b.stealCores > 0.05;
}

/** Measures foreign CPU over `ms` while the caller's processes (pids) idle or run. */
export async function probeBusy(ms: number, pids: number[] = []): Promise<BusyReport> {
  const w = new BusyWindow(pids);
  await new Promise((r) => setTimeout(r, ms));
  return w.end();
}

/** Shared allowance for waiting on a quiet machine, so a busy machine cannot stretch the run. */
export interface QuietBudget {
  ms: number;
}

/**
 * Waits (up to maxMs, within the budget) until a 300 ms window shows no more foreign CPU than the
 * threshold. Returns whether the machine was quiet when it stopped waiting.
 */
export async function waitQuiet(pids: number[], budget: QuietBudget, maxMs: number): Promise<boolean> {
  if (maxMs <= 0 || budget.ms <= 0) return false;
  const t0 = Date.now();
  const deadline = t0 + Math.min(maxMs, Math.max(0, budget.ms));
  let quiet = false;
  do {
    quiet = !isBusy(await probeBusy(300, pids));
  } while (!quiet && Date.now() < deadline);
  budget.ms -= Date.now() - t0;
  return quiet;
}
