// Body-reading plugin for the 1 MiB upload scenario: buffers the whole request body, reads it into
// the VM once (as a filter inspecting a payload would), and reports its size in a response header.
// Like the Lua and nginx versions, it copies the body into the extension and takes its length.
export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, FilterDataStatusValues, stream_context } from "@solo-io/proxy-runtime";
import { get_buffer_bytes, BufferTypeValues } from "@solo-io/proxy-runtime/runtime";

class BodyRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new BodyRead(context_id, this);
  }
}

class BodyRead extends Context {
  size: u32 = 0;
  constructor(context_id: u32, root_context: BodyRoot) {
    super(context_id, root_context);
  }
  onRequestBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    if (!end_of_stream) return FilterDataStatusValues.StopIterationAndBuffer;
    const b = Uint8Array.wrap(get_buffer_bytes(BufferTypeValues.HttpRequestBody, 0, body_buffer_length as u32));
    this.size = b.length;
    return FilterDataStatusValues.Continue;
  }
  onResponseHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-body-bytes", this.size.toString());
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new BodyRoot(context_id); }, "bodyread");
