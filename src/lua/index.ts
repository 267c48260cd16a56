/**
 * Public surface of the Lua extension engine. Importing './runtime.ts' registers the 'lua'
 * ExtensionRuntime; the rest is for tests, benchmarks and tools.
 */
export { luaRuntime, DEFAULT_LUA_OPTIONS } from './runtime.ts';
export { selectEngine, getWasmoonEngine, getLuajitEngine, type EngineChoice } from './engines.ts';
export { LuaScript, type LuaScriptOptions, type LuaFilterStats } from './script.ts';
export { LuaHttpFilter, State as LuaFilterState } from './filter.ts';
export type { LuaEngine, LuaState, LuaValue, HostFunction, ResumeResult } from './engine.ts';
