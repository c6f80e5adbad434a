/* core.poller(): an epoll instance, as userdata "lockup.poller", for the loop
 * of lockup.scheduler. Registrations persist from one wait to the next, so a
 * wait costs what is ready, not what is watched (core.poll rebuilds its whole
 * pollfd list each call). Each watch is one-shot (EPOLLONESHOT): it fires at
 * most once, and the next watch of the fd arms it again.
 *
 * Also the raw pipe a spec or a bench needs to make an fd ready on demand:
 * core.pipe, core.fd_read, core.fd_write, core.fd_close. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "l_core.h"

#define MAX_EVENTS 256
#define MAX_TOKEN 9007199254740992.0 /* 2^53: a LuaJIT number holds every integer up to it */

typedef struct {
    int fd; /* the epoll instance; -1 once closed */
} poller;

static poller *check_open(lua_State *L) {
    poller *p = luaL_checkudata(L, 1, LK_POLLER);
    if (p->fd < 0) luaL_error(L, "attempt to use a closed poller");
    return p;
}

static int check_fd(lua_State *L, int i) {
    lua_Integer fd = luaL_checkinteger(L, i);
    luaL_argcheck(L, fd >= 0 && fd <= INT_MAX, i, "not a file descriptor");
    return (int)fd;
}

/* core.poller() -> poller | nil, err, errno */
static int l_new(lua_State *L) {
    poller *p = lua_newuserdata(L, sizeof *p);
    p->fd = -1;
    luaL_setmetatable(L, LK_POLLER);
    p->fd = epoll_create1(EPOLL_CLOEXEC);
    if (p->fd < 0) return lk_push_errno(L, "epoll_create1");
    return 1;
}

/* p:watch(fd, want [, token]) -> true | false | nil, err, errno
 * Arms fd for want ("r", "w" or "rw"), once; the event carries token (an
 * integer from 0 to 2^53; default fd). false: fd is a regular file (or
 * another kind epoll refuses, EPERM), which is always ready, so nothing is
 * armed and the caller goes on at once. MOD first: a watched fd is re-armed
 * in one call; ENOENT means it was never added, or was closed (which removes
 * it) and its number reused, and ADD covers both. */
static int l_watch(lua_State *L) {
    poller *p = check_open(L);
    int fd = check_fd(L, 2);
    const char *want = luaL_checkstring(L, 3);
    uint32_t events = 0;
    if (strchr(want, 'r')) events |= EPOLLIN;
    if (strchr(want, 'w')) events |= EPOLLOUT;
    luaL_argcheck(L, events && strspn(want, "rw") == strlen(want), 3, "\"r\", \"w\" or \"rw\" expected");
    lua_Number token = lua_isnoneornil(L, 4) ? (lua_Number)fd : luaL_checknumber(L, 4);
    luaL_argcheck(L, token >= 0 && token <= MAX_TOKEN && token == (lua_Number)(uint64_t)token, 4,
                  "an integer from 0 to 2^53 expected");
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events | EPOLLONESHOT;
    ev.data.u64 = (uint64_t)token;
    int r = epoll_ctl(p->fd, EPOLL_CTL_MOD, fd, &ev);
    if (r < 0 && errno == ENOENT) {
        r = epoll_ctl(p->fd, EPOLL_CTL_ADD, fd, &ev);
        if (r < 0 && errno == EEXIST) r = epoll_ctl(p->fd, EPOLL_CTL_MOD, fd, &ev);
    }
    if (r == 0 || errno == EPERM) {
        lua_pushboolean(L, r == 0);
        return 1;
    }
    return lk_push_errno(L, "epoll_ctl");
}

/* p:unwatch(fd) -> true: forgets fd (nothing to do when it was not watched,
 * or is closed already). */
static int l_unwatch(lua_State *L) {
    poller *p = check_open(L);
    int fd = check_fd(L, 2);
    struct epoll_event ev; /* kernels before 2.6.9 want one even for DEL */
    memset(&ev, 0, sizeof ev);
    if (epoll_ctl(p->fd, EPOLL_CTL_DEL, fd, &ev) < 0 && errno != ENOENT && errno != EBADF)
        return lk_push_errno(L, "epoll_ctl");
    lua_pushboolean(L, 1);
    return 1;
}

