/**
 * Builds the bench's AssemblyScript Proxy-Wasm plugins (bench/plugins/*.as) into bench/.build/.
 * Sources carry the `.as` extension so the project's tsc (which includes bench/**\/*.ts) does not
 * type-check AssemblyScript; asc gets a `.ts` copy. Outputs are cached by source hash.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BENCH, ROOT } from './paths.ts';

const run = promisify(execFile);
export const PLUGIN_NAMES = ['parity', 'coinflip', 'bodyread', 'noop'] as const;
export type PluginName = (typeof PLUGIN_NAMES)[number];

const BUILD = join(BENCH, '.build');

async function buildOne(name: PluginName): Promise<string> {
  const src = join(BENCH, 'plugins', `${name}.as`);
  const text = await readFile(src);
  const key = createHash('sha256').update(text).update('asc-0.14.9 --optimize').digest('hex').slice(0, 12);
  const out = join(BUILD, `${name}-${key}.wasm`);
  if (existsSync(out)) return out;
  await mkdir(join(BUILD, 'src'), { recursive: true });
  const entry = join(BUILD, 'src', `${name}.ts`);
  await copyFile(src, entry);
  const tmp = `${out}.${process.pid}.tmp`;
  await run(join(ROOT, 'node_modules/.bin/asc'), [entry, '-b', tmp, '--use', 'abort=abort_proc_exit', '--optimize'], { cwd: ROOT, timeout: 240_000 });
  await rename(tmp, out);
  return out;
}

/** Builds every plugin (in parallel); returns name → absolute .wasm path, or the build error. */
export async function buildPlugins(): Promise<Record<PluginName, string | Error>> {
  const results = await Promise.allSettled(PLUGIN_NAMES.map((n) => buildOne(n)));
  const out = {} as Record<PluginName, string | Error>;
  PLUGIN_NAMES.forEach((n, i) => {
    const r = results[i]!;
    out[n] = r.status === 'fulfilled' ? r.value : (r.reason as Error);
  });
  return out;
}
