#include "buf.h"

#include <stdlib.h>
#include <string.h>

void lk_buf_init(lk_buf *b) { b->data = NULL; b->len = b->cap = 0; }

void lk_buf_free(lk_buf *b) { free(b->data); lk_buf_init(b); }

/* Keeps a small buffer for reuse, but gives a big one back: a box that once
 * printed 100 MB must not hold that memory for the rest of its life. Small
 * is up to two 64 KiB slices of output handed to a callback (lk_output_sliced
 * plus one read): such a buffer is filled and emptied for every slice. */
#define KEEP_CAPACITY (128 << 10)

void lk_buf_clear(lk_buf *b) {
    if (b->cap > KEEP_CAPACITY) lk_buf_free(b);
    else b->len = 0;
}

int lk_buf_append(lk_buf *b, const char *p, size_t n) {
    if (n == 0) return 0;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > ((size_t)-1) / 2) return -1;
            cap *= 2;
        }
        char *d = realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}
