/**
 * Builds the bench's AssemblyScript Proxy-Wasm plugins (bench/plugins/*.as) into bench/.build/
 * (the SDK ones with @solo-io/proxy-runtime 0.1.8; parity against the ABI directly).
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
export const PLUGIN_NAMES = ['parity', 'coinflip', 'bodyread', 'noop', 'hostcall'] as const;
export type PluginName = (typeof PLUGIN_NAMES)[number];

const BUILD = join(BENCH, '.build');

/**
 * asc flags per plugin. The SDK plugins need the full runtime and the SDK's abort; parity is written
 * against the ABI directly (no SDK, no GC: `--runtime none`) and must not import `env.abort`, which
 * Envoy does not provide (`abort=` turns failed assertions into traps).
 */
const SDK_FLAGS = ['--use', 'abort=abort_proc_exit'];
const FLAGS: Record<PluginName, string[]> = {
  parity: ['--runtime', 'none', '--use', 'abort='],
  hostcall: ['--runtime', 'none', '--use', 'abort='],
  coinflip: SDK_FLAGS,
  bodyread: SDK_FLAGS,
  noop: SDK_FLAGS,
};

async function buildOne(name: PluginName): Promise<string> {
  const src = join(BENCH, 'plugins', `${name}.as`);
  const text = await readFile(src);
  const flags = [...FLAGS[name], '--optimize'];
  const key = createHash('sha256').update(text).update(`asc-0.14.9 ${flags.join(' ')}`).digest('hex').slice(0, 12);
  const out = join(BUILD, `${name}-${key}.wasm`);
  if (existsSync(out)) return out;
  await mkdir(join(BUILD, 'src'), { recursive: true });
  const entry = join(BUILD, 'src', `${name}.ts`);
  await copyFile(src, entry);
  const tmp = `${out}.${process.pid}.tmp`;
  await run(join(ROOT, 'node_modules/.bin/asc'), [entry, '-b', tmp, ...flags], { cwd: ROOT, timeout: 240_000 });
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
