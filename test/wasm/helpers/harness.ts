/**
 * A WAT "hostcall harness": a guest module generated from the ABI signature list that imports
 * every host function with its exact wasm signature (0.2.1 + 0.1.0 extras + WASI under both module
 * names) and exports a wrapper `t_<name>` calling it. Tests call the wrappers with a chosen current
 * context, so each host function is exercised through the real wasm boundary (i32 sign, i64 BigInt,
 * re-derived memory views) with normal and hostile arguments.
 */
import type { WasmPlugin } from '../../../src/wasm/plugin.ts';
import type { Context } from '../../../src/wasm/vm.ts';
import { buildWat } from './build.ts';

type Sig = readonly [mod: string, name: string, params: string, results: string];

const i = (n: number) => Array(n).fill('i32').join(' ');
export const SIGNATURES: Sig[] = [
  ['env', 'proxy_log', i(3), 'i32'],
  ['env', 'proxy_get_log_level', i(1), 'i32'],
  ['env', 'proxy_get_current_time_nanoseconds', i(1), 'i32'],
  ['env', 'proxy_get_status', i(3), 'i32'],
  ['env', 'proxy_set_tick_period_milliseconds', i(1), 'i32'],
  ['env', 'proxy_get_property', i(4), 'i32'],
  ['env', 'proxy_set_property', i(4), 'i32'],
  ['env', 'proxy_get_header_map_value', i(5), 'i32'],
  ['env', 'proxy_add_header_map_value', i(5), 'i32'],
  ['env', 'proxy_replace_header_map_value', i(5), 'i32'],
  ['env', 'proxy_remove_header_map_value', i(3), 'i32'],
  ['env', 'proxy_get_header_map_pairs', i(3), 'i32'],
  ['env', 'proxy_set_header_map_pairs', i(3), 'i32'],
  ['env', 'proxy_get_header_map_size', i(2), 'i32'],
  ['env', 'proxy_get_buffer_status', i(3), 'i32'],
  ['env', 'proxy_get_buffer_bytes', i(5), 'i32'],
  ['env', 'proxy_set_buffer_bytes', i(5), 'i32'],
  ['env', 'proxy_send_local_response', i(8), 'i32'],
  ['env', 'proxy_continue_stream', i(1), 'i32'],
  ['env', 'proxy_close_stream', i(1), 'i32'],
  ['env', 'proxy_continue_request', '', 'i32'],
  ['env', 'proxy_continue_response', '', 'i32'],
  ['env', 'proxy_clear_route_cache', '', 'i32'],
  ['env', 'proxy_get_configuration', i(2), 'i32'],
  ['env', 'proxy_get_shared_data', i(5), 'i32'],
  ['env', 'proxy_set_shared_data', i(5), 'i32'],
  ['env', 'proxy_register_shared_queue', i(3), 'i32'],
  ['env', 'proxy_resolve_shared_queue', i(5), 'i32'],
  ['env', 'proxy_enqueue_shared_queue', i(3), 'i32'],
  ['env', 'proxy_dequeue_shared_queue', i(3), 'i32'],
  ['env', 'proxy_define_metric', i(4), 'i32'],
  ['env', 'proxy_increment_metric', 'i32 i64', 'i32'],
  ['env', 'proxy_record_metric', 'i32 i64', 'i32'],
  ['env', 'proxy_get_metric', i(2), 'i32'],
  ['env', 'proxy_http_call', i(10), 'i32'],
  ['env', 'proxy_grpc_call', i(12), 'i32'],
  ['env', 'proxy_grpc_stream', i(9), 'i32'],
  ['env', 'proxy_grpc_send', i(4), 'i32'],
  ['env', 'proxy_grpc_cancel', i(1), 'i32'],
  ['env', 'proxy_grpc_close', i(1), 'i32'],
  ['env', 'proxy_set_effective_context', i(1), 'i32'],
  ['env', 'proxy_done', '', 'i32'],
  ['env', 'proxy_call_foreign_function', i(6), 'i32'],
  ['env', 'emscripten_notify_memory_growth', i(1), ''],
  ['env', 'pthread_equal', i(2), 'i32'],
  ['wasi_snapshot_preview1', 'fd_write', i(4), 'i32'],
  ['wasi_snapshot_preview1', 'fd_read', i(4), 'i32'],
  ['wasi_snapshot_preview1', 'fd_seek', 'i32 i64 i32 i32', 'i32'],
  ['wasi_snapshot_preview1', 'fd_close', i(1), 'i32'],
  ['wasi_snapshot_preview1', 'fd_fdstat_get', i(2), 'i32'],
  ['wasi_snapshot_preview1', 'fd_prestat_get', i(2), 'i32'],
  ['wasi_snapshot_preview1', 'path_open', 'i32 i32 i32 i32 i32 i64 i64 i32 i32', 'i32'],
  ['wasi_snapshot_preview1', 'environ_sizes_get', i(2), 'i32'],
  ['wasi_snapshot_preview1', 'environ_get', i(2), 'i32'],
  ['wasi_snapshot_preview1', 'args_sizes_get', i(2), 'i32'],
  ['wasi_snapshot_preview1', 'args_get', i(2), 'i32'],
  ['wasi_snapshot_preview1', 'clock_time_get', 'i32 i64 i32', 'i32'],
  ['wasi_snapshot_preview1', 'clock_res_get', i(2), 'i32'],
  ['wasi_snapshot_preview1', 'random_get', i(2), 'i32'],
  ['wasi_snapshot_preview1', 'sched_yield', '', 'i32'],
  ['wasi_snapshot_preview1', 'poll_oneoff', i(4), 'i32'],
  ['wasi_snapshot_preview1', 'proc_exit', i(1), ''],
  ['wasi_unstable', 'fd_write', i(4), 'i32'],
  ['wasi_unstable', 'random_get', i(2), 'i32'],
];

