/* libFuzzer harness for the cgroup file parsers (src/cgroup.c).
 *
 * Input: a selector byte S, then the file's text. S bit 0: 0 parses it with
 * lk_cg_u64, 1 with lk_cg_pair; S bit 1 picks lk_cg_pair's keys: v2's
 * cpu.stat ("user_usec", "system_usec") or v1's cpuacct.stat ("user",
 * "system"; one a prefix of the other's line, as "user" is of "user_usec").
 *
 * The text is handed over in a malloc'd copy of exactly its length (so that
 * ASan sees a read past it), and the result must be what a plain reference
 * finds: the same success or failure and, on success, the same values. Any
 * disagreement aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/cgroup.h"
/* For CHECK only: these parsers take the whole text at once, so the cut plan
 * (read_plan, bounds) goes unused here. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "fuzz_split.h"
#pragma GCC diagnostic pop

/* --- the reference: the same rules, written the plainest way ----------------- */

static int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

/* d[0..n) is a decimal u64: one or more digits, at most 2^64 - 1. The bound is
 * checked on the text (leading zeros off, then length and order against the
 * largest value's digits), not by arithmetic. */
static int ref_number(const uint8_t *d, size_t n, uint64_t *v) {
    static const char max[] = "18446744073709551615";
    if (n == 0) return -1;
    for (size_t i = 0; i < n; i++)
        if (!is_digit(d[i])) return -1;
    size_t z = 0;
    while (z < n - 1 && d[z] == '0') z++;
    const uint8_t *s = d + z;
    size_t m = n - z;
    if (m > sizeof max - 1) return -1;
    if (m == sizeof max - 1 && memcmp(s, max, m) > 0) return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < m; i++) x = x * 10 + (uint64_t)(s[i] - '0');
    *v = x;
    return 0;
}

static int ref_u64(const uint8_t *d, size_t n, uint64_t *v) {
    if (n > 0 && d[n - 1] == '\n') n--; /* one trailing newline, no more */
    return ref_number(d, n, v);
}

static int ref_pair(const uint8_t *d, size_t n, const char *a, const char *b, uint64_t *user, uint64_t *sys) {
    int nuser = 0, nsys = 0;
    size_t s = 0;
    while (s < n) { /* the line d[s..e); text ending in '\n' ends there */
        size_t e = s;
        while (e < n && d[e] != '\n') e++;
        size_t sp = s;
        while (sp < e && d[sp] != ' ') sp++;
        if (sp == e) return -1;          /* no space: not "key value" */
        uint64_t v;
        if (ref_number(d + sp + 1, e - sp - 1, &v)) return -1;
        size_t klen = sp - s;
        if (klen == strlen(a) && memcmp(d + s, a, klen) == 0) {
            nuser++;
            *user = v;
        } else if (klen == strlen(b) && memcmp(d + s, b, klen) == 0) {
            nsys++;
            *sys = v;
        }
        if (e == n) break;
        s = e + 1;
    }
    return nuser == 1 && nsys == 1 ? 0 : -1;
}

/* --- the check --------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    unsigned sel = data[0] & 1, v1_keys = data[0] & 2;
    data++;
    size--;

    char *copy = malloc(size); /* exactly the text: no slack to over-read into */
    CHECK(copy || size == 0);
    if (size) memcpy(copy, data, size);

    if (sel == 0) {
        uint64_t want = 0, got = 0xa5a5a5a5a5a5a5a5u;
        int rw = ref_u64(data, size, &want);
        int rg = lk_cg_u64(copy, size, &got);
        CHECK(rg == 0 || rg == -1);
        CHECK(rg == rw);
        if (rg == 0) CHECK(got == want);
    } else {
        uint64_t wu = 0, ws = 0, gu = 0xa5a5a5a5a5a5a5a5u, gs = 0x5a5a5a5a5a5a5a5au;
        const char *a = v1_keys ? "user" : "user_usec", *b = v1_keys ? "system" : "system_usec";
        int rw = ref_pair(data, size, a, b, &wu, &ws);
        int rg = lk_cg_pair(copy, size, a, b, &gu, &gs);
        CHECK(rg == 0 || rg == -1);
        CHECK(rg == rw);
        if (rg == 0) {
            CHECK(gu == wu);
            CHECK(gs == ws);
        }
    }
    CHECK(size == 0 || memcmp(copy, data, size) == 0); /* the text is left as it was */
    free(copy);
    return 0;
}
