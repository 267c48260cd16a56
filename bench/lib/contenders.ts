/**
 * The contenders: the upstream responder, nginx and HAProxy as reverse proxies (with and without
 * Lua), and meshext (passthrough, Lua, Wasm). Each writes its own config under the work dir and is
 * started pinned to its core. Every extension variant implements the same logic everywhere:
 *  - parity: x-number in the request → x-parity: even|odd on the response (Istio's Lua example);
 *  - body: read the whole request body into the extension, report its size as x-body-bytes;
 *  - coin flip: hash of all request headers → local reply 200 or 500 (memory study only).
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BootstrapConfig } from '../../src/config/types.ts';
import { FORWARDER, MESHEXT, NODE } from './paths.ts';
import { startPinned, stop, waitPort, type Started } from './proc.ts';

export const PORTS = {
  upstream: 19100,
  nginx: 19110,
  nginxH2: 19111,
  haproxy: 19120,
  haproxyH2: 19121,
  meshext: 19130,
  meshextAdmin: 19131,
  memory: 19140,
  memoryAdmin: 19141,
  profile: 19150,
  profileAdmin: 19151,
  nodeForwarder: 19160,
} as const;

/** Ports of the contender in slot `slot`: contenders measured together (interleaved) listen side by side. */
export function slotPort(port: number, slot: number): number {
  return port + slot * 1000;
}

export const CORES = { load: '0', upstream: '0', proxy: '1' } as const;

/** The upstream's fixed response body (small, as in the issue's setup). */
export const UPSTREAM_BODY = 'hello from the bench upstream\n';

/** node-net: a bare node:net byte forwarder (bench/lib/node-forwarder.ts), the floor of Node's I/O. */
export type Proxy = 'direct' | 'nginx' | 'haproxy' | 'meshext' | 'node-net';
export type ExtKind = 'none' | 'lua-parity' | 'wasm-parity' | 'lua-body' | 'wasm-body' | 'lua-coinflip' | 'wasm-coinflip';
/** meshext's bootstrap `lua.engine`. */
export type LuaEngineSetting = BootstrapConfig['lua']['engine'];

export interface ContenderSpec {
  proxy: Proxy;
  ext: ExtKind;
  /** How many copies of the extension are chained (1 for a single extension). */
  stack: number;
  /** meshext only: the bootstrap's `lua.engine`, forced; absent = meshext's default ('auto'). */
  luaEngine?: LuaEngineSetting;
}

export interface Running {
  spec: ContenderSpec;
  /** Port for HTTP/1.1 (and HTTP/2 prior knowledge for meshext). */
  port: number;
  /** Port for HTTP/2 cleartext, when the contender has one. */
  h2Port: number | undefined;
  /** The process whose CPU and RSS are the proxy's (undefined for direct). */
  proc: Started | undefined;
  /** meshext's admin port. */
  adminPort?: number;
  stop(): Promise<void>;
}

/**
 * A contender's name. `engine` is the Lua engine the proxy reported using (meshext's /config_dump),
 * shown after the name, e.g. "meshext+Lua (luajit)"; without it, a forced `lua.engine` is shown.
 */
export function label(s: ContenderSpec, engine?: string): string {
  if (s.proxy === 'direct') return 'direct (no proxy)';
  if (s.proxy === 'node-net') return 'Node byte forwarder (no HTTP)';
  const ext = s.ext === 'none' ? '' : s.ext.startsWith('lua') ? '+Lua' : '+Wasm';
  const stack = s.stack > 1 ? ` x${s.stack}` : '';
  const eng = engine ?? s.luaEngine;
  return `${s.proxy}${ext}${stack}${eng ? ` (${eng})` : ''}`;
}

/** A contender's name in file names and work dirs: unique within a scenario. */
export function specTag(s: ContenderSpec): string {
  return `${s.ext}-${s.stack}${s.luaEngine ? `-${s.luaEngine}` : ''}`;
}

// ---------------------------------------------------------------- upstream

export async function startUpstream(work: string): Promise<Started> {
  const dir = join(work, 'upstream');
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `# The bench's upstream: a fixed small 200 for everyone, one worker, pinned to the load core.
# Requests with a body are answered only after the body was read (as a real application does):
# 'return' alone answers at once, and a proxy that forwards headers before the body (meshext with
# a Proxy-Wasm body reader, as Envoy) would see the stream end before its body was complete.
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  # No size limit for the 1 MiB scenario; bodies stay in memory.
  client_max_body_size 0;
  client_body_buffer_size 2m;
  server {
    listen 127.0.0.1:${PORTS.upstream} backlog=4096;
    location / {
      if ($request_method = POST) { rewrite ^ /read-body last; }
      return 200 ${JSON.stringify(UPSTREAM_BODY)};
    }
    location = /read-body {
      internal;
      content_by_lua_block { ngx.req.read_body() ngx.print(${JSON.stringify(UPSTREAM_BODY)}) }
    }
  }
}
`,
  );
  const p = startPinned('upstream', CORES.upstream, 'nginx', ['-c', conf], join(dir, 'stdout.log'));
  await waitPort(PORTS.upstream, 10_000, () => p.child.exitCode === null);
  return p;
}

