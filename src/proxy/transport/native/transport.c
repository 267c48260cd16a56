/*
 * meshext's native socket transport: plaintext TCP on the worker's own libuv loop, for the
 * HTTP/1.1 data path (see docs/adr-native-transport.md and src/proxy/transport/native-socket.ts).
 *
 * Why: node:net puts a stream layer (Readable/Writable, a WriteWrap object per write, nextTick
 * bookkeeping) between libuv and the proxy that costs about a third of Node's per-request floor.
 * Here a read is one JS call with (connection id, byte count) into a buffer JS owns, and a write
 * is uv_try_write with a copy queued only for what the kernel did not take.
 *
 * Threading: one instance per JS environment (main thread or worker), on that environment's loop;
 * connection ids are per instance. Everything runs on the loop's thread.
 */
#define NAPI_VERSION 8
#include <errno.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

/* Events delivered to the JS event callback as (kind, id, value). */
enum { EV_ACCEPT = 1, EV_CONNECT = 2, EV_EOF = 3, EV_ERROR = 4, EV_DRAIN = 5, EV_SHUTDOWN = 6 };

typedef struct instance instance;

typedef struct conn {
  uv_tcp_t tcp; /* first: the handle pointer is the conn pointer */
  instance* inst;
  int32_t id;
  int closing;
  int shut;
  size_t queued; /* bytes held by pending uv_write requests */
  uv_connect_t connect_req;
  uv_shutdown_t shutdown_req;
} conn;

typedef struct write_req {
  uv_write_t req;
  conn* c;
  size_t len;
  char data[];
} write_req;

struct instance {
  napi_env env;
  uv_loop_t* loop;
  napi_ref on_read;
  napi_ref on_event;
  napi_ref resource;
  napi_async_context actx;
  napi_ref read_ref;
  char* read_buf;
  size_t read_len;
  napi_ref write_ref;
  char* write_buf;
  size_t write_len;
  conn** conns;
  int32_t cap;
  int32_t* free_ids;
  int32_t nfree;
  int32_t open; /* handles not yet closed (cleanup waits for them) */
  int tearing_down;
  napi_async_cleanup_hook_handle cleanup;
};

/* ------------------------------------------------------------------ ids */

static int32_t id_alloc(instance* in, conn* c) {
  if (in->nfree == 0) {
    int32_t old = in->cap;
    int32_t next = old == 0 ? 64 : old * 2;
    conn** t = realloc(in->conns, sizeof(conn*) * (size_t)next);
    if (t == NULL) return -1;
    in->conns = t;
    int32_t* f = realloc(in->free_ids, sizeof(int32_t) * (size_t)next);
    if (f == NULL) return -1;
    in->free_ids = f;
    for (int32_t i = old; i < next; i++) in->conns[i] = NULL;
    for (int32_t i = next - 1; i >= old; i--) in->free_ids[in->nfree++] = i;
    in->cap = next;
  }
  int32_t id = in->free_ids[--in->nfree];
  in->conns[id] = c;
  return id;
}

static conn* id_get(instance* in, int32_t id) {
  if (id < 0 || id >= in->cap) return NULL;
  conn* c = in->conns[id];
  return c != NULL && !c->closing ? c : NULL;
}

/* ------------------------------------------------------------------ calls into JS */

static void call_js(instance* in, napi_ref fn_ref, size_t argc, int32_t a, int32_t b, double c) {
  if (in->tearing_down) return;
  napi_env env = in->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value fn, recv, argv[3], result;
  napi_get_reference_value(env, fn_ref, &fn);
  napi_get_global(env, &recv);
  napi_create_int32(env, a, &argv[0]);
  napi_create_int32(env, b, &argv[1]);
  napi_create_double(env, c, &argv[2]);
  /* make_callback (not call_function): microtasks and nextTicks run after it, as after any
   * I/O callback in Node. */
  napi_status st = napi_make_callback(env, in->actx, recv, fn, argc, argv, &result);
  if (st == napi_pending_exception) {
    napi_value exc;
    napi_get_and_clear_last_exception(env, &exc);
    napi_fatal_exception(env, exc);
  }
  napi_close_handle_scope(env, scope);
}

