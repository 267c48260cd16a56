/*
 * A Proxy-Wasm ABI 0.2.1 plugin in plain C (wasm32-wasi reactor, wasi-libc), exercising the host
 * calls the AssemblyScript SDK does not make: get_log_level, set_buffer_bytes, shared data with
 * CAS, shared queues, foreign functions, get_header_map_size, properties with the C++ SDK's
 * NUL-terminated segments, and WASI (printf → fd_write, getenv → environ, time → clock_time_get).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ctype.h>

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

IMPORT(proxy_log) int proxy_log(uint32_t level, const char *msg, size_t len);
IMPORT(proxy_get_log_level) int proxy_get_log_level(uint32_t *level);
IMPORT(proxy_get_buffer_bytes) int proxy_get_buffer_bytes(uint32_t type, uint32_t start, uint32_t max, char **ptr, size_t *len);
IMPORT(proxy_set_buffer_bytes) int proxy_set_buffer_bytes(uint32_t type, uint32_t start, uint32_t len, const char *data, size_t size);
IMPORT(proxy_get_header_map_size) int proxy_get_header_map_size(uint32_t type, size_t *size);
IMPORT(proxy_add_header_map_value) int proxy_add_header_map_value(uint32_t type, const char *k, size_t kl, const char *v, size_t vl);
IMPORT(proxy_get_property) int proxy_get_property(const char *path, size_t pl, char **ptr, size_t *len);
IMPORT(proxy_get_shared_data) int proxy_get_shared_data(const char *k, size_t kl, char **ptr, size_t *len, uint32_t *cas);
IMPORT(proxy_set_shared_data) int proxy_set_shared_data(const char *k, size_t kl, const char *v, size_t vl, uint32_t cas);
IMPORT(proxy_register_shared_queue) int proxy_register_shared_queue(const char *n, size_t nl, uint32_t *token);
IMPORT(proxy_enqueue_shared_queue) int proxy_enqueue_shared_queue(uint32_t token, const char *v, size_t vl);
IMPORT(proxy_dequeue_shared_queue) int proxy_dequeue_shared_queue(uint32_t token, char **ptr, size_t *len);
IMPORT(proxy_call_foreign_function) int proxy_call_foreign_function(const char *n, size_t nl, const char *a, size_t al, char **ptr, size_t *len);

static char greeting[64];
static char vm_config[64];
static uint32_t queue_token;
static char last_queue_item[128];

static void addh(uint32_t map, const char *k, const char *v) { proxy_add_header_map_value(map, k, strlen(k), v, strlen(v)); }

EXPORT(proxy_abi_version_0_2_1) void abi_marker(void) {}
EXPORT(proxy_on_context_create) void on_context_create(uint32_t ctx, uint32_t root) {}

EXPORT(proxy_on_vm_start) uint32_t on_vm_start(uint32_t root, uint32_t len) {
  char *p = 0; size_t n = 0;
  if (proxy_get_buffer_bytes(6, 0, len, &p, &n) == 0 && n < sizeof vm_config) { memcpy(vm_config, p, n); vm_config[n] = 0; free(p); }
  printf("vm config: %s\n", vm_config);
  return 1;
}

EXPORT(proxy_on_configure) uint32_t on_configure(uint32_t root, uint32_t len) {
  const char *g = getenv("GREETING");
  snprintf(greeting, sizeof greeting, "%s", g ? g : "none");
  if (proxy_register_shared_queue("cq", 2, &queue_token) != 0) return 0;
  return time(NULL) > 1600000000 ? 1 : 0; /* WASI clock must be sane */
}

EXPORT(proxy_on_request_headers) uint32_t on_request_headers(uint32_t ctx, uint32_t n, uint32_t eos) {
  char buf[64];
  size_t size = 0;
  proxy_get_header_map_size(0, &size);
  snprintf(buf, sizeof buf, "%zu", size);
  addh(0, "x-map-size", buf);
  /* C++ SDK style: every segment NUL-terminated */
  static const char path[] = "request\0path\0";
  char *p = 0; size_t pl = 0;
  if (proxy_get_property(path, sizeof path - 1, &p, &pl) == 0) {
    snprintf(buf, sizeof buf, "%.*s", (int)pl, p);
    free(p);
    addh(0, "x-prop-path", buf);
    proxy_enqueue_shared_queue(queue_token, buf, strlen(buf));
  }
  /* shared counter with CAS: retry on mismatch */
  for (int attempt = 0; attempt < 5; attempt++) {
    char *v = 0; size_t vl = 0; uint32_t cas = 0; long hits = 0;
    if (proxy_get_shared_data("hits", 4, &v, &vl, &cas) == 0 && v) { char tmp[32]; snprintf(tmp, sizeof tmp, "%.*s", (int)vl, v); hits = atol(tmp); free(v); }
    snprintf(buf, sizeof buf, "%ld", hits + 1);
    if (proxy_set_shared_data("hits", 4, buf, strlen(buf), cas) == 0) break;
  }
  addh(0, "x-hits", buf);
  return 0;
}

EXPORT(proxy_on_request_body) uint32_t on_request_body(uint32_t ctx, uint32_t len, uint32_t eos) {
  if (!eos) return 1; /* StopIterationAndBuffer */
  char *p = 0; size_t n = 0;
  if (proxy_get_buffer_bytes(0, 0, len, &p, &n) != 0 || !p) return 0;
  for (size_t i = 0; i < n; i++) p[i] = (char)toupper((unsigned char)p[i]);
  proxy_set_buffer_bytes(0, 0, len, p, n);           /* replace */
  proxy_set_buffer_bytes(0, 0, 0, "<", 1);           /* prepend */
  proxy_set_buffer_bytes(0, 0x7fffffff, 0, ">", 1);  /* append (Go SDK convention) */
  free(p);
  return 0;
}

EXPORT(proxy_on_response_headers) uint32_t on_response_headers(uint32_t ctx, uint32_t n, uint32_t eos) {
  char buf[64];
  uint32_t level = 99;
  proxy_get_log_level(&level);
  snprintf(buf, sizeof buf, "%u", level);
  addh(2, "x-log-level", buf);
  addh(2, "x-greeting", greeting);
  static const char input[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
  char *out = 0; size_t ol = 0;
  int st = proxy_call_foreign_function("compress", 8, input, sizeof input - 1, &out, &ol);
  snprintf(buf, sizeof buf, "%d:%zu", st, ol);
  free(out);
  addh(2, "x-compress", buf);
  st = proxy_call_foreign_function("no_such_fn", 10, input, 1, &out, &ol);
  snprintf(buf, sizeof buf, "%d", st);
  addh(2, "x-unknown-ff", buf);
  addh(2, "x-queue", last_queue_item);
  return 0;
}

EXPORT(proxy_on_queue_ready) void on_queue_ready(uint32_t root, uint32_t token) {
  char *p = 0; size_t n = 0;
  while (proxy_dequeue_shared_queue(token, &p, &n) == 0) {
    snprintf(last_queue_item, sizeof last_queue_item, "%.*s", (int)n, p);
    free(p);
  }
}

EXPORT(proxy_on_log) void on_log(uint32_t ctx) {}
EXPORT(proxy_on_done) uint32_t on_done(uint32_t ctx) { return 1; }
EXPORT(proxy_on_delete) void on_delete(uint32_t ctx) {}
