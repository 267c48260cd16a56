// Cost probe for the micro-benchmarks: on each request's headers the plugin makes N calls of
// proxy_get_header_map_value("x-number"), N being its plugin configuration (a decimal number read
// in proxy_on_configure). One host call costs (pass with N = 64 - pass with N = 0) / 64; the rest
// of the pass (VM entry, context bookkeeping, the filter chain) cancels out. Written against the
// ABI directly and built with `--runtime none`, like parity.as, so the probe measures the host.

@external("env", "proxy_get_header_map_value")
declare function proxy_get_header_map_value(map: i32, keyPtr: usize, keyLen: usize, valPtrPtr: usize, valLenPtr: usize): i32;
@external("env", "proxy_get_buffer_bytes")
declare function proxy_get_buffer_bytes(bufferType: i32, start: usize, maxSize: usize, ptrPtr: usize, sizePtr: usize): i32;

const REQUEST_HEADERS: i32 = 0;
const PLUGIN_CONFIGURATION: i32 = 7;
const CONTINUE: i32 = 0;
const X_NUMBER: u8[] = [0x78, 0x2d, 0x6e, 0x75, 0x6d, 0x62, 0x65, 0x72]; // "x-number"
const OUT: u32[] = [0, 0];
let calls: u32 = 0;

export function proxy_abi_version_0_2_0(): void {}

// The stub runtime's bump allocator takes the last block back on __free: values freed right after
// the call leave nothing behind.
export function malloc(size: usize): usize {
  return __alloc(size, 0);
}

export function proxy_on_configure(root_id: u32, size: u32): u32 {
  calls = 0;
  const out = OUT.dataStart;
  if (size == 0 || proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, size, out, out + 4) != 0) return 1;
  const p = <usize>load<u32>(out);
  const n = <usize>load<u32>(out, 4);
  for (let i: usize = 0; i < n; i++) {
    const digit = <u32>load<u8>(p + i) - 0x30;
    if (digit <= 9) calls = calls * 10 + digit;
  }
  if (p != 0) __free(p);
  return 1;
}

export function proxy_on_request_headers(context_id: u32, headers: u32, end_of_stream: u32): i32 {
  const out = OUT.dataStart;
  for (let i: u32 = 0; i < calls; i++) {
    if (proxy_get_header_map_value(REQUEST_HEADERS, X_NUMBER.dataStart, 8, out, out + 4) == 0) {
      const p = <usize>load<u32>(out);
      if (p != 0) __free(p);
    }
  }
  return CONTINUE;
}
