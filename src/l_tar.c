/* Binding of tar.c: a tar stream being written, as userdata "lockup.tar".
 *
 *   local t = core.tar()
 *   t:file("a.txt", 420, "data")        t:dir("sub", 493)
 *   t:symlink("l", "a.txt")             t:host_file("big", "/path" [, mode, id, follow])
 *   repeat local chunk, more = t:take(65536) ... until not more
 *   t:finish(); local tail = t:take()
 */
#include "l_core.h"
#include "tar.h"

static lk_tar *get(lua_State *L) {
    lk_tar *t = luaL_checkudata(L, 1, LK_TAR);
    if (!t->a) luaL_error(L, "attempt to use a closed tar stream");
    return t;
}

static int push_error(lua_State *L, lk_tar *t) {
    lua_pushnil(L);
    lua_pushstring(L, t->error);
    return 2;
}

static int done(lua_State *L, lk_tar *t, int rc) {
    if (rc) return push_error(L, t);
    lua_pushboolean(L, 1);
    return 1;
}

static time_t mtime_arg(lua_State *L, int i) { return (time_t)luaL_optinteger(L, i, (lua_Integer)time(NULL)); }

/* t:file(name, mode, data [, mtime]) -> true | nil, err */
static int l_file(lua_State *L) {
    lk_tar *t = get(L);
    const char *name = luaL_checkstring(L, 2);
    unsigned mode = (unsigned)luaL_checkinteger(L, 3);
    size_t n;
    const char *data = luaL_checklstring(L, 4, &n);
    if (lk_tar_header(t, name, LK_TAR_FILE, mode, (int64_t)n, NULL, mtime_arg(L, 5))) return push_error(L, t);
    return done(L, t, lk_tar_data(t, data, n));
}

/* t:dir(name, mode [, mtime]) -> true | nil, err */
static int l_dir(lua_State *L) {
    lk_tar *t = get(L);
    const char *name = luaL_checkstring(L, 2);
    unsigned mode = (unsigned)luaL_checkinteger(L, 3);
    return done(L, t, lk_tar_header(t, name, LK_TAR_DIR, mode, 0, NULL, mtime_arg(L, 4)));
}

/* t:symlink(name, target [, mtime]) -> true | nil, err */
static int l_symlink(lua_State *L) {
    lk_tar *t = get(L);
    const char *name = luaL_checkstring(L, 2);
    const char *target = luaL_checkstring(L, 3);
    return done(L, t, lk_tar_header(t, name, LK_TAR_SYMLINK, 0777, 0, target, mtime_arg(L, 4)));
}

/* t:host_file(name, path [, mode [, id [, follow]]]) -> true | nil, err: the
 * data follows in take(). id: the file's identity from core.lstat or
 * core.scandir (see hostfile.h); follow: path is the caller's own. */
static int l_host_file(lua_State *L) {
    lk_tar *t = get(L);
    const char *name = luaL_checkstring(L, 2);
    const char *path = luaL_checkstring(L, 3);
    int mode = lua_isnoneornil(L, 4) ? -1 : (int)(luaL_checkinteger(L, 4) & 07777);
    const char *id = luaL_optstring(L, 5, NULL);
    return done(L, t, lk_tar_host_file(t, name, path, mode, id, lua_toboolean(L, 6)));
}

/* t:take([max]) -> bytes, more | nil, err: up to about max bytes of the archive
 * (reading the pending host file as needed); `more` while that file has more. */
static int l_take(lua_State *L) {
    lk_tar *t = get(L);
    lua_Integer max = luaL_optinteger(L, 2, LK_READ_CHUNK);
    luaL_argcheck(L, max > 0, 2, "positive size expected");
    int more = lk_tar_pump(t, (size_t)max);
    if (more < 0) return push_error(L, t);
    lua_pushlstring(L, t->out.data ? t->out.data : "", t->out.len);
    lk_buf_clear(&t->out);
    lua_pushboolean(L, more);
    return 2;
}

/* t:finish() -> true | nil, err: the end of the archive (then take() the rest) */
static int l_finish(lua_State *L) {
    lk_tar *t = get(L);
    return done(L, t, lk_tar_finish(t));
}

static int l_close(lua_State *L) {
    lk_tar_free(luaL_checkudata(L, 1, LK_TAR));
    return 0;
}

/* core.tar() -> a new tar stream */
static int l_new(lua_State *L) {
    lk_tar *t = lua_newuserdata(L, sizeof *t);
    t->a = NULL;
    lk_buf_init(&t->out);
    t->fd = -1;
    luaL_setmetatable(L, LK_TAR);
    if (lk_tar_init(t)) {
        lua_pushstring(L, t->error);
        lk_tar_free(t);
        return lua_error(L);
    }
    return 1;
}

void lk_open_tar(lua_State *L) {
    static const luaL_Reg methods[] = {{"file", l_file}, {"dir", l_dir},       {"symlink", l_symlink},
                                       {"host_file", l_host_file}, {"take", l_take}, {"finish", l_finish},
                                       {"close", l_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", l_close}, {"__close", l_close}, {NULL, NULL}};
    lk_class(L, LK_TAR, methods, meta);
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "tar");
}
