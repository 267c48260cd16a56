/**
 * Public surface of Wasm module distribution (see docs/fetch.md for how the runtime uses it).
 */
export { createModuleFetcher, fetchContextFor, ignoresResourceVersion } from './fetcher.ts';
export type { FetchContext, FetchedModule, ModuleFetcher, ModuleFetcherOptions } from './fetcher.ts';
export { watchUntilAvailable } from './watch.ts';
export type { ModuleWatch, WatchOptions } from './watch.ts';
export { FetchError, FetchErrorCode } from './errors.ts';
export type { FetchResult, FetchStep } from './errors.ts';
export {
  ALLOW_STAT_PREFIX,
  DENY_BODY,
  DENY_DETAILS,
  DENY_STAT_PREFIX,
  createDenyAllHttpFilterFactory,
  createDenyAllNetworkFilterFactory,
  deniesOnFetchFailure,
} from './deny.ts';
export { pushModule } from './push.ts';
export type { PushOptions, PushResult } from './push.ts';
export { LAYOUTS } from './layouts.ts';
export type { Layout } from './layouts.ts';
export { SsrfGuard } from './ssrf.ts';
export { parseModuleUrl } from './reference.ts';
export { fetcherOptionsFrom, parseGoDuration } from './options.ts';
export { closeSharedFetchers, createFetchModuleSource, sharedModuleFetcher, watchExtensionModule } from './module-source.ts';
export type { FetchModuleSource, SourceServices } from './module-source.ts';
