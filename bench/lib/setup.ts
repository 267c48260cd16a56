/**
 * Installs the peers and tools the bench needs from Debian when they are missing. The LuaJIT used
 * by nginx's Lua module is the luajit2 family (libluajit2-5.1-2); the `luajit` and
 * `libluajit-5.1-dev` packages are never installed because they have removed the module before.
 */
import { existsSync } from 'node:fs';
import { runCapture } from './proc.ts';

const NEEDS: Array<{ check: string; pkg: string }> = [
  { check: '/usr/sbin/nginx', pkg: 'nginx' },
  { check: '/usr/lib/nginx/modules/ngx_http_lua_module.so', pkg: 'libnginx-mod-http-lua' },
  { check: '/usr/sbin/haproxy', pkg: 'haproxy' },
  { check: '/usr/bin/wrk', pkg: 'wrk' },
  { check: '/usr/bin/h2load', pkg: 'nghttp2-client' },
  { check: '/usr/bin/taskset', pkg: 'util-linux' },
  // SVG → PNG for the plots, without a browser.
  { check: '/usr/bin/rsvg-convert', pkg: 'librsvg2-bin' },
];

export async function ensurePeers(log: (s: string) => void): Promise<string[]> {
  const missing = NEEDS.filter((n) => !existsSync(n.check)).map((n) => n.pkg);
  if (missing.length === 0) return [];
  log(`setup: installing ${missing.join(' ')} (apt-get, serialized by /tmp/apt.lock)`);
  const install = () => runCapture('flock', ['/tmp/apt.lock', 'apt-get', 'install', '-y', '--no-install-recommends', ...missing], 600_000, { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  let r = await install();
  if (r.code !== 0) {
    // A fresh machine has no package lists yet.
    await runCapture('flock', ['/tmp/apt.lock', 'apt-get', 'update'], 300_000);
    r = await install();
  }
  const still = NEEDS.filter((n) => !existsSync(n.check)).map((n) => n.pkg);
  if (still.length) throw new Error(`setup: could not install ${still.join(' ')}: ${r.stderr.slice(-500)}`);
  return missing;
}

export async function toolVersions(): Promise<Record<string, string>> {
  const v: Record<string, string> = {};
  const first = (s: string) => s.split('\n').find((l) => l.trim())?.trim() ?? '';
  v.nginx = first((await runCapture('nginx', ['-v'], 5000)).stderr).replace('nginx version: ', '');
  v.haproxy = first((await runCapture('haproxy', ['-v'], 5000)).stdout).replace(/ - https.*/, '');
  v.wrk = first((await runCapture('wrk', ['-v'], 5000)).stdout).replace(/ \[.*/, '');
  v.h2load = first((await runCapture('h2load', ['--version'], 5000)).stdout);
  const dpkg = await runCapture('dpkg-query', ['-W', '-f', '${Version}', 'libnginx-mod-http-lua'], 5000);
  v['nginx lua module'] = dpkg.stdout.trim();
  return v;
}