// ---------------------------------------------------------------- nginx

function nginxLua(ext: ExtKind, stack: number): { access: string; header: string } | undefined {
  if (ext === 'lua-parity') {
    // nginx allows one handler per phase and location, so N stacked extensions are N repetitions of
    // the logic inside one handler, each with its own context slot and response header value.
    return {
      access: `local n = tonumber(ngx.var.http_x_number)
        if n ~= nil then
          local p = (n % 2 == 0) and "even" or "odd"
          for i = 1, ${stack} do ngx.ctx[i] = p end
        end`,
      header: `if ngx.ctx[1] ~= nil then
          if ${stack} == 1 then ngx.header["x-parity"] = ngx.ctx[1]
          else local t = {} for i = 1, ${stack} do t[i] = ngx.ctx[i] end ngx.header["x-parity"] = t end
        end`,
    };
  }
  if (ext === 'lua-body') {
    return {
      access: `ngx.req.read_body()
        local b = ngx.req.get_body_data()
        ngx.ctx.bytes = b and #b or 0`,
      header: `if ngx.ctx.bytes ~= nil then ngx.header["x-body-bytes"] = ngx.ctx.bytes end`,
    };
  }
  return undefined;
}

async function startNginx(spec: ContenderSpec, work: string, slot: number): Promise<Running> {
  const dir = join(work, `nginx-${spec.ext}-${spec.stack}`);
  const port = slotPort(PORTS.nginx, slot);
  const h2Port = slotPort(PORTS.nginxH2, slot);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const lua = nginxLua(spec.ext, spec.stack);
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `${lua ? 'load_module /usr/lib/nginx/modules/ndk_http_module.so;\nload_module /usr/lib/nginx/modules/ngx_http_lua_module.so;\n' : ''}worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  # Keep a 1 MiB upload in memory (as meshext and HAProxy do), not spooled to a temp file.
  client_max_body_size 4m;
  client_body_buffer_size 2m;
  upstream up {
    server 127.0.0.1:${PORTS.upstream};
    keepalive 256;
    keepalive_requests 10000000;
  }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    listen 127.0.0.1:${h2Port} http2 backlog=4096;
    http2_max_requests 10000000;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
${lua ? `      access_by_lua_block {\n        ${lua.access}\n      }\n      header_filter_by_lua_block {\n        ${lua.header}\n      }\n` : ''}    }
  }
}
`,
  );
  const p = startPinned('nginx', CORES.proxy, 'nginx', ['-c', conf], join(dir, 'stdout.log'));
  await waitPort(port, 10_000, () => p.child.exitCode === null);
  return { spec, port, h2Port, proc: p, stop: () => stop(p) };
}

// ---------------------------------------------------------------- HAProxy

const HAPROXY_LUA = `-- The parity logic as HAProxy Lua actions (HAProxy 2.6, Lua 5.3).
core.register_action("parity", { "http-req" }, function(txn)
  local h = txn.http:req_get_headers()["x-number"]
  local n = h and tonumber(h[0])
  if n ~= nil then txn:set_var("txn.parity", (n % 2 == 0) and "even" or "odd") end
end)
core.register_action("parity_resp", { "http-res" }, function(txn)
  local p = txn:get_var("txn.parity")
  if p ~= nil then txn.http:res_add_header("x-parity", p) end
end)
`;

async function startHaproxy(spec: ContenderSpec, work: string, slot: number): Promise<Running> {
  const dir = join(work, `haproxy-${spec.ext}-${spec.stack}`);
  const port = slotPort(PORTS.haproxy, slot);
  const h2Port = slotPort(PORTS.haproxyH2, slot);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const lua = spec.ext === 'lua-parity';
  if (lua) writeFileSync(join(dir, 'parity.lua'), HAPROXY_LUA);
  const actions: string[] = [];
  // HAProxy can chain actions: N stacked extensions are N action lines in each direction.
  if (lua) for (let i = 0; i < spec.stack; i++) actions.push('  http-request lua.parity', '  http-response lua.parity_resp');
  const conf = join(dir, 'haproxy.cfg');
  writeFileSync(
    conf,
    `global
  nbthread 1
  maxconn 5000
${lua ? `  lua-load ${dir}/parity.lua\n` : ''}
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 300s
  option http-keep-alive
  http-reuse always

frontend fe
  bind 127.0.0.1:${port}
  bind 127.0.0.1:${h2Port} proto h2
${actions.join('\n')}
  default_backend be

backend be
  server up 127.0.0.1:${PORTS.upstream}
`,
  );
  const p = startPinned('haproxy', CORES.proxy, 'haproxy', ['-f', conf, '-db'], join(dir, 'stdout.log'));
  await waitPort(port, 10_000, () => p.child.exitCode === null);
  return { spec, port, h2Port, proc: p, stop: () => stop(p) };
}

