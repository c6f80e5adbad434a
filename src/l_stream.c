/* A command's output as it comes off an attach or exec stream, as userdata
 * "lockup.stream": demux.c splits the frames, sentinel.c (when armed) finds where
 * the command ends on stdout and on stderr, and the output is gathered per stream
 * until Lua takes it, up to a cap per stream (beyond it bytes are counted as
 * truncated and dropped, so a flood cannot grow memory). */
#include <string.h>

#include "buf.h"
#include "demux.h"
#include "l_core.h"
#include "sentinel.h"

#define PUMP_BUDGET (1 << 20) /* bytes read per pump before giving others a turn */

enum { EV_FAILED = 1, EV_OOM = 2 };

/* Where one stream's output gathers. */
typedef struct {
    lk_buf buf;
    size_t cap;       /* most bytes kept until taken; 0: no cap */
    int truncated;    /* bytes were dropped at the cap */
    int oom;
} sink;

typedef struct {
    lk_demux demux;
    lk_scan scan[2];  /* stdout, stderr */
    sink out[2];
    int armed;        /* scanning for a sentinel; else everything is output (exec) */
    int truncation_told;
    int events;
    const char *error;
} stream;

static stream *get(lua_State *L) { return luaL_checkudata(L, 1, LK_STREAM); }

static int on_output(void *ud, const char *p, size_t n) {
    sink *k = ud;
    if (k->cap && n > k->cap - (k->buf.len < k->cap ? k->buf.len : k->cap)) {
        k->truncated = 1;
        n = k->buf.len < k->cap ? k->cap - k->buf.len : 0;
    }
    if (lk_buf_append(&k->buf, p, n)) k->oom = 1;
    return k->oom;
}

static int on_payload(void *ud, int id, const char *p, size_t n) {
    stream *s = ud;
    if (id == LK_STDIN) return 0; /* never sent with Tty off; nothing to do with it */
    /* SYSERR carries the daemon's own error text (e.g. an exec that failed to
     * start): the user reads it as stderr. */
    int k = id == LK_STDOUT ? 0 : 1;
    if (!s->armed || id == LK_SYSERR) {
        if (on_output(&s->out[k], p, n)) s->events |= EV_OOM;
        return s->events & EV_OOM;
    }
    while (n > 0) {
        size_t used;
        int r = lk_scan_feed(&s->scan[k], p, n, &used, on_output, &s->out[k]);
        p += used;
        n -= used;
        if (s->out[k].oom) {
            s->events |= EV_OOM;
            return 1;
        }
        if (r == LK_SCAN_ERROR) {
            s->events |= EV_FAILED;
            s->error = "malformed sentinel in the shell's output (the session is out of step)";
            return 1;
        }
    }
    return 0;
}

static int finished(const stream *s) {
    return s->armed && s->scan[0].state == LK_SCAN_IDLE && s->scan[1].state == LK_SCAN_IDLE;
}

/* Feeds raw stream bytes; returns 0, or -1 after a failure (s->error says which). */
static int feed(stream *s, const char *p, size_t n) {
    if (lk_demux_feed(&s->demux, p, n, on_payload, s) < 0 && !(s->events & (EV_FAILED | EV_OOM))) {
        s->events |= EV_FAILED;
        s->error = "malformed frame header in Docker's multiplexed stream";
    }
    if (s->events & EV_OOM) s->error = "out of memory";
    return s->events & (EV_FAILED | EV_OOM) ? -1 : 0;
}

/* The outcome after feeding: "exit", "truncated" (once per command, the first
 * time a cap drops bytes), or NULL to go on. */
static const char *outcome(stream *s) {
    if (finished(s)) return "exit";
    if ((s->out[0].truncated || s->out[1].truncated) && !s->truncation_told) {
        s->truncation_told = 1;
        return "truncated";
    }
    return NULL;
}

static int push_failure(lua_State *L, stream *s) {
    if (s->events & EV_OOM) return luaL_error(L, "out of memory");
    lua_pushnil(L);
    lua_pushstring(L, s->error);
    return 2;
}

/* core.stream() */
static int l_new(lua_State *L) {
    stream *s = lua_newuserdata(L, sizeof *s);
    memset(s, 0, sizeof *s);
    lk_demux_init(&s->demux);
    lk_scan_init(&s->scan[0]);
    lk_scan_init(&s->scan[1]);
    lk_buf_init(&s->out[0].buf);
    lk_buf_init(&s->out[1].buf);
    luaL_setmetatable(L, LK_STREAM);
    return 1;
}

