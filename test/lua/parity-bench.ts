/**
 * Measures the parity script's cost per request (request + response hook) on each engine with
 * the test driver, minus the driver's own cost, and the memory per Lua state. Not a test:
 * `node test/lua/parity-bench.ts [N]`.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { HeaderMap } from '../../src/filters/header-map.ts';
import type { LuaEngine } from '../../src/lua/engine.ts';
import { getLuajitEngine, getWasmoonEngine } from '../../src/lua/engines.ts';
import { FakeStream, harness } from './driver.ts';

const code = (parse(readFileSync(new URL('../../examples/extensions/parity.yaml', import.meta.url), 'utf8')) as { spec: { lua: { inlineCode: string } } }).spec.lua.inlineCode;
const N = Number(process.argv[2] ?? 20_000);
const REQ: [string, string][] = [[':method', 'GET'], [':path', '/'], [':authority', 'x'], ['x-number', '42'], ['user-agent', 'bench'], ['accept', '*/*'], ['x-request-id', 'abc']];
const RESP: [string, string][] = [[':status', '200'], ['content-type', 'text/plain'], ['content-length', '2']];

/** CPU µs of fn; the minimum over rounds, since parallel load on the machine only adds time. */
function cpuUs(fn: () => void, rounds = 5): number {
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    const c0 = process.cpuUsage();
    fn();
    const c = process.cpuUsage(c0);
    best = Math.min(best, c.user + c.system);
  }
  return best;
}

function driverOnly(): number {
  const noop = { decodeHeaders: () => 0, encodeHeaders: () => 0, onDestroy: () => {} };
  return cpuUs(() => {
    for (let i = 0; i < N; i++) {
      const s = new FakeStream();
      s.filter = noop as never;
      s.decodeHeaders(HeaderMap.fromPairs(REQ), true);
      s.encodeHeaders(HeaderMap.fromPairs(RESP), true);
      s.destroy();
    }
  }) / N;
}

function parity(engine: LuaEngine, budget: number): number {
  const h = harness(engine, code, { instructionBudget: budget });
  const run = () => {
    for (let i = 0; i < N; i++) {
      const s = h.stream();
      s.decodeHeaders(HeaderMap.fromPairs(REQ), true);
      s.encodeHeaders(HeaderMap.fromPairs(RESP), true);
      if (s.respHeaders!.get('x-parity') !== 'even') throw new Error('wrong answer');
      s.destroy();
    }
  };
  run(); // warm-up
  const us = cpuUs(run) / N;
  h.close();
  return us;
}

function perState(engine: LuaEngine): number {
  const hs = [];
  for (let i = 0; i < 20; i++) {
    const h = harness(engine, code);
    for (let j = 0; j < 10; j++) {
      const s = h.stream();
      s.decodeHeaders(HeaderMap.fromPairs(REQ), true);
      s.encodeHeaders(HeaderMap.fromPairs(RESP), true);
      s.destroy();
    }
    h.script.state.collect();
    hs.push(h);
  }
  const kb = hs.reduce((a, h) => a + h.script.state.memoryUsed(), 0) / hs.length / 1024;
  for (const h of hs) h.close();
  return kb;
}

const engines: LuaEngine[] = [await getWasmoonEngine()];
const jit = getLuajitEngine();
if (jit) engines.push(jit);
const base = driverOnly();
console.log(`driver alone: ${base.toFixed(2)} µs/request (subtracted below)`);
for (const e of engines) {
  for (const budget of [10_000_000, 0]) {
    const us = parity(e, budget);
    console.log(`${e.name} (${e.version}) budget=${budget ? 'on' : 'off'}: ${us.toFixed(2)} µs/request total, ${(us - base).toFixed(2)} µs for the Lua filter`);
  }
  console.log(`${e.name}: ${perState(e).toFixed(1)} KB Lua memory per state (prelude + parity, after 10 requests)`);
}
