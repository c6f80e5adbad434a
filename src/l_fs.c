/* Host filesystem facts Lua has no way to get: directory listings, lstat,
 * symlink targets, whether a descriptor is a terminal. Used to walk a build
 * context or a tree to put into a box, and by lockup.progress. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "l_core.h"


static const char *kind(mode_t m) {
    return S_ISREG(m) ? "file" : S_ISDIR(m) ? "dir" : S_ISLNK(m) ? "symlink" : "other";
}

/* core.lstat(path [, follow]) -> {type = "file"|"dir"|"symlink"|"other", mode, size, mtime}
 *   | nil, err, errno. With follow, a symlink is followed (stat). */
static int l_lstat(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (lua_toboolean(L, 2) ? stat(path, &st) : lstat(path, &st)) return lk_push_errno(L, path);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, kind(st.st_mode));
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
    lua_setfield(L, -2, "mode");
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)st.st_mtime);
    lua_setfield(L, -2, "mtime");
    return 1;
}

/* core.readlink(path) -> target | nil, err, errno */
static int l_readlink(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    char buf[PATH_MAX];
    ssize_t n = readlink(path, buf, sizeof buf);
    if (n < 0) return lk_push_errno(L, path);
    if ((size_t)n == sizeof buf) {
        errno = ENAMETOOLONG;
        return lk_push_errno(L, path);
    }
    lua_pushlstring(L, buf, (size_t)n);
    return 1;
}

/* core.listdir(path) -> {names...} (unsorted, without . and ..) | nil, err, errno */
static int l_listdir(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    lua_newtable(L); /* before opendir: an allocation error must not leak the DIR */
    DIR *d = opendir(path);
    if (!d) return lk_push_errno(L, path);
    int i = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            lua_pushstring(L, e->d_name); /* may raise on memory: then the DIR leaks, once */
            lua_rawseti(L, -2, ++i);
        }
        errno = 0;
    }
    int err = errno;
    closedir(d);
    if (err) {
        errno = err;
        return lk_push_errno(L, path);
    }
    return 1;
}

/* core.mkdir(path) -> true | nil, err, errno: a new directory, mode 0700 */
static int l_mkdir(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    if (mkdir(path, 0700)) return lk_push_errno(L, path);
    lua_pushboolean(L, 1);
    return 1;
}

/* core.rmdir(path) -> true | nil, err, errno */
static int l_rmdir(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    if (rmdir(path)) return lk_push_errno(L, path);
    lua_pushboolean(L, 1);
    return 1;
}

/* core.isatty(fd) -> whether the descriptor is a terminal */
static int l_isatty(lua_State *L) {
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}

void lk_open_fs(lua_State *L) {
    static const luaL_Reg funcs[] = {{"lstat", l_lstat}, {"readlink", l_readlink}, {"listdir", l_listdir},
                                     {"isatty", l_isatty}, {"mkdir", l_mkdir}, {"rmdir", l_rmdir}, {NULL, NULL}};
    luaL_setfuncs(L, funcs, 0);
}
