/* libFuzzer harness for the HTTP/1.1 response parser (src/http.c).
 *
 * Input: a control byte C, (C & 7) big-endian 16-bit cut offsets, then the
 * response bytes. C bit 3: also feed one byte at a time; bit 4: the request was
 * HEAD (no body); bit 5: an extra cut run where the body callback fails.
 *
 * Each run (whole, cut, byte by byte) must give the same head offset, status,
 * headers, keep-alive, decoded body, result and result offset, and the same
 * outcome at end of input (lk_http_eof). The whole run is also checked against
 * independent rules: the head ends at the first CRLF CRLF within the head limit,
 * the status is the three digits of the status line, header names are lower case
 * and values trimmed, and the body is what the framing (no body, Content-Length,
 * chunked via a reference decoder, or until close) says. Any violation aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/http.h"
#include "fuzz_split.h"

/* --- the outcome of one run -------------------------------------------------- */

#define HDR_CAP (2 * LK_HTTP_HEAD_MAX + 4 * LK_HTTP_HEADERS_MAX)

typedef struct {
    unsigned char *body;
    size_t len, cap;
    int head;            /* LK_HTTP_HEAD was returned */
    size_t head_at;      /* input offset just past the head */
    int status, keep_alive;
    size_t nheaders, hdr_len;
    unsigned char hdr[HDR_CAP]; /* headers as (len16 name len16 value)* */
    int result;          /* LK_HTTP_DONE, LK_HTTP_ERROR, or LK_HTTP_MORE at end of input */
    size_t result_at;
    const char *error;
    int eof;             /* lk_http_eof's answer when the input ended first */
    const char *eof_error;
    int fail_emit, emit_failed;
} run;

static run *run_new(size_t cap, int fail_emit) {
    run *r = calloc(1, sizeof *r);
    CHECK(r);
    r->cap = cap;
    r->body = malloc(cap ? cap : 1);
    CHECK(r->body);
    r->fail_emit = fail_emit;
    return r;
}

static void run_free(run *r) {
    free(r->body);
    free(r);
}

static int on_body(void *ud, const char *p, size_t n) {
    run *r = ud;
    CHECK(!r->emit_failed);
    CHECK(n <= r->cap - r->len); /* the decoded body is never longer than the input */
    memcpy(r->body + r->len, p, n);
    r->len += n;
    if (r->fail_emit) r->emit_failed = 1;
    return r->fail_emit;
}

static void put(run *r, const char *p, size_t n) {
    CHECK(n <= 0xffff && r->hdr_len + 2 + n <= HDR_CAP);
    r->hdr[r->hdr_len++] = (unsigned char)(n >> 8);
    r->hdr[r->hdr_len++] = (unsigned char)n;
    memcpy(r->hdr + r->hdr_len, p, n);
    r->hdr_len += n;
}

static int is_sp(int c) { return c == ' ' || c == '\t'; }

static void record_head(run *r, const lk_http *h, size_t at) {
    CHECK(!r->head); /* only once */
    r->head = 1;
    r->head_at = at;
    r->status = h->status;
    r->keep_alive = h->keep_alive;
    r->nheaders = h->nheaders;
    CHECK(h->nheaders <= LK_HTTP_HEADERS_MAX);
    for (size_t i = 0; i < h->nheaders; i++) {
        const char *name, *value;
        size_t nl, vl;
        lk_http_header(h, i, &name, &nl, &value, &vl);
        CHECK(name >= h->head && name + nl <= h->head + h->head_len);
        CHECK(value >= h->head && value + vl <= h->head + h->head_len);
        CHECK(nl > 0);
        for (size_t k = 0; k < nl; k++) {
            unsigned char c = (unsigned char)name[k];
            CHECK(c > ' ' && c < 127 && c != ':' && !(c >= 'A' && c <= 'Z'));
        }
        CHECK(name[nl] == ':');
        CHECK(!memchr(value, '\n', vl));
        if (vl) CHECK(!is_sp(value[0]) && !is_sp(value[vl - 1]));
        put(r, name, nl);
        put(r, value, vl);
    }
}

