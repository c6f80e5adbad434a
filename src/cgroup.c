/* Parsing the cgroup files lockup.meter reads; see cgroup.h. */
#include "cgroup.h"

#include <string.h>

/* Digits at buf[*i...]: at least one, no overflow. */
static int digits(const char *buf, size_t len, size_t *i, uint64_t *v) {
    size_t start = *i;
    uint64_t x = 0;
    while (*i < len && buf[*i] >= '0' && buf[*i] <= '9') {
        unsigned d = (unsigned)(buf[*i] - '0');
        if (x > (UINT64_MAX - d) / 10) return -1;
        x = x * 10 + d;
        (*i)++;
    }
    if (*i == start) return -1;
    *v = x;
    return 0;
}

int lk_cg_u64(const char *buf, size_t len, uint64_t *v) {
    size_t i = 0;
    if (digits(buf, len, &i, v)) return -1;
    if (i < len && buf[i] == '\n') i++;
    return i == len ? 0 : -1;
}

int lk_cg_pair(const char *buf, size_t len, const char *a, const char *b, uint64_t *va, uint64_t *vb) {
    size_t alen = strlen(a), blen = strlen(b);
    int have_a = 0, have_b = 0;
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(buf + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - buf) : len;
        const char *sp = memchr(buf + i, ' ', end - i);
        if (!sp) return -1;
        size_t key = (size_t)(sp - buf) - i, j = (size_t)(sp - buf) + 1;
        uint64_t v;
        if (digits(buf, end, &j, &v) || j != end) return -1;
        if (key == alen && !memcmp(buf + i, a, alen)) {
            if (have_a++) return -1;
            *va = v;
        } else if (key == blen && !memcmp(buf + i, b, blen)) {
            if (have_b++) return -1;
            *vb = v;
        }
        i = end + 1;
    }
    return have_a && have_b ? 0 : -1;
}
