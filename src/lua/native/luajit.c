/*
 * meshext LuaJIT engine: a small N-API addon over the system's LuaJIT (Debian libluajit2-5.1-dev).
 *
 * It implements exactly the engine seam of src/lua/engine.ts and nothing Envoy-specific: states with
 * a capped allocator and an instruction-count hook, a flat table of host functions that call back
 * into JS synchronously, and coroutines started/resumed by the JS driver. Values cross as plain JS
 * values; Lua strings cross as latin1 JS strings (one char per byte, binary exact).
 *
 * Safety rules kept throughout:
 * - a JS exception never unwinds through Lua frames: it is caught and re-raised as a Lua error;
 * - a Lua error never unwinds through N-API frames: every entry uses protected calls or resume;
 * - every napi handle made during a host call lives in a handle scope that is closed before the N-API
 *   call that runs Lua returns (the host call's own scope, or that call's for a run's first calls).
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <luajit.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOOK_INSTRUCTIONS 1000
#define MAX_DEPTH 32
#define POOL_MAX 64
#define REF_POOLED 0xFFFFFF /* startHook: the coroutine ended and is already pooled */
/* host calls per run made without their own handle scope (their handles live until the run's
 * N-API callback returns); later calls open one, so a looping script cannot pile up handles */
#define UNSCOPED_CALLS 32
#define SMALL_SHIFT 4
#define SMALL_CLASSES 16
#define SMALL_MAX (SMALL_CLASSES << SMALL_SHIFT) /* 256 bytes */
#define SLAB_BYTES 4096

typedef struct {
  lua_State *L;
  napi_env env;       /* valid while JS is calling into this state */
  size_t mem_used;
  size_t mem_max;     /* 0 = unlimited */
  int enforce;        /* the cap applies only while Lua code runs under protection */
  double remaining;   /* hook ticks left in the current run */
  double ticks;       /* hook ticks counted so far */
  int budget;         /* count hook installed */
  int nojit_user;     /* JIT on, but untrusted chunks are marked not compilable (see newState) */
  int hot;            /* the hook was switched to every instruction after an overrun */
  int entry_ref;
  int closed;
  napi_ref *fns;
  int nfns, capfns;
  int pool[POOL_MAX];
  int npool;
  int calls;          /* host calls in the current run */
  unsigned char *io;  /* the shared buffer (setIo): write-behind queue, then the prefetch area */
  size_t qcap, iocap; /* queue area [0, qcap), prefetch area [qcap, iocap) */
  napi_ref io_ref;
  void *freel[SMALL_CLASSES]; /* free blocks of 16, 32, ... 256 bytes */
  char *slabs;        /* every slab, linked through its first word */
  char *slab_next;
  size_t slab_left;
} State;

/* per-env data: the addon may be loaded by several worker threads, each with its own env */
typedef struct {
  napi_ref multi_proto; /* Multi.prototype: a prototype compare is much cheaper than napi_instanceof */
  napi_ref keys;        /* [KEY_TABLE, KEY_VALUES, KEY_TYPE] made once, not a string per use (N-API 8
                         * cannot reference a string itself) */
} EnvData;

#define KEY_TABLE 0 /* "luaTable" */
#define KEY_VALUES 1 /* "values" */
#define KEY_TYPE 2 /* "luaType" */

static EnvData *env_data(napi_env env) {
  EnvData *ed = NULL;
  if (napi_get_instance_data(env, (void **)&ed) != napi_ok) return NULL;
  return ed;
}

static napi_value ref_value(napi_env env, napi_ref r) {
  napi_value v = NULL;
  if (r) napi_get_reference_value(env, r, &v);
  return v;
}

static napi_value key_of(napi_env env, EnvData *ed, uint32_t which) {
  napi_value keys, k = NULL;
  if (!ed || !ed->keys || napi_get_reference_value(env, ed->keys, &keys) != napi_ok || !keys) return NULL;
  if (napi_get_element(env, keys, which, &k) != napi_ok) return NULL;
  return k;
}

static void free_env_data(napi_env env, void *data, void *hint) {
  (void)hint;
  EnvData *ed = (EnvData *)data;
  if (ed->multi_proto) napi_delete_reference(env, ed->multi_proto);
  if (ed->keys) napi_delete_reference(env, ed->keys);
  free(ed);
}
/* the state whose coroutine is running on this thread (hooks get only the coroutine) */
static _Thread_local State *current = NULL;


