/* A command's output as it comes off an attach or exec stream, as userdata
 * "lockup.stream": demux.c splits the frames, sentinel.c (when armed) finds where
 * the command ends on stdout and on stderr, and the output is gathered per stream
 * until Lua takes it. */
#include <string.h>

#include "buf.h"
#include "demux.h"
#include "l_core.h"
#include "sentinel.h"

#define PUMP_BUDGET (1 << 20) /* bytes read per pump before giving others a turn */

enum { EV_FAILED = 1, EV_OOM = 2 };

typedef struct {
    lk_demux demux;
    lk_scan scan[2];  /* stdout, stderr */
    lk_buf out[2];
    int armed;        /* scanning for a sentinel; else everything is output (exec) */
    int events;
    const char *error;
} stream;

static stream *get(lua_State *L) { return luaL_checkudata(L, 1, LK_STREAM); }

static int on_output(void *ud, const char *p, size_t n) { return lk_buf_append(ud, p, n); }

static int on_payload(void *ud, int id, const char *p, size_t n) {
    stream *s = ud;
    if (id == LK_STDIN) return 0; /* never sent with Tty off; nothing to do with it */
    /* SYSERR carries the daemon's own error text (e.g. an exec that failed to
     * start): the user reads it as stderr. */
    int k = id == LK_STDOUT ? 0 : 1;
    if (!s->armed || id == LK_SYSERR) {
        if (lk_buf_append(&s->out[k], p, n)) s->events |= EV_OOM;
        return s->events & EV_OOM;
    }
    while (n > 0) {
        size_t used;
        int r = lk_scan_feed(&s->scan[k], p, n, &used, on_output, &s->out[k]);
        p += used;
        n -= used;
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

/* The outcome after feeding: "exit", or NULL to go on. */
static const char *outcome(const stream *s) { return finished(s) ? "exit" : NULL; }

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
    lk_buf_init(&s->out[0]);
    lk_buf_init(&s->out[1]);
    luaL_setmetatable(L, LK_STREAM);
    return 1;
}

/* s:arm(token): the next command ends at `token` on both streams.
 * s:arm(): no sentinel; the output runs to the end of the stream. */
static int l_arm(lua_State *L) {
    stream *s = get(L);
    size_t len;
    const char *tok = luaL_optlstring(L, 2, NULL, &len);
    if (tok && (lk_scan_arm(&s->scan[0], tok, len) || lk_scan_arm(&s->scan[1], tok, len)))
        return luaL_argerror(L, 2, "token must be 1-64 bytes whose first byte does not recur");
    s->armed = tok != NULL;
    return 0;
}

/* s:feed(bytes) -> "exit" | "more" | nil, err */
static int l_feed(lua_State *L) {
    stream *s = get(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (feed(s, p, n)) return push_failure(L, s);
    const char *o = outcome(s);
    lua_pushstring(L, o ? o : "more");
    return 1;
}

/* s:pump(conn) -> "exit" | "more" (read budget spent) | "wait" | "eof" | nil, err
 * Reads from the connection until the command ends, the stream ends, or a read
 * would block. */
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
    lk_buf *b = &s->out[k - 1];
    lua_pushlstring(L, b->data ? b->data : "", b->len);
    lk_buf_clear(b);
    return 1;
}

/* s:pending(1 | 2) -> bytes gathered and not taken yet */
static int l_pending(lua_State *L) {
    stream *s = get(L);
    lua_Integer k = luaL_checkinteger(L, 2);
    luaL_argcheck(L, k == 1 || k == 2, 2, "1 (stdout) or 2 (stderr)");
    lua_pushinteger(L, (lua_Integer)s->out[k - 1].len);
    return 1;
}

/* s:code() -> the exit code the sentinel carried */
static int l_code(lua_State *L) {
    lua_pushinteger(L, get(L)->scan[0].code);
    return 1;
}

static int l_gc(lua_State *L) {
    stream *s = get(L);
    lk_buf_free(&s->out[0]);
    lk_buf_free(&s->out[1]);
    return 0;
}

void lk_open_stream(lua_State *L) {
    static const luaL_Reg methods[] = {{"arm", l_arm},   {"feed", l_feed},       {"pump", l_pump},
                                       {"take", l_take}, {"pending", l_pending}, {"code", l_code},
                                       {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", l_gc}, {NULL, NULL}};
    lk_class(L, LK_STREAM, methods, meta);
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "stream");
}
