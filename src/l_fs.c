/* Host filesystem facts Lua has no way to get: directory listings, lstat,
 * symlink targets, whether a descriptor is a terminal. Used to walk a build
 * context or a tree to put into a box (checked against a box that changes it
 * meanwhile: see hostfile.h), by the fifo lane and by lockup.progress. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hostfile.h"
#include "l_core.h"


static const char *kind(mode_t m) {
    return S_ISREG(m)    ? "file"
           : S_ISDIR(m)  ? "dir"
           : S_ISLNK(m)  ? "symlink"
           : S_ISSOCK(m) ? "socket"
                         : "other";
}

/* Pushes { type, mode, size, mtime, id } for a stat. */
static void push_stat(lua_State *L, const struct stat *st) {
    char id[LK_FILE_ID_MAX];
    lk_file_id(st, id);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, kind(st->st_mode));
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, (lua_Integer)(st->st_mode & 07777));
    lua_setfield(L, -2, "mode");
    lua_pushinteger(L, (lua_Integer)st->st_size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)st->st_mtime);
    lua_setfield(L, -2, "mtime");
    lua_pushstring(L, id);
    lua_setfield(L, -2, "id");
}

static int push_why(lua_State *L, const char *why) {
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
}

/* core.lstat(path [, follow]) -> {type = "file"|"dir"|"symlink"|"other", mode, size, mtime, id}
 *   | nil, err, errno. With follow, a symlink is followed (stat). id: the
 *   file's identity, for the checked opens of hostfile.h. */
static int l_lstat(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (lua_toboolean(L, 2) ? stat(path, &st) : lstat(path, &st)) return lk_push_errno(L, path);
    push_stat(L, &st);
    return 1;
}

/* Adds a symlink's target to the entry on top, read relative to directory dfd. */
static int add_target(lua_State *L, int dfd, const char *name) {
    char buf[PATH_MAX];
    ssize_t n = readlinkat(dfd, name, buf, sizeof buf);
    if (n < 0) return -1;
    if ((size_t)n == sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    lua_pushlstring(L, buf, (size_t)n);
    lua_setfield(L, -2, "target");
    return 0;
}

/* Fills the table on top with an entry per name in d (but . and ..), each
 * looked at relative to d, never through a path a box could change meanwhile.
 * Returns 0, or -1 with errno set and `failed` naming what failed. */
static int list_entries(lua_State *L, DIR *d, const char **failed) {
    int i = 0;
    struct dirent *e;
    struct stat st;
    errno = 0;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            *failed = e->d_name;
            if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW)) return -1;
            push_stat(L, &st); /* may raise on memory: then the DIR leaks, once */
            lua_pushstring(L, e->d_name);
            lua_setfield(L, -2, "name");
            if (S_ISLNK(st.st_mode) && add_target(L, dirfd(d), e->d_name)) return -1;
            lua_rawseti(L, -2, ++i);
        }
        errno = 0;
    }
    *failed = NULL;
    return errno ? -1 : 0;
}

/* core.scandir(path [, id]) -> { {name, type, mode, size, mtime, id [, target]}, ... }
 *   (unsorted, without . and ..) | nil, err: the directory `path` (never
 * through a symlink; with id, only the directory core.lstat or an earlier
 * scandir saw there), each entry as core.lstat says it, a symlink with its target. */
static int l_scandir(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    const char *id = luaL_optstring(L, 2, NULL);
    struct stat st;
    char why[512];
    lua_newtable(L); /* before opening: an allocation error must not leak the descriptor */
    int fd = lk_open_listed_dir(path, id, &st, why, sizeof why);
    if (fd < 0) return push_why(L, why);
    DIR *d = fdopendir(fd);
    if (!d) {
        int err = errno;
        close(fd);
        errno = err;
        return lk_push_errno(L, path);
    }
    const char *failed;
    int rc = list_entries(L, d, &failed);
    if (rc) snprintf(why, sizeof why, "%s%s%s: %s", path, failed ? "/" : "", failed ? failed : "", strerror(errno));
    closedir(d); /* frees the entry `failed` points into: the message is made */
    return rc ? push_why(L, why) : 1;
}

/* core.read_file(path, size [, id [, follow]]) -> bytes | nil, err: a small
 * host file a listing saw (size bytes), read whole through the checks of
 * hostfile.h; a file of another size now has changed since. */
static int l_read_file(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    lua_Integer size = luaL_checkinteger(L, 2);
    luaL_argcheck(L, size >= 0, 2, "size must not be negative");
    const char *id = luaL_optstring(L, 3, NULL);
    char *buf = lua_newuserdata(L, (size_t)size); /* before opening, as above */
    struct stat st;
    char why[512];
    int fd = lk_open_listed(path, id, lua_toboolean(L, 4), &st, why, sizeof why);
    if (fd < 0) return push_why(L, why);
    if (st.st_size != (off_t)size) {
        close(fd);
        snprintf(why, sizeof why, "%s: its size changed since it was listed", path);
        return push_why(L, why);
    }
    size_t got = 0;
    ssize_t n = 1;
    while (got < (size_t)size && (n = read(fd, buf + got, (size_t)size - got)) != 0) {
        if (n > 0) got += (size_t)n;
        else if (errno != EINTR) break;
    }
    int err = n < 0 ? errno : 0;
    close(fd);
    if (err || got != (size_t)size) {
        snprintf(why, sizeof why, "%s: %s", path, err ? strerror(err) : "it shrank while being read");
        return push_why(L, why);
    }
    lua_pushlstring(L, buf, got);
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

/* core.realpath(path) -> the absolute path with every symlink, "." and ".."
 *   resolved | nil, err, errno (the path must exist). For start's volumes:
 *   what a bind mount would really reach. */
static int l_realpath(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    char buf[PATH_MAX];
    if (!realpath(path, buf)) return lk_push_errno(L, path);
    lua_pushstring(L, buf);
    return 1;
}

/* core.isatty(fd) -> whether the descriptor is a terminal */
static int l_isatty(lua_State *L) {
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}

void lk_open_fs(lua_State *L) {
    static const luaL_Reg funcs[] = {{"lstat", l_lstat}, {"scandir", l_scandir}, {"read_file", l_read_file},
                                     {"listdir", l_listdir}, {"realpath", l_realpath},
                                     {"isatty", l_isatty}, {"mkdir", l_mkdir}, {"rmdir", l_rmdir}, {NULL, NULL}};
    luaL_setfuncs(L, funcs, 0);
}
