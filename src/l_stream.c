/* A step's output as userdata "lockup.stream": output.c's policy (sentinel
 * per stream, caps) fed by whichever lane carries the bytes. On the attach
 * lane the bytes are Docker's multiplexed stream, split here by demux.c; on
 * the fifo lane each stream has a FIFO of its own. */
#include <string.h>

#include "demux.h"
#include "fifo.h"
#include "l_core.h"
#include "output.h"

#define PUMP_BUDGET (1 << 20) /* bytes read per pump before giving others a turn */

typedef struct {
    lk_demux demux;
    lk_output out;
    int raw; /* a terminal's stream: one stream of bytes, all of it stdout */
} stream;

static stream *get(lua_State *L) { return luaL_checkudata(L, 1, LK_STREAM); }

static int on_payload(void *ud, int id, const char *p, size_t n) {
    if (id == LK_STDIN) return 0; /* never sent with Tty off; nothing to do with it */
    int k = id == LK_STDOUT ? LK_OUT_STDOUT : id == LK_STDERR ? LK_OUT_STDERR : LK_OUT_DAEMON;
    return lk_output_put(ud, k, p, n) == LK_OUT_FAILED;
}

/* Feeds bytes of stream k, or the connection's when k < 0: Docker's
 * multiplexed stream, or a terminal's raw bytes (stdout).
 * Returns 0, or -1 after a failure (s->out.error says which). */
static int feed(stream *s, int k, const char *p, size_t n) {
    if (k < 0 && s->raw) k = LK_OUT_STDOUT;
    if (k >= 0) return lk_output_put(&s->out, k, p, n) == LK_OUT_FAILED ? -1 : 0;
    if (lk_demux_feed(&s->demux, p, n, on_payload, &s->out) >= 0) return s->out.error ? -1 : 0;
    if (!s->out.error) s->out.error = "malformed frame header in Docker's multiplexed stream";
    return -1;
}

static int push_failure(lua_State *L, stream *s) {
    if (s->out.oom) return luaL_error(L, "out of memory");
    lua_pushnil(L);
    lua_pushstring(L, s->out.error);
    return 2;
}

static int push_outcome(lua_State *L, int o) {
    lua_pushstring(L, o == LK_OUT_EXIT ? "exit" : o == LK_OUT_TRUNCATED ? "truncated" : "more");
    return 1;
}

/* core.stream([raw]): raw, the connection carries a terminal's bytes (an
 * exec with Tty: no multiplexing, stdout and stderr are one). */
static int l_new(lua_State *L) {
    int raw = lua_toboolean(L, 1);
    stream *s = lua_newuserdata(L, sizeof *s);
    lk_demux_init(&s->demux);
    lk_output_init(&s->out);
    s->raw = raw;
    luaL_setmetatable(L, LK_STREAM);
    return 1;
}

static size_t opt_cap(lua_State *L, int i) {
    lua_Integer cap = luaL_optinteger(L, i, 0);
    luaL_argcheck(L, cap >= 0, i, "a cap in bytes (0: none) expected");
    return (size_t)cap;
}

/* 1 (stdout) or 2 (stderr) at index i, as LK_OUT_*; -1 when absent and optional. */
static int opt_stream(lua_State *L, int i, int optional) {
    if (optional && lua_isnoneornil(L, i)) return -1;
    lua_Integer k = luaL_checkinteger(L, i);
    luaL_argcheck(L, k == 1 || k == 2, i, "1 (stdout) or 2 (stderr)");
    return (int)k - 1;
}

/* s:arm(token [, cap_stdout [, cap_stderr [, slices_stdout [, slices_stderr]]]]):
 * the next step ends at `token` on both streams. s:arm(nil, ...): no sentinel;
 * the output runs to the end of the stream. A cap (bytes, 0 for none) bounds
 * what each stream keeps until taken; a stream whose bytes are taken as they
 * come (a callback's) makes the pump stop at each slice of them ("more"). */
static int l_arm(lua_State *L) {
    stream *s = get(L);
    size_t len;
    const char *tok = luaL_optlstring(L, 2, NULL, &len);
    if (lk_output_arm(&s->out, tok, len, opt_cap(L, 3), opt_cap(L, 4)))
        return luaL_argerror(L, 2, "token must be 1-64 bytes whose first byte does not recur");
    s->out.sink[0].slices = lua_toboolean(L, 5);
    s->out.sink[1].slices = lua_toboolean(L, 6);
    return 0;
}

/* s:truncated() -> whether stdout, stderr dropped bytes at their cap since armed */
static int l_truncated(lua_State *L) {
    stream *s = get(L);
    lua_pushboolean(L, s->out.sink[0].truncated);
    lua_pushboolean(L, s->out.sink[1].truncated);
    return 2;
}

/* s:cut(1 | 2): no more of stdout (1) or stderr (2) this step, as past a
 * cap (s:truncated() says so); the sentinel still ends the step. */
static int l_cut(lua_State *L) {
    stream *s = get(L);
    lk_output_cut(&s->out, opt_stream(L, 2, 0));
    return 0;
}

/* s:feed(bytes [, k]) -> "exit" | "truncated" | "more" | nil, err: bytes of
 * stream k (1 stdout, 2 stderr), or of Docker's multiplexed stream without k
 * (a lane that reads for itself, such as a cosocket). */
