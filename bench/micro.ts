/**
 * Micro-benchmarks of the request path's building blocks (tinybench), so regressions show before
 * the macro suite runs: header map operations, the Proxy-Wasm pairs codec, a full filter-chain pass
 * with 0/1/4 no-op filters, and the same pass with one Lua filter and one Wasm filter (the hook /
 * host-call cost is the difference from the no-op pass). Engines that are not available yet are
 * reported as n/a.
 *
 *   node bench/micro.ts [--quick] [--json]
 */
import { Bench } from 'tinybench';
import { defaultBootstrap } from '../src/config/bootstrap.ts';
import { loadExtensionObjects } from '../src/config/extensions.ts';
import type { ListenerConfig } from '../src/config/types.ts';
import { DataBuffer } from '../src/filters/data-buffer.ts';
import { HeaderMap } from '../src/filters/header-map.ts';
import { StreamInfo } from '../src/filters/stream-info.ts';
import { HeadersStatus, type HttpFilter, type HttpFilterCallbacks, type HttpFilterFactory, type RouteInfo } from '../src/filters/types.ts';
import { StatsStore } from '../src/observability/stats.ts';
import { getRuntime, type WorkerServices } from '../src/proxy/extension-runtime.ts';
import { FilterManager, type DownstreamCodec, type StreamContext } from '../src/proxy/filter-manager.ts';
import { Clusters } from '../src/proxy/upstream.ts';
import { Http1Parser, type Http1Events } from '../src/proxy/http1/parser.ts';
import { serializeHeaders } from '../src/proxy/http1/wire.ts';
import { decodePairs, encodePairsInto, pairsSize } from '../src/wasm/pairs.ts';
import { LUA_PARITY } from './lib/contenders.ts';
import type { MicroRow } from './lib/micro-runner.ts';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const json = argv.includes('--json');
const wasmPaths = JSON.parse(process.env.BENCH_WASM_PATHS ?? '{}') as Record<string, string>;

/** Passes per task call: the manager completes streams in a microtask, so each call awaits once. */
const BATCH = 64;

const REQUEST: Array<[string, string]> = [
  [':method', 'GET'],
  [':path', '/api/v1/items?page=2'],
  [':authority', 'shop.example.com'],
  [':scheme', 'http'],
  ['user-agent', 'curl/8.5.0'],
  ['accept', '*/*'],
  ['x-request-id', '5e0c2b8e-6d0c-4c55-9d1e-2f6b8d3f1a77'],
  ['x-forwarded-for', '10.0.0.12'],
  ['x-number', '7'],
  ['cookie', 'session=abc123; theme=dark'],
];
const RESPONSE: Array<[string, string]> = [
  [':status', '200'],
  ['content-type', 'text/plain'],
  ['content-length', '30'],
  ['date', 'Tue, 01 Dec 2026 21:00:00 GMT'],
];

const rows: MicroRow[] = [];
const pending: Array<{ group: string; name: string; perCall: number; fn: () => unknown }> = [];

function note(group: string, name: string, why: string): void {
  rows.push({ group, name, ns: NaN, rme: NaN, opsPerSec: NaN, note: why });
}

const bench = new Bench({ time: quick ? 150 : 600, warmupTime: quick ? 50 : 200 });
function add(group: string, name: string, fn: () => unknown, perCall = 1): void {
  const id = `${group}\u0000${name}`;
  bench.add(id, fn as () => void);
  pending.push({ group, name, perCall, fn });
}

// ---------------------------------------------------------------- header map
const base = HeaderMap.fromPairs(REQUEST);
let sink = 0;
add('header map (10 headers)', 'fromPairs (build a request map)', () => {
  sink += HeaderMap.fromPairs(REQUEST).size;
});
add('header map (10 headers)', 'get, present (x-number)', () => {
  sink += base.get('x-number')!.length;
});
add('header map (10 headers)', 'get, absent', () => {
  sink += base.get('x-absent') === undefined ? 1 : 0;
});
add('header map (10 headers)', 'add + remove', () => {
  base.add('x-added', 'v');
  sink += base.remove('x-added');
});
add('header map (10 headers)', 'set (replace existing)', () => {
  base.set('accept', 'text/html');
});
add('header map (10 headers)', 'forEach over all', () => {
  base.forEach((n, v) => {
    sink += n.length + v.length;
  });
});
add('header map (10 headers)', 'clone', () => {
  sink += base.clone().size;
});

