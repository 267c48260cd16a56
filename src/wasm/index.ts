/** Public surface of the Proxy-Wasm host. Importing it registers the `wasm` ExtensionRuntime. */
export { wasmRuntime, setModuleSource, localModuleSource, loadPlugin, pluginOptions, setWasmRuntimeOverrides, vmEnv, type ModuleSource } from './runtime.ts';
export { WasmPlugin, type PluginOptions, type PluginState } from './plugin.ts';
export { WasmVm, VM_FAILED, ProcExit, CpuBudgetExceeded, type VmOptions, type VmServices, type PluginSpec } from './vm.ts';
export { WasmHttpFilter, WasmNetworkFilter } from './filter.ts';
export { compilePlugin, detectAbi, exportCompiledModules, seedCompiledModule, clearModuleCache, WasmLoadError, type CompiledPlugin } from './module.ts';
export { instrument, UnsupportedWasmFeature, MemoryCapError } from './instrument.ts';
export { hostFunctions, registerForeignFunction, type ForeignFunction } from './host.ts';
export { wasiFunctions } from './wasi.ts';
export { decodePairs, encodePairs } from './pairs.ts';
export { SharedState, sharedState } from './shared.ts';
export { Status, MapType, BufferType, StreamType, MetricType } from './abi.ts';
