/**
 * Builds the test plugins from our own sources, cached under build/test-plugins/ keyed by the hash
 * of source + toolchain flags (repeat runs are fast; binaries are never committed).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const ROOT = resolve(import.meta.dirname, '../../..');
export const PLUGINS = join(ROOT, 'test/wasm/plugins');
const CACHE = join(ROOT, 'build/test-plugins');

function hash(...parts: Array<string | Uint8Array>): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex').slice(0, 16);
}

async function cached(key: string, build: (out: string) => Promise<void>): Promise<Uint8Array> {
  await mkdir(CACHE, { recursive: true });
  const out = join(CACHE, `${key}.wasm`);
  if (!existsSync(out)) {
    const tmp = `${out}.${process.pid}.${Date.now()}.tmp`;
    await build(tmp);
    await rename(tmp, out);
  }
  return new Uint8Array(await readFile(out));
}

/**
 * AssemblyScript plugin test/wasm/plugins/as/<name>.as with @solo-io/proxy-runtime. Sources use the
 * `.as` extension so the project's tsc (which includes test/**\/*.ts) does not type-check
 * AssemblyScript; they are copied to a `.ts` file in the build dir for asc.
 */
export async function buildAs(name: string): Promise<Uint8Array> {
  const src = join(PLUGINS, 'as', `${name}.as`);
  const text = await readFile(src);
  const sdk = await readFile(join(ROOT, 'node_modules/@solo-io/proxy-runtime/package.json'));
  const key = `as-${name}-${hash(text, sdk, 'asc-0.14-optimize')}`;
  return cached(key, async (out) => {
    const dir = join(CACHE, 'src');
    await mkdir(dir, { recursive: true });
    const entry = join(dir, `${key}.${process.pid}.ts`);
    await writeFile(entry, text);
    await run(join(ROOT, 'node_modules/.bin/asc'), [entry, '-b', out, '--use', 'abort=abort_proc_exit', '--optimize'], { cwd: ROOT, timeout: 180_000 });
  });
}

/** WAT plugin: test/wasm/plugins/wat/<name>.wat, or inline text. */
export async function buildWat(nameOrText: string): Promise<Uint8Array> {
  const text = nameOrText.includes('(module') ? nameOrText : await readFile(join(PLUGINS, 'wat', `${nameOrText}.wat`), 'utf8');
  return cached(`wat-${hash(text)}`, async (out) => {
    const wabt = await (await import('wabt')).default();
    const mod = wabt.parseWat('plugin.wat', text, { multi_value: true, bulk_memory: true, sign_extension: true, mutable_globals: true, reference_types: true, tail_call: true });
    mod.resolveNames();
    mod.validate();
    const { buffer } = mod.toBinary({ write_debug_names: true });
    mod.destroy();
    await writeFile(out, buffer);
  });
}

export const C_FLAGS = ['--target=wasm32-wasi', '-mexec-model=reactor', '-O2', '-nostartfiles', '-Wl,--allow-undefined', '-Wl,--no-entry'];

/** True when clang-19 with the wasm32 target and wasi-libc is installed. */
export async function haveClang(): Promise<boolean> {
  try {
    await run('clang-19', ['--version']);
    return existsSync('/usr/include/wasm32-wasi') || existsSync('/usr/share/wasi-sysroot') || existsSync('/usr/lib/wasm32-wasi');
  } catch {
    return false;
  }
}

/** C plugin test/wasm/plugins/c/<name>.c; `exports` are the callbacks it defines. */
export async function buildC(name: string, exports: string[]): Promise<Uint8Array> {
  const src = join(PLUGINS, 'c', `${name}.c`);
  const text = await readFile(src);
  const flags = [...C_FLAGS.filter((f) => f !== '-nostartfiles' && f !== '-Wl,--no-entry'), ...exports.map((e) => `-Wl,--export=${e}`)];
  return cached(`c-${name}-${hash(text, flags.join(' '))}`, async (out) => {
    await run('clang-19', [...flags, '-o', out, src], { timeout: 120_000 });
  });
}
