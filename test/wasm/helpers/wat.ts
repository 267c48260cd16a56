/**
 * Generates small WAT plugins whose callbacks log their own name (so tests can check the callback
 * order) and run a test-supplied body. Used for lifecycle, ABI-version and hostile-plugin tests.
 */

export type Callback =
  | 'proxy_on_context_create' | 'proxy_on_vm_start' | 'proxy_on_configure' | 'proxy_on_tick'
  | 'proxy_on_request_headers' | 'proxy_on_request_body' | 'proxy_on_request_trailers'
  | 'proxy_on_response_headers' | 'proxy_on_response_body' | 'proxy_on_response_trailers'
  | 'proxy_on_log' | 'proxy_on_done' | 'proxy_on_delete'
  | 'proxy_on_new_connection' | 'proxy_on_downstream_data' | 'proxy_on_upstream_data'
  | 'proxy_on_downstream_connection_close' | 'proxy_on_upstream_connection_close'
  | 'proxy_on_grpc_receive' | 'proxy_on_grpc_close';

const SIG: Record<Callback, [params: number, result: boolean, dflt: number]> = {
  proxy_on_context_create: [2, false, 0],
  proxy_on_vm_start: [2, true, 1],
  proxy_on_configure: [2, true, 1],
  proxy_on_tick: [1, false, 0],
  proxy_on_request_headers: [3, true, 0],
  proxy_on_request_body: [3, true, 0],
  proxy_on_request_trailers: [2, true, 0],
  proxy_on_response_headers: [3, true, 0],
  proxy_on_response_body: [3, true, 0],
  proxy_on_response_trailers: [2, true, 0],
  proxy_on_log: [1, false, 0],
  proxy_on_done: [1, true, 1],
  proxy_on_delete: [1, false, 0],
  proxy_on_new_connection: [1, true, 0],
  proxy_on_downstream_data: [3, true, 0],
  proxy_on_upstream_data: [3, true, 0],
  proxy_on_downstream_connection_close: [2, false, 0],
  proxy_on_upstream_connection_close: [2, false, 0],
  proxy_on_grpc_receive: [3, false, 0],
  proxy_on_grpc_close: [3, false, 0],
};

export interface WatPluginOptions {
  /** ABI marker export name (or '' for none). */
  marker?: string;
  /** Start functions to export. */
  start?: Array<'_initialize' | 'main' | '_start' | '_start_exit0' | '_start_exit1' | '__main_void'>;
  /** Callback bodies (WAT instructions; must leave an i32 for callbacks with a result). */
  bodies?: Partial<Record<Callback, string>>;
  /** Callbacks to leave out. */
  omit?: Callback[];
  memory?: { min: number; max?: number };
  /** Extra module fields (functions, globals). */
  extra?: string;
  /** Extra import declarations (emitted before any definition). */
  imports?: string;
  /** 0.1.0 arities for the header callbacks. */
  v010?: boolean;
}

const esc = (s: string) => s.replace(/[^a-zA-Z0-9_ ]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`);

export function watPlugin(o: WatPluginOptions = {}): string {
  const marker = o.marker ?? 'proxy_abi_version_0_2_0';
  const names = (Object.keys(SIG) as Callback[]).filter((c) => !o.omit?.includes(c));
  const msgs: string[] = [...names, 'initialize', 'main', 'start', 'main_void'];
  const offset = (m: string) => 1024 + msgs.indexOf(m) * 64;
  const lines = [
    '(module',
    '  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))',
    '  (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))',
    '  (import "env" "proxy_set_effective_context" (func $eff (param i32) (result i32)))',
    '  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))',
    '  (import "env" "proxy_close_stream" (func $close (param i32) (result i32)))',
    '  (import "env" "proxy_send_local_response" (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))',
    '  (import "env" "proxy_get_header_map_value" (func $hget (param i32 i32 i32 i32 i32) (result i32)))',
    '  (import "env" "proxy_set_buffer_bytes" (func $setbuf (param i32 i32 i32 i32 i32) (result i32)))',
    '  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))',
    o.imports ?? '',
    `  (memory (export "memory") ${o.memory?.min ?? 1}${o.memory?.max !== undefined ? ` ${o.memory.max}` : ''})`,
    '  (global $heap (mut i32) (i32.const 8192))',
    '  (global $saved (mut i32) (i32.const 0))',
    '  (func (export "malloc") (param $n i32) (result i32) (local $p i32)',
    '    (local.set $p (global.get $heap)) (global.set $heap (i32.add (global.get $heap) (i32.add (local.get $n) (i32.const 8)))) (local.get $p))',
    '  (func $say (param $p i32) (param $l i32) (drop (call $log (i32.const 2) (local.get $p) (local.get $l))))',
  ];
  for (const m of msgs) lines.push(`  (data (i32.const ${offset(m)}) "${esc(m)}")`);
  if (marker) lines.push(`  (func (export "${marker}"))`);
  for (const s of o.start ?? []) {
    if (s === '_initialize') lines.push(`  (func (export "_initialize") (call $say (i32.const ${offset('initialize')}) (i32.const 10)))`);
    if (s === 'main') lines.push(`  (func (export "main") (param i32 i32) (result i32) (call $say (i32.const ${offset('main')}) (i32.const 4)) (i32.const 0))`);
    if (s === '__main_void') lines.push(`  (func (export "__main_void") (result i32) (call $say (i32.const ${offset('main_void')}) (i32.const 9)) (i32.const 0))`);
    if (s === '_start') lines.push(`  (func (export "_start") (call $say (i32.const ${offset('start')}) (i32.const 5)))`);
    if (s === '_start_exit0') lines.push(`  (func (export "_start") (call $say (i32.const ${offset('start')}) (i32.const 5)) (call $exit (i32.const 0)))`);
    if (s === '_start_exit1') lines.push(`  (func (export "_start") (call $say (i32.const ${offset('start')}) (i32.const 5)) (call $exit (i32.const 1)))`);
  }
  for (const c of names) {
    let [n, hasResult, dflt] = SIG[c];
    if (o.v010 && (c === 'proxy_on_request_headers' || c === 'proxy_on_response_headers')) n = 2;
    const params = Array.from({ length: n }, (_, i) => `(param $a${i} i32)`).join(' ');
    const body = o.bodies?.[c] ?? (hasResult ? `(i32.const ${dflt})` : '');
    lines.push(`  (func (export "${c}") ${params}${hasResult ? ' (result i32)' : ''} (call $say (i32.const ${offset(c)}) (i32.const ${c.length})) ${body})`);
  }
  if (o.extra) lines.push(o.extra);
  lines.push(')');
  return lines.join('\n');
}

/** Log lines that are callback names, without the proxy_on_ prefix. */
export function callbackLog(logs: Array<[number, string]>): string[] {
  return logs.map(([, m]) => m).filter((m) => m.startsWith('proxy_on_') || ['initialize', 'main', 'start', 'main_void'].includes(m)).map((m) => m.replace('proxy_on_', ''));
}