// ---------------------------------------------------------------- pairs codec
const pairBuf = new Uint8Array(4096);
const encodedLen = encodePairsInto(base.names, base.values, pairBuf, 0);
add('Proxy-Wasm pairs codec', 'encode 10 headers (size + encodeInto)', () => {
  sink += pairsSize(base.names, base.values);
  sink += encodePairsInto(base.names, base.values, pairBuf, 0);
});
add('Proxy-Wasm pairs codec', 'decode 10 headers', () => {
  sink += decodePairs(pairBuf, 0, encodedLen)!.length;
});

// ---------------------------------------------------------------- HTTP/1.1 codec
// The heads every proxied request costs: one request parsed downstream, one response parsed
// upstream, and both heads serialized again.
const H1 = 'HTTP/1.1 codec';
const rawRequest = Buffer.from(
  'GET /api/v1/items?page=2 HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n' +
    'X-Request-Id: 5e0c2b8e-6d0c-4c55-9d1e-2f6b8d3f1a77\r\nX-Number: 7\r\nCookie: session=abc123; theme=dark\r\n\r\n',
  'latin1',
);
const rawResponse = Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 30\r\nDate: Tue, 01 Dec 2026 21:00:00 GMT\r\n\r\nhello from the bench upstream\n', 'latin1');
const h1Events: Http1Events = {
  onHead: (h) => {
    sink += h.names.length;
  },
  onBody: (b) => {
    sink += b.length;
  },
  onComplete: () => {},
};
const requestParser = new Http1Parser(true, h1Events);
const responseParser = new Http1Parser(false, h1Events);
add(H1, 'parse a request head (7 headers)', () => requestParser.execute(rawRequest));
add(H1, 'parse a response (4 headers + 30-byte body)', () => responseParser.execute(rawResponse));
const requestMap = HeaderMap.fromPairs(REQUEST);
const responseMap = HeaderMap.fromPairs(RESPONSE);
add(H1, 'serialize request headers (upstream)', () => {
  sink += serializeHeaders(requestMap, true, true).text.length;
});
add(H1, 'serialize response headers (downstream)', () => {
  sink += serializeHeaders(responseMap, false, false).text.length;
});

// ---------------------------------------------------------------- filter chain
const route: RouteInfo = { name: 'all', cluster: 'up', filterMetadata: {} };
const ctx: StreamContext = { bufferLimit: 1 << 20, resolveRoute: () => route, onStreamComplete: () => {} };
const codec: DownstreamCodec = {
  encodeHeaders: (h) => {
    sink += h.size;
  },
  encodeData: (d: DataBuffer) => {
    sink += d.length;
    return true;
  },
  encodeTrailers: () => {},
  resetStream: () => {},
  readDisable: () => {},
};
/** The terminal stands in for the router: answers every request at once with the fixed response. */
const terminal: HttpFilterFactory = {
  name: 'bench.terminal',
  // The manager's callbacks object also starts the response (what the router uses); the public
  // filter interface does not expose it, hence the cast.
  create: (cb: HttpFilterCallbacks): HttpFilter => ({
    decodeHeaders: () => {
      (cb as HttpFilterCallbacks & { encodeHeaders(h: HeaderMap, end: boolean): void }).encodeHeaders(HeaderMap.fromPairs(RESPONSE), true);
      return HeadersStatus.StopIteration;
    },
  }),
};
const noop: HttpFilterFactory = {
  name: 'bench.noop',
  create: (): HttpFilter => ({ decodeHeaders: () => HeadersStatus.Continue, encodeHeaders: () => HeadersStatus.Continue }),
};

function chainTask(factories: HttpFilterFactory[], check?: (fm: FilterManager) => void): () => Promise<void> {
  return async () => {
    for (let i = 0; i < BATCH; i++) {
      const fm = new FilterManager(ctx, codec, new StreamInfo(), factories);
      fm.decodeHeaders(HeaderMap.fromPairs(REQUEST), true);
      check?.(fm);
    }
    await null;
  };
}

for (const n of [0, 1, 4]) add('filter chain pass (request + response headers)', `${n} no-op filter${n === 1 ? '' : 's'}`, chainTask([...Array<HttpFilterFactory>(n).fill(noop), terminal]), BATCH);

