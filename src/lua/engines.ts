/**
 * Engine selection: LuaJIT (our N-API addon, exact Envoy dialect) when it is built, otherwise Lua
 * 5.4 in WebAssembly. The addon's absence is reported once per process, with the command to build it.
 */
import { logger } from '../observability/log.ts';
import type { LuaEngine } from './engine.ts';
import { createLuajitEngine, luajitUnavailableReason } from './luajit-engine.ts';

export type EngineChoice = 'auto' | 'compiled' | 'luajit' | 'wasm' | 'wasmoon';

let wasmoon: Promise<LuaEngine> | undefined;
let reported = false;

export function getWasmoonEngine(): Promise<LuaEngine> {
  // Imported on first use: wasmoon's glue (~150 KB of source, kept twice in the heap) and its
  // engine module cost every worker about half a MiB, and LuaJIT workers never need them.
  wasmoon ??= import('./wasmoon-engine.ts').then((m) => m.createWasmoonEngine());
  return wasmoon;
}

export function getLuajitEngine(): LuaEngine | undefined {
  return createLuajitEngine();
}

export async function selectEngine(choice: EngineChoice): Promise<LuaEngine> {
  if (choice === 'wasm' || choice === 'wasmoon') return getWasmoonEngine();
  const jit = createLuajitEngine();
  if (jit) return jit;
  if (choice === 'luajit') {
    throw new Error(`lua engine 'luajit' was requested but ${luajitUnavailableReason()}`);
  }
  if (!reported) {
    reported = true;
    logger('lua').warn(`LuaJIT engine unavailable (${luajitUnavailableReason()}); Lua scripts run on Lua 5.4 in WebAssembly (wasmoon)`);
  }
  return getWasmoonEngine();
}
