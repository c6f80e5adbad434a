/* libFuzzer harness for a step's output policy (src/output.c).
 *
 * Input: a control byte C, (C & 7) big-endian 16-bit cut offsets, a token byte T
 * ((T & 63) + 1 token bytes follow the caps; a first byte that recurs is replaced,
 * after checking that lk_output_arm refuses it), the caps of stdout and stderr (a
 * byte each, 0: none), the token, then items. An item is a byte H: H & 3 < 3 puts
 * the next H >> 2 bytes (63: all the rest) on stream H & 3 (stdout, stderr,
 * daemon); H & 3 == 3 is an op, by (H >> 2) & 3: 0 ends stream (H >> 4) & 1, 1
 * takes (clears) its sink, 2 re-arms with the token, 3 re-arms unarmed (an exec).
 * C bit 3: also feed one byte at a time; bit 4: armed at the start; bit 5: end
 * both streams after the last item.
 *
 * Each put is fed whole, cut at the offsets (modulo its length) and optionally
 * byte by byte. After every put the output must agree with a byte-at-a-time
 * reference model (sinks, truncation, scanner state, exit codes, error); after
 * every item lk_output_outcome must too, and the per-item trace must be the same
 * for every way of feeding. Any violation aborts. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/output.h"
#include "fuzz_split.h"

#define MALFORMED "malformed sentinel in the shell's output (the session is out of step)"
#define TRAILER_MAX 12 /* " " + at most 10 digits + "\n": the reference's own bound */

/* --- the reference model ------------------------------------------------------ */

typedef struct {
    int state;               /* LK_SCAN_*; the same meaning as the scanner's */
    char pend[LK_TOKEN_MAX]; /* the longest tail that could start the token */
    size_t npend;
    char tr[TRAILER_MAX];    /* trailer bytes so far, without the newline */
    size_t ntr;
    int code;
} mscan;

typedef struct {
    unsigned char *data;
    size_t len, room, cap; /* room: allocated; cap: 0 or the output's cap */
    int truncated;
} msink;

typedef struct {
    mscan s[2];
    msink sink[2];
    int armed, told, failed;
    const char *tok;
    size_t tl;
} model;

/* Byte by byte, so the cap is plainly "keep while below it, else count it". */
static void m_keep(msink *k, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (k->cap && k->len >= k->cap) { k->truncated = 1; continue; }
        CHECK(k->len < k->room);
        k->data[k->len++] = (unsigned char)p[i];
    }
}

static void m_arm(model *m, int armed, size_t cap_out, size_t cap_err) {
    for (int k = 0; armed && k < 2; k++) /* re-arming drops a held prefix */
        m->s[k] = (mscan){.state = LK_SCAN_OUTPUT, .code = -1};
    m->armed = armed;
    m->sink[0].cap = cap_out;
    m->sink[1].cap = cap_err;
    m->sink[0].truncated = m->sink[1].truncated = m->told = m->failed = 0;
}

/* A trailer (newline excluded) is " " and 1-10 digits worth at most INT_MAX. */
static int m_code(const mscan *s) {
    if (s->ntr < 2 || s->ntr > 11 || s->tr[0] != ' ') return -1;
    long long v = 0;
    for (size_t i = 1; i < s->ntr; i++) {
        if (s->tr[i] < '0' || s->tr[i] > '9') return -1;
        v = v * 10 + (s->tr[i] - '0');
    }
    return v > INT_MAX ? -1 : (int)v;
}

static void m_byte(model *m, int k, char c) {
    mscan *s = &m->s[k];
    if (s->state == LK_SCAN_OUTPUT) {
        /* Naive shift: while what is held is no token prefix, its first byte is output. */
        s->pend[s->npend++] = c;
        while (s->npend && memcmp(s->pend, m->tok, s->npend) != 0) {
            m_keep(&m->sink[k], s->pend, 1);
            memmove(s->pend, s->pend + 1, --s->npend);
        }
        if (s->npend == m->tl) s->npend = 0, s->ntr = 0, s->state = LK_SCAN_TRAILER;
    } else if (s->state == LK_SCAN_TRAILER) {
        if (c == '\n') {
            s->code = m_code(s);
            s->state = s->code < 0 ? LK_SCAN_FAILED : LK_SCAN_IDLE;
        } else {
            s->tr[s->ntr++] = c;
            if (s->ntr == TRAILER_MAX) s->state = LK_SCAN_FAILED; /* no newline in time */
        }
    } /* idle: dropped; failed: never read */
}

static int m_put(model *m, int k, const char *p, size_t n) {
    if (!m->armed || k == LK_OUT_DAEMON) { /* daemon text is the user's stderr */
        m_keep(&m->sink[k == LK_OUT_STDOUT ? 0 : 1], p, n);
        return 0;
    }
    for (size_t i = 0; i < n; i++) m_byte(m, k, p[i]);
    if (n && m->s[k].state == LK_SCAN_FAILED) return m->failed = 1, LK_OUT_FAILED;
    return 0;
}

static void m_end(model *m, int k) { /* a held token prefix was output after all */
    if (!m->armed) return;
    m_keep(&m->sink[k], m->s[k].pend, m->s[k].npend);
    m->s[k].npend = 0;
}

static int m_outcome(model *m) {
    if (m->armed && m->s[0].state == LK_SCAN_IDLE && m->s[1].state == LK_SCAN_IDLE) return LK_OUT_EXIT;
    if ((m->sink[0].truncated || m->sink[1].truncated) && !m->told) return m->told = 1, LK_OUT_TRUNCATED;
    return LK_OUT_MORE;
}