static napi_value throw_msg(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

/* ------------------------------------------------------------------ allocator and hook */

/* Small blocks come from per-state size classes carved out of 4 KiB slabs (a pop from a free
 * list, faster than malloc for LuaJIT's many small GC objects); larger ones from malloc. LuaJIT
 * passes the old size on every free/realloc, so blocks carry no header. Slabs are kept until the
 * state closes. */
static void *small_get(State *s, size_t n) {
  int c = (int)((n - 1) >> SMALL_SHIFT);
  void *p = s->freel[c];
  if (p) {
    void *next = *(void **)p;
    s->freel[c] = next;
    /* blocks freed by a GC sweep are cold: fetch the next one now, so the next pop does not
     * wait for memory (with 16 states per request, the pop was 9% of a request's CPU) */
    if (next) __builtin_prefetch(next, 1);
    return p;
  }
  size_t sz = (size_t)(c + 1) << SMALL_SHIFT;
  if (s->slab_left < sz) {
    /* the unused tail of the previous slab is given to the smaller classes' lists */
    while (s->slab_left >= ((size_t)1 << SMALL_SHIFT)) {
      int tc = (int)((s->slab_left >> SMALL_SHIFT) - 1);
      if (tc >= SMALL_CLASSES) tc = SMALL_CLASSES - 1;
      size_t tsz = (size_t)(tc + 1) << SMALL_SHIFT;
      *(void **)s->slab_next = s->freel[tc];
      s->freel[tc] = s->slab_next;
      s->slab_next += tsz;
      s->slab_left -= tsz;
    }
    char *slab = (char *)malloc(SLAB_BYTES);
    if (!slab) return NULL;
    *(void **)slab = s->slabs; /* the first 16 bytes link the slabs for close */
    s->slabs = slab;
    s->slab_next = slab + 16;
    s->slab_left = SLAB_BYTES - 16;
  }
  p = s->slab_next;
  s->slab_next += sz;
  s->slab_left -= sz;
  return p;
}

static void small_put(State *s, void *p, size_t n) {
  int c = (int)((n - 1) >> SMALL_SHIFT);
  *(void **)p = s->freel[c];
  s->freel[c] = p;
}

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  State *s = (State *)ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    if (ptr) {
      s->mem_used -= osize;
      if (osize <= SMALL_MAX) small_put(s, ptr, osize);
      else free(ptr);
    }
    return NULL;
  }
  /* refusing makes Lua raise "not enough memory" after an emergency GC; the state stays usable */
  if (nsize > old && s->enforce && s->mem_max && s->mem_used + (nsize - old) > s->mem_max) return NULL;
  void *p;
  if (nsize <= SMALL_MAX) {
    if (ptr && old <= SMALL_MAX && ((old - 1) >> SMALL_SHIFT) == ((nsize - 1) >> SMALL_SHIFT)) {
      p = ptr; /* same class */
    } else {
      p = small_get(s, nsize);
      if (!p) return NULL;
      if (ptr) {
        memcpy(p, ptr, old < nsize ? old : nsize);
        if (old <= SMALL_MAX) small_put(s, ptr, old);
        else free(ptr);
      }
    }
  } else if (ptr && old <= SMALL_MAX) {
    p = malloc(nsize);
    if (!p) return NULL;
    memcpy(p, ptr, old);
    small_put(s, ptr, old);
  } else {
    p = realloc(ptr, nsize);
    if (!p) return NULL;
  }
  s->mem_used = s->mem_used - old + nsize;
  return p;
}

/* An error outside any protected call is a bug in this file; say so instead of exiting silently. */
static int panic(lua_State *L) {
  const char *m = lua_tostring(L, -1);
  fprintf(stderr, "meshext luajit: PANIC: unprotected error: %s\n", m ? m : "?");
  fflush(stderr);
  abort();
  return 0;
}

static void count_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  State *s = current;
  if (!s) return;
  s->ticks += 1;
  s->remaining -= 1;
  if (s->remaining <= 0) {
    /* keep raising at every instruction: a pcall in the script catches one error, the next
     * instruction outside it raises again, so the hook always ends */
    s->remaining = 1;
    s->hot = 1;
    lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
    lua_pushstring(L, "instruction budget exceeded");
    lua_error(L);
  }
}

/* ------------------------------------------------------------------ conversions */

static napi_value to_js(napi_env env, lua_State *L, int idx, int depth);

static napi_value opaque(napi_env env, const char *type) {
  napi_value o, t;
  napi_create_object(env, &o);
  napi_create_string_utf8(env, type, NAPI_AUTO_LENGTH, &t);
  napi_value k = key_of(env, env_data(env), KEY_TYPE);
  if (k) napi_set_property(env, o, k, t);
  else napi_set_named_property(env, o, "luaType", t);
  return o;
}

static napi_value to_js(napi_env env, lua_State *L, int idx, int depth) {
  napi_value v;
  switch (lua_type(L, idx)) {
    case LUA_TNONE:
    case LUA_TNIL:
      napi_get_undefined(env, &v);
      return v;
    case LUA_TBOOLEAN:
      napi_get_boolean(env, lua_toboolean(L, idx), &v);
      return v;
    case LUA_TNUMBER:
      napi_create_double(env, lua_tonumber(L, idx), &v);
      return v;
    case LUA_TSTRING: {
      size_t n;
      const char *p = lua_tolstring(L, idx, &n);
      napi_create_string_latin1(env, p, n, &v);
      return v;
    }
    case LUA_TTABLE: {
      napi_value arr, o;
      uint32_t i = 0;
      napi_create_object(env, &o);
      napi_create_array(env, &arr);
      if (depth < MAX_DEPTH && lua_checkstack(L, 4)) {
        int t = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
        lua_pushnil(L);
        while (lua_next(L, t)) {
          napi_set_element(env, arr, i++, to_js(env, L, -2, depth + 1));
          napi_set_element(env, arr, i++, to_js(env, L, -1, depth + 1));
          lua_pop(L, 1);
        }
      }
      napi_value k = key_of(env, env_data(env), KEY_TABLE);
      if (k) napi_set_property(env, o, k, arr);
      else napi_set_named_property(env, o, "luaTable", arr);
      return o;
    }
    case LUA_TFUNCTION:
      return opaque(env, "function");
    case LUA_TUSERDATA:
      return opaque(env, "userdata");
    case LUA_TLIGHTUSERDATA:
      return opaque(env, "lightuserdata");
    default:
      return opaque(env, "thread");
  }
}

