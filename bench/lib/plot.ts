import type { Report } from './report.ts';
export async function writePlots(_r: Report, _dir: string): Promise<string[]> {
  return [];
}
