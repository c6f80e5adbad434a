/* Binding of conn.c: a non-blocking connection, as userdata "lockup.conn". */
#include <string.h>

#include "l_core.h"

typedef struct {
    lk_conn *c;
} box_conn;

static box_conn *get(lua_State *L) { return luaL_checkudata(L, 1, LK_CONN); }

lk_conn *lk_check_conn(lua_State *L, int i) {
    box_conn *b = luaL_checkudata(L, i, LK_CONN);
    if (!b->c) luaL_error(L, "attempt to use a closed connection");
    return b->c;
}

int lk_push_conn_error(lua_State *L, lk_conn *c, const char *what) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, lk_conn_error(c));
    lua_pushinteger(L, lk_conn_errno(c));
    return 3;
}

static const char *want_name(int want) {
    return want == (LK_WANT_READ | LK_WANT_WRITE) ? "rw" : want == LK_WANT_WRITE ? "w" : "r";
}

/* tls.<name>: a string, or NULL when absent. */
static const char *opt_field(lua_State *L, int i, const char *name) {
    lua_getfield(L, i, name); /* (returns nothing under LuaJIT) */
    int t = lua_type(L, -1);
    if (t != LUA_TNIL && t != LUA_TSTRING) luaL_error(L, "bad TLS option '%s' (string expected)", name);
    const char *s = lua_tostring(L, -1);
    lua_pop(L, 1); /* the table at i still holds the string: it outlives the pop */
    return s;
}

/* core.conn(url [, unix_path [, connect_timeout_seconds [, tls]]]), tls =
 * {ca =, cert =, key = (file names), verify = boolean} with an https:// URL
 * (checked by lockup.docker). */
static int l_new(lua_State *L) {
    const char *url = luaL_checkstring(L, 1);
    const char *path = luaL_optstring(L, 2, NULL);
    lua_Number t = luaL_optnumber(L, 3, 30);
    lk_tls tls, *tp = NULL;
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        tls.ca = opt_field(L, 4, "ca");
        tls.cert = opt_field(L, 4, "cert");
        tls.key = opt_field(L, 4, "key");
        lua_getfield(L, 4, "verify");
        tls.verify = lua_toboolean(L, -1);
        lua_pop(L, 1);
        tp = &tls;
    }
    box_conn *b = lua_newuserdata(L, sizeof *b);
    b->c = NULL;
    luaL_setmetatable(L, LK_CONN);
    b->c = lk_conn_new(url, path, (long)(t * 1000), tp);
    if (!b->c) return luaL_error(L, "out of memory");
    return 1;
}

/* c:connect() -> true | false, fd, want, timeout_seconds | nil, err, errno */
static int l_connect(lua_State *L) {
    lk_conn *c = lk_check_conn(L, 1);
    int fd, want;
    long ms;
    int r = lk_conn_connect(c, &fd, &want, &ms);
    if (r == LK_FAIL) return lk_push_conn_error(L, c, "connect");
    lua_pushboolean(L, r == LK_OK);
    if (r == LK_OK) return 1;
    lua_pushinteger(L, fd);
    lua_pushstring(L, want_name(want));
    if (ms >= 0) lua_pushnumber(L, (lua_Number)ms / 1000);
    else lua_pushnil(L);
    return 4;
}

/* c:send(data [, from]) -> bytes sent from `from` on | false (would block) | nil, err, errno */
static int l_send(lua_State *L) {
    lk_conn *c = lk_check_conn(L, 1);
    size_t len, n;
    const char *p = lk_check_send(L, &len);
    int r = lk_conn_send(c, p, len, &n);
    if (r == LK_FAIL) return lk_push_conn_error(L, c, "send");
    return lk_push_sent(L, r, n);
}

static int l_shutdown(lua_State *L) {
    lk_conn *c = lk_check_conn(L, 1);
    if (lk_conn_shutdown_write(c) != LK_OK) return lk_push_conn_error(L, c, "shutdown");
    lua_pushboolean(L, 1);
    return 1;
}

/* c:pending() -> whether a receive may find bytes that polling the descriptor
 * would not show (TLS: see lk_conn_maybe_pending). */
static int l_pending(lua_State *L) {
    lua_pushboolean(L, lk_conn_maybe_pending(lk_check_conn(L, 1)));
    return 1;
}

static int l_tls(lua_State *L) {
    lua_pushboolean(L, lk_conn_tls(lk_check_conn(L, 1)));
    return 1;
}

static int l_fd(lua_State *L) {
    lua_pushinteger(L, lk_conn_fd(lk_check_conn(L, 1)));
    return 1;
}

/* __gc, __close and close(): idempotent. */
static int l_close(lua_State *L) {
    box_conn *b = get(L);
    lk_conn_free(b->c);
    b->c = NULL;
    return 0;
}

static int l_closed(lua_State *L) {
    lua_pushboolean(L, get(L)->c == NULL);
    return 1;
}

static int l_tostring(lua_State *L) {
    box_conn *b = get(L);
    if (b->c) lua_pushfstring(L, "lockup.conn (fd %d)", lk_conn_fd(b->c));
    else lua_pushliteral(L, "lockup.conn (closed)");
    return 1;
}

void lk_open_conn(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"connect", l_connect}, {"send", l_send}, {"shutdown", l_shutdown},
        {"fd", l_fd},           {"close", l_close}, {"closed", l_closed},
        {"pending", l_pending}, {"tls", l_tls},     {NULL, NULL}};
    static const luaL_Reg meta[] = {
        {"__gc", l_close}, {"__close", l_close}, {"__tostring", l_tostring}, {NULL, NULL}};
    lk_class(L, LK_CONN, methods, meta);
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "conn");
}
