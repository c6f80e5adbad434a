#include "sentinel.h"

#include <limits.h>
#include <string.h>

void lk_scan_init(lk_scan *s) { memset(s, 0, sizeof *s); }

int lk_scan_arm(lk_scan *s, const char *token, size_t len) {
    if (len == 0 || len > LK_TOKEN_MAX || memchr(token + 1, token[0], len - 1)) return -1;
    memcpy(s->token, token, len);
    s->token_len = len;
    s->matched = 0;
    s->trailer_len = 0;
    s->state = LK_SCAN_OUTPUT;
    s->code = -1;
    return 0;
}

int lk_scan_flush(lk_scan *s, lk_scan_emit emit, void *ud) {
    size_t m = s->matched;
    s->matched = 0;
    return m ? emit(ud, s->token, m) : 0;
}

/* Reads the trailer " CODE\n" byte by byte (it is short and bounded). */
static int trailer(lk_scan *s, const char *p, size_t n, size_t *i) {
    while (*i < n) {
        char c = p[(*i)++];
        if (c != '\n') {
            if (s->trailer_len == LK_TRAILER_MAX - 1) return LK_SCAN_ERROR;
            s->trailer[s->trailer_len++] = c;
            continue;
        }
        const char *t = s->trailer;
        size_t len = s->trailer_len;
        s->trailer_len = 0;
        if (len < 2 || len > 1 + LK_CODE_DIGITS || t[0] != ' ') return LK_SCAN_ERROR;
        int code = 0;
        for (size_t k = 1; k < len; k++) {
            if (t[k] < '0' || t[k] > '9') return LK_SCAN_ERROR;
            int d = t[k] - '0';
            if (code > (INT_MAX - d) / 10) return LK_SCAN_ERROR;
            code = code * 10 + d;
        }
        s->code = code;
        s->state = LK_SCAN_IDLE;
        return LK_SCAN_EXIT;
    }
    return LK_SCAN_MORE;
}

int lk_scan_feed(lk_scan *s, const char *p, size_t n, size_t *used, lk_scan_emit emit, void *ud) {
    size_t i = 0;
    int r = LK_SCAN_MORE;
    while (i < n && r == LK_SCAN_MORE) {
        if (s->state == LK_SCAN_IDLE) {
            i = n;
            break;
        }
        if (s->state == LK_SCAN_FAILED) {
            r = LK_SCAN_ERROR;
            break;
        }
        if (s->state == LK_SCAN_TRAILER) {
            r = trailer(s, p, n, &i);
            if (r == LK_SCAN_ERROR) s->state = LK_SCAN_FAILED;
            continue;
        }
        if (s->matched) { /* a token prefix ended the previous feed: extend it */
            size_t q = s->matched;
            while (i < n && q < s->token_len && p[i] == s->token[q]) i++, q++;
            if (q == s->token_len) {
                s->matched = 0;
                s->state = LK_SCAN_TRAILER;
                continue;
            }
            if (i == n) {
                s->matched = q;
                break;
            }
            /* Mismatch: the held bytes were output. p[i] is not consumed, and it
             * may start the token itself (the held bytes cannot: see sentinel.h). */
            s->matched = 0;
            if (emit(ud, s->token, q)) { r = LK_SCAN_ERROR; break; }
            continue;
        }
        size_t start = i;
        for (;;) {
            const char *hit = memchr(p + i, s->token[0], n - i);
            if (!hit) {
                i = n;
                if (emit(ud, p + start, n - start)) r = LK_SCAN_ERROR;
                break;
            }
            size_t j = (size_t)(hit - p);
            size_t m = n - j < s->token_len ? n - j : s->token_len;
            if (memcmp(hit, s->token, m) != 0) {
                i = j + 1;
                continue;
            }
            if (j > start && emit(ud, p + start, j - start)) { r = LK_SCAN_ERROR; break; }
            i = j + m;
            if (m == s->token_len) s->state = LK_SCAN_TRAILER;
            else s->matched = m;
            break;
        }
    }
    *used = i;
    return r;
}