static void push_string(napi_env env, lua_State *L, napi_value v) {
  char small[256];
  size_t n = 0;
  /* one call for short strings: a copy that did not fill the buffer is the whole string */
  napi_get_value_string_latin1(env, v, small, sizeof(small), &n);
  if (n < sizeof(small) - 1) {
    lua_pushlstring(L, small, n);
    return;
  }
  napi_get_value_string_latin1(env, v, NULL, 0, &n);
  char *buf = (char *)malloc(n + 1);
  if (!buf) {
    lua_pushnil(L);
    return;
  }
  napi_get_value_string_latin1(env, v, buf, n + 1, &n);
  lua_pushlstring(L, buf, n);
  free(buf);
}

static void push_typed(napi_env env, lua_State *L, napi_value v, napi_valuetype t, int depth);

static void push_js(napi_env env, lua_State *L, napi_value v, int depth) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) {
    lua_pushnil(L);
    return;
  }
  push_typed(env, L, v, t, depth);
}

/* push_js for a value whose type the caller already has */
static void push_typed(napi_env env, lua_State *L, napi_value v, napi_valuetype t, int depth) {
  if (!lua_checkstack(L, 4)) {
    lua_pushnil(L);
    return;
  }
  switch (t) {
    case napi_string:
      push_string(env, L, v);
      return;
    case napi_number: {
      double d;
      napi_get_value_double(env, v, &d);
      lua_pushnumber(L, d);
      return;
    }
    case napi_boolean: {
      bool b;
      napi_get_value_bool(env, v, &b);
      lua_pushboolean(L, b);
      return;
    }
    case napi_bigint: {
      int64_t i;
      bool lossless;
      napi_get_value_bigint_int64(env, v, &i, &lossless);
      lua_pushnumber(L, (lua_Number)i);
      return;
    }
    case napi_object:
      break;
    default:
      lua_pushnil(L);
      return;
  }
  if (depth > MAX_DEPTH) {
    lua_pushnil(L);
    return;
  }
  bool is;
  napi_is_typedarray(env, v, &is);
  if (is) {
    napi_typedarray_type tt;
    size_t len;
    void *data;
    napi_value ab;
    size_t off;
    napi_get_typedarray_info(env, v, &tt, &len, &data, &ab, &off);
    lua_pushlstring(L, (const char *)data, tt == napi_uint8_array || tt == napi_int8_array || tt == napi_uint8_clamped_array ? len : 0);
    return;
  }
  napi_is_array(env, v, &is);
  if (is) {
    uint32_t n, i;
    napi_get_array_length(env, v, &n);
    lua_createtable(L, (int)n, 0);
    for (i = 0; i < n; i++) {
      napi_value e;
      napi_get_element(env, v, i, &e);
      push_js(env, L, e, depth + 1);
      lua_rawseti(L, -2, (int)i + 1);
    }
    return;
  }
  /* {luaTable: [k, v, ...]}: one lookup with the cached key (undefined when absent) */
  napi_value tkey = key_of(env, env_data(env), KEY_TABLE);
  napi_value arr = NULL;
  napi_valuetype at = napi_undefined;
  if (tkey && napi_get_property(env, v, tkey, &arr) == napi_ok) napi_typeof(env, arr, &at);
  if (at == napi_object) {
    uint32_t n, i;
    napi_get_array_length(env, arr, &n);
    lua_createtable(L, 0, (int)(n / 2));
    for (i = 0; i + 1 < n; i += 2) {
      napi_value k, x;
      napi_valuetype kt;
      napi_get_element(env, arr, i, &k);
      napi_typeof(env, k, &kt);
      if (kt == napi_undefined || kt == napi_null) continue;
      napi_get_element(env, arr, i + 1, &x);
      push_js(env, L, k, depth + 1);
      push_js(env, L, x, depth + 1);
      lua_rawset(L, -3);
    }
    return;
  }
  napi_value keys;
  uint32_t n, i;
  napi_get_property_names(env, v, &keys);
  napi_get_array_length(env, keys, &n);
  lua_createtable(L, 0, (int)n);
  for (i = 0; i < n; i++) {
    napi_value k, x;
    napi_get_element(env, keys, i, &k);
    napi_get_property(env, v, k, &x);
    push_string(env, L, k);
    push_js(env, L, x, depth + 1);
    lua_rawset(L, -3);
  }
}

/* ------------------------------------------------------------------ host functions */