/** Wrapper export name: t_<name>, or tu_<name> for the wasi_unstable copies. */
export function wrapperName(mod: string, name: string): string {
  return `${mod === 'wasi_unstable' ? 'tu' : 't'}_${name}`;
}

export function harnessWat(abiMarker = 'proxy_abi_version_0_2_1'): string {
  const lines: string[] = ['(module'];
  SIGNATURES.forEach(([mod, name, params, results], k) => {
    const p = params ? ` (param ${params})` : '';
    const r = results ? ` (result ${results})` : '';
    lines.push(`  (import "${mod}" "${name}" (func $f${k}${p}${r}))`);
  });
  lines.push(`
  (memory (export "memory") 4)
  ;; allocator: bump from 256 KiB; mode 0 normal, 1 returns 0, 2 returns an out-of-bounds pointer
  (global $bump (mut i32) (i32.const 131072))
  (global $mode (export "mode") (mut i32) (i32.const 0))
  (global $allocs (export "allocs") (mut i32) (i32.const 0))
  (global $zero_allocs (export "zero_allocs") (mut i32) (i32.const 0))
  (global $queue_ready (export "queue_ready") (mut i32) (i32.const 0))
  (global $last_token (export "last_token") (mut i32) (i32.const 0))
  (global $call_args (export "call_args") (mut i32) (i32.const 0))
  (global $call_pairs_status (export "call_pairs_status") (mut i32) (i32.const -1))
  (global $call_body_status (export "call_body_status") (mut i32) (i32.const -1))
  (global $ticks (export "ticks") (mut i32) (i32.const 0))
  (func (export "malloc") (param $n i32) (result i32) (local $p i32)
    (global.set $allocs (i32.add (global.get $allocs) (i32.const 1)))
    (if (i32.eqz (local.get $n)) (then (global.set $zero_allocs (i32.add (global.get $zero_allocs) (i32.const 1)))))
    (if (i32.eq (global.get $mode) (i32.const 1)) (then (return (i32.const 0))))
    (if (i32.eq (global.get $mode) (i32.const 2)) (then (return (i32.const 0x7fffff00))))
    ;; mode 3: a hostile allocator that tries to grow the request headers while the host copies them
    (if (i32.eq (global.get $mode) (i32.const 3))
      (then (global.set $call_pairs_status (call $f${SIGNATURES.findIndex((s) => s[1] === 'proxy_add_header_map_value')} (i32.const 0) (i32.const 0) (i32.const 8) (i32.const 0) (i32.const 8)))))
    (local.set $p (global.get $bump))
    (global.set $bump (i32.and (i32.add (i32.add (global.get $bump) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "${abiMarker}"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_tick") (param i32) (global.set $ticks (i32.add (global.get $ticks) (i32.const 1))))
  (func (export "proxy_on_queue_ready") (param i32 i32)
    (global.set $queue_ready (i32.add (global.get $queue_ready) (i32.const 1)))
    (global.set $last_token (local.get 1)))
  ;; records (headers, body, trailers) and reads map 6 and buffer 4 during the callback
  (func (export "proxy_on_http_call_response") (param $root i32) (param $token i32) (param $h i32) (param $b i32) (param $t i32)
    (global.set $last_token (local.get $token))
    (global.set $call_args (i32.or (i32.or (i32.shl (local.get $h) (i32.const 16)) (i32.shl (local.get $b) (i32.const 8))) (local.get $t)))
    (global.set $call_pairs_status (call $f${SIGNATURES.findIndex((s) => s[1] === 'proxy_get_header_map_pairs')} (i32.const 6) (i32.const 64) (i32.const 68)))
    (global.set $call_body_status (call $f${SIGNATURES.findIndex((s) => s[1] === 'proxy_get_buffer_bytes')} (i32.const 4) (i32.const 0) (i32.const 100) (i32.const 72) (i32.const 76))))
  (global $grpc_event (export "grpc_event") (mut i32) (i32.const 0))
  (func (export "proxy_on_grpc_receive") (param $root i32) (param $token i32) (param $len i32)
    (global.set $last_token (local.get $token))
    (global.set $grpc_event (i32.add (i32.const 1000) (local.get $len)))
    (global.set $call_body_status (call $f${SIGNATURES.findIndex((s) => s[1] === 'proxy_get_buffer_bytes')} (i32.const 5) (i32.const 0) (i32.const 100) (i32.const 72) (i32.const 76))))
  (func (export "proxy_on_grpc_close") (param $root i32) (param $token i32) (param $status i32)
    (global.set $last_token (local.get $token))
    (global.set $grpc_event (i32.add (i32.const 2000) (local.get $status))))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))`);
  SIGNATURES.forEach(([mod, name, params, results], k) => {
    const ps = params ? params.split(' ') : [];
    const p = ps.length ? ` (param ${params})` : '';
    const r = results ? ` (result ${results})` : '';
    const gets = ps.map((_, j) => `(local.get ${j})`).join(' ');
    lines.push(`  (func (export "${wrapperName(mod, name)}")${p}${r} (call $f${k} ${gets}))`);
  });
  lines.push(')');
  return lines.join('\n');
}

