/* libFuzzer harness for the sentinel scanner (src/sentinel.c).
 *
 * Input: a control byte C, (C & 7) big-endian 16-bit cut offsets, a token byte T,
 * then the token itself when T < 0x80 ((T & 63) + 1 bytes; a first byte that recurs
 * is replaced, after checking that lk_scan_arm refuses it), else nothing (T >= 0x80:
 * the real shape, "\1" and 32 hex digits). The rest is the shell's output.
 * C bit 3: also feed one byte at a time. C bits 4-7: in an extra cut run, the emit
 * callback fails on its (C >> 4)th call.
 *
 * The scanner is re-armed with the same token after each exit. Each run (whole,
 * cut, byte by byte) must give the output and events (exit with code / error, at
 * the same input offsets) of a naive reference scanner; every sentinel must
 * reassemble from the output with the input; the bytes held back never exceed the
 * token and trailer. Any violation aborts. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/sentinel.h"
#include "fuzz_split.h"

/* --- the outcome of one run -------------------------------------------------- */

/* A trailer is " CODE\n", CODE being 1 to 10 digits whose value is at most INT_MAX.
 * The reference uses its own bounds, so the scanner's LK_TRAILER_MAX is checked too. */
#define CODE_DIGITS 10
#define TRAILER_MAX (1 + CODE_DIGITS + 1)

typedef struct {
    int type;      /* LK_SCAN_EXIT, LK_SCAN_ERROR */
    size_t at;     /* input offset just past the event */
    int code;      /* for LK_SCAN_EXIT */
    size_t outlen; /* output emitted before it */
} event;

typedef struct {
    unsigned char *out;
    size_t len, cap;
    event *ev;
    size_t nev, evcap;
    int end_state;   /* LK_SCAN_OUTPUT or LK_SCAN_TRAILER when no error */
    size_t held;     /* bytes held back at the end (token prefix, or token + trailer) */
    unsigned fail_at, calls;
    int emit_failed;
} run;

static run *run_new(size_t cap, unsigned fail_at) {
    run *r = calloc(1, sizeof *r);
    CHECK(r);
    r->cap = cap;
    r->out = malloc(cap ? cap : 1);
    r->evcap = cap / 4 + 2; /* an event takes at least 4 input bytes: token, " 0\n" */
    r->ev = malloc(r->evcap * sizeof *r->ev);
    CHECK(r->out && r->ev);
    r->fail_at = fail_at;
    return r;
}

static void run_free(run *r) {
    free(r->out);
    free(r->ev);
    free(r);
}

static void add_event(run *r, int type, size_t at, int code) {
    CHECK(r->nev < r->evcap);
    r->ev[r->nev++] = (event){type, at, code, r->len};
}

static int on_output(void *ud, const char *p, size_t n) {
    run *r = ud;
    CHECK(!r->emit_failed); /* nothing more is emitted once emit failed */
    CHECK(n <= r->cap - r->len);
    memcpy(r->out + r->len, p, n);
    r->len += n;
    if (r->fail_at && ++r->calls == r->fail_at) {
        r->emit_failed = 1;
        return 1;
    }
    return 0;
}

typedef struct {
    const uint8_t *data;
    size_t n;
    const char *tok;
    size_t tl;
} input;

/* The last event's sentinel, with the output since the one before, must be the
 * input between the two events: output, then the token, then " CODE\n". */
static void check_reassembly(const run *r, const input *in) {
    const event *e = &r->ev[r->nev - 1];
    size_t prev_at = r->nev > 1 ? e[-1].at : 0, prev_out = r->nev > 1 ? e[-1].outlen : 0;
    size_t seg = e->outlen - prev_out;
    CHECK(prev_at + seg + in->tl + 3 <= e->at);
    CHECK(memcmp(in->data + prev_at, r->out + prev_out, seg) == 0);
    const uint8_t *t = in->data + prev_at + seg;
    CHECK(memcmp(t, in->tok, in->tl) == 0);
    const uint8_t *v = t + in->tl, *end = in->data + e->at;
    CHECK(v[0] == ' ' && end[-1] == '\n');
    long long code = 0;
    CHECK(end - v >= 3 && end - v <= TRAILER_MAX);
    for (const uint8_t *q = v + 1; q < end - 1; q++) {
        CHECK(*q >= '0' && *q <= '9');
        code = code * 10 + (*q - '0');
    }
    CHECK(code <= INT_MAX && code == e->code);
}

/* Bytes consumed and not yet accounted for (as output or a finished sentinel) are
 * exactly what the scanner holds, and that is bounded by the token and trailer. */