// ---------------------------------------------------------------- Lua and Wasm, through their runtimes
async function extensionFactory(kind: 'lua' | 'wasm', spec: Record<string, unknown>, lua?: Record<string, unknown>): Promise<HttpFilterFactory & { engine?: string }> {
  if (kind === 'lua') await import('../src/lua/runtime.ts');
  else await import('../src/wasm/runtime.ts');
  const runtime = getRuntime(kind);
  if (!runtime) throw new Error(`the ${kind} runtime did not register`);
  const res = loadExtensionObjects([
    { apiVersion: 'extensions.istio.io/v1alpha1', kind: 'TrafficExtension', metadata: { name: `bench-${kind}`, namespace: 'istio-system' }, spec: { phase: 'AUTHN', ...spec } },
  ]);
  const ext = res.set.extensions[0];
  if (!ext) throw new Error(res.issues.map((i) => i.message).join('; ') || 'extension rejected');
  const bootstrap = defaultBootstrap({
    listeners: [{ name: 'http', address: '127.0.0.1', port: 0, protocol: 'HTTP', routeConfig: 'default' }],
    routeConfigs: [{ name: 'default', virtualHosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'up' } }] }] }],
    clusters: [{ name: 'up', endpoints: ['127.0.0.1:9'] }],
    prometheus: null,
    readiness: null,
    ...(lua ? { lua } : {}),
  });
  const services: WorkerServices = { workerId: 0, bootstrap, clusters: new Clusters([]), stats: new StatsStore(), secrets: [] };
  const loaded = await runtime.load(ext, services);
  const f = loaded.httpFilterFactory(bootstrap.listeners[0] as ListenerConfig);
  if (!f) throw new Error('no HTTP filter factory');
  const engine = loaded.describe().engine;
  return { name: f.name, create: (cb) => f.create(cb), engine: typeof engine === 'string' ? engine : undefined };
}

/** The chain's response must carry x-parity: odd, or the measurement is of a failing filter. */
function parityCheck(): (fm: FilterManager) => void {
  let checked = false;
  return (fm) => {
    if (checked) return;
    checked = true;
    const v = fm.encoder.headers?.get('x-parity');
    if (v !== 'odd') throw new Error(`x-parity was ${v ?? 'absent'}`);
  };
}

const extGroup = 'filter chain pass with one extension (parity)';
try {
  const lua = await extensionFactory('lua', { lua: { inlineCode: LUA_PARITY } });
  const task = chainTask([lua, terminal], parityCheck());
  await task();
  add(extGroup, `Lua parity (2 hooks, ${lua.engine ?? 'engine?'})`, task, BATCH);
} catch (e) {
  note(extGroup, 'Lua parity (2 hooks)', (e as Error).message.slice(0, 120));
}
// Each engine explicitly, one copy and 16 stacked copies (16 scripts, 16 Lua states: the macro
// suite's x16 cell), so the per-copy cost of the Lua filter shows apart from the chain's.
for (const engine of ['compiled', 'luajit', 'wasm'] as const) {
  for (const n of [1, 16]) {
    const name = `Lua parity ${n === 1 ? '' : `x${n} `}(${engine === 'wasm' ? 'wasmoon' : engine}, explicit)`;
    try {
      const copies: HttpFilterFactory[] = [];
      for (let i = 0; i < n; i++) copies.push(await extensionFactory('lua', { lua: { inlineCode: LUA_PARITY } }, { engine }));
      const task = chainTask([...copies, terminal], parityCheck());
      await task();
      add(extGroup, name, task, BATCH);
    } catch (e) {
      note(extGroup, name, (e as Error).message.slice(0, 120));
    }
  }
}
try {
  if (!wasmPaths.parity) throw new Error('parity plugin not built');
  const wasm = await extensionFactory('wasm', { wasm: { url: `file://${wasmPaths.parity}`, pluginName: 'parity', pluginConfig: { bench: 'micro' } } });
  const task = chainTask([wasm, terminal], parityCheck());
  await task();
  add(extGroup, 'Wasm parity (2 VM calls + host calls)', task, BATCH);
} catch (e) {
  note(extGroup, 'Wasm parity (2 VM calls + host calls)', (e as Error).message.slice(0, 120));
}
try {
  // 16 stacked copies, each its own TrafficExtension and VM (the macro suite's "x16" cell): the
  // per-copy overhead is what the stacked target is about.
  if (!wasmPaths.parity) throw new Error('parity plugin not built');
  const copies: HttpFilterFactory[] = [];
  for (let i = 0; i < 16; i++) copies.push(await extensionFactory('wasm', { wasm: { url: `file://${wasmPaths.parity}`, pluginName: 'parity', pluginConfig: { bench: 'micro' } } }));
  const task = chainTask([...copies, terminal], parityCheck());
  await task();
  add(extGroup, 'Wasm parity x16 (16 VMs, 32 VM calls + host calls)', task, BATCH);
} catch (e) {
  note(extGroup, 'Wasm parity x16 (16 VMs, 32 VM calls + host calls)', (e as Error).message.slice(0, 120));
}
try {
  if (!wasmPaths.noop) throw new Error('noop plugin not built');
  const wasm = await extensionFactory('wasm', { wasm: { url: `file://${wasmPaths.noop}`, pluginName: 'noop', pluginConfig: { bench: 'micro' } } });
  const task = chainTask([wasm, terminal]);
  await task();
  add(extGroup, 'Wasm no-op plugin (2 VM calls, no host call)', task, BATCH);
} catch (e) {
  note(extGroup, 'Wasm no-op plugin (2 VM calls, no host call)', (e as Error).message.slice(0, 120));
}

