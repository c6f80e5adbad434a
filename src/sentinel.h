/* Sentinel scanner: finds where one command's output ends in a shell's stream.
 *
 * After each command the session shell prints `TOKEN SP CODE LF`, where TOKEN is
 * fresh random text per command and CODE is the exit code: 1 to LK_CODE_DIGITS
 * decimal digits, at most INT_MAX. Bytes before the token are the command's
 * output; they are passed on as they arrive, except for a tail that
 * could be the start of the token, held back until the next bytes decide.
 *
 * The token's first byte must not occur again in it: then a failed partial
 * match can only restart at a later occurrence of that byte, so the scan is a
 * memchr plus a compare and never needs to look back. Memory is bounded by the
 * token length, whatever the input. */
#ifndef LK_SENTINEL_H
#define LK_SENTINEL_H

#include <stddef.h>

#define LK_TOKEN_MAX 64
#define LK_CODE_DIGITS 10                  /* INT_MAX (2147483647) has 10 */
#define LK_TRAILER_MAX (LK_CODE_DIGITS + 2) /* " " + the digits + "\n" */

enum {
    LK_SCAN_IDLE,    /* not armed (or finished): bytes are dropped */
    LK_SCAN_OUTPUT,  /* looking for the token */
    LK_SCAN_TRAILER, /* token seen, reading " CODE\n" */
    LK_SCAN_FAILED   /* the trailer was malformed */
};

/* What lk_scan_feed stopped on. */
enum { LK_SCAN_MORE, LK_SCAN_EXIT, LK_SCAN_ERROR };

typedef struct {
    char token[LK_TOKEN_MAX];
    size_t token_len;
    size_t matched;  /* token bytes matched at the end of the input so far */
    char trailer[LK_TRAILER_MAX];
    size_t trailer_len;
    int state;
    int code;        /* the exit code, after LK_SCAN_EXIT */
} lk_scan;

/* Receives command output; returns nonzero when it could not take it. */
typedef int (*lk_scan_emit)(void *ud, const char *p, size_t n);

void lk_scan_init(lk_scan *s);
/* Starts a command. Returns -1 if the token is empty, too long, or its first
 * byte occurs in it again. */
int lk_scan_arm(lk_scan *s, const char *token, size_t len);

/* Feeds bytes. Stops after a full sentinel: sets *used to the bytes consumed and
 * returns LK_SCAN_EXIT (s->code holds the code; the scanner is idle until armed
 * again). Returns LK_SCAN_MORE when all bytes were consumed, LK_SCAN_ERROR on a
 * malformed trailer or when `emit` failed. */
int lk_scan_feed(lk_scan *s, const char *p, size_t n, size_t *used, lk_scan_emit emit, void *ud);

/* Hands any held-back token prefix to `emit` as output (when the stream ends). */
int lk_scan_flush(lk_scan *s, lk_scan_emit emit, void *ud);

#endif