/* p:wait(timeout_seconds) -> {token1, ready1, token2, ready2, ...}
 * ready: 1 readable, 2 writable, 3 both, or an error or hangup (then the
 * next read or write reports it). timeout < 0: wait until something is ready.
 * A signal ends the wait early with an empty list. */
static int l_wait(lua_State *L) {
    poller *p = check_open(L);
    lua_Number t = luaL_checknumber(L, 2);
    int ms = t < 0 ? -1 : t > 86400 ? 86400000 : (int)(t * 1000 + 0.999);
    struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(p->fd, evs, MAX_EVENTS, ms);
    if (n < 0 && errno != EINTR) return luaL_error(L, "epoll_wait: %s", strerror(errno));
    if (n < 0) n = 0;
    lua_createtable(L, 2 * n, 0);
    for (int i = 0; i < n; i++) {
        uint32_t e = evs[i].events;
        int ready = (e & (EPOLLERR | EPOLLHUP)) ? 3 : ((e & EPOLLIN) ? 1 : 0) | ((e & EPOLLOUT) ? 2 : 0);
        lua_pushinteger(L, (lua_Integer)evs[i].data.u64);
        lua_rawseti(L, -2, 2 * i + 1);
        lua_pushinteger(L, ready);
        lua_rawseti(L, -2, 2 * i + 2);
    }
    return 1;
}

/* __gc, __close and close(): idempotent. */
static int l_close(lua_State *L) {
    poller *p = luaL_checkudata(L, 1, LK_POLLER);
    if (p->fd >= 0) {
        close(p->fd);
        p->fd = -1;
    }
    return 0;
}

static int l_tostring(lua_State *L) {
    poller *p = luaL_checkudata(L, 1, LK_POLLER);
    if (p->fd < 0)
        lua_pushliteral(L, "lockup.poller (closed)");
    else
        lua_pushfstring(L, "lockup.poller (epoll fd %d)", p->fd);
    return 1;
}

/* core.pipe() -> read_fd, write_fd | nil, err, errno: both non-blocking, close-on-exec */
static int l_pipe(lua_State *L) {
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) return lk_push_errno(L, "pipe2");
    lua_pushinteger(L, fds[0]);
    lua_pushinteger(L, fds[1]);
    return 2;
}

/* core.fd_read(fd [, max]) -> bytes ("" at EOF) | false (would block) | nil, err, errno */
static int l_fd_read(lua_State *L) {
    int fd = check_fd(L, 1);
    lua_Integer max = luaL_optinteger(L, 2, 4096);
    luaL_argcheck(L, max > 0 && max <= 4096, 2, "1 to 4096 bytes");
    char buf[4096];
    ssize_t n;
    do n = read(fd, buf, (size_t)max);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (n < 0) return lk_push_errno(L, "read");
    lua_pushlstring(L, buf, (size_t)n);
    return 1;
}

/* core.fd_write(fd, data) -> bytes written | false (would block) | nil, err, errno */
static int l_fd_write(lua_State *L) {
    int fd = check_fd(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    ssize_t n;
    do n = write(fd, data, len);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (n < 0) return lk_push_errno(L, "write");
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

/* core.fd_close(fd) -> true | nil, err, errno */
static int l_fd_close(lua_State *L) {
    if (close(check_fd(L, 1)) < 0) return lk_push_errno(L, "close");
    lua_pushboolean(L, 1);
    return 1;
}

void lk_open_poller(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"watch", l_watch}, {"unwatch", l_unwatch}, {"wait", l_wait}, {"close", l_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {
        {"__gc", l_close}, {"__close", l_close}, {"__tostring", l_tostring}, {NULL, NULL}};
    static const luaL_Reg funcs[] = {{"poller", l_new},         {"pipe", l_pipe},           {"fd_read", l_fd_read},
                                     {"fd_write", l_fd_write}, {"fd_close", l_fd_close}, {NULL, NULL}};
    lk_class(L, LK_POLLER, methods, meta);
    luaL_setfuncs(L, funcs, 0);
}
