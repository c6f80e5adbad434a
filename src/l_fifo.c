/* Binding of fifo.c: the host's side of a fifo lane, as userdata "lockup.fifo". */

#include "fifo.h"
#include "l_core.h"

static lk_fifo *get(lua_State *L) { return luaL_checkudata(L, 1, LK_FIFO); }

lk_fifo *lk_check_fifo(lua_State *L, int i) {
    lk_fifo *f = luaL_checkudata(L, i, LK_FIFO);
    if (f->in < 0) luaL_error(L, "attempt to use a closed lane");
    return f;
}

/* core.fifo(dir, uid, gid) -> fifo | nil, err, errno: creates the lane
 * directory `dir` for a box running as uid:gid (see fifo.h). */
static int l_new(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);
    lua_Integer uid = luaL_checkinteger(L, 2), gid = luaL_checkinteger(L, 3);
    lk_fifo *f = lua_newuserdata(L, sizeof *f);
    const char *why;
    if (lk_fifo_open(f, dir, (long)uid, (long)gid, &why)) return lk_push_errno(L, why);
    luaL_setmetatable(L, LK_FIFO);
    return 1;
}

/* f:send(data [, from]) -> bytes sent from `from` on | false (would block) | nil, err, errno */
static int l_send(lua_State *L) {
    lk_fifo *f = lk_check_fifo(L, 1);
    size_t len, n;
    const char *p = lk_check_send(L, &len);
    int r = lk_fifo_send(f, p, len, &n);
    if (r == LK_FAIL) return lk_push_errno(L, "writing the lane");
    return lk_push_sent(L, r, n);
}

/* f:fds() -> in, out, err: the host's descriptors, to wait on */
static int l_fds(lua_State *L) {
    lk_fifo *f = lk_check_fifo(L, 1);
    lua_pushinteger(L, f->in);
    lua_pushinteger(L, f->out[0]);
    lua_pushinteger(L, f->out[1]);
    return 3;
}

/* f:poke() -> true | false (words pile up unread) | nil, err, errno: asks the
 * lifeline to kill the steps' processes (fifo.h). */
static int l_poke(lua_State *L) {
    int r = lk_fifo_poke(lk_check_fifo(L, 1));
    if (r == LK_FAIL) return lk_push_errno(L, "writing the lane's life FIFO");
    lua_pushboolean(L, r == LK_OK);
    return 1;
}

static int l_answered(lua_State *L) {
    lk_fifo_answered(lk_check_fifo(L, 1));
    return 0;
}

/* __gc, __close and close(): idempotent. */
static int l_close(lua_State *L) {
    lk_fifo_close(get(L));
    return 0;
}

static int l_tostring(lua_State *L) {
    lk_fifo *f = get(L);
    lua_pushfstring(L, "lockup.fifo (%s%s)", f->dir, f->in < 0 ? ", closed" : "");
    return 1;
}

/* core.fifo_parent(path) -> true | nil, err, errno: makes the lanes' private parent. */
static int l_parent(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    const char *why;
    if (lk_fifo_parent(path, &why)) {
        lua_pushfstring(L, "%s (%s)", why, path);
        return lk_push_errno(L, lua_tostring(L, -1));
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* core.fifo_remove(dir) -> true | nil, err, errno: removes a lane left behind. */
static int l_remove(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);
    if (lk_fifo_remove(dir)) return lk_push_errno(L, dir);
    lua_pushboolean(L, 1);
    return 1;
}

void lk_open_fifo(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"send", l_send}, {"fds", l_fds}, {"poke", l_poke}, {"answered", l_answered}, {"close", l_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {
        {"__gc", l_close}, {"__close", l_close}, {"__tostring", l_tostring}, {NULL, NULL}};
    static const luaL_Reg funcs[] = {
        {"fifo", l_new}, {"fifo_parent", l_parent}, {"fifo_remove", l_remove}, {NULL, NULL}};
    lk_class(L, LK_FIFO, methods, meta);
    luaL_setfuncs(L, funcs, 0);
}
