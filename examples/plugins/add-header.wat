;; A minimal Proxy-Wasm plugin (ABI 0.2.1) written in WebAssembly text: it adds
;; `x-meshext-wasm: added by a Proxy-Wasm plugin` to every response. The demo compiles it with
;; wabt at start; a real plugin would come from an SDK (Rust, Go, C++, AssemblyScript).
(module
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "x-meshext-wasm")
  (data (i32.const 32) "added by a Proxy-Wasm plugin")
  (global $heap (mut i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_1"))
  ;; Bump allocator: the host allocates only for data it hands to the plugin (none here).
  (func (export "malloc") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  ;; map type 2 = HTTP response headers; returns Action::Continue (0).
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add_header (i32.const 2) (i32.const 16) (i32.const 14) (i32.const 32) (i32.const 28)))
    (i32.const 0)))
