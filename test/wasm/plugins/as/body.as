// Bodies: buffers the whole request body (StopIterationAndBuffer until end_of_stream), then echoes
// it and its size in response headers; logs the complete response body; reads a property.
export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, FilterDataStatusValues, stream_context, log, LogLevelValues } from "@solo-io/proxy-runtime";
import { get_buffer_bytes, get_buffer_status, get_property, BufferTypeValues } from "@solo-io/proxy-runtime/runtime";

class BodyRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new Body(context_id, this);
  }
}

class Body extends Context {
  reqBody: string = "";
  calls: u32 = 0;
  constructor(context_id: u32, root_context: BodyRoot) {
    super(context_id, root_context);
  }
  onRequestBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    this.calls++;
    if (!end_of_stream) return FilterDataStatusValues.StopIterationAndBuffer;
    const st = get_buffer_status(BufferTypeValues.HttpRequestBody);
    const b = get_buffer_bytes(BufferTypeValues.HttpRequestBody, 0, body_buffer_length as u32);
    this.reqBody = String.UTF8.decode(b) + "/" + st.length.toString();
    return FilterDataStatusValues.Continue;
  }
  onResponseHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-request-body", this.reqBody);
    stream_context.headers.response.add("x-body-calls", this.calls.toString());
    stream_context.headers.response.add("x-path", String.UTF8.decode(get_property("request\0path")));
    return FilterHeadersStatusValues.Continue;
  }
  onResponseBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    if (!end_of_stream) return FilterDataStatusValues.StopIterationAndBuffer;
    const b = get_buffer_bytes(BufferTypeValues.HttpResponseBody, 0, body_buffer_length as u32);
    log(LogLevelValues.info, "response body: " + String.UTF8.decode(b));
    return FilterDataStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new BodyRoot(context_id); }, "body");
