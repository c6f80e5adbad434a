/* libFuzzer harness for the Docker stream demultiplexer (src/demux.c).
 *
 * Input: a control byte C, then (C & 7) big-endian 16-bit cut offsets, then the
 * stream bytes. C bit 3: also feed one byte at a time; C bits 4-7: in the split
 * run, the emit callback stops the feed every (C >> 4)th call (0: never).
 *
 * The stream is fed whole, cut into pieces at the offsets (taken modulo the length),
 * and optionally byte by byte; each run must emit exactly the (stream, byte)
 * sequence, error and partial state that a simple whole-buffer reference parser
 * finds. Any violation aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/demux.h"
#include "fuzz_split.h"

/* --- the output of one run --------------------------------------------------- */

typedef struct {
    unsigned char *tag, *byte; /* stream id and payload byte, in emit order */
    size_t len, cap;
    unsigned stop_every, calls;
    int stopped;               /* the last emit asked to stop */
    int error, partial;
} run;

static void run_init(run *r, size_t cap, unsigned stop_every) {
    memset(r, 0, sizeof *r);
    r->cap = cap;
    r->tag = malloc(cap ? cap : 1);
    r->byte = malloc(cap ? cap : 1);
    CHECK(r->tag && r->byte);
    r->stop_every = stop_every;
}

static void run_free(run *r) {
    free(r->tag);
    free(r->byte);
}

static int on_payload(void *ud, int stream, const char *p, size_t n) {
    run *r = ud;
    CHECK(stream >= LK_STDIN && stream <= LK_SYSERR);
    CHECK(n > 0);                  /* never called for nothing */
    CHECK(n <= r->cap - r->len);   /* never more payload than the input held */
    memset(r->tag + r->len, stream, n);
    memcpy(r->byte + r->len, p, n);
    r->len += n;
    r->calls++;
    r->stopped = r->stop_every && r->calls % r->stop_every == 0;
    return r->stopped;
}

static void drive(run *r, const uint8_t *data, const size_t *b, size_t nb) {
    lk_demux d;
    lk_demux_init(&d);
    for (size_t k = 0; k + 1 < nb && !r->error; k++) {
        const char *p = (const char *)data + b[k];
        size_t left = b[k + 1] - b[k];
        do { /* an empty piece is fed too */
            r->stopped = 0;
            long used = lk_demux_feed(&d, p, left, on_payload, r);
            if (used < 0) {
                r->error = 1;
                CHECK(d.failed);
                size_t before = r->len;
                CHECK(lk_demux_feed(&d, "\1\0\0\0\0\0\0\1x", 9, on_payload, r) == -1);
                CHECK(r->len == before); /* a failed demuxer emits nothing more */
                break;
            }
            CHECK((size_t)used <= left);
            /* all bytes are consumed unless emit asked to stop, and then at least one */
            if (r->stopped) CHECK(used > 0);
            else CHECK((size_t)used == left);
            CHECK(d.head_len < sizeof d.head);
            p += used;
            left -= (size_t)used;
        } while (left > 0);
    }
    r->partial = lk_demux_partial(&d);
}

/* The reference: the frames read straight off the whole buffer. */
static void reference(run *r, const uint8_t *data, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (n - i < 8) { r->partial = 1; return; }
        const uint8_t *h = data + i;
        if (h[0] > 3 || h[1] || h[2] || h[3]) { r->error = 1; return; }
        uint32_t size = (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];
        i += 8;
        size_t take = size < n - i ? size : n - i;
        memset(r->tag + r->len, h[0], take);
        memcpy(r->byte + r->len, data + i, take);
        r->len += take;
        i += take;
        if (take < size) { r->partial = 1; return; }
    }
}

static void same(const run *a, const run *b) {
    CHECK(a->error == b->error);
    CHECK(a->len == b->len);
    CHECK(memcmp(a->tag, b->tag, a->len) == 0);
    CHECK(memcmp(a->byte, b->byte, a->len) == 0);
    if (!a->error) CHECK(a->partial == b->partial);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    plan pl;
    if (read_plan(&pl, &data, &size)) return 0;
    size_t *b = bounds_new(size);
    run ref, whole, split;
    run_init(&ref, size, 0);
    reference(&ref, data, size);

    size_t whole_b[2] = {0, size};
    run_init(&whole, size, 0);
    drive(&whole, data, whole_b, 2);
    same(&ref, &whole);

    run_init(&split, size, pl.flags >> 4);
    drive(&split, data, b, bounds(&pl, size, 0, b));
    same(&ref, &split);
    run_free(&split);

    if (pl.flags & 8) {
        run_init(&split, size, 0);
        drive(&split, data, b, bounds(&pl, size, 1, b));
        same(&ref, &split);
        run_free(&split);
    }
    run_free(&ref);
    run_free(&whole);
    free(b);
    return 0;
}
