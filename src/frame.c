#include "frame.h"

#include <string.h>

const char lk_frame_err_type[] = "unknown frame type in the inmate protocol stream (not C, H, Y, P, R or E)";
const char lk_frame_err_size[] = "inmate protocol frame larger than the limit (see core.frames(max_bytes))";
const char lk_frame_err_after[] = "bytes after the final frame (R or E) of the inmate protocol stream";
const char lk_frame_err_oom[] = "out of memory";

void lk_frame_init(lk_frame *f, uint32_t max) {
    memset(f, 0, sizeof *f);
    lk_buf_init(&f->payload);
    f->max = max;
}

void lk_frame_free(lk_frame *f) { lk_buf_free(&f->payload); }

size_t lk_frame_buffered(const lk_frame *f) {
    return f->ready || f->error ? 0 : f->head_len + f->payload.len;
}

static int known(int type) {
    return type == 'C' || type == 'H' || type == 'Y' || type == 'P' || type == 'R' || type == 'E';
}

static int fail(lk_frame *f, const char *why) {
    f->error = why;
    lk_buf_free(&f->payload);
    return LK_FRAME_ERROR;
}

int lk_frame_feed(lk_frame *f, const char *p, size_t n, size_t *used) {
    size_t i = 0;
    *used = 0;
    if (f->error) return LK_FRAME_ERROR;
    if (f->ready) { /* the caller has had the last frame: drop it */
        f->ready = 0;
        lk_buf_clear(&f->payload);
    }
    while (i < n) {
        if (f->done) return fail(f, lk_frame_err_after);
        if (f->head_len < LK_FRAME_HEAD) {
            size_t k = LK_FRAME_HEAD - f->head_len;
            if (k > n - i) k = n - i;
            memcpy(f->head + f->head_len, p + i, k);
            /* Checked at once, so the error does not wait for the length bytes. */
            if (f->head_len == 0 && !known(f->head[0])) return fail(f, lk_frame_err_type);
            f->head_len += k;
            i += k;
            *used = i;
            if (f->head_len < LK_FRAME_HEAD) break;
            f->size = (uint32_t)f->head[1] << 24 | (uint32_t)f->head[2] << 16 |
                      (uint32_t)f->head[3] << 8 | (uint32_t)f->head[4];
            if (f->size > f->max) return fail(f, lk_frame_err_size);
        } else {
            /* Grows with the bytes that came, not with the length claimed: a peer
             * that announces 64 MiB and sends nothing costs nothing. */
            size_t k = f->size - f->payload.len;
            if (k > n - i) k = n - i;
            if (lk_buf_append(&f->payload, p + i, k)) return fail(f, lk_frame_err_oom);
            i += k;
            *used = i;
        }
        if (f->payload.len == f->size) { /* a zero-length payload completes with its header */
            f->type = f->head[0];
            f->head_len = 0;
            f->ready = 1;
            f->done = f->type == 'R' || f->type == 'E';
            return LK_FRAME_READY;
        }
    }
    return LK_FRAME_MORE;
}
