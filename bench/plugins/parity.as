// The Istio "parity" example as a Proxy-Wasm plugin: x-number in the request -> x-parity in the
// response ("even"/"odd"); no x-number, no header. Same logic as the Lua script the bench runs.
export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context } from "@solo-io/proxy-runtime";

class ParityRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new Parity(context_id, this);
  }
}

class Parity extends Context {
  // The request hook's verdict, kept in the stream context (the Wasm analogue of Lua's dynamic
  // metadata; '' means "no x-number").
  parity: string = "";
  constructor(context_id: u32, root_context: ParityRoot) {
    super(context_id, root_context);
  }
  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const v = stream_context.headers.request.get("x-number");
    if (v.length == 0) return FilterHeadersStatusValues.Continue;
    // Parse digits by hand: the header may be any text, and only a whole number counts.
    let n: i64 = 0;
    let neg = false;
    for (let i = 0; i < v.length; i++) {
      const c = v.charCodeAt(i);
      if (i == 0 && c == 45) { neg = true; continue; }
      if (c < 48 || c > 57) return FilterHeadersStatusValues.Continue;
      n = n * 10 + (c - 48);
    }
    if (neg) n = -n;
    this.parity = n % 2 == 0 ? "even" : "odd";
    return FilterHeadersStatusValues.Continue;
  }
  onResponseHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    if (this.parity.length > 0) stream_context.headers.response.add("x-parity", this.parity);
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new ParityRoot(context_id); }, "parity");
