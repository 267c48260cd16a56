/**
 * Component loggers (Envoy logger ids: main, config, http, router, upstream, wasm, lua, fetch, admin)
 * over pino, with levels changeable at runtime through the admin `/logging` endpoint.
 */
import { pino, type Logger } from 'pino';

export const COMPONENTS = ['main', 'config', 'http', 'router', 'upstream', 'connection', 'filter', 'wasm', 'lua', 'fetch', 'admin', 'stats'] as const;
export type Component = (typeof COMPONENTS)[number];
export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'critical' | 'off';

const PINO_LEVEL: Record<Level, string> = { trace: 'trace', debug: 'debug', info: 'info', warn: 'warn', error: 'error', critical: 'fatal', off: 'silent' };

const defaultLevel = (process.env.MESHEXT_LOG_LEVEL as Level | undefined) ?? (process.env.NODE_TEST_CONTEXT ? 'warn' : 'info');
const root = pino({ base: undefined, level: PINO_LEVEL[defaultLevel] ?? 'info', timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ fd: 2, sync: true }));
const loggers = new Map<string, Logger>();
const levels = new Map<string, Level>();

export function logger(component: Component): Logger {
  let l = loggers.get(component);
  if (!l) {
    l = root.child({ component });
    l.level = PINO_LEVEL[levels.get(component) ?? defaultLevel];
    loggers.set(component, l);
  }
  return l;
}

export function isLevel(v: string): v is Level {
  return v in PINO_LEVEL;
}

export function setLevel(component: Component | 'all', level: Level): void {
  const targets = component === 'all' ? COMPONENTS : [component];
  for (const c of targets) {
    levels.set(c, level);
    logger(c).level = PINO_LEVEL[level];
  }
}

export function getLevels(): Record<string, Level> {
  const out: Record<string, Level> = {};
  for (const c of COMPONENTS) out[c] = levels.get(c) ?? defaultLevel;
  return out;
}