static int host_call(lua_State *L) {
  State *s = (State *)lua_touserdata(L, lua_upvalueindex(1));
  int idx = (int)lua_tointeger(L, lua_upvalueindex(2));
  napi_env env = s->env;
  napi_handle_scope scope = NULL;
  napi_value fn, recv, result, argv[10];
  int n = lua_gettop(L), i, nret = 0;
  if (n > 10) n = 10;
  /* opening a scope allocates (node makes a wrapper object per scope): the first calls of a run
   * leave their few handles to the scope of the run's own N-API callback instead */
  if (s->calls++ >= UNSCOPED_CALLS && napi_open_handle_scope(env, &scope) != napi_ok) {
    lua_pushstring(L, "host call failed: no handle scope");
    return lua_error(L);
  }
  for (i = 0; i < n; i++) argv[i] = to_js(env, L, i + 1, 0);
  napi_get_reference_value(env, s->fns[idx], &fn);
  recv = fn; /* the host functions are arrow functions: `this` is unused, and this saves a call */
  if (napi_call_function(env, recv, fn, (size_t)n, argv, &result) != napi_ok) {
    /* a JS throw becomes a Lua error (after the scope is closed) */
    napi_value exc, msg;
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    lua_pushstring(L, "host error");
    if (pending && napi_get_and_clear_last_exception(env, &exc) == napi_ok && napi_coerce_to_string(env, exc, &msg) == napi_ok) {
      lua_pop(L, 1);
      push_string(env, L, msg);
    }
    if (scope) napi_close_handle_scope(env, scope);
    return lua_error(L);
  }
  napi_valuetype t;
  napi_typeof(env, result, &t);
  lua_settop(L, 0);
  /* an allocation error here would longjmp past the handle scope: push without the cap */
  int enforce = s->enforce;
  s->enforce = 0;
  if (t != napi_undefined) {
    bool multi = false;
    EnvData *ed = t == napi_object ? env_data(env) : NULL;
    napi_value mproto = ed ? ref_value(env, ed->multi_proto) : NULL;
    if (mproto) {
      napi_value proto;
      if (napi_get_prototype(env, result, &proto) == napi_ok) napi_strict_equals(env, proto, mproto, &multi);
    }
    if (multi) {
      napi_value vals;
      uint32_t nv, j;
      napi_value vk = key_of(env, ed, KEY_VALUES);
      if (!vk || napi_get_property(env, result, vk, &vals) != napi_ok) napi_get_named_property(env, result, "values", &vals);
      napi_get_array_length(env, vals, &nv);
      if (lua_checkstack(L, (int)nv + 4)) {
        for (j = 0; j < nv; j++) {
          napi_value e;
          napi_get_element(env, vals, j, &e);
          push_js(env, L, e, 0);
        }
        nret = (int)nv;
      }
    } else {
      push_typed(env, L, result, t, 0);
      nret = 1;
    }
  }
  s->enforce = enforce;
  if (scope) napi_close_handle_scope(env, scope);
  return nret;
}

/* mk(d): a fresh userdata whose metatable is d, in one C call: the prelude makes one per object
 * (the handle, headers(), streamInfo(), ...), and doing it in Lua took ~20 bytecodes and two C calls */
static int mk_ud(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_newuserdata(L, 0);
  lua_pushvalue(L, 1);
  lua_setmetatable(L, 2);
  return 1;
}

/*
 * Write-behind: q(op, cid, a, b, c) appends a record to the shared buffer's queue, which JS
 * applies after the run returns or before its next host call (the only moments JS can observe the
 * stream). Returns false when the record does not fit: the prelude then makes the host call.
 * Record: op u8, cid u32, then each value as tag u8 (0 nil, 1 string, 2 number, 3 true, 4 false)
 * + payload (u32 length + bytes, or f64). The queue's first u32 is its byte length.
 */
static size_t io_value_size(lua_State *L, int i) {
  switch (lua_type(L, i)) {
    case LUA_TSTRING: return 5 + lua_objlen(L, i);
    case LUA_TNUMBER: return 9;
    default: return 1;
  }
}

static unsigned char *io_put_value(lua_State *L, int i, unsigned char *p) {
  switch (lua_type(L, i)) {
    case LUA_TSTRING: {
      size_t n;
      const char *str = lua_tolstring(L, i, &n);
      uint32_t n32 = (uint32_t)n;
      *p++ = 1;
      memcpy(p, &n32, 4);
      memcpy(p + 4, str, n);
      return p + 4 + n;
    }
    case LUA_TNUMBER: {
      double d = lua_tonumber(L, i);
      *p++ = 2;
      memcpy(p, &d, 8);
      return p + 8;
    }
    case LUA_TBOOLEAN:
      *p++ = lua_toboolean(L, i) ? 3 : 4;
      return p;
    default:
      *p++ = 0;
      return p;
  }
}

static int q_push(lua_State *L) {
  State *s = (State *)lua_touserdata(L, lua_upvalueindex(1));
  int n = lua_gettop(L), i;
  uint32_t len;
  if (!s->io || n < 2 || n > 5) {
    lua_pushboolean(L, 0);
    return 1;
  }
  memcpy(&len, s->io, 4);
  size_t need = 5;
  for (i = 3; i <= n; i++) need += io_value_size(L, i);
  if (4 + (size_t)len + need > s->qcap) {
    lua_pushboolean(L, 0);
    return 1;
  }
  unsigned char *p = s->io + 4 + len;
  uint32_t cid = (uint32_t)lua_tonumber(L, 2);
  *p++ = (unsigned char)lua_tonumber(L, 1);
  memcpy(p, &cid, 4);
  p += 4;
  for (i = 3; i <= n; i++) p = io_put_value(L, i, p);
  len = (uint32_t)(p - (s->io + 4));
  memcpy(s->io, &len, 4);
  lua_pushboolean(L, 1);
  return 1;
}

/*
 * Prefetch: JS writes the values a hook will likely ask for (learned header keys, metadata
 * namespaces) into the prefetch area before startHook; they become extra entry arguments. Value:
 * tag u8 (0 nil, 1 string, 2 number, 3 true, 4 false, 5 table: u32 pairs, then key and value
 * values). Returns the next read position, or NULL on a malformed record.
 */
