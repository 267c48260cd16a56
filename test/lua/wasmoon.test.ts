/** The conformance suite on Lua 5.4 in WebAssembly (wasmoon). */
import { getWasmoonEngine } from '../../src/lua/engines.ts';
import { runConformance } from './conformance.case.ts';

runConformance({ name: 'wasmoon', engine: getWasmoonEngine });