static void drive(run *r, const uint8_t *data, size_t n, int no_body, const size_t *b, size_t nb) {
    lk_http *h = malloc(sizeof *h);
    CHECK(h);
    lk_http_init(h);
    h->no_body = no_body;
    size_t consumed = 0;
    int res = LK_HTTP_MORE;
    for (size_t k = 0; k + 1 < nb; k++) {
        const char *p = (const char *)data + b[k];
        size_t left = b[k + 1] - b[k];
        do { /* empty pieces are fed too, and the rest of a piece after the head */
            size_t used = (size_t)-1;
            res = lk_http_feed(h, p, left, &used, on_body, r);
            CHECK(used <= left);
            p += used;
            left -= used;
            consumed += used;
            if (res == LK_HTTP_MORE) CHECK(left == 0);
            if (r->emit_failed) CHECK(res == LK_HTTP_ERROR);
            if (res == LK_HTTP_HEAD) record_head(r, h, consumed);
        } while ((left > 0 || res == LK_HTTP_HEAD) && res != LK_HTTP_DONE && res != LK_HTTP_ERROR);
        if (res == LK_HTTP_DONE || res == LK_HTTP_ERROR) break;
    }
    r->result = res;
    r->result_at = consumed;
    size_t used = (size_t)-1, before = r->len;
    if (res == LK_HTTP_DONE) { /* done stays done, and takes nothing more */
        CHECK(r->head);
        CHECK(lk_http_feed(h, "HTTP/1.1 200 OK\r\n\r\n", 19, &used, on_body, r) == LK_HTTP_DONE && used == 0);
        CHECK(lk_http_eof(h) == LK_HTTP_DONE);
    } else if (res == LK_HTTP_ERROR) { /* failed stays failed, with the same reason */
        r->error = h->error;
        CHECK(h->error != NULL);
        CHECK(lk_http_feed(h, "0\r\n\r\n", 5, &used, on_body, r) == LK_HTTP_ERROR && used == 0);
        CHECK(h->error == r->error);
        CHECK(lk_http_eof(h) == LK_HTTP_ERROR && h->error == r->error);
    } else {
        CHECK(consumed == n);
        r->eof = lk_http_eof(h);
        CHECK(r->eof == LK_HTTP_DONE || r->eof == LK_HTTP_ERROR);
        if (r->eof == LK_HTTP_ERROR) r->eof_error = h->error;
        else CHECK(lk_http_feed(h, "x", 1, &used, on_body, r) == LK_HTTP_DONE && used == 0);
    }
    CHECK(r->len == before);
    free(h);
}

static void same(const run *a, const run *b) {
    CHECK(a->head == b->head);
    CHECK(a->status == b->status);
    if (a->head) {
        CHECK(a->head_at == b->head_at);
        CHECK(a->keep_alive == b->keep_alive);
        CHECK(a->nheaders == b->nheaders && a->hdr_len == b->hdr_len);
        CHECK(memcmp(a->hdr, b->hdr, a->hdr_len) == 0);
    }
    CHECK(a->len == b->len && memcmp(a->body, b->body, a->len) == 0);
    CHECK(a->result == b->result && a->result_at == b->result_at);
    if (a->result == LK_HTTP_ERROR) CHECK(strcmp(a->error, b->error) == 0);
    if (a->result == LK_HTTP_MORE) {
        CHECK(a->eof == b->eof);
        if (a->eof == LK_HTTP_ERROR) CHECK(strcmp(a->eof_error, b->eof_error) == 0);
    }
}

/* --- independent rules ----------------------------------------------------- */

/* The header value of `name` in a run's header list, or NULL. */
static const unsigned char *find_header(const run *r, const char *name, size_t *vl) {
    size_t i = 0, want = strlen(name);
    while (i < r->hdr_len) {
        size_t nl = (size_t)r->hdr[i] << 8 | r->hdr[i + 1];
        const unsigned char *nm = r->hdr + i + 2;
        i += 2 + nl;
        size_t l = (size_t)r->hdr[i] << 8 | r->hdr[i + 1];
        const unsigned char *v = r->hdr + i + 2;
        i += 2 + l;
        if (nl == want && memcmp(nm, name, nl) == 0) {
            *vl = l;
            return v;
        }
    }
    return NULL;
}