/* --- the output under test, beside the model ---------------------------------- */

typedef struct {
    const uint8_t *data; /* the items */
    size_t n;
    char tok[LK_TOKEN_MAX];
    size_t tl, cap_out, cap_err;
    unsigned flags;
} input;

static void compare(const lk_output *o, const model *m, int contents) {
    CHECK(!o->oom && o->armed == m->armed);
    for (int k = 0; k < 2; k++) {
        CHECK(o->sink[k].buf.len == m->sink[k].len);
        CHECK(o->sink[k].truncated == m->sink[k].truncated);
        if (contents && m->sink[k].len) CHECK(memcmp(o->sink[k].buf.data, m->sink[k].data, m->sink[k].len) == 0);
        CHECK(o->scan[k].state == m->s[k].state);
        CHECK(o->scan[k].matched == m->s[k].npend); /* the bytes held back */
        CHECK(o->scan[k].code == m->s[k].code);     /* scan[0].code is the step's exit code */
    }
    if (m->failed) CHECK(o->error && strcmp(o->error, MALFORMED) == 0);
    else CHECK(o->error == NULL);
}

static void arm(lk_output *o, model *m, const input *in, int armed) {
    CHECK(lk_output_arm(o, armed ? in->tok : NULL, in->tl, in->cap_out, in->cap_err) == 0);
    m_arm(m, armed != 0, in->cap_out, in->cap_err);
}

/* Runs the items, each put cut as `pl` says; writes 4 ints per item to trace. */
static size_t drive(const input *in, const plan *pl, int bytewise, int *trace) {
    lk_output o;
    model m = {.tok = in->tok, .tl = in->tl};
    lk_output_init(&o);
    for (int k = 0; k < 2; k++) {
        m.sink[k].room = in->n;
        m.sink[k].data = malloc(in->n ? in->n : 1);
        CHECK(m.sink[k].data);
    }
    arm(&o, &m, in, in->flags & 16);
    size_t *b = bounds_new(in->n), t = 0;
    for (size_t i = 0; i < in->n;) {
        unsigned h = in->data[i++], kind = h & 3, arg = (h >> 4) & 1;
        int put = 0;
        if (kind < 3) {
            size_t len = h >> 2 == 63 || h >> 2 > in->n - i ? in->n - i : h >> 2;
            const char *p = (const char *)in->data + i;
            size_t nb = bounds(pl, len, bytewise, b);
            for (size_t j = 0; j + 1 < nb; j++) { /* empty pieces are put too */
                int r = lk_output_put(&o, (int)kind, p + b[j], b[j + 1] - b[j]);
                CHECK(r == m_put(&m, (int)kind, p + b[j], b[j + 1] - b[j]));
                put |= r;
                compare(&o, &m, 0);
            }
            i += len;
        } else if (((h >> 2) & 3) == 0) {
            CHECK(lk_output_end(&o, (int)arg) == 0);
            m_end(&m, (int)arg);
        } else if (((h >> 2) & 3) == 1) { /* the caller takes what was kept */
            compare(&o, &m, 1);
            lk_buf_clear(&o.sink[arg].buf);
            m.sink[arg].len = 0;
        } else {
            arm(&o, &m, in, ((h >> 2) & 3) == 2);
        }
        compare(&o, &m, 0);
        int oc = lk_output_outcome(&o);
        CHECK(oc == m_outcome(&m));
        int tr[4] = {put, oc, (int)o.sink[0].buf.len, (int)o.sink[1].buf.len};
        memcpy(trace + t, tr, sizeof tr);
        t += 4;
    }
    if (in->flags & 32) {
        for (int k = 0; k < 2; k++) {
            CHECK(lk_output_end(&o, k) == 0);
            m_end(&m, k);
        }
        CHECK(lk_output_outcome(&o) == m_outcome(&m));
    }
    compare(&o, &m, 1);
    trace[t++] = (int)o.sink[0].buf.len;
    trace[t++] = (int)o.sink[1].buf.len;
    free(b);
    free(m.sink[0].data);
    free(m.sink[1].data);
    lk_output_free(&o);
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    plan pl;
    if (read_plan(&pl, &data, &size) || size < 3) return 0;
    input in = {.flags = pl.flags, .tl = (data[0] & 63) + 1, .cap_out = data[1], .cap_err = data[2]};
    if (size < 3 + in.tl) return 0;
    memcpy(in.tok, data + 3, in.tl);
    in.data = data + 3 + in.tl;
    in.n = size - 3 - in.tl;
    if (memchr(in.tok + 1, in.tok[0], in.tl - 1)) {
        lk_output probe;
        lk_output_init(&probe);
        CHECK(lk_output_arm(&probe, in.tok, in.tl, 1, 1) == -1 && !probe.armed && !probe.sink[0].cap);
        for (size_t i = 1; i < in.tl; i++)
            if (in.tok[i] == in.tok[0]) in.tok[i] = (char)(in.tok[0] + 1);
    }
    /* Every item adds 4 ints, plus 2 at the end. */
    int *ref = malloc((4 * in.n + 2) * sizeof *ref), *tr = malloc((4 * in.n + 2) * sizeof *tr);
    CHECK(ref && tr);
    plan whole = {0};
    size_t nt = drive(&in, &whole, 0, ref);
    CHECK(drive(&in, &pl, 0, tr) == nt && memcmp(ref, tr, nt * sizeof *tr) == 0);
    if (pl.flags & 8) CHECK(drive(&in, &pl, 1, tr) == nt && memcmp(ref, tr, nt * sizeof *tr) == 0);
    free(ref);
    free(tr);
    return 0;
}
