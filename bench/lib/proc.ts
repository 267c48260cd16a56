/**
 * Process plumbing for the bench: start programs pinned to a core, find their process trees, read
 * their CPU time and RSS from /proc, and stop every one of them (also on Ctrl-C or a crash).
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createWriteStream, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';

/** Kernel clock ticks per second for /proc/<pid>/stat times (USER_HZ: 100 on Linux/x86-64). */
export const CLK_TCK = 100;

const started = new Set<ChildProcess>();

/**
 * Niceness for everything the bench measures (proxies, upstream, load generators). 0 by default:
 * on a shared machine a negative value makes other people's work crawl; `--nice=-10` is for a
 * machine where the bench may take priority.
 */
let niceness = 0;
export function setNiceness(n: number): void {
  niceness = n;
}

/** `taskset -c cpus cmd args`, under `nice -n N` when a niceness is set. */
export function pinnedCommand(cpus: string, cmd: string, args: string[]): [string, string[]] {
  const pinned = ['taskset', '-c', cpus, cmd, ...args];
  return niceness ? ['nice', ['-n', String(niceness), ...pinned]] : [pinned[0]!, pinned.slice(1)];
}

export interface Started {
  child: ChildProcess;
  pid: number;
  name: string;
  /** Resolves with the exit code (or signal) once the process is gone. */
  exited: Promise<number | string>;
}

/**
 * Starts `cmd args` under `taskset -c cpus` (taskset execs, so the pid is the program's own).
 * stdout/stderr go to `logFile` so that a chatty program never blocks on a full pipe.
 */
export function startPinned(name: string, cpus: string, cmd: string, args: string[], logFile: string, opts: SpawnOptions = {}): Started {
  const out = createWriteStream(logFile, { flags: 'a' });
  const [exe, argv] = pinnedCommand(cpus, cmd, args);
  const child = spawn(exe, argv, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  started.add(child);
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, sig) => {
      started.delete(child);
      resolve(code ?? sig ?? 'unknown');
    });
    child.once('error', (e) => {
      started.delete(child);
      resolve(`spawn error: ${e.message}`);
    });
  });
  if (child.pid === undefined) throw new Error(`${name}: could not start ${cmd}`);
  return { child, pid: child.pid, name, exited };
}

/** Stops a started process: SIGTERM, then SIGKILL after `graceMs`. Also kills its children. */
export async function stop(p: Started | undefined, graceMs = 3000, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
  const tree = processTree(p.pid);
  try {
    process.kill(p.pid, signal);
  } catch {
    /* already gone */
  }
  const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs).unref());
  if ((await Promise.race([p.exited, timer])) === 'timeout') {
    for (const pid of tree) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await p.exited;
  }
  // Children that outlive their parent (e.g. an nginx worker) are ours too.
  for (const pid of tree) {
    if (pid === p.pid) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

/** Kills whatever is still running (used by exit and signal handlers). */
export function killAllStarted(): void {
  for (const c of started) {
    if (c.pid === undefined) continue;
    for (const pid of processTree(c.pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}

/** pid and its descendants (from /proc/<pid>/task/<pid>/children, with a /proc scan as fallback). */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    const p = out[i]!;
    let kids: number[] = [];
    try {
      kids = readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      kids = scanChildren(p);
    }
    for (const k of kids) if (!out.includes(k)) out.push(k);
  }
  return out;
}

function scanChildren(ppid: number): number[] {
  const kids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      if (Number(f[1]) === ppid) kids.push(Number(d));
    } catch {
      /* raced with exit */
    }
  }
  return kids;
}

/** utime+stime of one process (all its threads), in clock ticks; 0 when it is gone. */
export function cpuTicks(pid: number, withReapedChildren = false): number {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm) ": state is index 0, utime 11, stime 12, cutime 13, cstime 14.
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    let t = Number(f[11]) + Number(f[12]);
    if (withReapedChildren) t += Number(f[13]) + Number(f[14]);
    return t;
  } catch {
    return 0;
  }
}

/** CPU ticks of a process tree (e.g. nginx master + worker). */
export function treeTicks(pid: number): number {
  let t = 0;
  for (const p of processTree(pid)) t += cpuTicks(p);
  return t;
}

/**
 * utime+stime of a process's threads grouped by thread name (comm), in clock ticks. For Node,
 * "V8Worker" threads are V8's platform workers: concurrent marking and sweeping, background
 * compilation.
 */
export function threadTicksByName(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const st = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = st.slice(st.indexOf('(') + 1, st.lastIndexOf(')'));
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      out.set(name, (out.get(name) ?? 0) + Number(f[11]) + Number(f[12]));
    } catch {
      /* thread gone */
    }
  }
  return out;
}

/** Resident set size of one process in KiB (VmRSS). */
export function rssKiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** RSS of a process tree in KiB (shared pages of several processes are counted in each). */
export function treeRssKiB(pid: number): number {
  let t = 0;
  for (const p of processTree(pid)) t += rssKiB(p);
  return t;
}

/** Waits until a TCP port accepts connections. */
export async function waitPort(port: number, timeoutMs: number, alive?: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (alive && !alive()) throw new Error(`the process meant to listen on ${port} exited`);
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** True when nothing listens on the port (so a contender can bind it). */
export async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Runs a command to completion, capturing output (bounded by timeoutMs). */
export function runCapture(cmd: string, args: string[], timeoutMs: number, opts: SpawnOptions = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    started.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      started.delete(child);
      resolve({ code: -1, stdout, stderr: stderr + e.message });
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      started.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}
