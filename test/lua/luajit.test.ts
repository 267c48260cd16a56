/**
 * The conformance suite on LuaJIT through the N-API addon. The addon is optional for `npm test`
 * on a machine without libluajit2-5.1-dev: then the suite is skipped with the reason (CI builds it).
 */
import { it } from 'node:test';
import { getLuajitEngine } from '../../src/lua/engines.ts';
import { buildLuajitAddon } from '../../src/lua/native/build.ts';
import { ADDON_PATH, luajitUnavailableReason } from '../../src/lua/luajit-engine.ts';
import { existsSync } from 'node:fs';
import { runConformance } from './conformance.case.ts';

// Build lazily when the library is present but the addon is not (a fresh checkout).
if (!existsSync(ADDON_PATH) && process.env.MESHEXT_LUAJIT !== '0') buildLuajitAddon(() => {});
const engine = getLuajitEngine();
if (!engine) {
  it('LuaJIT conformance', { skip: luajitUnavailableReason() }, () => {});
} else {
  runConformance({ name: 'luajit', engine: async () => engine });
}
