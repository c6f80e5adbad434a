/* Demultiplexer for Docker's attach/exec stream (Tty off): each frame is an
 * 8-byte header {stream, 0, 0, 0, size as big-endian u32} and `size` payload bytes.
 *
 * Sans-IO: bytes in, payload pieces out through a callback, as they arrive. A frame
 * is never buffered whole, so memory stays bounded whatever sizes the peer claims. */
#ifndef LK_DEMUX_H
#define LK_DEMUX_H

#include <stddef.h>
#include <stdint.h>

enum { LK_STDIN = 0, LK_STDOUT = 1, LK_STDERR = 2, LK_SYSERR = 3 };

typedef struct {
    unsigned char head[8];
    size_t head_len;   /* header bytes gathered so far */
    uint32_t left;     /* payload bytes of the current frame still to come */
    int stream;
    int failed;
} lk_demux;

/* Receives `n` payload bytes of `stream`; returns nonzero to stop the feed. */
typedef int (*lk_demux_emit)(void *ud, int stream, const char *p, size_t n);

void lk_demux_init(lk_demux *d);

/* Returns the number of bytes consumed (all of them unless `emit` stopped early),
 * or -1 on a malformed header (then the stream cannot be resynchronised). */
long lk_demux_feed(lk_demux *d, const char *p, size_t n, lk_demux_emit emit, void *ud);

/* Nonzero when the stream stopped in the middle of a frame or header. */
int lk_demux_partial(const lk_demux *d);

#endif
