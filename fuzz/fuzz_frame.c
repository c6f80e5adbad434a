/* libFuzzer harness for the inmate protocol's frame parser (src/frame.c).
 *
 * Input: a control byte C, (C & 7) big-endian 16-bit cut offsets, then the
 * stream bytes. C bit 3: also feed one byte at a time. C bits 4-7 pick the
 * payload limit from `limits` (small ones, so that the fuzzer reaches them).
 *
 * The stream is fed whole, cut into pieces at the offsets (taken modulo the
 * length), and optionally byte by byte; each run must hand out exactly the frames
 * (type, payload) that a simple whole-buffer reference parser finds, fail with
 * the same message after consuming the same bytes, or end holding the same
 * number of bytes of an incomplete frame. Memory must stay within one frame.
 * Any violation aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/frame.h"
#include "fuzz_split.h"

static const uint32_t limits[16] = {0,   1,   2,    3,    4,     5,     8,     16,
                                    255, 256, 1000, 4096, 65535, 65536, 1u << 20, LK_FRAME_DEFAULT_MAX};

/* --- the outcome of one run -------------------------------------------------- */

typedef struct {
    size_t start, len; /* the payload, as an offset and length in the input */
    int type;
} ref_frame;

typedef struct {
    ref_frame *frames;
    size_t nframes;
    const char *error; /* NULL, or the message */
    size_t error_at;   /* input bytes consumed when it failed */
    size_t held;       /* without error: bytes of an incomplete frame at the end */
} outcome;

static int known(int t) { return t == 'C' || t == 'H' || t == 'Y' || t == 'P' || t == 'R' || t == 'E'; }

/* The reference: the frames read straight off the whole buffer, with the same
 * rules written in the plainest way. */
static void reference(outcome *o, const uint8_t *d, size_t n, uint32_t max) {
    size_t i = 0;
    int done = 0;
    while (i < n) {
        if (done) { o->error = lk_frame_err_after; o->error_at = i; return; }
        if (!known(d[i])) { o->error = lk_frame_err_type; o->error_at = i; return; }
        if (n - i < LK_FRAME_HEAD) { o->held = n - i; return; }
        uint32_t size = (uint32_t)d[i + 1] << 24 | (uint32_t)d[i + 2] << 16 | (uint32_t)d[i + 3] << 8 | d[i + 4];
        if (size > max) { o->error = lk_frame_err_size; o->error_at = i + LK_FRAME_HEAD; return; }
        if (n - i - LK_FRAME_HEAD < size) { o->held = n - i; return; }
        o->frames[o->nframes].type = d[i];
        o->frames[o->nframes].start = i + LK_FRAME_HEAD;
        o->frames[o->nframes].len = size;
        o->nframes++;
        done = d[i] == 'R' || d[i] == 'E';
        i += LK_FRAME_HEAD + size;
    }
}

/* Feeds the pieces b[0]..b[nb-1] of the input to a fresh parser, checking every
 * frame against the reference as it comes out. */
static void drive(const outcome *ref, const uint8_t *data, const size_t *b, size_t nb, uint32_t max) {
    lk_frame f;
    lk_frame_init(&f, max);
    size_t nframes = 0, at = 0;
    const char *error = NULL;
    for (size_t k = 0; k + 1 < nb && !error; k++) {
        const char *p = (const char *)data + b[k];
        size_t left = b[k + 1] - b[k];
        do { /* an empty piece is fed too */
            size_t used = 12345;
            int r = lk_frame_feed(&f, p, left, &used);
            CHECK(used <= left);
            at += used;
            p += used;
            left -= used;
            /* one frame at most in memory, however it grew */
            CHECK(f.payload.len <= max);
            CHECK(f.payload.cap <= 65536 || f.payload.cap / 2 < (size_t)max);
            CHECK(lk_frame_buffered(&f) <= LK_FRAME_HEAD + (size_t)max);
            if (r == LK_FRAME_ERROR) {
                error = f.error;
                CHECK(error != NULL);
                size_t again = 1;
                CHECK(lk_frame_feed(&f, "H\0\0\0\0", 5, &again) == LK_FRAME_ERROR && again == 0);
                CHECK(f.error == error); /* failed for good, with the first reason */
                break;
            }
            if (r == LK_FRAME_MORE) {
                CHECK(left == 0);
                CHECK(f.error == NULL);
                continue;
            }
            CHECK(r == LK_FRAME_READY);
            CHECK(used > 0); /* at least the byte that completed it */
            CHECK(nframes < ref->nframes);
            const ref_frame *want = &ref->frames[nframes++];
            CHECK(f.type == want->type);
            CHECK(f.payload.len == want->len);
            CHECK(want->len == 0 || memcmp(f.payload.data, data + want->start, want->len) == 0);
            CHECK(at == want->start + want->len); /* stopped right after it */
            CHECK(lk_frame_buffered(&f) == 0);
        } while (left > 0);
    }
    CHECK(nframes == ref->nframes);
    CHECK(error == ref->error);
    if (error) CHECK(at == ref->error_at);
    else CHECK(lk_frame_buffered(&f) == ref->held);
    lk_frame_free(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    plan pl;
    if (read_plan(&pl, &data, &size)) return 0;
    uint32_t max = limits[pl.flags >> 4];
    outcome ref;
    memset(&ref, 0, sizeof ref);
    ref.frames = malloc((size / LK_FRAME_HEAD + 1) * sizeof *ref.frames);
    CHECK(ref.frames);
    reference(&ref, data, size, max);

    size_t *b = bounds_new(size);
    size_t whole[2] = {0, size};
    drive(&ref, data, whole, 2, max);
    drive(&ref, data, b, bounds(&pl, size, 0, b), max);
    if (pl.flags & 8) drive(&ref, data, b, bounds(&pl, size, 1, b), max);
    free(b);
    free(ref.frames);
    return 0;
}
