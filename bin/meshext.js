#!/usr/bin/env node
// The meshext command. The sources are TypeScript run by Node's type stripping (Node >= 23.6);
// on an older system Node, re-run with the Node 24 that the project pins (the `node` package).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const main = join(here, '..', 'src', 'cli', 'main.ts');
const [major, minor] = process.versions.node.split('.').map(Number);
if (major > 23 || (major === 23 && minor >= 6)) {
  const { runCli } = await import(main);
  await runCli(process.argv);
} else {
  const pinned = join(here, '..', 'node_modules', 'node', 'bin', 'node');
  const candidates = [pinned, join(here, '..', 'node_modules', '.bin', 'node')];
  const node = candidates.find((c) => existsSync(c));
  if (!node) {
    console.error(`meshext needs Node >= 23.6 (found ${process.versions.node}); run \`npm install\` in the meshext package to get the pinned Node 24.`);
    process.exit(1);
  }
  const r = spawnSync(node, [main, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
