/* The inmate protocol's frames as they come out of a jail, as userdata
 * "lockup.frames" over frame.c: f:feed(bytes) returns the frames those bytes
 * complete. Everything here is untrusted data; the codec decodes the payloads. */
#include <string.h>

#include "frame.h"
#include "l_core.h"

static lk_frame *get(lua_State *L) { return luaL_checkudata(L, 1, LK_FRAMES); }

/* core.frames([max_bytes]) -> a parser refusing payloads over max_bytes (default 4 MiB) */
static int l_new(lua_State *L) {
    lua_Integer max = luaL_optinteger(L, 1, LK_FRAME_DEFAULT_MAX);
    luaL_argcheck(L, max >= 0 && max <= 0xffffffff, 1, "a size in bytes from 0 to 2^32 - 1 expected");
    lk_frame *f = lua_newuserdata(L, sizeof *f);
    lk_frame_init(f, (uint32_t)max);
    luaL_setmetatable(L, LK_FRAMES);
    return 1;
}

/* f:feed(bytes) -> {{type = "H", payload = "..."}, ...} (maybe empty)
 *                | nil, err, {the frames completed before the failure}
 * The frames before a failure come back too, so what the caller sees does not
 * depend on how the stream was cut into reads. */
static int l_feed(lua_State *L) {
    lk_frame *f = get(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    lua_newtable(L);
    for (int k = 1;; k++) {
        size_t used;
        int r = lk_frame_feed(f, p, n, &used);
        p += used;
        n -= used;
        if (r == LK_FRAME_MORE) return 1;
        if (r == LK_FRAME_ERROR) {
            if (f->error == lk_frame_err_oom) return luaL_error(L, "out of memory");
            lua_pushnil(L);
            lua_pushstring(L, f->error);
            lua_pushvalue(L, -3);
            return 3;
        }
        lua_createtable(L, 0, 2);
        char type = (char)f->type;
        lua_pushlstring(L, &type, 1);
        lua_setfield(L, -2, "type");
        lua_pushlstring(L, f->payload.data ? f->payload.data : "", f->payload.len);
        lua_setfield(L, -2, "payload");
        lua_rawseti(L, -2, k);
    }
}

/* f:buffered() -> bytes of an incomplete frame held (nonzero at the end of the
 * stream: it was cut short) */
static int l_buffered(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)lk_frame_buffered(get(L)));
    return 1;
}

static int l_gc(lua_State *L) {
    lk_frame_free(get(L));
    return 0;
}

void lk_open_frames(lua_State *L) {
    static const luaL_Reg methods[] = {{"feed", l_feed}, {"buffered", l_buffered}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", l_gc}, {NULL, NULL}};
    lk_class(L, LK_FRAMES, methods, meta);
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "frames");
}
