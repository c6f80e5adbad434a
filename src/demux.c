#include "demux.h"

#include <string.h>

void lk_demux_init(lk_demux *d) { memset(d, 0, sizeof *d); }

int lk_demux_partial(const lk_demux *d) { return d->head_len > 0 || d->left > 0; }

long lk_demux_feed(lk_demux *d, const char *p, size_t n, lk_demux_emit emit, void *ud) {
    size_t i = 0;
    if (d->failed) return -1;
    while (i < n) {
        if (d->left == 0) {
            size_t k = sizeof d->head - d->head_len;
            if (k > n - i) k = n - i;
            memcpy(d->head + d->head_len, p + i, k);
            d->head_len += k;
            i += k;
            if (d->head_len < sizeof d->head) break;
            d->head_len = 0;
            if (d->head[0] > LK_SYSERR || d->head[1] || d->head[2] || d->head[3]) {
                d->failed = 1;
                return -1;
            }
            d->stream = d->head[0];
            d->left = (uint32_t)d->head[4] << 24 | (uint32_t)d->head[5] << 16 |
                      (uint32_t)d->head[6] << 8 | (uint32_t)d->head[7];
            continue; /* a zero-length frame is legal: read the next header */
        }
        size_t k = n - i < d->left ? n - i : d->left;
        d->left -= (uint32_t)k;
        i += k;
        if (emit(ud, d->stream, p + i - k, k)) break;
    }
    return (long)i;
}