static void check_held(const lk_scan *s, const run *r, const input *in, size_t consumed) {
    size_t acct = r->nev ? r->ev[r->nev - 1].at + (r->len - r->ev[r->nev - 1].outlen) : r->len;
    CHECK(acct <= consumed);
    size_t held = consumed - acct;
    CHECK(s->matched < s->token_len && s->trailer_len < LK_TRAILER_MAX);
    if (s->state == LK_SCAN_OUTPUT) {
        CHECK(held == s->matched);
        CHECK(memcmp(in->data + consumed - held, in->tok, held) == 0);
    } else if (s->state == LK_SCAN_TRAILER) {
        CHECK(s->matched == 0);
        CHECK(held == in->tl + s->trailer_len);
    }
    CHECK(held < LK_TOKEN_MAX + LK_TRAILER_MAX);
}

static void drive(run *r, const input *in, const size_t *b, size_t nb) {
    lk_scan s;
    lk_scan_init(&s);
    CHECK(lk_scan_arm(&s, in->tok, in->tl) == 0);
    size_t consumed = 0;
    int res = LK_SCAN_MORE;
    for (size_t k = 0; k + 1 < nb && res != LK_SCAN_ERROR; k++) {
        const char *p = (const char *)in->data + b[k];
        size_t left = b[k + 1] - b[k];
        do { /* an empty piece is fed too */
            size_t used = (size_t)-1;
            res = lk_scan_feed(&s, p, left, &used, on_output, r);
            CHECK(used <= left);
            p += used;
            left -= used;
            consumed += used;
            if (res == LK_SCAN_MORE) {
                CHECK(left == 0);
                CHECK(!r->emit_failed);
            } else if (res == LK_SCAN_EXIT) {
                CHECK(used > 0 && !r->emit_failed);
                add_event(r, res, consumed, s.code);
                check_reassembly(r, in);
                CHECK(s.state == LK_SCAN_IDLE);
                /* idle: everything is dropped, nothing emitted */
                size_t u2, before = r->len;
                CHECK(lk_scan_feed(&s, "abc", 3, &u2, on_output, r) == LK_SCAN_MORE && u2 == 3);
                CHECK(r->len == before);
                CHECK(lk_scan_arm(&s, in->tok, in->tl) == 0);
            } else {
                CHECK(res == LK_SCAN_ERROR);
                add_event(r, res, consumed, 0);
                if (!r->emit_failed) {
                    CHECK(s.state == LK_SCAN_FAILED);
                    size_t u2, before = r->len;
                    CHECK(lk_scan_feed(&s, "x", 1, &u2, on_output, r) == LK_SCAN_ERROR);
                    CHECK(r->len == before);
                }
                return;
            }
            if (s.state == LK_SCAN_OUTPUT || s.state == LK_SCAN_TRAILER) check_held(&s, r, in, consumed);
        } while (left > 0);
    }
    r->end_state = s.state;
    size_t acct = r->nev ? r->ev[r->nev - 1].at + (r->len - r->ev[r->nev - 1].outlen) : r->len;
    r->held = consumed - acct;
    CHECK(consumed == in->n);
    if (r->fail_at) return; /* the flush could call the failing emit */
    /* The stream ended: a held token prefix is output after all; nothing else is. */
    size_t before = r->len;
    CHECK(lk_scan_flush(&s, on_output, r) == 0);
    CHECK(s.matched == 0);
    if (s.state == LK_SCAN_OUTPUT) {
        CHECK(r->len - before == r->held);
        CHECK(memcmp(r->out + before, in->data + in->n - r->held, r->held) == 0);
        r->len = before; /* compare runs without the flushed bytes */
    } else {
        CHECK(r->len == before);
    }
}

static size_t find(const input *in, size_t from) {
    for (size_t i = from; i + in->tl <= in->n; i++)
        if (memcmp(in->data + i, in->tok, in->tl) == 0) return i;
    return (size_t)-1;
}

static void emit_ref(run *r, const uint8_t *p, size_t n) {
    memcpy(r->out + r->len, p, n);
    r->len += n;
}

