/* A step's output, gathered per stream: the policy every lane shares.
 *
 * Whoever produced the bytes (Docker's demultiplexer on the attach lane, a FIFO
 * read on the fifo lane, a cosocket's reads inside nginx) hands them in per stream with
 * lk_output_put. When armed with a token, each stream is scanned for the
 * sentinel that ends the step (sentinel.c); unarmed, everything is output (an
 * exec). What is kept until taken is capped per stream: past the cap, bytes are
 * dropped and counted as truncated, so a flood cannot grow memory.
 *
 * Sans-IO, no Lua: the caller frees nothing but through lk_output_free. */
#ifndef LK_OUTPUT_H
#define LK_OUTPUT_H

#include <stddef.h>

#include "buf.h"
#include "sentinel.h"

/* The streams; LK_OUT_DAEMON is the Docker daemon's own error text (an exec
 * that failed to start): the user reads it as stderr, and it is never scanned. */
enum { LK_OUT_STDOUT = 0, LK_OUT_STDERR = 1, LK_OUT_DAEMON = 2 };

/* What the output says after bytes were put in. */
enum { LK_OUT_MORE, LK_OUT_EXIT, LK_OUT_TRUNCATED, LK_OUT_FAILED };

typedef struct {
    lk_buf buf;
    size_t cap;     /* most bytes kept until taken; 0: no cap */
    int truncated;  /* bytes were dropped at the cap since armed */
    int slices;     /* its bytes are taken as they come (a callback's); set after arming */
    int cut;        /* the reader wants no more of it: every further byte is dropped */
} lk_sink;

typedef struct {
    lk_scan scan[2];
    lk_sink sink[2];
    int armed;           /* scanning for a sentinel; else everything is output */
    int truncation_told; /* LK_OUT_TRUNCATED was returned since armed */
    int oom;
    const char *error;   /* after LK_OUT_FAILED */
} lk_output;

void lk_output_init(lk_output *o);
void lk_output_free(lk_output *o);

/* Starts a step: with a token (1..LK_TOKEN_MAX bytes whose first byte does not
 * recur), the step ends at it on both streams; with NULL, output runs to the
 * end of the streams. Returns -1 for a bad token. */
int lk_output_arm(lk_output *o, const char *token, size_t len, size_t cap_out, size_t cap_err);

/* Bytes of stream k (LK_OUT_*). Returns LK_OUT_FAILED on a malformed sentinel
 * or when memory ran out (o->oom), else 0. */
int lk_output_put(lk_output *o, int k, const char *p, size_t n);

/* Stream k ended: a token prefix held back was output after all. Returns
 * LK_OUT_FAILED when memory ran out, else 0. */
int lk_output_end(lk_output *o, int k);

/* The reader wants no more of stream k (0 stdout, 1 stderr) this step: what
 * follows is dropped as past a cap, while the sentinel is still scanned for. */
void lk_output_cut(lk_output *o, int k);

/* Whether a stream whose bytes are taken as they come (sink.slices) holds a
 * slice worth handing over now: the reader stops there, so that the buffer
 * stays small and is reused instead of growing and being freed every time. */
#define LK_OUT_SLICE 65536
int lk_output_sliced(const lk_output *o);

/* LK_OUT_EXIT once both streams saw the sentinel; LK_OUT_TRUNCATED once per
 * step, the first time a cap dropped bytes; else LK_OUT_MORE. */
int lk_output_outcome(lk_output *o);

#endif
