// Local replies and an HTTP callout: `x-deny` ⇒ 403 local reply from on_request_headers;
// `/callout` ⇒ asks cluster "auth" and continues (200) or answers 401 from the callout callback;
// response header `x-upstream-fail` ⇒ 502 local reply from on_response_headers.
export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context, send_local_response, continue_request, HeaderPair, Headers, GrpcStatusValues, log, LogLevelValues } from "@solo-io/proxy-runtime";

function header(k: string, v: string): HeaderPair {
  return new HeaderPair(String.UTF8.encode(k), String.UTF8.encode(v));
}

class AuthRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new Auth(context_id, this);
  }
}

function onAuthResponse(origin: Context, headers: u32, body_size: usize, trailers: u32): void {
  const status = stream_context.headers.http_callback.get(":status");
  log(LogLevelValues.info, "callout answered " + status + " headers=" + headers.toString() + " body=" + body_size.toString());
  if (status == "200") {
    stream_context.headers.request.add("x-auth-status", status);
    continue_request();
  } else {
    const h: Headers = [];
    h.push(header("x-auth", "failed"));
    send_local_response(401, "auth failed", String.UTF8.encode("unauthorized"), h, GrpcStatusValues.Unauthenticated);
  }
}

class Auth extends Context {
  constructor(context_id: u32, root_context: AuthRoot) {
    super(context_id, root_context);
  }
  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    if (stream_context.headers.request.get("x-deny") != "") {
      const h: Headers = [];
      h.push(header("x-reason", "deny header"));
      send_local_response(403, "denied by plugin", String.UTF8.encode("forbidden"), h, -1);
      return FilterHeadersStatusValues.StopIteration;
    }
    const path = stream_context.headers.request.get(":path");
    if (path.startsWith("/callout")) {
      const h: Headers = [];
      h.push(header(":method", "GET"));
      h.push(header(":path", "/check" + path.substring(8)));
      h.push(header(":authority", "auth"));
      const r = this.root_context.httpCall("auth", h, new ArrayBuffer(0), [], 1000, this, onAuthResponse);
      log(LogLevelValues.info, "callout dispatched " + r.toString());
      return FilterHeadersStatusValues.StopIteration;
    }
    return FilterHeadersStatusValues.Continue;
  }
  onResponseHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    if (stream_context.headers.response.get("x-upstream-fail") != "") {
      send_local_response(502, "upstream marked failure", String.UTF8.encode("bad gateway from plugin"), [], -1);
      return FilterHeadersStatusValues.StopIteration;
    }
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new AuthRoot(context_id); }, "auth");
