// Header mutation + config: adds the plugin configuration as a response header, copies two request
// headers into one response header, removes a request header, and counts requests (metrics).
export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context, Counter, log, LogLevelValues } from "@solo-io/proxy-runtime";

class HeadersRoot extends RootContext {
  requests: Counter;
  constructor(context_id: u32) {
    super(context_id);
    this.requests = new Counter("test_plugin_requests_total");
  }
  createContext(context_id: u32): Context {
    return new Headers(context_id, this);
  }
}

class Headers extends Context {
  seen: string = "";
  constructor(context_id: u32, root_context: HeadersRoot) {
    super(context_id, root_context);
  }
  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const a1 = stream_context.headers.request.get("x-a");
    const b1 = stream_context.headers.request.get("x-b");
    this.seen = a1 + "|" + b1;
    stream_context.headers.request.remove("x-remove-me");
    stream_context.headers.request.add("x-added-by-wasm", "yes");
    (this.root_context as HeadersRoot).requests.increment(1);
    return FilterHeadersStatusValues.Continue;
  }
  onResponseHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-config", this.root_context.getConfiguration());
    stream_context.headers.response.add("x-seen", this.seen);
    return FilterHeadersStatusValues.Continue;
  }
  onLog(): void {
    log(LogLevelValues.info, "onLog " + this.seen);
  }
}

registerRootContext((context_id: u32) => { return new HeadersRoot(context_id); }, "headers");