static void emit(instance* in, int kind, int32_t id, double value) {
  call_js(in, in->on_event, 3, kind, id, value);
}

/* ------------------------------------------------------------------ libuv callbacks */

static void on_closed(uv_handle_t* h) {
  conn* c = (conn*)h;
  instance* in = c->inst;
  if (c->id >= 0 && c->id < in->cap && in->conns[c->id] == c) {
    in->conns[c->id] = NULL;
    in->free_ids[in->nfree++] = c->id;
  }
  free(c);
  if (--in->open == 0 && in->tearing_down && in->cleanup != NULL) {
    napi_async_cleanup_hook_handle hook = in->cleanup;
    in->cleanup = NULL;
    napi_remove_async_cleanup_hook(hook);
  }
}

static void close_conn(conn* c) {
  if (c->closing) return;
  c->closing = 1;
  uv_close((uv_handle_t*)&c->tcp, on_closed);
}

static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  instance* in = ((conn*)h)->inst;
  /* One buffer per instance: JS consumes each read before the next one is made. */
  buf->base = in->read_buf;
  buf->len = in->read_len;
}

static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  conn* c = (conn*)s;
  if (c->closing) return;
  if (nread > 0) {
    call_js(c->inst, c->inst->on_read, 2, c->id, (int32_t)nread, 0);
  } else if (nread == UV_EOF) {
    emit(c->inst, EV_EOF, c->id, 0);
  } else if (nread < 0) {
    uv_read_stop(s);
    emit(c->inst, EV_ERROR, c->id, (double)nread);
  }
}

static void on_write(uv_write_t* req, int status) {
  write_req* w = (write_req*)req;
  conn* c = w->c;
  c->queued -= w->len;
  free(w);
  if (c->closing) return;
  if (status < 0) {
    emit(c->inst, EV_ERROR, c->id, (double)status);
    return;
  }
  if (c->queued == 0) emit(c->inst, EV_DRAIN, c->id, 0);
}

static void on_shutdown(uv_shutdown_t* req, int status) {
  conn* c = (conn*)req->handle;
  if (c->closing) return;
  /* A failed FIN (the peer reset first) is reported as done: the socket closes either way. */
  emit(c->inst, EV_SHUTDOWN, c->id, (double)status);
}

static void on_connect(uv_connect_t* req, int status) {
  conn* c = (conn*)req->handle;
  if (c->closing) return;
  emit(c->inst, EV_CONNECT, c->id, (double)status);
}

static conn* conn_new(instance* in) {
  conn* c = calloc(1, sizeof(conn));
  if (c == NULL) return NULL;
  c->inst = in;
  c->id = id_alloc(in, c);
  if (c->id < 0) {
    free(c);
    return NULL;
  }
  return c;
}