static const unsigned char *pf_value(lua_State *L, const unsigned char *p, const unsigned char *end, int depth) {
  if (p >= end) return NULL;
  unsigned char tag = *p++;
  switch (tag) {
    case 0: lua_pushnil(L); return p;
    case 1: {
      uint32_t n;
      if (end - p < 4) return NULL;
      memcpy(&n, p, 4);
      p += 4;
      if ((size_t)(end - p) < n) return NULL;
      lua_pushlstring(L, (const char *)p, n);
      return p + n;
    }
    case 2: {
      double d;
      if (end - p < 8) return NULL;
      memcpy(&d, p, 8);
      lua_pushnumber(L, d);
      return p + 8;
    }
    case 3: lua_pushboolean(L, 1); return p;
    case 4: lua_pushboolean(L, 0); return p;
    case 5: {
      uint32_t n, i;
      if (end - p < 4 || depth > 1) return NULL;
      memcpy(&n, p, 4);
      p += 4;
      lua_createtable(L, 0, (int)n);
      for (i = 0; i < n; i++) {
        if (!(p = pf_value(L, p, end, depth + 1))) return NULL;
        if (!(p = pf_value(L, p, end, depth + 1))) return NULL;
        if (lua_isnil(L, -2)) lua_pop(L, 2);
        else lua_rawset(L, -3);
      }
      return p;
    }
    default: return NULL;
  }
}

/* kill(mt, a, b, c, d): every userdata among a..d gets metatable mt (the prelude's dead-object
 * metatable) in one C call; other values are skipped */
static int kill_ud(lua_State *L) {
  int i, n = lua_gettop(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  for (i = 2; i <= n && i <= 5; i++) {
    if (lua_type(L, i) != LUA_TUSERDATA) continue;
    lua_pushvalue(L, 1);
    lua_setmetatable(L, i);
  }
  return 0;
}

/* ------------------------------------------------------------------ N-API surface */

static State *get_state(napi_env env, napi_value v) {
  State *s = NULL;
  if (napi_get_value_external(env, v, (void **)&s) != napi_ok || !s || s->closed) {
    napi_throw_error(env, NULL, "lua state is closed");
    return NULL;
  }
  s->env = env;
  return s;
}

static void close_state(napi_env env, State *s) {
  int i;
  if (s->closed) return;
  s->closed = 1;
  lua_close(s->L);
  while (s->slabs) {
    char *next = *(char **)s->slabs;
    free(s->slabs);
    s->slabs = next;
  }
  for (i = 0; i < s->nfns; i++) napi_delete_reference(env, s->fns[i]);
  if (s->io_ref) napi_delete_reference(env, s->io_ref);
  s->io_ref = NULL;
  s->io = NULL;
  free(s->fns);
  s->fns = NULL;
  s->nfns = 0;
}

static void finalize_state(napi_env env, void *data, void *hint) {
  (void)hint;
  State *s = (State *)data;
  close_state(env, s);
  free(s);
}

static napi_value js_init(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) return throw_msg(env, "init(Multi) expected");
  EnvData *ed = NULL;
  napi_get_instance_data(env, (void **)&ed);
  if (!ed) {
    ed = (EnvData *)calloc(1, sizeof(EnvData));
    if (!ed) return throw_msg(env, "out of memory");
    napi_set_instance_data(env, ed, free_env_data, NULL);
  }
  napi_value proto, k;
  if (ed->multi_proto) napi_delete_reference(env, ed->multi_proto);
  ed->multi_proto = NULL;
  if (napi_get_named_property(env, argv[0], "prototype", &proto) == napi_ok) napi_create_reference(env, proto, 1, &ed->multi_proto);
  if (!ed->keys) {
    static const char *names[] = {"luaTable", "values", "luaType"};
    napi_value keys;
    uint32_t i;
    napi_create_array(env, &keys);
    for (i = 0; i < 3; i++) {
      napi_create_string_utf8(env, names[i], NAPI_AUTO_LENGTH, &k);
      napi_set_element(env, keys, i, k);
    }
    napi_create_reference(env, keys, 1, &ed->keys);
  }
  return NULL;
}

