// The "coin flip" filter of the Lua-vs-Wasm memory study cited by Istio's docs: concatenate all
// request headers as "k:v;", rolling hash h = h*31 + byte, then a local reply 200 ("heads") or
// 500 ("tails"). The hash is a u32, as the Lua version keeps it below 2^32 too.
export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context, send_local_response, GrpcStatusValues, HeaderPair } from "@solo-io/proxy-runtime";

class CoinRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new Coin(context_id, this);
  }
}

class Coin extends Context {
  constructor(context_id: u32, root_context: CoinRoot) {
    super(context_id, root_context);
  }
  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const headers = stream_context.headers.request.get_headers();
    let s = "";
    for (let i = 0; i < headers.length; i++) {
      const p = headers[i];
      s += String.UTF8.decode(p.key) + ":" + String.UTF8.decode(p.value) + ";";
    }
    const bytes = Uint8Array.wrap(String.UTF8.encode(s));
    let h: u32 = 0;
    for (let i = 0; i < bytes.length; i++) h = h * 31 + bytes[i];
    const heads = (h & 1) == 0;
    send_local_response(heads ? 200 : 500, "coin_flip", String.UTF8.encode(heads ? "heads\n" : "tails\n"), new Array<HeaderPair>(), GrpcStatusValues.Unknown);
    return FilterHeadersStatusValues.StopIteration;
  }
}

registerRootContext((context_id: u32) => { return new CoinRoot(context_id); }, "coinflip");
