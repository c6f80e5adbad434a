/* Frame parser for the inmate protocol (docs/inmate-protocol.md): each frame is
 * a type byte (C, H, Y, P, R or E), a big-endian u32 payload length, and the payload.
 * R and E are final: after one of them, any further byte is an error.
 *
 * Sans-IO: bytes in, whole frames out, one at a time. Unlike demux.c this parser
 * hands out whole payloads (the codec decodes them in one go), so it buffers the
 * frame being read, and no more: the type byte is checked as soon as it arrives
 * and the length as soon as its four bytes have, so a peer cannot make it buffer
 * more than `max` bytes by lying. */
#ifndef LK_FRAME_H
#define LK_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define LK_FRAME_HEAD 5                       /* type byte + u32 length */
#define LK_FRAME_DEFAULT_MAX (4u << 20)       /* 4 MiB: decoded, a frame costs many times its size */

/* What lk_frame_feed stopped on. */
enum { LK_FRAME_MORE, LK_FRAME_READY, LK_FRAME_ERROR };

typedef struct {
    unsigned char head[LK_FRAME_HEAD];
    size_t head_len;  /* header bytes gathered so far */
    uint32_t size;    /* payload length of the frame being read (once the header is whole) */
    uint32_t max;     /* largest payload accepted */
    lk_buf payload;   /* the frame being read, then the frame handed out */
    int type;         /* the type byte of the frame handed out */
    int ready;        /* a frame was handed out: drop it on the next feed */
    int done;         /* a final frame (R or E) was handed out */
    const char *error; /* static message; set for good once the stream failed */
} lk_frame;

void lk_frame_init(lk_frame *f, uint32_t max);
void lk_frame_free(lk_frame *f);

/* Feeds bytes up to the end of the first frame they complete. Sets *used to the
 * bytes consumed and returns:
 *   LK_FRAME_READY  a frame is complete: f->type, f->payload.data/.len, valid until
 *                   the next call; feed the rest of the bytes (p + *used) after it;
 *   LK_FRAME_MORE   all bytes consumed, no frame complete yet;
 *   LK_FRAME_ERROR  f->error says why (unknown type, too large, bytes after the
 *                   final frame, out of memory); every later call fails too. */
int lk_frame_feed(lk_frame *f, const char *p, size_t n, size_t *used);

/* Bytes of an incomplete frame held (header included; 0 once failed): nonzero at
 * the end of the stream means it was cut short. */
size_t lk_frame_buffered(const lk_frame *f);

/* The error messages (compare with f->error by pointer or text). */
extern const char lk_frame_err_type[], lk_frame_err_size[], lk_frame_err_after[], lk_frame_err_oom[];

#endif
