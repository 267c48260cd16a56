import type { CellResult } from './macro.ts';
import type { BusyReport, MachineInfo } from './machine.ts';
import type { MemoryPoint } from './memory.ts';
import type { MicroResult } from './micro-runner.ts';
import type { ProfileResult } from './profile.ts';
export interface Report {
  quick: boolean;
  date: string;
  machine: MachineInfo;
  tools: Record<string, string>;
  idleBefore: BusyReport;
  cells: CellResult[];
  scenarios: Array<{ id: string; title: string; protocol: string; connections: number; streams?: number; bodyBytes?: number }>;
  memory: MemoryPoint[];
  micro: MicroResult | undefined;
  profile: ProfileResult | undefined;
  settings: { warmSeconds: number; runSeconds: number; runs: number; latencySeconds: number; maxExtraRuns: number };
  durationSeconds: number;
}
export function renderReport(r: Report, _plots: string[]): string {
  return JSON.stringify(r.cells.map((c) => [c.label, c.rps, c.cpuUsPerReq]));
}
