/* A box's cgroup files on the host, as userdata "lockup.cgroup": the CPU time
 * and the memory high-water mark of everything in the container, which
 * lockup.meter reads around each step. The files stay open: a step pays a
 * few pread(2)s, not opens (cgroup files regenerate at offset 0). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "cgroup.h"
#include "l_core.h"

static long user_hz = 100; /* sysconf(_SC_CLK_TCK), at lk_open_cgroup */

typedef struct {
    int version;       /* 1 or 2 */
    int cpu;           /* v1: cpuacct.stat; v2: cpu.stat */
    int peak;          /* v1: memory.max_usage_in_bytes; v2: memory.peak; -1: none */
    int begun;         /* user0 and sys0 hold the counts at begin */
    uint64_t user0, sys0;
} lk_cgroup;

static void close_all(lk_cgroup *g) {
    if (g->cpu >= 0) close(g->cpu);
    if (g->peak >= 0) close(g->peak);
    g->cpu = g->peak = -1;
}

/* The cgroup at index 1, or NULL once closed (the box was shut while a
 * call was metered: that call gets no figures, not an error). */
static lk_cgroup *get(lua_State *L) {
    lk_cgroup *g = luaL_checkudata(L, 1, LK_CGROUP);
    return g->cpu < 0 ? NULL : g;
}

/* The file's text from its start, NUL-free: its length, or -1. */
static ssize_t read_at0(int fd, char *buf, size_t size) {
    ssize_t n;
    do n = pread(fd, buf, size, 0);
    while (n < 0 && errno == EINTR);
    return n < (ssize_t)size ? n : -1; /* a file that fills buf is not one of ours */
}

static int read_u64(int fd, uint64_t *v) {
    char buf[64];
    ssize_t n = read_at0(fd, buf, sizeof buf);
    return n < 0 ? -1 : lk_cg_u64(buf, (size_t)n, v);
}

/* CPU time so far, user and system, in nanoseconds. One file, one read:
 * v1's cpuacct.stat counts in USER_HZ ticks (cpuacct.usage_user and
 * usage_sys have finer figures, but two reads cost a trivial step more than
 * issue 22 allows), v2's cpu.stat in microseconds. */
static int read_cpu(lk_cgroup *g, uint64_t *user, uint64_t *sys) {
    char buf[4096];
    ssize_t n = read_at0(g->cpu, buf, sizeof buf);
    if (n < 0) return -1;
    uint64_t scale;
    if (g->version == 1) {
        if (lk_cg_pair(buf, (size_t)n, "user", "system", user, sys)) return -1;
        scale = 1000000000u / (uint64_t)user_hz;
    } else {
        if (lk_cg_pair(buf, (size_t)n, "user_usec", "system_usec", user, sys)) return -1;
        scale = 1000;
    }
    *user *= scale;
    *sys *= scale;
    return 0;
}

/* Starts the high-water mark afresh at the current usage: v1 for the whole
 * cgroup (any write), v2 for reads through this descriptor (Linux 6.12+). */
static int reset_peak(lk_cgroup *g) {
    const char *word = g->version == 1 ? "0" : "reset";
    ssize_t n;
    do n = pwrite(g->peak, word, strlen(word), 0);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -1 : 0;
}

static int open_file(const char *path, int flags) {
    int fd;
    do fd = open(path, flags | O_CLOEXEC | O_NOCTTY);
    while (fd < 0 && errno == EINTR);
    return fd;
}

/* core.cgroup(1, cpuacct_stat [, max_usage_in_bytes])
 * core.cgroup(2, cpu_stat [, memory_peak]) -> cgroup | nil, err
 * A peak file that cannot be written (not root, a kernel without per-file
 * reset) is left out: a high-water mark since the box started is not a call's. */
