#include "output.h"

#include <string.h>

void lk_output_init(lk_output *o) {
    memset(o, 0, sizeof *o);
    for (int k = 0; k < 2; k++) {
        lk_scan_init(&o->scan[k]);
        lk_buf_init(&o->sink[k].buf);
    }
}

void lk_output_free(lk_output *o) {
    lk_buf_free(&o->sink[0].buf);
    lk_buf_free(&o->sink[1].buf);
}

int lk_output_arm(lk_output *o, const char *token, size_t len, size_t cap_out, size_t cap_err) {
    if (token && (lk_scan_arm(&o->scan[0], token, len) || lk_scan_arm(&o->scan[1], token, len))) return -1;
    o->armed = token != NULL;
    o->sink[0].cap = cap_out;
    o->sink[1].cap = cap_err;
    o->sink[0].truncated = o->sink[1].truncated = o->truncation_told = 0;
    o->sink[0].slices = o->sink[1].slices = 0;
    o->sink[0].cut = o->sink[1].cut = 0;
    o->error = NULL;
    return 0;
}

/* Keeps what fits under the cap; returns nonzero when memory ran out. */
static int keep(void *ud, const char *p, size_t n) {
    lk_sink *k = ud;
    if (k->cut) {
        k->truncated |= n > 0;
        return 0;
    }
    if (k->cap) {
        size_t room = k->buf.len < k->cap ? k->cap - k->buf.len : 0;
        if (n > room) {
            k->truncated = 1;
            n = room;
        }
    }
    return lk_buf_append(&k->buf, p, n);
}

static int fail(lk_output *o, const char *why) {
    o->error = why;
    return LK_OUT_FAILED;
}

int lk_output_put(lk_output *o, int k, const char *p, size_t n) {
    lk_sink *sink = &o->sink[k == LK_OUT_STDOUT ? 0 : 1];
    if (!o->armed || k == LK_OUT_DAEMON) {
        if (keep(sink, p, n)) o->oom = 1;
        return o->oom ? fail(o, "out of memory") : 0;
    }
    while (n > 0) {
        size_t used;
        int r = lk_scan_feed(&o->scan[k], p, n, &used, keep, sink);
        p += used;
        n -= used;
        if (r == LK_SCAN_ERROR) {
            /* emit fails only on memory; else the trailer was malformed */
            if (o->scan[k].state != LK_SCAN_FAILED) o->oom = 1;
            return fail(o, o->oom ? "out of memory"
                                  : "malformed sentinel in the shell's output (the session is out of step)");
        }
    }
    return 0;
}

int lk_output_end(lk_output *o, int k) {
    if (k != LK_OUT_STDOUT && k != LK_OUT_STDERR) return 0; /* the daemon's text is never held back */
    if (o->armed && lk_scan_flush(&o->scan[k], keep, &o->sink[k])) {
        o->oom = 1;
        return fail(o, "out of memory");
    }
    return 0;
}

void lk_output_cut(lk_output *o, int k) {
    o->sink[k].cut = o->sink[k].truncated = 1;
    o->truncation_told = 1; /* the reader knows: it asked */
}

int lk_output_sliced(const lk_output *o) {
    return (o->sink[0].slices && o->sink[0].buf.len >= LK_OUT_SLICE) ||
           (o->sink[1].slices && o->sink[1].buf.len >= LK_OUT_SLICE);
}

int lk_output_outcome(lk_output *o) {
    if (o->armed && o->scan[0].state == LK_SCAN_IDLE && o->scan[1].state == LK_SCAN_IDLE) return LK_OUT_EXIT;
    if ((o->sink[0].truncated || o->sink[1].truncated) && !o->truncation_told) {
        o->truncation_told = 1;
        return LK_OUT_TRUNCATED;
    }
    return LK_OUT_MORE;
}
