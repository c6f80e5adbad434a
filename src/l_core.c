/* lockup.core: the C half of lockup. Private: the Lua modules in lua/lockup wrap it. */
#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "l_core.h"

/* Helpers the binding files share (declared in l_core.h). */

int lk_push_errno(lua_State *L, const char *what) {
    int e = errno;
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", what, strerror(e));
    lua_pushinteger(L, e);
    return 3;
}

const char *lk_check_send(lua_State *L, size_t *len) {
    size_t all;
    const char *p = luaL_checklstring(L, 2, &all);
    lua_Integer from = luaL_optinteger(L, 3, 1);
    luaL_argcheck(L, from >= 1 && (size_t)from <= all + 1, 3, "out of range");
    *len = all - (size_t)(from - 1);
    return p + from - 1;
}

int lk_push_sent(lua_State *L, int rc, size_t n) {
    if (rc == LK_AGAIN) lua_pushboolean(L, 0);
    else lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

/* core.monotime() -> seconds from a monotonic clock */
static int l_monotime(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

/* The OS's CSPRNG, drawn a page at a time: a step takes 16 bytes for its
 * token, and one getrandom call per step would be most of a step's syscalls. */
static unsigned char pool[4096];
static size_t pool_left;

static int draw(unsigned char *out, size_t n) {
    while (n > 0) {
        if (pool_left == 0) {
            ssize_t r = getrandom(pool, sizeof pool, 0);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) return -1;
            pool_left = (size_t)r;
        }
        size_t k = n < pool_left ? n : pool_left;
        memcpy(out, pool + sizeof pool - pool_left, k);
        memset(pool + sizeof pool - pool_left, 0, k); /* a value is handed out once */
        pool_left -= k;
        out += k;
        n -= k;
    }
    return 0;
}

/* core.random_hex(nbytes) -> 2*nbytes hex digits from the OS's CSPRNG */
static int l_random_hex(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n > 0 && n <= 64, 1, "1 to 64 bytes");
    unsigned char raw[64];
    char hex[128];
    if (draw(raw, (size_t)n)) return luaL_error(L, "getrandom: %s", strerror(errno));
    for (lua_Integer i = 0; i < n; i++) {
        hex[2 * i] = "0123456789abcdef"[raw[i] >> 4];
        hex[2 * i + 1] = "0123456789abcdef"[raw[i] & 15];
    }
    lua_pushlstring(L, hex, (size_t)n * 2);
    return 1;
}

/* core.poll(list, timeout_seconds) -> ready
 * list = {fd1, want1, fd2, want2, ...} with want "r", "w" or "rw";
 * ready[i] = true for each pair i (1-based) that can go on. An error or hangup
 * counts as ready: the next read or write reports it. timeout < 0: wait forever. */
static int l_poll(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Number t = luaL_checknumber(L, 2);
    int n = (int)(lk_rawlen(L, 1) / 2);
    struct pollfd stack[64];
    struct pollfd *fds = n <= 64 ? stack : lua_newuserdata(L, sizeof *fds * (size_t)n);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, 1, 2 * i + 1);
        lua_rawgeti(L, 1, 2 * i + 2);
        const char *want = lua_tostring(L, -1);
        fds[i].fd = (int)lua_tointeger(L, -2);
        fds[i].events = 0;
        if (want && strchr(want, 'r')) fds[i].events |= POLLIN;
        if (want && strchr(want, 'w')) fds[i].events |= POLLOUT;
        fds[i].revents = 0;
        lua_pop(L, 2);
    }
    int ms = t < 0 ? -1 : t > 86400 ? 86400000 : (int)(t * 1000 + 0.999);
    int r = poll(fds, (nfds_t)n, ms);
    if (r < 0 && errno != EINTR) return luaL_error(L, "poll: %s", strerror(errno));
    lua_createtable(L, n, 0);
    for (int i = 0; r > 0 && i < n; i++)
        if (fds[i].revents) {
            lua_pushboolean(L, 1);
            lua_rawseti(L, -2, i + 1);
        }
    return 1;
}

static int l_getpid(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

static int l_geteuid(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)geteuid());
    return 1;
}

/* core.pid_alive(pid) -> whether a process with that pid exists on this host */
static int l_pid_alive(lua_State *L) {
    lua_Integer pid = luaL_checkinteger(L, 1);
    lua_pushboolean(L, pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM));
    return 1;
}

__attribute__((visibility("default"))) int luaopen_lockup_core(lua_State *L) {
    static const luaL_Reg funcs[] = {{"monotime", l_monotime}, {"random_hex", l_random_hex},
                                     {"poll", l_poll},         {"getpid", l_getpid}, {"geteuid", l_geteuid},
                                     {"pid_alive", l_pid_alive}, {NULL, NULL}};
    /* Not thread-safe, and the first call does the work: a Lua state loads this once. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return luaL_error(L, "curl_global_init failed");
    luaL_newlib(L, funcs);
    lk_open_conn(L);
    lk_open_response(L);
    lk_open_stream(L);
    lk_open_frames(L);
    lk_open_tar(L);
    lk_open_hash(L);
    lk_open_fs(L);
    lk_open_fifo(L);
    lk_open_poller(L);
    lk_open_cgroup(L);
    lua_pushstring(L, curl_version());
    lua_setfield(L, -2, "curl_version");
    return 1;
}