static int l_open(lua_State *L) {
    int version = (int)luaL_checkinteger(L, 1);
    luaL_argcheck(L, version == 1 || version == 2, 1, "cgroup version 1 or 2 expected");
    const char *cpu = luaL_checkstring(L, 2);
    const char *peak = luaL_optstring(L, 3, NULL);
    lk_cgroup *g = lua_newuserdata(L, sizeof *g);
    g->version = version;
    g->cpu = g->peak = -1;
    g->begun = 0;
    luaL_setmetatable(L, LK_CGROUP);
    g->cpu = open_file(cpu, O_RDONLY);
    if (g->cpu < 0) return lk_push_errno(L, cpu);
    uint64_t u, s;
    if (read_cpu(g, &u, &s)) {
        close_all(g);
        lua_pushnil(L);
        lua_pushfstring(L, "%s: not a cgroup CPU count this lockup can read", cpu);
        return 2;
    }
    if (peak && (g->peak = open_file(peak, O_RDWR)) >= 0 && (reset_peak(g) || read_u64(g->peak, &u))) {
        close(g->peak);
        g->peak = -1;
    }
    return 1;
}

/* g:begin(): a call begins; the CPU counts now are kept and the high-water
 * mark starts afresh. Nothing to return: a cgroup that cannot be read (the
 * container ended) gives the call no figures. */
static int l_begin(lua_State *L) {
    lk_cgroup *g = get(L);
    if (!g) return 0;
    g->begun = !(g->peak >= 0 && reset_peak(g)) && !read_cpu(g, &g->user0, &g->sys0);
    return 0;
}

/* g:used() -> CPU seconds (user + system) since begin, or nil */
static int l_used(lua_State *L) {
    lk_cgroup *g = get(L);
    uint64_t u, s;
    if (!g || !g->begun || read_cpu(g, &u, &s)) return 0;
    lua_pushnumber(L, ((lua_Number)u - (lua_Number)g->user0 + (lua_Number)s - (lua_Number)g->sys0) / 1e9);
    return 1;
}

static void set_number(lua_State *L, const char *key, lua_Number v) {
    lua_pushnumber(L, v);
    lua_setfield(L, 2, key);
}

/* g:finish(r): the call ended; r gets cpu_user and cpu_sys (seconds) and
 * memory_peak (bytes; none without a per-call peak), or nothing when the
 * cgroup cannot be read. */
static int l_finish(lua_State *L) {
    lk_cgroup *g = get(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    uint64_t u, s, p;
    if (!g || !g->begun || read_cpu(g, &u, &s) || (g->peak >= 0 && read_u64(g->peak, &p))) return 0;
    g->begun = 0;
    set_number(L, "cpu_user", (lua_Number)(u > g->user0 ? u - g->user0 : 0) / 1e9);
    set_number(L, "cpu_sys", (lua_Number)(s > g->sys0 ? s - g->sys0 : 0) / 1e9);
    if (g->peak >= 0) set_number(L, "memory_peak", (lua_Number)p);
    return 0;
}

static int l_close(lua_State *L) {
    close_all(luaL_checkudata(L, 1, LK_CGROUP));
    return 0;
}

/* core.ncpus() -> the host's online CPUs: how fast a box can spend CPU time. */
static int l_ncpus(lua_State *L) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    lua_pushinteger(L, n > 0 ? n : 1);
    return 1;
}

void lk_open_cgroup(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"begin", l_begin}, {"used", l_used}, {"finish", l_finish}, {"close", l_close}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", l_close}, {NULL, NULL}};
    long hz = sysconf(_SC_CLK_TCK);
    if (hz > 0 && 1000000000 % hz == 0) user_hz = hz;
    lk_class(L, LK_CGROUP, methods, meta);
    /* what lockup.meter's other source has as fields: its name, and how
     * often a CPU limit may be checked (a few pread(2)s: often) */
    luaL_getmetatable(L, LK_CGROUP);
    lua_getfield(L, -1, "__index");
    lua_pushliteral(L, "cgroup");
    lua_setfield(L, -2, "source");
    lua_pushnumber(L, 0.005);
    lua_setfield(L, -2, "every");
    lua_pop(L, 2);
    lua_pushcfunction(L, l_open);
    lua_setfield(L, -2, "cgroup");
    lua_pushcfunction(L, l_ncpus);
    lua_setfield(L, -2, "ncpus");
}