/* newState(memoryLimit, budget, unsafe) */
static napi_value js_new_state(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], ext;
  double limit = 0;
  bool budget = false, unsafe = false;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc > 0) napi_get_value_double(env, argv[0], &limit);
  if (argc > 1) napi_get_value_bool(env, argv[1], &budget);
  if (argc > 2) napi_get_value_bool(env, argv[2], &unsafe);
  State *s = (State *)calloc(1, sizeof(State));
  if (!s) return throw_msg(env, "out of memory");
  s->mem_max = limit > 0 ? (size_t)limit : 0;
  s->remaining = INFINITY;
  /* malloc, not LuaJIT's internal allocator: that one maps 128 KiB chunks per state (~0.28 MiB
   * resident for a ~120 KB heap), which is most of a Lua worker's memory cost. GC64 builds
   * (OpenResty's LuaJIT 2.1) accept a custom allocator in lua_newstate. */
  s->L = lua_newstate(capped_alloc, s);
  if (!s->L) {
    free(s);
    return throw_msg(env, "cannot create LuaJIT state");
  }
  lua_atpanic(s->L, panic);
  luaL_openlibs(s->L);
  s->budget = budget;
  if (budget) {
    /* JIT-compiled traces never call hooks: a compiled infinite loop would hang the worker. The
     * interpreter calls them. meshext's own chunks (prelude, sandbox) are trusted and bounded, so
     * they may be compiled: exec() marks every untrusted chunk, with all its functions, as not
     * compilable (PROTO_NOJIT), and the sandbox's load()/loadstring() mark what they load. A
     * trace cannot enter or return into a NOJIT function (the recorder aborts), so the script's
     * own code always runs in the interpreter under the count hook. With the unsafe libraries
     * (jit.on, dofile, require, ...) the script could escape that, so the JIT stays off. */
    if (unsafe) luaJIT_setmode(s->L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    else s->nojit_user = 1;
    lua_sethook(s->L, count_hook, LUA_MASKCOUNT, HOOK_INSTRUCTIONS);
  }
  lua_createtable(s->L, 0, 3);
  lua_pushcfunction(s->L, mk_ud);
  lua_setfield(s->L, -2, "mk");
  lua_pushcfunction(s->L, kill_ud);
  lua_setfield(s->L, -2, "kill");
  lua_pushlightuserdata(s->L, s);
  lua_pushcclosure(s->L, q_push, 1);
  lua_setfield(s->L, -2, "q");
  lua_setglobal(s->L, "__meshext_engine");
  lua_settop(s->L, 0);
  if (napi_create_external(env, s, finalize_state, NULL, &ext) != napi_ok) {
    lua_close(s->L);
    free(s);
    return throw_msg(env, "cannot wrap state");
  }
  return ext;
}

/* setHostTable(st, name, keys[], fns[]) */
static napi_value js_set_host_table(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  char name[128];
  size_t nlen;
  uint32_t n, i;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  State *s = get_state(env, argv[0]);
  if (!s) return NULL;
  napi_get_value_string_utf8(env, argv[1], name, sizeof(name), &nlen);
  napi_get_array_length(env, argv[2], &n);
  lua_State *L = s->L;
  lua_createtable(L, 0, (int)n);
  for (i = 0; i < n; i++) {
    napi_value k, f;
    char key[128];
    size_t klen;
    napi_get_element(env, argv[2], i, &k);
    napi_get_element(env, argv[3], i, &f);
    napi_get_value_string_utf8(env, k, key, sizeof(key), &klen);
    if (s->nfns == s->capfns) {
      int cap = s->capfns ? s->capfns * 2 : 64;
      napi_ref *nf = (napi_ref *)realloc(s->fns, sizeof(napi_ref) * (size_t)cap);
      if (!nf) return throw_msg(env, "out of memory");
      s->fns = nf;
      s->capfns = cap;
    }
    napi_create_reference(env, f, 1, &s->fns[s->nfns]);
    lua_pushlightuserdata(L, s);
    lua_pushinteger(L, s->nfns);
    lua_pushcclosure(L, host_call, 2);
    lua_setfield(L, -2, key);
    s->nfns++;
  }
  lua_setglobal(L, name);
  return NULL;
}

/* exec(st, code, chunkName, budget, trusted) -> undefined | error message */
static napi_value js_exec(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], out;
  size_t clen, nlen;
  double budget = 0;
  bool trusted = false;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  State *s = get_state(env, argv[0]);
  if (!s) return NULL;
  if (argc > 4) napi_get_value_bool(env, argv[4], &trusted);
  napi_get_value_string_utf8(env, argv[1], NULL, 0, &clen);
  napi_get_value_string_utf8(env, argv[2], NULL, 0, &nlen);
  napi_get_value_double(env, argv[3], &budget);
  char *code = (char *)malloc(clen + 1);
  char *name = (char *)malloc(nlen + 1);
  if (!code || !name) {
    free(code);
    free(name);
    return throw_msg(env, "out of memory");
  }
  napi_get_value_string_utf8(env, argv[1], code, clen + 1, &clen);
  napi_get_value_string_utf8(env, argv[2], name, nlen + 1, &nlen);
  lua_State *L = s->L;
  State *prev = current;
  current = s;
  /* text only: crafted bytecode can crash the VM */
  int rc = luaL_loadbufferx(L, code, clen, name, "t");
  free(code);
  free(name);
  /* the chunk and every function defined in it, at any depth: interpreted only (see newState) */
  if (rc == 0 && !trusted && s->nojit_user && luaJIT_setmode(L, -1, LUAJIT_MODE_ALLFUNC | LUAJIT_MODE_OFF) != 1) {
    lua_settop(L, 0);
    napi_create_string_utf8(env, "cannot disable the JIT for the chunk", NAPI_AUTO_LENGTH, &out);
    current = prev;
    return out;
  }
  if (rc == 0) {
    s->remaining = budget > 0 ? budget : INFINITY;
    if (s->hot) {
      s->hot = 0;
      lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_INSTRUCTIONS);
    }
    s->calls = 0;
    s->enforce = 1;
    rc = lua_pcall(L, 0, 0, 0);
    s->enforce = 0;
    s->remaining = INFINITY;
  }
  current = prev;
  if (rc != 0) {
    size_t n;
    const char *m = lua_tolstring(L, -1, &n);
    if (m) napi_create_string_latin1(env, m, n, &out);
    else napi_create_string_utf8(env, "error object is not a string", NAPI_AUTO_LENGTH, &out);
    lua_settop(L, 0);
    return out;
  }
  lua_settop(L, 0);
  napi_get_undefined(env, &out);
  return out;
}

