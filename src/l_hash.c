/* SHA-256 through OpenSSL's libcrypto (already loaded with libcurl), as
 * userdata "lockup.sha256": content-derived image tags hash whole trees. */
#include <errno.h>
#include <openssl/evp.h>
#include <string.h>
#include <unistd.h>

#include "hostfile.h"
#include "l_core.h"

typedef struct {
    EVP_MD_CTX *ctx;
} hasher;

static hasher *get(lua_State *L) {
    hasher *h = luaL_checkudata(L, 1, LK_SHA256);
    if (!h->ctx) luaL_error(L, "attempt to use a finished hash");
    return h;
}

/* h:update(bytes) -> h */
static int l_update(lua_State *L) {
    hasher *h = get(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (!EVP_DigestUpdate(h->ctx, p, n)) return luaL_error(L, "sha256 update failed");
    lua_settop(L, 1);
    return 1;
}

/* h:update_file(path [, id [, follow [, offset [, max]]]]) -> bytes read | nil,
 * err: the file's contents from offset (default 0), at most max bytes (default:
 * to its end), so that a caller that must not block long (a request inside
 * nginx) hashes a big file in slices; id and follow as for t:host_file
 * (l_tar.c): each slice opens the file again and checks it is the one listed. */
static int l_update_file(lua_State *L) {
    hasher *h = get(L);
    const char *path = luaL_checkstring(L, 2);
    struct stat st;
    char why[512];
    int fd = lk_open_listed(path, luaL_optstring(L, 3, NULL), lua_toboolean(L, 4), &st, why, sizeof why);
    if (fd < 0) {
        lua_pushnil(L);
        lua_pushstring(L, why);
        return 2;
    }
    lua_Integer offset = luaL_optinteger(L, 5, 0);
    int bounded = !lua_isnoneornil(L, 6);
    lua_Integer max = bounded ? luaL_checkinteger(L, 6) : 0;
    luaL_argcheck(L, offset >= 0, 5, "offset must be >= 0");
    luaL_argcheck(L, max >= 0, 6, "max must be >= 0");
    if (offset > 0 && lseek(fd, (off_t)offset, SEEK_SET) < 0) {
        int err = errno;
        close(fd);
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, strerror(err));
        return 2;
    }
    char buf[65536];
    lua_Integer total = 0;
    while (!bounded || total < max) {
        size_t want = bounded && max - total < (lua_Integer)sizeof buf ? (size_t)(max - total) : sizeof buf;
        ssize_t n = read(fd, buf, want);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int err = errno;
            close(fd);
            lua_pushnil(L);
            lua_pushfstring(L, "%s: %s", path, strerror(err));
            return 2;
        }
        if (n == 0) break;
        total += n;
        if (!EVP_DigestUpdate(h->ctx, buf, (size_t)n)) {
            close(fd);
            return luaL_error(L, "sha256 update failed");
        }
    }
    close(fd);
    lua_pushinteger(L, total);
    return 1;
}

/* h:hex() -> the digest as 64 hex digits; the hash is finished after it */
static int l_hex(lua_State *L) {
    hasher *h = get(L);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    int ok = EVP_DigestFinal_ex(h->ctx, md, &n);
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
    if (!ok) return luaL_error(L, "sha256 final failed");
    char hex[2 * EVP_MAX_MD_SIZE];
    for (unsigned i = 0; i < n; i++) {
        hex[2 * i] = "0123456789abcdef"[md[i] >> 4];
        hex[2 * i + 1] = "0123456789abcdef"[md[i] & 15];
    }
    lua_pushlstring(L, hex, 2 * (size_t)n);
    return 1;
}

static int l_gc(lua_State *L) {
    hasher *h = luaL_checkudata(L, 1, LK_SHA256);
    if (h->ctx) EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
    return 0;
}

/* core.sha256() -> a new hash */
static int l_new(lua_State *L) {
    hasher *h = lua_newuserdata(L, sizeof *h);
    h->ctx = NULL;
    luaL_setmetatable(L, LK_SHA256);
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || !EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL)) return luaL_error(L, "sha256: out of memory");
    return 1;
}

void lk_open_hash(lua_State *L) {
    static const luaL_Reg methods[] = {{"update", l_update}, {"update_file", l_update_file}, {"hex", l_hex},
                                       {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", l_gc}, {NULL, NULL}};
    lk_class(L, LK_SHA256, methods, meta);
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "sha256");
}