static int l_feed(lua_State *L) {
    stream *s = get(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (feed(s, opt_stream(L, 3, 1), p, n)) return push_failure(L, s);
    return push_outcome(L, lk_output_outcome(&s->out));
}

/* s:finish() -> "eof" | nil, err: the source of s:feed ended; a token prefix
 * held back is output after all (the step never ended). */
static int l_finish(lua_State *L) {
    stream *s = get(L);
    if (lk_output_end(&s->out, 0) || lk_output_end(&s->out, 1)) return push_failure(L, s);
    lua_pushliteral(L, "eof");
    return 1;
}

/* Reads source k (-1: the connection; 0, 1: the fifo lane's stdout, stderr)
 * into the output until a read would block (LK_AGAIN), the source ends
 * (LK_EOF) or fails (LK_FAIL, or -2 when feeding failed), or the step's
 * outcome *o changes from LK_OUT_MORE or the budget is spent (LK_OK). The
 * outcome is asked once per read: it reports a truncation only once. */
static int drain(stream *s, lk_conn *c, lk_fifo *f, int k, char *buf, size_t *total, int *o) {
    while (*o == LK_OUT_MORE && *total < PUMP_BUDGET && !lk_output_sliced(&s->out)) {
        size_t n;
        int rc = c ? lk_conn_recv(c, buf, LK_READ_CHUNK, &n) : lk_fifo_read(f, k, buf, LK_READ_CHUNK, &n);
        if (rc != LK_OK) return rc;
        *total += n;
        if (feed(s, k, buf, n)) return -2;
        *o = lk_output_outcome(&s->out);
    }
    return LK_OK;
}

/* s:pump(conn) or s:pump(fifo) -> "exit" | "truncated" | "more" (read budget
 * spent) | false, waiting (would block) | "eof" | nil, err. Reads a connection
 * carrying Docker's multiplexed stream, or a fifo lane's stdout and stderr
 * FIFOs, until the step ends, a cap is first reached, a source ends, every
 * read would block, or an uncapped stream holds a slice to hand over ("more"). A FIFO whose sentinel has come is not read again in this
 * step; `waiting` says which sources still owe bytes: 1 stdout, 2 stderr, 3
 * both (a connection: 3). */
static int l_pump(lua_State *L) {
    stream *s = get(L);
    lk_conn *c = luaL_testudata(L, 2, LK_CONN) ? lk_check_conn(L, 2) : NULL;
    lk_fifo *f = c ? NULL : lk_check_fifo(L, 2);
    char buf[LK_READ_CHUNK];
    size_t total = 0;
    int waiting = 0;
    int o = lk_output_outcome(&s->out);
    /* A connection is one source (k = -1), a fifo lane two (k = 0, 1). */
    for (int k = c ? -1 : 0; k < (c ? 0 : 2) && o == LK_OUT_MORE; k++) {
        if (k >= 0 && s->out.armed && s->out.scan[k].state == LK_SCAN_IDLE) continue;
        int rc = drain(s, c, f, k, buf, &total, &o);
        if (rc == LK_AGAIN) waiting |= k < 0 ? 3 : 1 << k;
        if (rc == -2) return push_failure(L, s);
        if (rc == LK_FAIL) return c ? lk_push_conn_error(L, c, "recv") : lk_push_errno(L, "reading the lane");
        if (rc == LK_EOF) {
            /* The shell is gone. What it wrote to its other FIFO before it
             * went is there now: take it, then end both streams (a token
             * prefix held back was output after all: the step never ended). */
            int more = LK_OUT_MORE;
            if (k == 0 && drain(s, c, f, 1, buf, &total, &more) == -2) return push_failure(L, s);
            if (lk_output_end(&s->out, 0) || lk_output_end(&s->out, 1)) return push_failure(L, s);
            lua_pushliteral(L, "eof");
            return 1;
        }
    }
    if (o == LK_OUT_MORE && total < PUMP_BUDGET && waiting && !lk_output_sliced(&s->out)) {
        lua_pushboolean(L, 0);
        lua_pushinteger(L, waiting);
        return 2;
    }
    return push_outcome(L, o);
}

/* s:take(1 | 2) -> the stdout (1) or stderr (2) bytes gathered since the last take */
static int l_take(lua_State *L) {
    stream *s = get(L);
    lk_buf *b = &s->out.sink[opt_stream(L, 2, 0)].buf;
    lua_pushlstring(L, b->data ? b->data : "", b->len);
    lk_buf_clear(b);
    return 1;
}

/* s:code() -> the exit code the sentinel carried */
static int l_code(lua_State *L) {
    lua_pushinteger(L, get(L)->out.scan[0].code);
    return 1;
}

static int l_gc(lua_State *L) {
    lk_output_free(&get(L)->out);
    return 0;
}

void lk_open_stream(lua_State *L) {
    static const luaL_Reg methods[] = {{"arm", l_arm},   {"feed", l_feed},           {"pump", l_pump},
                                       {"take", l_take}, {"truncated", l_truncated}, {"code", l_code},
                                       {"cut", l_cut},   {"finish", l_finish},
                                       {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", l_gc}, {NULL, NULL}};
    lk_class(L, LK_STREAM, methods, meta);
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "stream");
}
