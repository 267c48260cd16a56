// The Istio "parity" example as a Proxy-Wasm plugin: x-number in the request -> x-parity in the
// response ("even"/"odd"); no x-number (or not a whole decimal number), no header. Same logic as
// the Lua script the bench runs.
//
// Written against the Proxy-Wasm ABI (0.2.0) directly instead of through @solo-io/proxy-runtime:
// the SDK builds ~15 debug-log strings per stream (context create/log/done/delete) whatever the
// host's log level, and converts every header between UTF-8 and UTF-16, which cost ~25 µs per
// request; this plugin makes two host calls per request and never builds a string. It is a
// standard plugin (exports memory, malloc, the ABI marker and three stream callbacks; imports only
// env.proxy_*), so it runs unchanged in Envoy. Built with `--runtime none` (no GC).

@external("env", "proxy_get_header_map_value")
declare function proxy_get_header_map_value(map: i32, keyPtr: usize, keyLen: usize, valPtrPtr: usize, valLenPtr: usize): i32;
@external("env", "proxy_add_header_map_value")
declare function proxy_add_header_map_value(map: i32, keyPtr: usize, keyLen: usize, valPtr: usize, valLen: usize): i32;

const REQUEST_HEADERS: i32 = 0;
const RESPONSE_HEADERS: i32 = 2;
const CONTINUE: i32 = 0;
const EVEN: u32 = 1;
const ODD: u32 = 2;

// Header names and values as UTF-8 bytes in static data (no string conversion at run time).
const X_NUMBER: u8[] = [0x78, 0x2d, 0x6e, 0x75, 0x6d, 0x62, 0x65, 0x72]; // "x-number"
const X_PARITY: u8[] = [0x78, 0x2d, 0x70, 0x61, 0x72, 0x69, 0x74, 0x79]; // "x-parity"
const S_EVEN: u8[] = [0x65, 0x76, 0x65, 0x6e]; // "even"
const S_ODD: u8[] = [0x6f, 0x64, 0x64]; // "odd"

export function proxy_abi_version_0_2_0(): void {}

// The host allocates returned values here. The stub runtime's bump allocator gives the last block
// back on __free, and the plugin frees each value right after reading it, so nothing accumulates.
export function malloc(size: usize): usize {
  return __alloc(size, 0);
}

// Out-parameters of proxy_get_header_map_value (value pointer, value length), in static data.
const OUT: u32[] = [0, 0];

// ---- per-stream verdicts: context id -> EVEN/ODD, open addressing with linear probing.
// Context ids are never 0 (0 is the VM context), so key 0 marks an empty slot.
let table: usize = 0;
let capacity: u32 = 0; // power of two
let count: u32 = 0;

function slotOf(key: u32): u32 {
  return (key * 0x9e3779b1) >>> (32 - ctz(capacity)); // Fibonacci hashing
}

function rawInsert(key: u32, value: u32): void {
  let i = slotOf(key);
  const mask = capacity - 1;
  while (true) {
    const at = table + (<usize>i << 3);
    const k = load<u32>(at);
    if (k == 0 || k == key) {
      if (k == 0) count++;
      store<u32>(at, key);
      store<u32>(at, value, 4);
      return;
    }
    i = (i + 1) & mask;
  }
}

function put(key: u32, value: u32): void {
  if ((count + 1) * 2 > capacity) {
    // Grow at half load. The stub runtime cannot free the old table (it is not the last block):
    // tables only double, so what is left behind stays below the live table's size.
    const oldTable = table;
    const oldCap = capacity;
    capacity = oldCap == 0 ? 64 : oldCap << 1;
    table = __alloc(<usize>capacity << 3, 0);
    memory.fill(table, 0, <usize>capacity << 3);
    count = 0;
    for (let i: u32 = 0; i < oldCap; i++) {
      const k = load<u32>(oldTable + (<usize>i << 3));
      if (k != 0) rawInsert(k, load<u32>(oldTable + (<usize>i << 3), 4));
    }
  }
  rawInsert(key, value);
}

/** Removes `key`; returns its value (0 when absent). Backward-shift deletion keeps probes short. */
function take(key: u32): u32 {
  if (count == 0) return 0;
  const mask = capacity - 1;
  let i = slotOf(key);
  while (true) {
    const at = table + (<usize>i << 3);
    const k = load<u32>(at);
    if (k == 0) return 0;
    if (k == key) break;
    i = (i + 1) & mask;
  }
  const value = load<u32>(table + (<usize>i << 3), 4);
  count--;
  // Shift later entries of the same probe run back into the hole.
  let hole = i;
  let j = (i + 1) & mask;
  while (true) {
    const at = table + (<usize>j << 3);
    const k = load<u32>(at);
    if (k == 0) break;
    const home = slotOf(k);
    // Move k when its home slot is not in the cyclic range (hole, j].
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      const dst = table + (<usize>hole << 3);
      store<u32>(dst, k);
      store<u32>(dst, load<u32>(at, 4), 4);
      hole = j;
    }
    j = (j + 1) & mask;
  }
  store<u32>(table + (<usize>hole << 3), 0);
  return value;
}

// ---- callbacks

export function proxy_on_request_headers(context_id: u32, headers: u32, end_of_stream: u32): i32 {
  const out = OUT.dataStart;
  if (proxy_get_header_map_value(REQUEST_HEADERS, X_NUMBER.dataStart, 8, out, out + 4) != 0) return CONTINUE; // absent
  const p = <usize>load<u32>(out);
  const n = <usize>load<u32>(out, 4);
  // A whole decimal number, optionally negative: its parity is its last digit's.
  let verdict: u32 = 0;
  if (n > 0) {
    let i: usize = load<u8>(p) == 0x2d ? 1 : 0; // '-'
    if (i < n) {
      verdict = EVEN;
      for (; i < n; i++) {
        const c = <u32>load<u8>(p + i) - 0x30;
        if (c > 9) {
          verdict = 0;
          break;
        }
        verdict = (c & 1) != 0 ? ODD : EVEN;
      }
    }
  }
  if (p != 0) __free(p);
  if (verdict != 0) put(context_id, verdict);
  return CONTINUE;
}

export function proxy_on_response_headers(context_id: u32, headers: u32, end_of_stream: u32): i32 {
  const verdict = take(context_id);
  if (verdict == EVEN) proxy_add_header_map_value(RESPONSE_HEADERS, X_PARITY.dataStart, 8, S_EVEN.dataStart, 4);
  else if (verdict == ODD) proxy_add_header_map_value(RESPONSE_HEADERS, X_PARITY.dataStart, 8, S_ODD.dataStart, 3);
  return CONTINUE;
}

// A stream that ends without response headers (reset, local reply before the plugin) drops its verdict here.
export function proxy_on_delete(context_id: u32): void {
  take(context_id);
}
