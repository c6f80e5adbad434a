/* A growable byte buffer. Core code (no Lua): callers free it themselves, so a
 * binding can release it before raising an error. */
#ifndef LK_BUF_H
#define LK_BUF_H

#include <stddef.h>

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} lk_buf;

void lk_buf_init(lk_buf *b);
void lk_buf_free(lk_buf *b);
/* Returns 0, or -1 when memory runs out (the buffer is left as it was). */
int lk_buf_append(lk_buf *b, const char *p, size_t n);
/* Empties the buffer (and frees its memory when it has grown large). */
void lk_buf_clear(lk_buf *b);

#endif