export function buildHarness(abiMarker?: string): Promise<Uint8Array> {
  return buildWat(harnessWat(abiMarker));
}

/** Helpers over a loaded harness plugin. */
export class Harness {
  readonly p: WasmPlugin;
  #scratch = 4096;
  constructor(p: WasmPlugin) {
    this.p = p;
  }
  get vm() {
    return this.p.vm!;
  }
  get exports(): Record<string, any> {
    return this.vm.instance!.exports as Record<string, any>;
  }
  global(name: string): number {
    return (this.exports[name] as WebAssembly.Global).value as number;
  }
  setGlobal(name: string, v: number): void {
    (this.exports[name] as WebAssembly.Global).value = v;
  }
  /** Writes bytes/string in the scratch area (below the allocator's region); returns [ptr, len]. */
  put(data: string | Uint8Array): [number, number] {
    const b = typeof data === 'string' ? new TextEncoder().encode(data) : data;
    const ptr = this.#scratch;
    this.vm.u8().set(b, ptr);
    this.#scratch += (b.length + 8) & ~7;
    if (this.#scratch > 120_000) this.#scratch = 4096;
    return [ptr, b.length];
  }
  /** A zeroed 8-byte out slot. */
  out(): number {
    const [p] = this.put(new Uint8Array(8));
    return p;
  }
  u32(ptr: number): number {
    return this.vm.dv().getUint32(ptr, true);
  }
  u64(ptr: number): bigint {
    return this.vm.dv().getBigUint64(ptr, true);
  }
  /** Reads the (ptr, len) written at two out slots. */
  bytesAt(ptrPtr: number, lenPtr: number): Uint8Array {
    const p = this.u32(ptrPtr);
    const l = this.u32(lenPtr);
    return this.vm.u8().slice(p, p + l);
  }
  stringAt(ptrPtr: number, lenPtr: number): string {
    return new TextDecoder().decode(this.bytesAt(ptrPtr, lenPtr));
  }
  /** Calls host function `name` (through its wasm wrapper) with `ctx` current. */
  call(name: string, ctx: Context | null, ...args: Array<number | bigint>): number {
    const fn = this.exports[name.startsWith('tu_') || name.startsWith('t_') ? name : `t_${name}`];
    if (typeof fn !== 'function') throw new Error(`no wrapper for ${name}`);
    return this.vm.callArgs(fn, ctx, args) as number;
  }
}