// ---------------------------------------------------------------- one boundary crossing
// One Wasm host call and one Lua hook on their own, as differences between two chain passes
// measured in the same run (what the pass costs besides the crossing cancels out).
const crossGroup = 'one crossing (difference of two chain passes)';
const derived: Array<{ name: string; plus: string; minus: string; groupMinus: string; per: number }> = [];
// The baseline for the Lua hook: the same pass without the extension, measured in this group.
add(crossGroup, 'pass without an extension', chainTask([terminal]), BATCH);
try {
  if (!wasmPaths.hostcall) throw new Error('hostcall plugin not built');
  for (const calls of [0, 64]) {
    const wasm = await extensionFactory('wasm', { wasm: { url: `file://${wasmPaths.hostcall}`, pluginName: 'hostcall', pluginConfig: { calls } } });
    const task = chainTask([wasm, terminal]);
    await task();
    add(crossGroup, `Wasm probe pass, ${calls} host calls`, task, BATCH);
  }
  derived.push({ name: 'one Wasm host call (proxy_get_header_map_value)', plus: 'Wasm probe pass, 64 host calls', minus: 'Wasm probe pass, 0 host calls', groupMinus: crossGroup, per: 64 });
} catch (e) {
  note(crossGroup, 'one Wasm host call (proxy_get_header_map_value)', (e as Error).message.slice(0, 120));
}
for (const engine of ['compiled', 'luajit', 'wasm'] as const) {
  const label = engine === 'wasm' ? 'wasmoon' : engine;
  try {
    const lua = await extensionFactory('lua', { lua: { inlineCode: 'function envoy_on_request(handle) end' } }, { engine });
    const task = chainTask([lua, terminal]);
    await task();
    add(crossGroup, `Lua pass, one empty envoy_on_request (${label})`, task, BATCH);
    derived.push({ name: `one Lua hook (${label})`, plus: `Lua pass, one empty envoy_on_request (${label})`, minus: 'pass without an extension', groupMinus: crossGroup, per: 1 });
  } catch (e) {
    note(crossGroup, `one Lua hook (${label})`, (e as Error).message.slice(0, 120));
  }
}

// Warm every chain task before measuring: the first task of a group would otherwise carry the
// JIT warm-up of the whole filter manager and look slower than the ones after it.
for (const p of pending) for (let i = 0; i < (quick ? 20 : 100); i++) await p.fn();
await bench.run();
for (const t of bench.tasks) {
  const [group, name] = t.name.split('\u0000') as [string, string];
  const p = pending.find((x) => x.group === group && x.name === name)!;
  const r = t.result as { latency?: { mean: number; rme: number }; throughput?: { mean: number }; error?: Error } | undefined;
  if (!r || r.error || !r.latency) {
    note(group, name, r?.error?.message.slice(0, 120) ?? 'no result');
    continue;
  }
  // tinybench reports ms per call; a call may run a batch of passes.
  const ns = (r.latency.mean * 1e6) / p.perCall;
  rows.push({ group, name, ns, rme: r.latency.rme, opsPerSec: 1e9 / ns });
}
for (const d of derived) {
  const plus = rows.find((r) => r.group === crossGroup && r.name === d.plus);
  const minus = rows.find((r) => r.group === d.groupMinus && r.name === d.minus);
  if (!plus || !minus || !Number.isFinite(plus.ns) || !Number.isFinite(minus.ns)) {
    note(crossGroup, d.name, 'a pass it is derived from did not run');
    continue;
  }
  const ns = (plus.ns - minus.ns) / d.per;
  rows.push({ group: crossGroup, name: d.name, ns, rme: Math.hypot(plus.rme * plus.ns, minus.rme * minus.ns) / d.per / Math.abs(ns), opsPerSec: 1e9 / ns });
}
const order = (g: string) => ['header map (10 headers)', 'Proxy-Wasm pairs codec', H1, 'filter chain pass (request + response headers)', extGroup, crossGroup].indexOf(g);
rows.sort((a, b) => order(a.group) - order(b.group));
if (json) console.log(`MICROJSON ${JSON.stringify(rows)}`);
else for (const r of rows) console.log(`${r.group} | ${r.name} | ${Number.isFinite(r.ns) ? `${r.ns.toFixed(0)} ns` : `n/a (${r.note})`}`);
if (sink === -1) console.log('');
process.exit(0);
