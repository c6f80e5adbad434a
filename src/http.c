#include "http.h"

#include <string.h>

enum { S_HEAD, S_LENGTH, S_CHUNK_SIZE, S_CHUNK_DATA, S_CHUNK_END, S_TRAILERS, S_CLOSE, S_DONE, S_FAILED };

void lk_http_init(lk_http *h) {
    h->state = S_HEAD;
    h->status = 0;
    h->keep_alive = 0;
    h->no_body = 0;
    h->error = NULL;
    h->left = 0;
    h->nheaders = 0;
    h->line_len = 0;
    h->head_len = 0;
}

static int fail(lk_http *h, const char *why) {
    h->state = S_FAILED;
    h->error = why;
    return LK_HTTP_ERROR;
}

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static int token_eq(const char *p, size_t n, const char *lit) {
    size_t m = strlen(lit);
    if (n != m) return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)p[i]) != lit[i]) return 0;
    return 1;
}

/* Does the comma-separated list p[0..n) hold `lit` (case-insensitive)? */
static int list_has(const char *p, size_t n, const char *lit) {
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && p[j] != ',') j++;
        size_t a = i, b = j;
        while (a < b && (p[a] == ' ' || p[a] == '\t')) a++;
        while (b > a && (p[b - 1] == ' ' || p[b - 1] == '\t')) b--;
        if (token_eq(p + a, b - a, lit)) return 1;
        i = j + 1;
    }
    return 0;
}

static int parse_u64(const char *p, size_t n, int base, uint64_t *out) {
    uint64_t v = 0;
    if (n == 0) return -1;
    for (size_t i = 0; i < n; i++) {
        int c = lower((unsigned char)p[i]), d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (base == 16 && c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else return -1;
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base) return -1;
        v = v * (uint64_t)base + (uint64_t)d;
    }
    *out = v;
    return 0;
}

/* Parses the complete head in h->head[0..head_len) (it ends with CRLF CRLF). */
static int parse_head(lk_http *h) {
    char *p = h->head;
    size_t n = h->head_len - 2; /* keep the last header line's CRLF */
    char *eol = memchr(p, '\n', n);
    /* Status line: HTTP/1.x SP 3DIGIT [SP reason] CRLF */
    if (!eol || eol - p < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') ||
        p[8] != ' ' || eol[-1] != '\r')
        return fail(h, "malformed HTTP status line");
    int http10 = p[7] == '0';
    h->status = 0;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9') return fail(h, "malformed HTTP status code");
        h->status = h->status * 10 + (p[i] - '0');
    }
    if (eol - p > 13 && p[12] != ' ') return fail(h, "malformed HTTP status line");

    int chunked = 0, has_length = 0, conn_close = http10, conn_keep = 0;
    uint64_t length = 0;
    size_t pos = (size_t)(eol - p) + 1;
    h->nheaders = 0;
    while (pos < n) {
        char *line = p + pos;
        char *end = memchr(line, '\n', n - pos);
        if (!end || end == line || end[-1] != '\r') return fail(h, "malformed HTTP header line");
        size_t len = (size_t)(end - line) - 1;
        pos += len + 2;
        if (line[0] == ' ' || line[0] == '\t') return fail(h, "folded HTTP header line");
        char *colon = memchr(line, ':', len);
        if (!colon || colon == line) return fail(h, "malformed HTTP header line");
        size_t name_len = (size_t)(colon - line);
        for (size_t i = 0; i < name_len; i++) {
            unsigned char c = (unsigned char)line[i];
            if (c <= ' ' || c >= 127) return fail(h, "malformed HTTP header name");
            line[i] = (char)lower(c);
        }
        size_t v = name_len + 1, ve = len;
        while (v < ve && (line[v] == ' ' || line[v] == '\t')) v++;
        while (ve > v && (line[ve - 1] == ' ' || line[ve - 1] == '\t')) ve--;
        if (h->nheaders == LK_HTTP_HEADERS_MAX) return fail(h, "too many HTTP headers");
        h->headers[h->nheaders].name = (uint16_t)(line - p);
        h->headers[h->nheaders].name_len = (uint16_t)name_len;
        h->headers[h->nheaders].value = (uint16_t)(line - p + (ptrdiff_t)v);
        h->headers[h->nheaders].value_len = (uint16_t)(ve - v);
        h->nheaders++;
        const char *val = line + v;
        if (token_eq(line, name_len, "transfer-encoding")) {
            if (!list_has(val, ve - v, "chunked")) return fail(h, "unsupported HTTP transfer coding");
            chunked = 1;
        } else if (token_eq(line, name_len, "content-length")) {
            uint64_t l;
            if (parse_u64(val, ve - v, 10, &l) || (has_length && l != length))
                return fail(h, "malformed HTTP Content-Length");
            has_length = 1;
            length = l;
        } else if (token_eq(line, name_len, "connection")) {
            if (list_has(val, ve - v, "close")) conn_close = 1;
            if (list_has(val, ve - v, "keep-alive")) conn_keep = 1;
        }
    }
    if (http10 && conn_keep) conn_close = 0;

    if (h->no_body || h->status / 100 == 1 || h->status == 204 || h->status == 304) {
        h->state = S_DONE;
        h->keep_alive = !conn_close && h->status != 101;
    } else if (chunked) {
        h->state = S_CHUNK_SIZE;
        h->keep_alive = !conn_close;
    } else if (has_length) {
        h->left = length;
        h->state = length ? S_LENGTH : S_DONE;
        h->keep_alive = !conn_close;
    } else {
        h->state = S_CLOSE;
        h->keep_alive = 0;
    }
    return LK_HTTP_HEAD;
}

