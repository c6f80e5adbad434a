/* One source for Lua 5.4 and LuaJIT 2.1 (OpenResty), which speaks the 5.1 API. */
#ifndef LK_COMPAT_H
#define LK_COMPAT_H

#include <lauxlib.h>
#include <lua.h>

#if LUA_VERSION_NUM < 502
#ifndef luaL_newlib /* LuaJIT 2.1 built with 5.2 compatibility has these */
#define luaL_newlibtable(L, l) lua_createtable(L, 0, sizeof(l) / sizeof((l)[0]) - 1)
#define luaL_newlib(L, l) (luaL_newlibtable(L, l), luaL_setfuncs(L, l, 0))
static void luaL_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
    for (; l->name; l++) {
        for (int i = 0; i < nup; i++) lua_pushvalue(L, -nup);
        lua_pushcclosure(L, l->func, nup);
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}
static void *luaL_testudata(lua_State *L, int i, const char *tname) {
    void *p = lua_touserdata(L, i);
    if (!p || !lua_getmetatable(L, i)) return NULL;
    luaL_getmetatable(L, tname);
    if (!lua_rawequal(L, -1, -2)) p = NULL;
    lua_pop(L, 2);
    return p;
}
#endif
#ifndef luaL_setmetatable
#define luaL_setmetatable(L, name) (luaL_getmetatable(L, name), lua_setmetatable(L, -2))
#endif
#define lk_rawlen(L, i) lua_objlen(L, i)
/* LuaJIT has no integer subtype, and its luaL_checkinteger casts whatever
 * number it gets: 1.5 becomes 1, and a number beyond lua_Integer's range gives
 * what the cast gives (undefined behaviour; 2^63 and math.huge come out as
 * INT64_MIN on x86-64). These refuse both, with Lua 5.4's message, so a limit
 * or a descriptor reaches C as the caller wrote it or not at all. */
_Static_assert(sizeof(lua_Integer) == 8, "lockup expects a 64-bit lua_Integer (ptrdiff_t)");
static inline lua_Integer lk_checkinteger(lua_State *L, int i) {
    lua_Number d = luaL_checknumber(L, i);
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != (lua_Number)(lua_Integer)d)
        luaL_argerror(L, i, "number has no integer representation");
    return (lua_Integer)d;
}
static inline lua_Integer lk_optinteger(lua_State *L, int i, lua_Integer def) {
    return lua_isnoneornil(L, i) ? def : lk_checkinteger(L, i);
}
#define luaL_checkinteger lk_checkinteger
#define luaL_optinteger lk_optinteger
#else
#define lk_rawlen(L, i) lua_rawlen(L, i)
#endif

#if LUA_VERSION_NUM < 503
/* Lua 5.3+ names an object by its metatable's __name ("lockup.frames: 0x..."),
 * LuaJIT's tostring does not: a class without a __tostring of its own gets
 * this one, so the REPL shows the same on both. */
static inline int lk_tostring_by_name(lua_State *L) {
    luaL_getmetafield(L, 1, "__name");
    lua_pushfstring(L, "%s: %p", lua_tostring(L, -1), lua_topointer(L, 1));
    return 1;
}
#endif

/* Registers a class: metatable `name` with `__name`, `__index` = methods, and
 * the given metamethods. Leaves nothing on the stack. */
static inline void lk_class(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta) {
    luaL_newmetatable(L, name);
    luaL_setfuncs(L, meta, 0);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
#if LUA_VERSION_NUM < 503
    lua_getfield(L, -1, "__tostring");
    if (lua_isnil(L, -1)) {
        lua_pushcfunction(L, lk_tostring_by_name);
        lua_setfield(L, -3, "__tostring");
    }
    lua_pop(L, 1);
#endif
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

#endif
