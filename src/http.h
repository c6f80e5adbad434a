/* HTTP/1.1 response parser (sans-IO): status line and headers, then the body
 * framed by Content-Length, chunked transfer coding, or the end of the
 * connection. Body bytes go to a callback as they are decoded, so streaming
 * endpoints (build progress, logs) never need the whole body in memory.
 *
 * The head is kept in a fixed buffer; a larger head is an error, which bounds
 * memory whatever the peer sends. */
#ifndef LK_HTTP_H
#define LK_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define LK_HTTP_HEAD_MAX 16384
#define LK_HTTP_HEADERS_MAX 64
#define LK_HTTP_LINE_MAX 256 /* a chunk-size line, extensions included */

enum { LK_HTTP_MORE, LK_HTTP_HEAD, LK_HTTP_DONE, LK_HTTP_ERROR };

typedef struct {
    int state;
    int status;         /* e.g. 200, after LK_HTTP_HEAD */
    int keep_alive;     /* the connection may carry another request */
    int no_body;        /* set before feeding: the request was HEAD */
    const char *error;  /* static text, after LK_HTTP_ERROR */
    uint64_t left;      /* bytes of the current chunk or of the body still to come */
    size_t nheaders;
    struct { uint16_t name, name_len, value, value_len; } headers[LK_HTTP_HEADERS_MAX];
    size_t line_len;
    char line[LK_HTTP_LINE_MAX];
    size_t head_len;
    char head[LK_HTTP_HEAD_MAX];
} lk_http;

typedef int (*lk_http_emit)(void *ud, const char *p, size_t n);

void lk_http_init(lk_http *h);

/* Feeds bytes and sets *used to how many were consumed. Returns LK_HTTP_HEAD once,
 * when the head is complete (bytes after it are not consumed: for a 101 upgrade
 * they belong to the new protocol), LK_HTTP_DONE when the body is complete,
 * LK_HTTP_MORE when it needs more bytes, LK_HTTP_ERROR (see h->error) otherwise.
 * A nonzero return from `emit` stops the feed with LK_HTTP_ERROR. */
int lk_http_feed(lk_http *h, const char *p, size_t n, size_t *used, lk_http_emit emit, void *ud);

/* The connection ended: returns LK_HTTP_DONE if that completes the response
 * (a body framed by the end of the connection), LK_HTTP_ERROR otherwise. */
int lk_http_eof(lk_http *h);

/* Header i's name (lower case) and value, after LK_HTTP_HEAD. */
void lk_http_header(const lk_http *h, size_t i, const char **name, size_t *name_len,
                    const char **value, size_t *value_len);

#endif