static napi_value js_take_entry(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  char name[128];
  size_t nlen;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  State *s = get_state(env, argv[0]);
  if (!s) return NULL;
  napi_get_value_string_utf8(env, argv[1], name, sizeof(name), &nlen);
  lua_getglobal(s->L, name);
  s->entry_ref = luaL_ref(s->L, LUA_REGISTRYINDEX);
  lua_pushnil(s->L);
  lua_setglobal(s->L, name);
  return NULL;
}

/* A coroutine for a new run: a pooled one (returned normally, so empty and LUA_OK) or a new one. */
static lua_State *acquire_thread(State *s, int *ref) {
  lua_State *L = s->L, *T;
  if (s->npool > 0) {
    *ref = s->pool[--s->npool];
    lua_rawgeti(L, LUA_REGISTRYINDEX, *ref);
    T = lua_tothread(L, -1);
    lua_pop(L, 1);
  } else {
    T = lua_newthread(L);
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(T, LUA_REGISTRYINDEX, s->entry_ref);
  return T;
}

/* Resumes T with nargs values under the instruction budget; status 0 ok, 1 yielded, 2 error. */
static int resume_budgeted(State *s, lua_State *T, int nargs, double budget, double *used) {
  State *prev = current;
  current = s;
  s->remaining = budget > 0 ? budget : INFINITY;
  if (s->hot) {
    s->hot = 0;
    lua_sethook(T, count_hook, LUA_MASKCOUNT, HOOK_INSTRUCTIONS);
  }
  double t0 = s->ticks;
  s->calls = 0;
  s->enforce = 1;
  int rc = lua_resume(T, nargs);
  s->enforce = 0;
  s->remaining = INFINITY;
  current = prev;
  *used = s->ticks - t0;
  return rc == 0 ? 0 : rc == LUA_YIELD ? 1 : 2;
}

/* The error value on top of T as a JS string. */
static napi_value error_value(napi_env env, lua_State *T) {
  napi_value v;
  size_t n;
  const char *m = lua_tolstring(T, -1, &n);
  if (m) napi_create_string_latin1(env, m, n, &v);
  else napi_create_string_utf8(env, lua_isnil(T, -1) ? "nil" : "error object is not a string", NAPI_AUTO_LENGTH, &v);
  return v;
}

/* Runs T with the values of JS array `args`; fills out[off..] with status, used, values. */
static napi_value run(napi_env env, State *s, lua_State *T, napi_value args, double budget, napi_value out, uint32_t off) {
  uint32_t nargs = 0, i;
  napi_value v;
  napi_get_array_length(env, args, &nargs);
  if (!lua_checkstack(T, (int)nargs + 4)) return throw_msg(env, "lua stack overflow");
  for (i = 0; i < nargs; i++) {
    napi_value a;
    napi_get_element(env, args, i, &a);
    push_js(env, T, a, 0);
  }
  double used;
  int status = resume_budgeted(s, T, (int)nargs, budget, &used);
  napi_create_int32(env, status, &v);
  napi_set_element(env, out, off, v);
  napi_create_double(env, used, &v);
  napi_set_element(env, out, off + 1, v);
  if (status == 2) {
    napi_set_element(env, out, off + 2, error_value(env, T));
    lua_settop(T, 0);
    return out;
  }
  int top = lua_gettop(T);
  for (i = 0; i < (uint32_t)top; i++) napi_set_element(env, out, off + 2 + i, to_js(env, T, (int)i + 1, 0));
  lua_settop(T, 0);
  return out;
}

/*
 * Fast path for the hook entry: startHook(st, a, b, c, d, budget). When the run ends with no values
 * (a hook that returned) the result is one number, used * 2^26 + status * 2^24 + ref, which saves
 * building an array through N-API on every request; otherwise the array form of start().
 */
static napi_value js_start_hook(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7], out, v;
  double a, b, c, e, budget = 0, npf = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  State *s = get_state(env, argv[0]);
  if (!s) return NULL;
  napi_get_value_double(env, argv[1], &a);
  napi_get_value_double(env, argv[2], &b);
  napi_get_value_double(env, argv[3], &c);
  napi_get_value_double(env, argv[4], &e);
  napi_get_value_double(env, argv[5], &budget);
  if (argc > 6) napi_get_value_double(env, argv[6], &npf);
  int ref, nargs = 4;
  lua_State *T = acquire_thread(s, &ref);
  lua_pushnumber(T, a);
  lua_pushnumber(T, b);
  lua_pushnumber(T, c);
  lua_pushnumber(T, e);
  if (npf > 0 && s->io && npf <= 16 && lua_checkstack(T, (int)npf + 8)) {
    /* prefetched values follow the four entry arguments (see pf_value) */
    const unsigned char *p = s->io + s->qcap, *end = s->io + s->iocap;
    int i;
    for (i = 0; i < (int)npf && p; i++) p = pf_value(T, p, end, 0);
    if (!p) {
      lua_settop(T, 5); /* malformed: no prefetch (the entry function and its four arguments) */
    } else nargs += (int)npf;
  }
  double used;
  int status = resume_budgeted(s, T, nargs, budget, &used);
  int top = lua_gettop(T);
  if (status == 0 && top == 0) {
    /* finished: back to the pool now, which spares the driver a release() crossing per hook */
    if (s->npool < POOL_MAX) {
      s->pool[s->npool++] = ref;
      ref = REF_POOLED;
    }
    napi_create_double(env, used * 67108864.0 + status * 16777216.0 + ref, &out);
    return out;
  }
  napi_create_array(env, &out);
  napi_create_int32(env, ref, &v);
  napi_set_element(env, out, 0, v);
  napi_create_int32(env, status, &v);
  napi_set_element(env, out, 1, v);
  napi_create_double(env, used, &v);
  napi_set_element(env, out, 2, v);
  if (status == 2) {
    napi_set_element(env, out, 3, error_value(env, T));
  } else {
    int i;
    for (i = 0; i < top; i++) napi_set_element(env, out, 3 + (uint32_t)i, to_js(env, T, i + 1, 0));
  }
  lua_settop(T, 0);
  return out;
}