/* The reference: a naive search for the token over the whole input. */
static void reference(run *r, const input *in) {
    size_t pos = 0;
    for (;;) {
        size_t t = find(in, pos);
        if (t == (size_t)-1) {
            size_t k = in->tl - 1 < in->n - pos ? in->tl - 1 : in->n - pos;
            while (k > 0 && memcmp(in->data + in->n - k, in->tok, k) != 0) k--;
            emit_ref(r, in->data + pos, in->n - pos - k);
            r->end_state = LK_SCAN_OUTPUT;
            r->held = k;
            return;
        }
        emit_ref(r, in->data + pos, t - pos);
        size_t q = t + in->tl, lim = in->n - q < TRAILER_MAX ? in->n - q : TRAILER_MAX;
        const uint8_t *nl = memchr(in->data + q, '\n', lim);
        if (!nl) {
            if (in->n - q >= TRAILER_MAX) {
                add_event(r, LK_SCAN_ERROR, q + TRAILER_MAX, 0);
                return;
            }
            r->end_state = LK_SCAN_TRAILER;
            r->held = in->n - t;
            return;
        }
        const uint8_t *v = in->data + q;
        size_t len = (size_t)(nl - v), at = (size_t)(nl - in->data) + 1;
        long long code = 0;
        int ok = len >= 2 && len - 1 <= CODE_DIGITS && v[0] == ' ';
        for (size_t i = 1; ok && i < len; i++) {
            ok = v[i] >= '0' && v[i] <= '9';
            code = code * 10 + (v[i] - '0');
        }
        if (!ok || code > INT_MAX) {
            add_event(r, LK_SCAN_ERROR, at, 0);
            return;
        }
        add_event(r, LK_SCAN_EXIT, at, (int)code);
        pos = at;
    }
}

static void same(const run *a, const run *b) {
    CHECK(a->len == b->len);
    CHECK(memcmp(a->out, b->out, a->len) == 0);
    CHECK(a->nev == b->nev);
    for (size_t i = 0; i < a->nev; i++) {
        CHECK(a->ev[i].type == b->ev[i].type);
        CHECK(a->ev[i].at == b->ev[i].at);
        CHECK(a->ev[i].outlen == b->ev[i].outlen);
        if (a->ev[i].type == LK_SCAN_EXIT) CHECK(a->ev[i].code == b->ev[i].code);
    }
    if (!a->nev || a->ev[a->nev - 1].type != LK_SCAN_ERROR) {
        CHECK(a->end_state == b->end_state);
        CHECK(a->held == b->held);
    }
}

static const char REAL_TOKEN[] = "\1" "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    plan pl;
    if (read_plan(&pl, &data, &size) || size < 1) return 0;
    char tok[LK_TOKEN_MAX + 1];
    size_t tl;
    unsigned t = *data++;
    size--;
    lk_scan probe;
    lk_scan_init(&probe);
    CHECK(lk_scan_arm(&probe, "", 0) == -1);
    char big[LK_TOKEN_MAX + 1] = "\1";
    memset(big + 1, 'a', LK_TOKEN_MAX);
    CHECK(lk_scan_arm(&probe, big, LK_TOKEN_MAX + 1) == -1);
    CHECK(lk_scan_arm(&probe, big, LK_TOKEN_MAX) == 0);
    if (t >= 0x80) {
        tl = sizeof REAL_TOKEN - 1;
        memcpy(tok, REAL_TOKEN, tl);
    } else {
        tl = (t & 63) + 1;
        if (size < tl) return 0;
        memcpy(tok, data, tl);
        data += tl;
        size -= tl;
        if (memchr(tok + 1, tok[0], tl - 1)) {
            CHECK(lk_scan_arm(&probe, tok, tl) == -1);
            for (size_t i = 1; i < tl; i++)
                if (tok[i] == tok[0]) tok[i] = (char)(tok[0] + 1);
        }
    }
    input in = {data, size, tok, tl};
    size_t *b = bounds_new(size);

    run *ref = run_new(size, 0);
    reference(ref, &in);

    size_t whole_b[2] = {0, size};
    run *r = run_new(size, 0);
    drive(r, &in, whole_b, 2);
    same(ref, r);
    run_free(r);

    r = run_new(size, 0);
    drive(r, &in, b, bounds(&pl, size, 0, b));
    same(ref, r);
    run_free(r);

    if (pl.flags & 8) {
        r = run_new(size, 0);
        drive(r, &in, b, bounds(&pl, size, 1, b));
        same(ref, r);
        run_free(r);
    }
    if (pl.flags >> 4) { /* emit fails: the feed that called it must report an error */
        r = run_new(size, pl.flags >> 4);
        drive(r, &in, b, bounds(&pl, size, 0, b));
        if (r->emit_failed) CHECK(r->nev && r->ev[r->nev - 1].type == LK_SCAN_ERROR);
        run_free(r);
    }
    run_free(ref);
    free(b);
    return 0;
}