static void on_connection(uv_stream_t* server, int status) {
  conn* l = (conn*)server;
  instance* in = l->inst;
  if (l->closing) return;
  if (status < 0) {
    emit(in, EV_ERROR, l->id, (double)status);
    return;
  }
  conn* c = conn_new(in);
  if (c == NULL) return;
  uv_tcp_init(in->loop, &c->tcp);
  in->open++;
  if (uv_accept(server, (uv_stream_t*)&c->tcp) != 0) {
    close_conn(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  emit(in, EV_ACCEPT, l->id, c->id);
}

/* ------------------------------------------------------------------ JS helpers */

static instance* get_instance(napi_env env) {
  instance* in = NULL;
  napi_get_instance_data(env, (void**)&in);
  return in;
}

#define ARGS(n)                                                         \
  size_t argc = n;                                                      \
  napi_value argv[n > 0 ? n : 1];                                       \
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);                 \
  instance* in = get_instance(env);                                     \
  if (in == NULL) {                                                     \
    napi_throw_error(env, "MESHEXT_ERR_TRANSPORT", "transport not initialized"); \
    return NULL;                                                        \
  }

static int32_t arg_i32(napi_env env, napi_value v) {
  int32_t x = -1;
  napi_get_value_int32(env, v, &x);
  return x;
}

static napi_value num(napi_env env, double x) {
  napi_value v;
  napi_create_double(env, x, &v);
  return v;
}

static int parse_addr(napi_env env, napi_value host, int32_t port, struct sockaddr_storage* out) {
  char ip[64];
  size_t len = 0;
  if (napi_get_value_string_latin1(env, host, ip, sizeof ip, &len) != napi_ok) return UV_EINVAL;
  if (uv_ip4_addr(ip, port, (struct sockaddr_in*)out) == 0) return 0;
  if (uv_ip6_addr(ip, port, (struct sockaddr_in6*)out) == 0) return 0;
  return UV_EINVAL;
}

/* ------------------------------------------------------------------ exported functions */

/* init(readBuffer: ArrayBuffer, writeBuffer: ArrayBuffer, onRead(id, n), onEvent(kind, id, value)) */
static napi_value js_init(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  instance* in = get_instance(env);
  if (in == NULL || argc < 4) {
    napi_throw_error(env, "MESHEXT_ERR_TRANSPORT", "transport instance missing");
    return NULL;
  }
  if (in->on_read != NULL) {
    napi_throw_error(env, "MESHEXT_ERR_TRANSPORT", "transport already initialized in this thread");
    return NULL;
  }
  void* data;
  size_t len;
  napi_get_arraybuffer_info(env, argv[0], &data, &len);
  in->read_buf = data;
  in->read_len = len;
  napi_create_reference(env, argv[0], 1, &in->read_ref);
  napi_get_arraybuffer_info(env, argv[1], &data, &len);
  in->write_buf = data;
  in->write_len = len;
  napi_create_reference(env, argv[1], 1, &in->write_ref);
  napi_create_reference(env, argv[2], 1, &in->on_read);
  napi_create_reference(env, argv[3], 1, &in->on_event);
  napi_value resource, name;
  napi_create_object(env, &resource);
  napi_create_reference(env, resource, 1, &in->resource);
  napi_create_string_utf8(env, "meshext.transport", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, resource, name, &in->actx);
  return NULL;
}

/* listen(ip, port, backlog) → listener id, or a negative errno */
static napi_value js_listen(napi_env env, napi_callback_info info) {
  ARGS(3)
  struct sockaddr_storage addr;
  int r = parse_addr(env, argv[0], arg_i32(env, argv[1]), &addr);
  if (r != 0) return num(env, r);
  conn* c = conn_new(in);
  if (c == NULL) return num(env, UV_ENOMEM);
  uv_tcp_init_ex(in->loop, &c->tcp, addr.ss_family);
  in->open++;
  /* SO_REUSEPORT: every worker listens on the same port and the kernel spreads connections. */
  r = uv_tcp_bind(&c->tcp, (struct sockaddr*)&addr, UV_TCP_REUSEPORT);
  if (r == 0) r = uv_listen((uv_stream_t*)&c->tcp, arg_i32(env, argv[2]), on_connection);
  if (r != 0) {
    close_conn(c);
    return num(env, r);
  }
  return num(env, c->id);
}

/* connect(ip, port) → connection id (EV_CONNECT follows), or a negative errno */
static napi_value js_connect(napi_env env, napi_callback_info info) {
  ARGS(2)
  struct sockaddr_storage addr;
  int r = parse_addr(env, argv[0], arg_i32(env, argv[1]), &addr);
  if (r != 0) return num(env, r);
  conn* c = conn_new(in);
  if (c == NULL) return num(env, UV_ENOMEM);
  uv_tcp_init(in->loop, &c->tcp);
  in->open++;
  uv_tcp_nodelay(&c->tcp, 1);
  r = uv_tcp_connect(&c->connect_req, &c->tcp, (struct sockaddr*)&addr, on_connect);
  if (r != 0) {
    close_conn(c);
    return num(env, r);
  }
  return num(env, c->id);
}

/* readStart(id, on) → 0 or a negative errno */
static napi_value js_read(napi_env env, napi_callback_info info) {
  ARGS(2)
  conn* c = id_get(in, arg_i32(env, argv[0]));
  if (c == NULL) return num(env, UV_EBADF);
  bool on = false;
  napi_get_value_bool(env, argv[1], &on);
  int r = on ? uv_read_start((uv_stream_t*)&c->tcp, on_alloc, on_read) : uv_read_stop((uv_stream_t*)&c->tcp);
  /* Starting twice is not an error for us (libuv says EALREADY on some versions). */
  return num(env, r == UV_EALREADY ? 0 : r);
}

static double do_write(conn* c, const char* data, size_t len) {
  if (c->shut) return UV_EPIPE;
  size_t off = 0;
  if (c->queued == 0) {
    uv_buf_t b = uv_buf_init((char*)data, (unsigned int)len);
    int r = uv_try_write((uv_stream_t*)&c->tcp, &b, 1);
    if (r >= 0 && (size_t)r == len) return 0;
    if (r >= 0) off = (size_t)r;
    else if (r != UV_EAGAIN) return r;
  }
  size_t rest = len - off;
  write_req* w = malloc(sizeof(write_req) + rest);
  if (w == NULL) return UV_ENOMEM;
  memcpy(w->data, data + off, rest);
  w->c = c;
  w->len = rest;
  uv_buf_t b = uv_buf_init(w->data, (unsigned int)rest);
  int r = uv_write(&w->req, (uv_stream_t*)&c->tcp, &b, 1, on_write);
  if (r != 0) {
    free(w);
    return r;
  }
  c->queued += rest;
  return (double)c->queued;
}

/* write(id, bytes: Uint8Array) → bytes still queued (0: all taken by the kernel), or a negative errno */
static napi_value js_write(napi_env env, napi_callback_info info) {
  ARGS(2)
  conn* c = id_get(in, arg_i32(env, argv[0]));
  if (c == NULL) return num(env, UV_EBADF);
  void* data;
  size_t len;
  napi_typedarray_type type;
  napi_value ab;
  size_t offset;
  if (napi_get_typedarray_info(env, argv[1], &type, &len, &data, &ab, &offset) != napi_ok) return num(env, UV_EINVAL);
  if (len == 0) return num(env, (double)c->queued);
  return num(env, do_write(c, data, len));
}

/* writeShared(id, length): writes the first `length` bytes of the shared write buffer */
static napi_value js_write_shared(napi_env env, napi_callback_info info) {
  ARGS(2)
  conn* c = id_get(in, arg_i32(env, argv[0]));
  if (c == NULL) return num(env, UV_EBADF);
  int32_t len = arg_i32(env, argv[1]);
  if (len < 0 || (size_t)len > in->write_len) return num(env, UV_EINVAL);
  if (len == 0) return num(env, (double)c->queued);
  return num(env, do_write(c, in->write_buf, (size_t)len));
}

/* shutdown(id): FIN after the queued writes */
static napi_value js_shutdown(napi_env env, napi_callback_info info) {
  ARGS(1)
  conn* c = id_get(in, arg_i32(env, argv[0]));
  if (c == NULL || c->shut) return num(env, 0);
  c->shut = 1;
  return num(env, uv_shutdown(&c->shutdown_req, (uv_stream_t*)&c->tcp, on_shutdown));
}

/* close(id): closes now; queued writes are dropped. No event follows. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  ARGS(1)
  conn* c = id_get(in, arg_i32(env, argv[0]));
  if (c != NULL) close_conn(c);
  return NULL;
}

/* setRef(id, on): whether the handle keeps the loop alive */
static napi_value js_set_ref(napi_env env, napi_callback_info info) {
  ARGS(2)
  conn* c = id_get(in, arg_i32(env, argv[0]));
  if (c == NULL) return NULL;
  bool on = true;
  napi_get_value_bool(env, argv[1], &on);
  if (on) uv_ref((uv_handle_t*)&c->tcp);
  else uv_unref((uv_handle_t*)&c->tcp);
  return NULL;
}

static napi_value addr_value(napi_env env, struct sockaddr_storage* a, int ok, int port_only) {
  char ip[INET6_ADDRSTRLEN] = "";
  int port = 0;
  if (ok == 0) {
    if (a->ss_family == AF_INET) {
      uv_ip4_name((struct sockaddr_in*)a, ip, sizeof ip);
      port = ntohs(((struct sockaddr_in*)a)->sin_port);
    } else if (a->ss_family == AF_INET6) {
      uv_ip6_name((struct sockaddr_in6*)a, ip, sizeof ip);
      port = ntohs(((struct sockaddr_in6*)a)->sin6_port);
    }
  }
  if (port_only) return num(env, port);
  napi_value v;
  napi_create_string_latin1(env, ip, NAPI_AUTO_LENGTH, &v);
  return v;
}

/* addresses(id) → [remote ip, remote port, local ip, local port] ('' and 0 when unknown) */
static napi_value js_addresses(napi_env env, napi_callback_info info) {
  ARGS(1)
  conn* c = id_get(in, arg_i32(env, argv[0]));
  napi_value out;
  napi_create_array_with_length(env, 4, &out);
  struct sockaddr_storage peer, self;
  int namelen = sizeof peer;
  int rp = c != NULL ? uv_tcp_getpeername(&c->tcp, (struct sockaddr*)&peer, &namelen) : -1;
  namelen = sizeof self;
  int rs = c != NULL ? uv_tcp_getsockname(&c->tcp, (struct sockaddr*)&self, &namelen) : -1;
  napi_set_element(env, out, 0, addr_value(env, &peer, rp, 0));
  napi_set_element(env, out, 1, addr_value(env, &peer, rp, 1));
  napi_set_element(env, out, 2, addr_value(env, &self, rs, 0));
  napi_set_element(env, out, 3, addr_value(env, &self, rs, 1));
  return out;
}

/* detach(id) → a duplicate of the socket's fd (the handle closes), for handing a connection to
 * node:net (HTTP/2 sniffed after the first read); a negative errno on failure */
static napi_value js_detach(napi_env env, napi_callback_info info) {
  ARGS(1)
  conn* c = id_get(in, arg_i32(env, argv[0]));
  if (c == NULL) return num(env, UV_EBADF);
  uv_os_fd_t fd;
  int r = uv_fileno((uv_handle_t*)&c->tcp, &fd);
  if (r != 0) return num(env, r);
  int dup_fd = dup(fd);
  if (dup_fd < 0) return num(env, -errno);
  uv_read_stop((uv_stream_t*)&c->tcp);
  close_conn(c);
  return num(env, dup_fd);
}

/* ------------------------------------------------------------------ lifecycle */

static void close_all(instance* in) {
  for (int32_t i = 0; i < in->cap; i++) {
    conn* c = in->conns[i];
    if (c != NULL && !c->closing) close_conn(c);
  }
}

/* The environment is going away (worker exit): close every handle before Node closes the loop,
 * which refuses to close with handles still open. */
static void on_cleanup(napi_async_cleanup_hook_handle hook, void* arg) {
  instance* in = arg;
  in->tearing_down = 1;
  in->cleanup = hook;
  close_all(in);
  if (in->open == 0) {
    in->cleanup = NULL;
    napi_remove_async_cleanup_hook(hook);
  }
}

static void finalize_instance(napi_env env, void* data, void* hint) {
  instance* in = data;
  /* The cleanup hook has closed every handle by now; only memory is left. */
  free(in->conns);
  free(in->free_ids);
  free(in);
}

static napi_value init_module(napi_env env, napi_value exports) {
  instance* in = calloc(1, sizeof(instance));
  if (in == NULL) return NULL;
  in->env = env;
  if (napi_get_uv_event_loop(env, &in->loop) != napi_ok) {
    free(in);
    return NULL;
  }
  napi_set_instance_data(env, in, finalize_instance, NULL);
  napi_add_async_cleanup_hook(env, on_cleanup, in, NULL);
  napi_property_descriptor props[] = {
      {"init", NULL, js_init, NULL, NULL, NULL, napi_default, NULL},
      {"listen", NULL, js_listen, NULL, NULL, NULL, napi_default, NULL},
      {"connect", NULL, js_connect, NULL, NULL, NULL, napi_default, NULL},
      {"read", NULL, js_read, NULL, NULL, NULL, napi_default, NULL},
      {"write", NULL, js_write, NULL, NULL, NULL, napi_default, NULL},
      {"writeShared", NULL, js_write_shared, NULL, NULL, NULL, napi_default, NULL},
      {"shutdown", NULL, js_shutdown, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
      {"setRef", NULL, js_set_ref, NULL, NULL, NULL, napi_default, NULL},
      {"addresses", NULL, js_addresses, NULL, NULL, NULL, napi_default, NULL},
      {"detach", NULL, js_detach, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE_INIT() { return init_module(env, exports); }