// ---------------------------------------------------------------- Node's floor

async function startNodeForwarder(spec: ContenderSpec, work: string, slot: number): Promise<Running> {
  const dir = join(work, 'node-forwarder');
  mkdirSync(dir, { recursive: true });
  const port = slotPort(PORTS.nodeForwarder, slot);
  const p = startPinned('node-forwarder', CORES.proxy, NODE, [FORWARDER, String(port), String(PORTS.upstream)], join(dir, 'stdout.log'));
  await waitPort(port, 10_000, () => p.child.exitCode === null);
  return { spec, port, h2Port: undefined, proc: p, stop: () => stop(p) };
}

// ---------------------------------------------------------------- meshext

export const LUA_PARITY = `function envoy_on_request(request_handle)
  local number = tonumber(request_handle:headers():get("x-number"))
  if number == nil then return end
  local parity = number % 2 == 0 and "even" or "odd"
  request_handle:streamInfo():dynamicMetadata():set(
    "envoy.filters.http.lua", "parity", parity)
end
function envoy_on_response(response_handle)
  local meta = response_handle:streamInfo():dynamicMetadata():get(
    "envoy.filters.http.lua")
  if meta == nil then return end
  response_handle:headers():add("x-parity", meta["parity"])
end
`;

const LUA_BODY = `function envoy_on_request(request_handle)
  local body = request_handle:body()
  local n = 0
  if body ~= nil then n = #body:getBytes(0, body:length()) end
  request_handle:streamInfo():dynamicMetadata():set("envoy.filters.http.lua", "bytes", tostring(n))
end
function envoy_on_response(response_handle)
  local meta = response_handle:streamInfo():dynamicMetadata():get("envoy.filters.http.lua")
  if meta == nil then return end
  response_handle:headers():add("x-body-bytes", meta["bytes"])
end
`;

/** The coin flip of the Lua-vs-Wasm memory study: the hash stays below 2^32 as in the u32 Wasm version. */
export const LUA_COINFLIP = `function envoy_on_request(request_handle)
  local parts = {}
  for key, value in pairs(request_handle:headers()) do
    parts[#parts + 1] = key .. ":" .. value .. ";"
  end
  local s = table.concat(parts)
  local h = 0
  for i = 1, #s do h = (h * 31 + s:byte(i)) % 4294967296 end
  if h % 2 == 0 then
    request_handle:respond({[":status"] = "200"}, "heads\\n")
  else
    request_handle:respond({[":status"] = "500"}, "tails\\n")
  end
end
`;

function indent(code: string, n: number): string {
  const pad = ' '.repeat(n);
  return code.split('\n').map((l) => (l ? pad + l : l)).join('\n');
}

/** TrafficExtension YAML for `stack` copies of an extension, ordered by descending priority. */
export function extensionYaml(ext: ExtKind, stack: number, wasmPaths: Partial<Record<string, string>>): string {
  const docs: string[] = [];
  for (let i = 1; i <= stack; i++) {
    const name = `${ext}-${i}`;
    let body: string;
    if (ext.startsWith('lua')) {
      const code = ext === 'lua-parity' ? LUA_PARITY : ext === 'lua-body' ? LUA_BODY : LUA_COINFLIP;
      body = `  lua:\n    inlineCode: |\n${indent(code, 6)}`;
    } else {
      const plugin = ext === 'wasm-parity' ? 'parity' : ext === 'wasm-body' ? 'bodyread' : 'coinflip';
      const path = wasmPaths[plugin];
      if (!path) throw new Error(`the ${plugin} Wasm plugin was not built`);
      // A non-empty pluginConfig: proxy-runtime 0.1.8 traps on an empty configuration.
      // pluginName selects the SDK's root context (registered under the plugin's name).
      body = `  wasm:\n    url: file://${path}\n    pluginName: ${plugin}\n    pluginConfig:\n      bench: ${name}`;
    }
    docs.push(`apiVersion: extensions.istio.io/v1alpha1
kind: TrafficExtension
metadata:
  name: ${name}
  namespace: istio-system
spec:
  selector:
    matchLabels:
      istio: ingressgateway
  phase: AUTHN
  priority: ${1000 - i}
${body}`);
  }
  return docs.join('\n---\n') + '\n';
}