static size_t opt_cap(lua_State *L, int i) {
    lua_Integer cap = luaL_optinteger(L, i, 0);
    luaL_argcheck(L, cap >= 0, i, "a cap in bytes (0: none) expected");
    return (size_t)cap;
}

/* s:arm(token [, cap_stdout [, cap_stderr]]): the next command ends at `token`
 * on both streams. s:arm(nil, ...): no sentinel; the output runs to the end of
 * the stream. A cap (bytes, 0 for none) bounds what each stream keeps until taken. */
static int l_arm(lua_State *L) {
    stream *s = get(L);
    size_t len;
    const char *tok = luaL_optlstring(L, 2, NULL, &len);
    size_t cap_out = opt_cap(L, 3), cap_err = opt_cap(L, 4);
    if (tok && (lk_scan_arm(&s->scan[0], tok, len) || lk_scan_arm(&s->scan[1], tok, len)))
        return luaL_argerror(L, 2, "token must be 1-64 bytes whose first byte does not recur");
    s->armed = tok != NULL;
    s->out[0].cap = cap_out;
    s->out[1].cap = cap_err;
    s->out[0].truncated = s->out[1].truncated = s->truncation_told = 0;
    return 0;
}

/* s:truncated() -> whether stdout, stderr dropped bytes at their cap since armed */
static int l_truncated(lua_State *L) {
    stream *s = get(L);
    lua_pushboolean(L, s->out[0].truncated);
    lua_pushboolean(L, s->out[1].truncated);
    return 2;
}

/* s:feed(bytes) -> "exit" | "truncated" | "more" | nil, err */
static int l_feed(lua_State *L) {
    stream *s = get(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (feed(s, p, n)) return push_failure(L, s);
    const char *o = outcome(s);
    lua_pushstring(L, o ? o : "more");
    return 1;
}

/* s:pump(conn) -> "exit" | "truncated" | "more" (read budget spent) | "wait" | "eof" | nil, err
 * Reads from the connection until the command ends, a cap is first reached,
 * the stream ends, or a read would block. */
static int l_pump(lua_State *L) {
    stream *s = get(L);
    lk_conn *c = lk_check_conn(L, 2);
    char buf[LK_READ_CHUNK];
    size_t total = 0;
    const char *o = outcome(s);
    while (!o && total < PUMP_BUDGET) {
        size_t n;
        int rc = lk_conn_recv(c, buf, sizeof buf, &n);
        if (rc == LK_AGAIN) o = "wait";
        else if (rc == LK_FAIL) return lk_push_conn_error(L, c, "recv");
        else if (rc == LK_EOF) {
            o = "eof";
            /* A token prefix held back was output after all: the command never ended. */
            if (s->armed && (lk_scan_flush(&s->scan[0], on_output, &s->out[0]) ||
                             lk_scan_flush(&s->scan[1], on_output, &s->out[1])))
                return luaL_error(L, "out of memory");
        } else {
            total += n;
            if (feed(s, buf, n)) return push_failure(L, s);
            o = outcome(s);
        }
    }
    lua_pushstring(L, o ? o : "more");
    return 1;
}

/* s:take(1 | 2) -> the stdout (1) or stderr (2) bytes gathered since the last take */
static int l_take(lua_State *L) {
    stream *s = get(L);
    lua_Integer k = luaL_checkinteger(L, 2);
    luaL_argcheck(L, k == 1 || k == 2, 2, "1 (stdout) or 2 (stderr)");
    lk_buf *b = &s->out[k - 1].buf;
    lua_pushlstring(L, b->data ? b->data : "", b->len);
    lk_buf_clear(b);
    return 1;
}

/* s:code() -> the exit code the sentinel carried */
static int l_code(lua_State *L) {
    lua_pushinteger(L, get(L)->scan[0].code);
    return 1;
}

static int l_gc(lua_State *L) {
    stream *s = get(L);
    lk_buf_free(&s->out[0].buf);
    lk_buf_free(&s->out[1].buf);
    return 0;
}

void lk_open_stream(lua_State *L) {
    static const luaL_Reg methods[] = {{"arm", l_arm},   {"feed", l_feed},       {"pump", l_pump},
                                       {"take", l_take}, {"truncated", l_truncated}, {"code", l_code},
                                       {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", l_gc}, {NULL, NULL}};
    lk_class(L, LK_STREAM, methods, meta);
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "stream");
}