/* One CRLF-or-LF-terminated line of at most LK_HTTP_LINE_MAX bytes before the LF:
 * 1 (line in l[0..len), *i past the LF), 0 (incomplete), -1 (too long, *i past
 * the first byte over). */
static int ref_line(const uint8_t *d, size_t n, size_t *i, const uint8_t **l, size_t *len) {
    size_t lim = n - *i < LK_HTTP_LINE_MAX + 1 ? n - *i : LK_HTTP_LINE_MAX + 1;
    const uint8_t *nl = memchr(d + *i, '\n', lim);
    if (!nl) {
        if (n - *i > LK_HTTP_LINE_MAX) {
            *i += LK_HTTP_LINE_MAX + 1;
            return -1;
        }
        *i = n;
        return 0;
    }
    *l = d + *i;
    *len = (size_t)(nl - (d + *i));
    *i += *len + 1;
    return 1;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A chunked body decoder over d[0..n), written from RFC 9112 section 7.1 plus
 * the parser's documented limits. Appends the data to *body; returns the result
 * and sets *at (the offset past the last byte consumed) and *why on error. */
static int ref_chunked(const uint8_t *d, size_t n, unsigned char *body, size_t *blen, size_t *at,
                       const char **why) {
    size_t i = 0, len;
    const uint8_t *l;
    int got;
    for (;;) {
        got = ref_line(d, n, &i, &l, &len);
        *at = i;
        if (got < 0) return *why = "HTTP chunk line too long", LK_HTTP_ERROR;
        if (got == 0) return LK_HTTP_MORE;
        if (len == 0 || l[len - 1] != '\r') return *why = "malformed HTTP chunk framing", LK_HTTP_ERROR;
        len--;
        size_t hex = 0;
        while (hex < len && l[hex] != ';' && l[hex] != ' ' && l[hex] != '\t') hex++;
        if (hex == 0 || hex > 16) return *why = "malformed HTTP chunk size", LK_HTTP_ERROR;
        uint64_t size = 0;
        for (size_t k = 0; k < hex; k++) {
            int v = hexval(l[k]);
            if (v < 0) return *why = "malformed HTTP chunk size", LK_HTTP_ERROR;
            size = size << 4 | (uint64_t)v;
        }
        if (size == 0) break;
        size_t take = size < n - i ? (size_t)size : n - i;
        memcpy(body + *blen, d + i, take);
        *blen += take;
        i += take;
        *at = i;
        if (take < size) return LK_HTTP_MORE;
        got = ref_line(d, n, &i, &l, &len);
        *at = i;
        if (got < 0) return *why = "HTTP chunk line too long", LK_HTTP_ERROR;
        if (got == 0) return LK_HTTP_MORE;
        if (len != 1 || l[0] != '\r') return *why = "malformed HTTP chunk framing", LK_HTTP_ERROR;
    }
    for (;;) { /* trailer fields, up to an empty line */
        got = ref_line(d, n, &i, &l, &len);
        *at = i;
        if (got < 0) return *why = "HTTP chunk line too long", LK_HTTP_ERROR;
        if (got == 0) return LK_HTTP_MORE;
        if (len == 0 || l[len - 1] != '\r') return *why = "malformed HTTP chunk framing", LK_HTTP_ERROR;
        if (len == 1) return LK_HTTP_DONE;
    }
}

static const uint8_t *crlfcrlf(const uint8_t *d, size_t n) {
    for (size_t i = 0; i + 4 <= n; i++)
        if (memcmp(d + i, "\r\n\r\n", 4) == 0) return d + i;
    return NULL;
}

static void check_rules(const run *r, const uint8_t *data, size_t n, int no_body) {
    /* The head: up to the first CRLF CRLF, if that lies within the limit. */
    size_t lim = n < LK_HTTP_HEAD_MAX ? n : LK_HTTP_HEAD_MAX;
    const uint8_t *e = crlfcrlf(data, lim);
    if (!e) {
        CHECK(!r->head);
        if (n >= LK_HTTP_HEAD_MAX) {
            CHECK(r->result == LK_HTTP_ERROR && r->result_at == LK_HTTP_HEAD_MAX);
            CHECK(strcmp(r->error, "HTTP response head too large") == 0);
        } else {
            CHECK(r->result == LK_HTTP_MORE && r->eof == LK_HTTP_ERROR);
        }
        return;
    }
    size_t head_end = (size_t)(e - data) + 4;
    if (!r->head) { /* the head was found and refused */
        CHECK(r->result == LK_HTTP_ERROR && r->result_at == head_end);
        return;
    }
    CHECK(r->head_at == head_end);
    CHECK(memcmp(data, "HTTP/1.", 7) == 0 && (data[7] == '0' || data[7] == '1') && data[8] == ' ');
    CHECK(r->status == (data[9] - '0') * 100 + (data[10] - '0') * 10 + (data[11] - '0'));
    CHECK(r->len <= n - head_end);

    const uint8_t *rest = data + head_end;
    size_t rn = n - head_end, vl;
    const unsigned char *te = find_header(r, "transfer-encoding", &vl);
    const unsigned char *cl = find_header(r, "content-length", &vl);
    if (no_body || r->status / 100 == 1 || r->status == 204 || r->status == 304) {
        CHECK(r->result == LK_HTTP_DONE && r->result_at == head_end && r->len == 0);
        if (r->status == 101) CHECK(!r->keep_alive);
    } else if (te) {
        size_t blen = 0, at = 0;
        const char *why = NULL;
        unsigned char *body = malloc(rn ? rn : 1);
        CHECK(body);
        int res = ref_chunked(rest, rn, body, &blen, &at, &why);
        CHECK(r->result == res);
        CHECK(r->len == blen && memcmp(r->body, body, blen) == 0);
        if (res != LK_HTTP_MORE) CHECK(r->result_at == head_end + at);
        if (res == LK_HTTP_ERROR) CHECK(strcmp(r->error, why) == 0);
        if (res == LK_HTTP_MORE) CHECK(r->eof == LK_HTTP_ERROR);
        free(body);
    } else if (cl) {
        uint64_t len = 0;
        for (size_t k = 0; k < vl; k++) {
            CHECK(cl[k] >= '0' && cl[k] <= '9');
            len = len * 10 + (uint64_t)(cl[k] - '0');
        }
        if (len <= rn) {
            CHECK(r->result == LK_HTTP_DONE && r->result_at == head_end + len);
            CHECK(r->len == len && memcmp(r->body, rest, (size_t)len) == 0);
        } else {
            CHECK(r->result == LK_HTTP_MORE && r->eof == LK_HTTP_ERROR);
            CHECK(r->len == rn && memcmp(r->body, rest, rn) == 0);
        }
    } else { /* until the connection closes */
        CHECK(!r->keep_alive);
        CHECK(r->result == LK_HTTP_MORE && r->eof == LK_HTTP_DONE);
        CHECK(r->len == rn && memcmp(r->body, rest, rn) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    plan pl;
    if (read_plan(&pl, &data, &size)) return 0;
    int no_body = (pl.flags >> 4) & 1;
    size_t *b = bounds_new(size);

    size_t whole_b[2] = {0, size};
    run *whole = run_new(size, 0);
    drive(whole, data, size, no_body, whole_b, 2);
    check_rules(whole, data, size, no_body);

    run *r = run_new(size, 0);
    drive(r, data, size, no_body, b, bounds(&pl, size, 0, b));
    same(whole, r);
    run_free(r);

    if (pl.flags & 8) {
        r = run_new(size, 0);
        drive(r, data, size, no_body, b, bounds(&pl, size, 1, b));
        same(whole, r);
        run_free(r);
    }
    if (pl.flags & 32) { /* the body consumer fails: the feed that called it reports it */
        r = run_new(size, 1);
        drive(r, data, size, no_body, b, bounds(&pl, size, 0, b));
        if (r->emit_failed) CHECK(r->result == LK_HTTP_ERROR && strcmp(r->error, "HTTP body consumer failed") == 0);
        else CHECK(r->len == 0);
        run_free(r);
    }
    run_free(whole);
    free(b);
    return 0;
}