/**
 * Node options for the meshext processes the macro suite and the profile measure. V8's
 * allocation-site pretenuring throws a third to a half of meshext processes, at random and mostly
 * when load resumes after an idle spell (as it does between the bench's turns), into a degraded GC
 * mode that costs 20-50% more CPU per request for minutes (bench/lib/macro.ts GC_DEGRADED_SHARE);
 * without it no process entered that mode (0 of 8; 15 of 44 with it) and the CPU per request was
 * that of the normal mode (34.4-36.6 vs 34-36 µs passthrough). meshext now turns the feature off
 * itself (src/proxy/proxy.ts); the flag stays here so the bench does not depend on that.
 * `--v8-pretenuring` measures meshext with V8's default (it also sets MESHEXT_V8_PRETENURING=1).
 */
export const MESHEXT_NODE_ARGS = ['--no-allocation-site-pretenuring'];

export interface MeshextOptions {
  port: number;
  adminPort: number;
  concurrency: number;
  /** Route to a direct 200 instead of the upstream (memory study: the reply is local anyway). */
  directResponse?: boolean;
  nodeArgs?: string[];
  wasmPaths: Partial<Record<string, string>>;
  tag: string;
  cpus?: string;
}

/** The bootstrap's `lua:` section when a spec forces an engine (none otherwise: meshext's default). */
function luaSection(spec: ContenderSpec): string {
  return spec.luaEngine ? `lua: {engine: ${spec.luaEngine}}\n` : '';
}

export async function startMeshext(spec: ContenderSpec, work: string, o: MeshextOptions): Promise<Running> {
  const dir = join(work, `meshext-${o.tag}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'ext'), { recursive: true });
  const route = o.directResponse ? `directResponse: {status: 200, body: ${JSON.stringify(UPSTREAM_BODY)}}` : 'route: {cluster: up}';
  writeFileSync(
    join(dir, 'bootstrap.yaml'),
    `# meshext under test: one HTTP listener (HTTP/1.1 and HTTP/2 prior knowledge), all to the upstream.
node: {labels: {istio: ingressgateway}}
admin: {address: 127.0.0.1, port: ${o.adminPort}}
prometheus: null
readiness: null
accessLog: null
listeners:
- {name: http, address: 127.0.0.1, port: ${o.port}, protocol: HTTP, routeConfig: default, bufferLimitBytes: 4194304}
routeConfigs:
- name: default
  virtualHosts:
  - name: all
    domains: ["*"]
    routes:
    - match: {prefix: /}
      ${route}
clusters:
- {name: up, endpoints: ["127.0.0.1:${PORTS.upstream}"], maxConnections: 4096}
${luaSection(spec)}`,
  );
  if (spec.ext !== 'none') writeFileSync(join(dir, 'ext', 'extensions.yaml'), extensionYaml(spec.ext, spec.stack, o.wasmPaths));
  const args = [...(o.nodeArgs ?? []), MESHEXT, 'run', '-c', join(dir, 'bootstrap.yaml'), '-e', join(dir, 'ext'), '--concurrency', String(o.concurrency), '-l', 'warn'];
  const p = startPinned('meshext', o.cpus ?? CORES.proxy, NODE, args, join(dir, 'stdout.log'), { cwd: dir });
  try {
    await waitPort(o.port, 60_000, () => p.child.exitCode === null);
    await waitReady(o.adminPort, 30_000);
  } catch (e) {
    await stop(p);
    throw e;
  }
  return { spec, port: o.port, h2Port: o.port, proc: p, adminPort: o.adminPort, stop: () => stop(p, 5000, 'SIGINT') };
}

async function waitReady(adminPort: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const r = await fetch(`http://127.0.0.1:${adminPort}/ready`);
      if (r.ok && (await r.text()).includes('LIVE')) return;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`meshext admin /ready did not say LIVE within ${timeoutMs} ms`);
}

export function meshextLog(work: string, tag: string): string {
  return join(work, `meshext-${tag}`, 'stdout.log');
}

/** Starts a contender for a scenario (the upstream must already run), on the ports of `slot`. */
export async function startContender(spec: ContenderSpec, work: string, wasmPaths: Partial<Record<string, string>>, nodeArgs: string[] = [], slot = 0): Promise<Running> {
  switch (spec.proxy) {
    case 'direct':
      return { spec, port: PORTS.upstream, h2Port: undefined, proc: undefined, stop: async () => {} };
    case 'nginx':
      return startNginx(spec, work, slot);
    case 'haproxy':
      return startHaproxy(spec, work, slot);
    case 'node-net':
      return startNodeForwarder(spec, work, slot);
    case 'meshext':
      return startMeshext(spec, work, { port: slotPort(PORTS.meshext, slot), adminPort: slotPort(PORTS.meshextAdmin, slot), concurrency: 1, wasmPaths, tag: specTag(spec), nodeArgs });
  }
}
