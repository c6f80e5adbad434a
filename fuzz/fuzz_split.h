/* Shared by the libFuzzer harnesses (fuzz_*.c): the CHECK macro and the input
 * plan, i.e. where to cut the stream (the same scheme in every harness).
 *
 * An input starts with a control byte C and (C & 7) big-endian 16-bit cut
 * offsets; read_plan takes them off the front. What the other bits of C mean is
 * up to each harness (bit 3, feeding one byte at a time, by convention).
 *
 * Static functions only: each harness includes this header once. */
#ifndef LK_FUZZ_SPLIT_H
#define LK_FUZZ_SPLIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                              \
        }                                                                         \
    } while (0)

#define MAX_CUTS 7

typedef struct {
    unsigned flags;          /* the control byte */
    size_t ncut;
    uint16_t raw[MAX_CUTS];  /* cut offsets before reduction modulo the length */
} plan;

static int read_plan(plan *pl, const uint8_t **d, size_t *n) {
    if (*n < 1) return -1;
    pl->flags = (*d)[0];
    pl->ncut = pl->flags & 7;
    if (*n < 1 + 2 * pl->ncut) return -1;
    for (size_t i = 0; i < pl->ncut; i++) pl->raw[i] = (uint16_t)((*d)[1 + 2 * i] << 8 | (*d)[2 + 2 * i]);
    *d += 1 + 2 * pl->ncut;
    *n -= 1 + 2 * pl->ncut;
    return 0;
}

/* Room for the piece boundaries of a stream of n bytes (see bounds). */
static size_t *bounds_new(size_t n) {
    size_t *b = malloc((n + MAX_CUTS + 2) * sizeof *b);
    CHECK(b);
    return b;
}

/* Piece boundaries for a stream of n bytes: b[0] = 0 <= ... <= b[k-1] = n (empty
 * pieces included on purpose). `bytewise` gives every offset. Returns k; b has
 * room for n + MAX_CUTS + 2 entries (bounds_new). */
static size_t bounds(const plan *pl, size_t n, int bytewise, size_t *b) {
    size_t k = 0;
    if (bytewise) {
        for (size_t i = 0; i <= n; i++) b[k++] = i;
        return k;
    }
    b[k++] = 0;
    for (size_t i = 0; i < pl->ncut; i++) {
        size_t v = pl->raw[i] % (n + 1), j = k;
        while (j > 1 && b[j - 1] > v) b[j] = b[j - 1], j--;
        b[j] = v;
        k++;
    }
    b[k++] = n;
    return k;
}

#endif