/* start(st, args, budget) -> [ref, status, used, ...values] */
static napi_value js_start(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], out, v;
  double budget = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  State *s = get_state(env, argv[0]);
  if (!s) return NULL;
  napi_get_value_double(env, argv[2], &budget);
  int ref;
  lua_State *T = acquire_thread(s, &ref);
  napi_create_array(env, &out);
  napi_create_int32(env, ref, &v);
  napi_set_element(env, out, 0, v);
  return run(env, s, T, argv[1], budget, out, 1);
}

/* resume(st, ref, args, budget) -> [status, used, ...values] */
static napi_value js_resume(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], out;
  int32_t ref;
  double budget = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  State *s = get_state(env, argv[0]);
  if (!s) return NULL;
  napi_get_value_int32(env, argv[1], &ref);
  napi_get_value_double(env, argv[3], &budget);
  lua_rawgeti(s->L, LUA_REGISTRYINDEX, ref);
  lua_State *T = lua_tothread(s->L, -1);
  lua_pop(s->L, 1);
  if (!T || lua_status(T) != LUA_YIELD) return throw_msg(env, "coroutine is not suspended");
  napi_create_array(env, &out);
  return run(env, s, T, argv[2], budget, out, 0);
}

static napi_value js_release(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t ref;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  State *s = get_state(env, argv[0]);
  if (!s) return NULL;
  napi_get_value_int32(env, argv[1], &ref);
  lua_rawgeti(s->L, LUA_REGISTRYINDEX, ref);
  lua_State *T = lua_tothread(s->L, -1);
  lua_pop(s->L, 1);
  if (T && lua_status(T) == 0 && lua_gettop(T) == 0 && s->npool < POOL_MAX) {
    s->pool[s->npool++] = ref;
    return NULL;
  }
  luaL_unref(s->L, LUA_REGISTRYINDEX, ref);
  return NULL;
}

/* setIo(st, u8array, queueBytes): the shared buffer of q() and the prefetch (kept referenced) */
static napi_value js_set_io(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_typedarray_type tt;
  size_t len, off;
  void *data;
  napi_value ab;
  double qb = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  State *s = get_state(env, argv[0]);
  if (!s) return NULL;
  if (napi_get_typedarray_info(env, argv[1], &tt, &len, &data, &ab, &off) != napi_ok || tt != napi_uint8_array) return throw_msg(env, "setIo: Uint8Array expected");
  napi_get_value_double(env, argv[2], &qb);
  if (qb < 16 || (size_t)qb >= len) return throw_msg(env, "setIo: bad queue size");
  if (s->io_ref) napi_delete_reference(env, s->io_ref);
  napi_create_reference(env, argv[1], 1, &s->io_ref);
  s->io = (unsigned char *)data;
  s->qcap = (size_t)qb;
  s->iocap = len;
  memset(s->io, 0, 4);
  return NULL;
}

static napi_value js_memory(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], v;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  State *s = get_state(env, argv[0]);
  if (!s) return NULL;
  napi_create_double(env, (double)s->mem_used, &v);
  return v;
}

static napi_value js_gc(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  State *s = get_state(env, argv[0]);
  if (!s) return NULL;
  lua_gc(s->L, LUA_GCCOLLECT, 0);
  return NULL;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  State *s = NULL;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (napi_get_value_external(env, argv[0], (void **)&s) == napi_ok && s) close_state(env, s);
  return NULL;
}

static napi_value js_version(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value v;
  napi_create_string_utf8(env, LUAJIT_VERSION, NAPI_AUTO_LENGTH, &v);
  return v;
}

static napi_value module_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"init", NULL, js_init, NULL, NULL, NULL, napi_default, NULL},
    {"newState", NULL, js_new_state, NULL, NULL, NULL, napi_default, NULL},
    {"setHostTable", NULL, js_set_host_table, NULL, NULL, NULL, napi_default, NULL},
    {"exec", NULL, js_exec, NULL, NULL, NULL, napi_default, NULL},
    {"takeEntry", NULL, js_take_entry, NULL, NULL, NULL, napi_default, NULL},
    {"start", NULL, js_start, NULL, NULL, NULL, napi_default, NULL},
    {"startHook", NULL, js_start_hook, NULL, NULL, NULL, napi_default, NULL},
    {"resume", NULL, js_resume, NULL, NULL, NULL, napi_default, NULL},
    {"release", NULL, js_release, NULL, NULL, NULL, napi_default, NULL},
    {"setIo", NULL, js_set_io, NULL, NULL, NULL, napi_default, NULL},
    {"memory", NULL, js_memory, NULL, NULL, NULL, napi_default, NULL},
    {"gc", NULL, js_gc, NULL, NULL, NULL, napi_default, NULL},
    {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
    {"version", NULL, js_version, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, module_init)
