// A plugin that does nothing but return Continue from both header hooks: the floor cost of one
// Proxy-Wasm extension (context creation, two VM calls, context teardown).
export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues } from "@solo-io/proxy-runtime";

class NoopRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new Noop(context_id, this);
  }
}

class Noop extends Context {
  constructor(context_id: u32, root_context: NoopRoot) {
    super(context_id, root_context);
  }
  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    return FilterHeadersStatusValues.Continue;
  }
  onResponseHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new NoopRoot(context_id); }, "noop");
