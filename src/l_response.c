/* Binding of http.c: an HTTP response being read, as userdata "lockup.response". */
#include <string.h>

#include "buf.h"
#include "http.h"
#include "l_core.h"

#define PUMP_BUDGET (1 << 20) /* bytes read per pump before giving others a turn */

typedef struct {
    lk_http http;
    lk_buf body;   /* decoded body bytes not taken yet */
    lk_buf rest;   /* bytes read past the head: the body's start, or an upgraded stream */
    int oom;
} response;

static response *get(lua_State *L) { return luaL_checkudata(L, 1, LK_RESPONSE); }

static int on_body(void *ud, const char *p, size_t n) {
    response *r = ud;
    if (lk_buf_append(&r->body, p, n)) r->oom = 1;
    return r->oom;
}

static const char *state_name(int st) {
    return st == LK_HTTP_HEAD ? "head" : st == LK_HTTP_DONE ? "done" : "more";
}

/* Feeds p[0..n); keeps what follows the head in r->rest. Returns the parser state. */
static int feed(response *r, const char *p, size_t n) {
    size_t used = 0;
    int st = lk_http_feed(&r->http, p, n, &used, on_body, r);
    if (st == LK_HTTP_HEAD && used < n && lk_buf_append(&r->rest, p + used, n - used)) r->oom = 1;
    return st;
}

static int push_state(lua_State *L, response *r, int st) {
    if (r->oom) return luaL_error(L, "out of memory");
    if (st == LK_HTTP_ERROR) {
        lua_pushnil(L);
        lua_pushstring(L, r->http.error);
        return 2;
    }
    lua_pushstring(L, state_name(st));
    return 1;
}

/* core.response([head_request]) */
static int l_new(lua_State *L) {
    int no_body = lua_toboolean(L, 1);
    response *r = lua_newuserdata(L, sizeof *r);
    lk_http_init(&r->http);
    r->http.no_body = no_body;
    lk_buf_init(&r->body);
    lk_buf_init(&r->rest);
    r->oom = 0;
    luaL_setmetatable(L, LK_RESPONSE);
    return 1;
}

/* Past the head, the body bytes that came with it are fed first (none, for
 * a body that may be complete already). Returns LK_HTTP_MORE when the body
 * needs more than that. */
static int feed_rest(response *r) {
    if (!r->http.status) return LK_HTTP_MORE;
    lk_buf pending = r->rest;
    lk_buf_init(&r->rest);
    int st = feed(r, pending.data ? pending.data : "", pending.len);
    lk_buf_free(&pending);
    return st;
}

/* r:feed(data) -> "more" | "head" | "done" | nil, err  (bytes past the head:
 * r:rest(), or fed to the body by the next feed) */
static int l_feed(lua_State *L) {
    response *r = get(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    int st = feed_rest(r);
    if (st != LK_HTTP_MORE) return push_state(L, r, st);
    return push_state(L, r, feed(r, p, n));
}

/* r:finish() -> "done" | nil, err: the connection ended (for a reader that
 * reads for itself, such as a cosocket). */
static int l_finish(lua_State *L) {
    response *r = get(L);
    int st = feed_rest(r);
    if (st != LK_HTTP_MORE) return push_state(L, r, st);
    return push_state(L, r, lk_http_eof(&r->http));
}

/* r:pump(conn) -> "head" | "done" | "more" (read budget spent) | "wait" | nil, err
 * Reads from the connection until the head or the body is complete, or it would block. */
static int l_pump(lua_State *L) {
    response *r = get(L);
    lk_conn *c = lk_check_conn(L, 2);
    char buf[LK_READ_CHUNK];
    size_t total = 0;
    int st = LK_HTTP_MORE;
    if (r->http.status) { /* past the head: the body may be complete already */
        st = feed_rest(r);
        if (st != LK_HTTP_MORE) return push_state(L, r, st);
    }
    while (total < PUMP_BUDGET) {
        size_t n;
        int rc = lk_conn_recv(c, buf, sizeof buf, &n);
        if (rc == LK_AGAIN) {
            lua_pushboolean(L, 0);
            return 1;
        }
        if (rc == LK_FAIL) return lk_push_conn_error(L, c, "recv");
        if (rc == LK_EOF) return push_state(L, r, lk_http_eof(&r->http));
        total += n;
        st = feed(r, buf, n);
        if (st != LK_HTTP_MORE) return push_state(L, r, st);
    }
    lua_pushliteral(L, "more");
    return 1;
}

static int l_status(lua_State *L) {
    lua_pushinteger(L, get(L)->http.status);
    return 1;
}

static int l_keep_alive(lua_State *L) {
    lua_pushboolean(L, get(L)->http.keep_alive);
    return 1;
}

/* r:headers() -> {lowercase name = value}; repeated names are joined with ", " */
static int l_headers(lua_State *L) {
    response *r = get(L);
    lua_createtable(L, 0, (int)r->http.nheaders);
    for (size_t i = 0; i < r->http.nheaders; i++) {
        const char *name, *value;
        size_t nl, vl;
        lk_http_header(&r->http, i, &name, &nl, &value, &vl);
        lua_pushlstring(L, name, nl);
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushlstring(L, value, vl);
        } else {
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, value, vl);
            lua_concat(L, 3);
        }
        lua_rawset(L, -3);
    }
    return 1;
}

static int take(lua_State *L, lk_buf *b) {
    lua_pushlstring(L, b->data ? b->data : "", b->len);
    lk_buf_clear(b);
    return 1;
}

/* r:body() -> the body bytes decoded since the last call */
static int l_body(lua_State *L) { return take(L, &get(L)->body); }

/* r:rest() -> the bytes that followed the head (the stream after a 101 upgrade) */
static int l_rest(lua_State *L) { return take(L, &get(L)->rest); }

static int l_gc(lua_State *L) {
    response *r = get(L);
    lk_buf_free(&r->body);
    lk_buf_free(&r->rest);
    return 0;
}

void lk_open_response(lua_State *L) {
    static const luaL_Reg methods[] = {{"feed", l_feed},       {"finish", l_finish},       {"pump", l_pump},       {"status", l_status},
                                       {"headers", l_headers}, {"body", l_body},       {"rest", l_rest},
                                       {"keep_alive", l_keep_alive}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", l_gc}, {NULL, NULL}};
    lk_class(L, LK_RESPONSE, methods, meta);
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "response");
}