static int feed_head(lk_http *h, const char *p, size_t n, size_t *i) {
    size_t room = LK_HTTP_HEAD_MAX - h->head_len;
    size_t k = n - *i < room ? n - *i : room;
    size_t old = h->head_len;
    memcpy(h->head + old, p + *i, k);
    h->head_len += k;
    /* Look for CRLF CRLF, starting where it could first have been completed. */
    size_t from = old > 3 ? old - 3 : 0;
    for (size_t j = from; j + 4 <= h->head_len; j++) {
        if (memcmp(h->head + j, "\r\n\r\n", 4) == 0) {
            *i += j + 4 - old;
            h->head_len = j + 4;
            return parse_head(h);
        }
    }
    *i += k;
    if (h->head_len == LK_HTTP_HEAD_MAX) return fail(h, "HTTP response head too large");
    return LK_HTTP_MORE;
}

/* Gathers a CRLF-terminated line into h->line; returns 1 when complete. */
static int gather_line(lk_http *h, const char *p, size_t n, size_t *i) {
    while (*i < n) {
        char c = p[(*i)++];
        if (c == '\n') return 1;
        if (h->line_len == LK_HTTP_LINE_MAX) return -1;
        h->line[h->line_len++] = c;
    }
    return 0;
}

int lk_http_feed(lk_http *h, const char *p, size_t n, size_t *used, lk_http_emit emit, void *ud) {
    size_t i = 0;
    int r = LK_HTTP_MORE;
    while (r == LK_HTTP_MORE && (i < n || h->state == S_DONE || h->state == S_FAILED)) {
        switch (h->state) {
        case S_HEAD:
            r = feed_head(h, p, n, &i);
            break;
        case S_LENGTH:
        case S_CHUNK_DATA:
        case S_CLOSE: {
            size_t k = n - i;
            if (h->state != S_CLOSE && k > h->left) k = (size_t)h->left;
            i += k;
            if (h->state != S_CLOSE) h->left -= k;
            if (emit(ud, p + i - k, k)) { r = fail(h, "HTTP body consumer failed"); break; }
            if (h->state == S_LENGTH && h->left == 0) h->state = S_DONE;
            if (h->state == S_CHUNK_DATA && h->left == 0) h->state = S_CHUNK_END;
            break;
        }
        case S_CHUNK_SIZE:
        case S_CHUNK_END:
        case S_TRAILERS: {
            int got = gather_line(h, p, n, &i);
            if (got < 0) { r = fail(h, "HTTP chunk line too long"); break; }
            if (!got) break;
            size_t len = h->line_len;
            h->line_len = 0;
            if (len == 0 || h->line[len - 1] != '\r') { r = fail(h, "malformed HTTP chunk framing"); break; }
            len--;
            if (h->state == S_CHUNK_END) {
                if (len) r = fail(h, "malformed HTTP chunk framing");
                else h->state = S_CHUNK_SIZE;
            } else if (h->state == S_TRAILERS) {
                if (len == 0) h->state = S_DONE; /* trailer fields are ignored */
            } else {
                size_t hex = 0;
                while (hex < len && h->line[hex] != ';' && h->line[hex] != ' ' && h->line[hex] != '\t') hex++;
                if (hex > 16 || parse_u64(h->line, hex, 16, &h->left)) { r = fail(h, "malformed HTTP chunk size"); break; }
                h->state = h->left ? S_CHUNK_DATA : S_TRAILERS;
            }
            break;
        }
        case S_DONE:
            r = LK_HTTP_DONE;
            break;
        default:
            r = LK_HTTP_ERROR;
            break;
        }
    }
    *used = i;
    return r;
}

int lk_http_eof(lk_http *h) {
    if (h->state == S_CLOSE || h->state == S_DONE) {
        h->state = S_DONE;
        return LK_HTTP_DONE;
    }
    if (h->state == S_FAILED) return LK_HTTP_ERROR;
    return fail(h, "connection closed before the HTTP response was complete");
}

void lk_http_header(const lk_http *h, size_t i, const char **name, size_t *name_len,
                    const char **value, size_t *value_len) {
    *name = h->head + h->headers[i].name;
    *name_len = h->headers[i].name_len;
    *value = h->head + h->headers[i].value;
    *value_len = h->headers[i].value_len;
}
