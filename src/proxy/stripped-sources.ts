/**
 * Worker threads run from a JavaScript copy of the sources with the types stripped once, in the
 * main thread: Node's type stripping instantiates its own compiler (swc in WebAssembly) in every
 * isolate that loads a .ts file, which measured about 10 MiB per worker thread.
 *
 * The copy lives in `<package>/.meshext-js/`, a sibling of `src/`, so paths relative to a module
 * (`../../build/...`) resolve the same from both trees. It is rebuilt when a source file changes
 * (path, size and mtime), atomically (temp dir + rename). Any failure falls back to the .ts sources.
 * Characters above U+00FF are escaped (ascii-source.ts), which halves each module's source in memory.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { logger } from '../observability/log.ts';
import { asciiSource, hasWideSpace } from './ascii-source.ts';

const SRC = resolve(import.meta.dirname, '..');
const OUT = join(resolve(SRC, '..'), '.meshext-js');
/** Relative specifiers ending in .ts (imports, dynamic imports, new URL(...)) become .js. */
const RELATIVE_TS = /(['"])(\.{1,2}\/[^'"\n]+?)\.ts\1/g;

function listFiles(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) listFiles(p, out);
    else if (!e.name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

/** The experimental-API warning of stripTypeScriptTypes is noise for users: keep it quiet. */
function quietly<T>(fn: () => T): T {
  const emit = process.emitWarning;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const text = typeof warning === 'string' ? warning : warning.message;
    if (text.includes('stripTypeScriptTypes')) return;
    (emit as (...a: unknown[]) => void).call(process, warning, ...rest);
  }) as typeof process.emitWarning;
  try {
    return fn();
  } finally {
    process.emitWarning = emit;
  }
}

let cached: URL | null | undefined;

/** URL of the worker entry to run: the stripped JavaScript copy, or the .ts source as a fallback. */
export function workerEntry(): URL {
  const fallback = new URL('./worker.ts', import.meta.url);
  if (cached === undefined) cached = buildStripped();
  return cached ?? fallback;
}

function buildStripped(): URL | null {
  // Already running from JavaScript (a stripped or compiled tree): nothing to do. The variable
  // MESHEXT_WORKERS_FROM_SOURCE=1 keeps workers on the .ts files (debugging, measurements).
  if (!import.meta.filename.endsWith('.ts') || process.env.MESHEXT_WORKERS_FROM_SOURCE === '1') return null;
  try {
    const files = listFiles(SRC);
    const stamp = createHash('sha256');
    for (const f of files) {
      const st = statSync(f);
      stamp.update(`${relative(SRC, f)}\0${st.size}\0${st.mtimeMs}\n`);
    }
    const digest = stamp.digest('hex');
    const stampFile = join(OUT, '.stamp');
    const entry = join(OUT, 'proxy', 'worker.js');
    if (existsSync(stampFile) && readFileSync(stampFile, 'utf8') === digest && existsSync(entry)) return pathToFileURL(entry);
    const tmp = `${OUT}.tmp-${process.pid}-${Date.now()}`;
    quietly(() => {
      for (const f of files) {
        const rel = relative(SRC, f);
        const target = join(tmp, rel.endsWith('.ts') ? rel.slice(0, -3) + '.js' : rel);
        mkdirSync(dirname(target), { recursive: true });
        if (f.endsWith('.ts')) {
          const source = readFileSync(f, 'utf8');
          const stripped = stripTypeScriptTypes(source, { mode: 'strip' }).replace(RELATIVE_TS, '$1$2.js$1');
          // Latin-1 only: V8 then keeps each module's source at one byte per character.
          const js = (hasWideSpace(source) ? null : asciiSource(stripped)) ?? stripped;
          writeFileSync(target, js);
        } else {
          copyFileSync(f, target);
        }
      }
    });
    writeFileSync(join(tmp, '.stamp'), digest);
    // Another process (parallel test files, a second proxy) may have published the same copy
    // meanwhile: use it rather than pulling it away from workers that are loading it.
    const current = () => existsSync(stampFile) && readFileSync(stampFile, 'utf8') === digest;
    if (current()) {
      rmSync(tmp, { recursive: true, force: true });
      return pathToFileURL(entry);
    }
    try {
      // package.json's "type": "module" covers the sibling tree too (same package root).
      rmSync(OUT, { recursive: true, force: true });
      renameSync(tmp, OUT);
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      if (!current()) throw err;
    }
    return pathToFileURL(entry);
  } catch (err) {
    logger('main').warn({ err: (err as Error).message }, 'workers run from the TypeScript sources (could not write a stripped copy)');
    return null;
  }
}
