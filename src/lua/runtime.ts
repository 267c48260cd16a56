/**
 * The 'lua' extension runtime: turns a TrafficExtension with `spec.lua.inlineCode` into an HTTP
 * filter factory for one worker. One LuaScript (one Lua state) per extension per worker, shared by
 * every listener of that worker, as Envoy keeps one state per script per worker thread.
 */
import type { ListenerConfig, TrafficExtension } from '../config/types.ts';
import { ConfigError } from '../errors.ts';
import type { HttpFilterFactory } from '../filters/types.ts';
import { logger } from '../observability/log.ts';
import {
  extensionFilterName,
  registerRuntime,
  type ExtensionRuntime,
  type LoadedExtension,
  type WorkerServices,
} from '../proxy/extension-runtime.ts';
import type { LuaEngine } from './engine.ts';
import { selectEngine, type EngineChoice } from './engines.ts';
import { quickOutside } from './subset.ts';
import { LuaScript, type LuaFilterStats } from './script.ts';

export const DEFAULT_LUA_OPTIONS = {
  engine: 'auto' as EngineChoice,
  memoryLimitBytes: 64 * 1024 * 1024,
  instructionBudget: 100_000_000,
  failClosed: false,
  allowUnsafeLibs: false,
};

export const luaRuntime: ExtensionRuntime = {
  kind: 'lua',
  async load(ext: TrafficExtension, services: WorkerServices): Promise<LoadedExtension> {
    const code = ext.spec.lua?.inlineCode;
    const filterName = extensionFilterName(ext);
    const issue = (message: string) =>
      new ConfigError([
        {
          file: ext.origin.file,
          line: ext.origin.line,
          path: 'spec.lua.inlineCode',
          message,
          level: 'error',
          resource: `TrafficExtension ${ext.metadata.name}.${ext.metadata.namespace}`,
        },
      ]);
    if (typeof code !== 'string' || code.length === 0) throw issue('inlineCode is required');
    const o = { ...DEFAULT_LUA_OPTIONS, ...(services.bootstrap.lua ?? {}) };
    let engine: LuaEngine | undefined;
    // 'auto' runs a script inside the compiled subset as JavaScript (no Lua engine crossing), any
    // other on LuaJIT; 'compiled' insists on the subset, 'luajit' and 'wasm' never compile.
    let notCompiled: string | undefined;
    if (o.engine === 'auto' || o.engine === 'compiled') {
      // the compiler and its parser load only for a script that may be inside the subset
      const c = quickOutside(code) ?? (await import('./compiler.ts')).compileLua(code);
      if ('ok' in c && c.ok) engine = (await import('./compiled-engine.ts')).compiledEngine;
      else {
        const why = c as { reason: string; line: number };
        if (o.engine === 'compiled') {
          throw issue(`lua engine 'compiled' was requested but the script is outside the compiled subset: ${why.reason} (script line ${why.line}); use engine 'auto' to run it on LuaJIT`);
        }
        notCompiled = `${why.reason} (script line ${why.line})`;
      }
    }
    try {
      engine ??= await selectEngine(o.engine as EngineChoice);
    } catch (e) {
      throw issue((e as Error).message);
    }
    const log = logger('lua').child({ extension: `${ext.metadata.namespace}.${ext.metadata.name}` });
    let script: LuaScript;
    try {
      script = new LuaScript(engine, code, {
        filterName,
        memoryLimitBytes: o.memoryLimitBytes,
        instructionBudget: o.instructionBudget,
        failClosed: o.failClosed,
        allowUnsafeLibs: o.allowUnsafeLibs,
        clusters: services.clusters,
        log,
        stats: services.stats,
      });
    } catch (e) {
      throw issue((e as Error).message);
    }
    const statsByPrefix = new Map<string, LuaFilterStats>();
    const statsFor = (listener: ListenerConfig): LuaFilterStats => {
      let s = statsByPrefix.get(listener.statPrefix);
      if (!s) {
        // Envoy: <connection manager prefix>lua.<filter stat_prefix>; Istio sets no filter prefix.
        const scope = `http.${listener.statPrefix}.lua`;
        s = { executions: services.stats.counter(`${scope}.executions`), errors: services.stats.counter(`${scope}.errors`), scope };
        statsByPrefix.set(listener.statPrefix, s);
      }
      return s;
    };
    return {
      filterName,
      httpFilterFactory(listener: ListenerConfig): HttpFilterFactory | null {
        const stats = statsFor(listener);
        return { name: filterName, create: (cb) => script.createFilter(cb, stats) };
      },
      networkFilterFactory: () => null,
      describe: () => ({
        kind: 'lua',
        engine: engine.name,
        luaVersion: engine.version,
        ...(notCompiled !== undefined ? { notCompiledBecause: notCompiled } : {}),
        hooks: { request: script.hasHook(0), response: script.hasHook(1) },
        memoryBytes: script.state.memoryUsed(),
        failClosed: o.failClosed,
        instructionBudget: o.instructionBudget,
        memoryLimitBytes: o.memoryLimitBytes,
      }),
      release: () => script.release(),
    };
  },
};

registerRuntime(luaRuntime);
