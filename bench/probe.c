/* probe: the no-Lua baseline for a sentinel round trip in a long-lived shell.
 *
 * Build (a bench tool, so no Makefile target):
 *   cc -O2 -Wall -Wextra -Wshadow -std=c99 -D_GNU_SOURCE -o build/probe bench/probe.c
 * Usage:
 *   probe pipe   N TEMPLATE_FILE [SHELL...]            host shell over 3 pipes
 *   probe attach N TEMPLATE_FILE CONTAINER_ID [SOCKET]  Docker attach stream
 *   probe fifo   N TEMPLATE_FILE DIR                    DIR/{in,out,err} FIFOs
 * Each iteration replaces every @TOKEN@ in the template with a fresh random
 * token, writes the text to the shell's stdin and waits until stdout and stderr
 * have both shown "\001<token> <1-10 digits>\n". After 100 untimed warm-ups it
 * prints one line: median_ms=... p10_ms=... p90_ms=... n=N */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WARMUP 100
#define STALL_MS 10000
#define TOKEN_LEN 32
#define PLACEHOLDER "@TOKEN@"

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("probe: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Matches the sentinel one byte at a time, so one split across reads or frames
 * needs no buffering. Its only 0x01 is the first byte, so restarting at the
 * mismatching byte is exact. pos: 0 idle, 1..32 in token, 33 space, 34 digits. */
typedef struct { int pos, digits, done; } matcher;
static char token[TOKEN_LEN + 1];

static void match(matcher *m, const char *p, size_t n) {
    for (size_t i = 0; i < n && !m->done; i++) {
        char c = p[i];
        if (m->pos >= 1 && m->pos <= TOKEN_LEN && c == token[m->pos - 1]) m->pos++;
        else if (m->pos == TOKEN_LEN + 1 && c == ' ') m->pos++, m->digits = 0;
        else if (m->pos == TOKEN_LEN + 2 && c >= '0' && c <= '9' && m->digits < 10) m->digits++;
        else if (m->pos == TOKEN_LEN + 2 && c == '\n' && m->digits > 0) m->done = 1;
        else m->pos = c == '\001';
    }
}

/* Docker's multiplexed stream: 8-byte header {stream, 0, 0, 0, u32be size},
 * then the payload. State survives between reads (and iterations), as frames
 * split anywhere. */
typedef struct { unsigned char hdr[8]; int have; size_t left; } demux;

static void demux_feed(demux *d, const char *p, size_t n, matcher m[2]) {
    while (n > 0) {
        if (d->have < 8) {
            d->hdr[d->have++] = (unsigned char)*p++, n--;
            if (d->have < 8) continue;
            if ((d->hdr[0] != 1 && d->hdr[0] != 2) || d->hdr[1] || d->hdr[2] || d->hdr[3])
                die("malformed frame header %02x %02x %02x %02x", d->hdr[0], d->hdr[1], d->hdr[2], d->hdr[3]);
            d->left = (size_t)d->hdr[4] << 24 | (size_t)d->hdr[5] << 16 | (size_t)d->hdr[6] << 8 | d->hdr[7];
        } else {
            size_t k = n < d->left ? n : d->left;
            match(&m[d->hdr[0] - 1], p, k);
            p += k, n -= k, d->left -= k;
        }
        if (d->have == 8 && d->left == 0) d->have = 0; /* also for empty frames */
    }
}

/* Where the shell's stdin and output are: for attach one socket (rfd[0] ==
 * wfd) carrying both streams muxed; otherwise rfd[0] is stdout, rfd[1] stderr. */
static struct { int wfd, rfd[2], nr, muxed, fifo, seen[2]; demux dm; } lane;

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) die("write to shell: %s", strerror(errno));
        p += w, n -= (size_t)w;
    }
}

static double round_trip(const char *cmd, size_t len) {
    matcher m[2] = {{0, 0, 0}, {0, 0, 0}};
    char buf[65536];
    double t0 = now_ms();
    write_all(lane.wfd, cmd, len);
    while (!(m[0].done && m[1].done)) {
        struct pollfd pf[2] = {{lane.rfd[0], POLLIN, 0}, {lane.rfd[1], POLLIN, 0}};
        int wait = (int)(t0 + STALL_MS - now_ms());
        if (wait <= 0) die("stalled: no sentinel within %d s", STALL_MS / 1000);
        if (poll(pf, (nfds_t)lane.nr, wait) < 0 && errno != EINTR) die("poll: %s", strerror(errno));
        for (int i = 0; i < lane.nr; i++) {
            if (!pf[i].revents) continue;
            ssize_t got = read(pf[i].fd, buf, sizeof buf);
            if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (got < 0) die("read: %s", strerror(errno));
            /* A FIFO reads 0 until the container has opened its write end. */
            if (got == 0 && lane.fifo && !lane.seen[i]) continue;
            if (got == 0) die("EOF from the shell's %s", lane.muxed ? "attach stream" : i ? "stderr" : "stdout");
            lane.seen[i] = 1;
            if (lane.muxed) demux_feed(&lane.dm, buf, (size_t)got, m);
            else match(&m[i], buf, (size_t)got);
        }
    }
    return now_ms() - t0;
}

static pid_t open_pipe(char **argv) {
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) die("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) { /* dup2 clears O_CLOEXEC on 0-2; everything else closes at exec */
        int tty = fcntl(2, F_DUPFD_CLOEXEC, 3); /* our stderr, for exec's error */
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0) _exit(127);
        execvp(argv[0], argv);
        dprintf(tty, "probe: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(in[0]), close(out[1]), close(err[1]);
    lane.wfd = in[1], lane.rfd[0] = out[0], lane.rfd[1] = err[0], lane.nr = 2;
    return pid;
}

static void open_attach(const char *id, const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) die("socket path too long: %s", path);
    strcpy(sa.sun_path, path);
    if (strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != strlen(id) || !*id)
        die("bad container id: %s", id); /* it goes into the URL unescaped */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect %s: %s", path, strerror(errno));
    char req[512], head[4096];
    int len = snprintf(req, sizeof req, "POST /v1.41/containers/%s/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\n"
                       "Host: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n", id);
    if (len < 0 || (size_t)len >= sizeof req) die("container id too long");
    write_all(fd, req, (size_t)len);
    size_t have = 0;
    char *end = NULL;
    while (!end) { /* the head may arrive in pieces, with stream bytes after it */
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, STALL_MS) == 0) die("no attach response within %d s", STALL_MS / 1000);
        if (have == sizeof head - 1) die("attach response head too long");
        ssize_t got = read(fd, head + have, sizeof head - 1 - have);
        if (got <= 0) die("attach: %s", got ? strerror(errno) : "connection closed");
        have += (size_t)got, head[have] = '\0';
        end = strstr(head, "\r\n\r\n");
    }
    int status = 0;
    if (sscanf(head, "HTTP/1.%*d %d", &status) != 1 || (status != 101 && status != 200))
        die("attach failed: %.*s", (int)strcspn(head, "\r\n"), head);
    lane.wfd = lane.rfd[0] = fd, lane.nr = 1, lane.muxed = 1;
    matcher junk[2] = {{0, 0, 0}, {0, 0, 0}}; /* output before our first command */
    demux_feed(&lane.dm, end + 4, have - (size_t)(end + 4 - head), junk);
}

static void on_alarm(int sig) { (void)sig; } /* only to interrupt open() */

static void open_fifo(const char *dir) {
    char p[3][4096];
    const char *names[3] = {"out", "err", "in"};
    for (int i = 0; i < 3; i++)
        if ((size_t)snprintf(p[i], sizeof p[i], "%s/%s", dir, names[i]) >= sizeof p[i]) die("path too long: %s", dir);
    lane.rfd[0] = open(p[0], O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    lane.rfd[1] = open(p[1], O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (lane.rfd[0] < 0 || lane.rfd[1] < 0) die("open %s/out, err: %s", dir, strerror(errno));
    /* Blocks until the container opens its read end; no SA_RESTART, so the
     * alarm makes a container that never comes up an EINTR. */
    struct sigaction sa = {.sa_handler = on_alarm};
    sigaction(SIGALRM, &sa, NULL);
    alarm(STALL_MS / 1000);
    lane.wfd = open(p[2], O_WRONLY | O_CLOEXEC);
    if (lane.wfd < 0) die("open %s: %s", p[2], errno == EINTR ? "no reader within 10 s" : strerror(errno));
    alarm(0);
    lane.nr = 2, lane.fifo = 1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(const double *s, int n, double q) { /* linear, as numpy */
    double at = q * (n - 1);
    int lo = (int)at;
    return lo + 1 < n ? s[lo] + (at - lo) * (s[lo + 1] - s[lo]) : s[lo];
}

int main(int argc, char **argv) {
    const char *use = "usage: probe pipe N TEMPLATE [SHELL...] | attach N TEMPLATE ID [SOCKET] | fifo N TEMPLATE DIR";
    if (argc < 4) die("%s", use);
    char *e;
    long n = strtol(argv[2], &e, 10);
    if (*e || n < 1 || n > 10000000) die("bad N: %s", argv[2]);
    FILE *f = fopen(argv[3], "rb");
    if (!f) die("open %s: %s", argv[3], strerror(errno));
    static char tpl[65536];
    size_t tlen = fread(tpl, 1, sizeof tpl, f);
    if (ferror(f) || !feof(f)) die("read %s: error, or %zu bytes or more", argv[3], sizeof tpl);
    fclose(f);
    size_t holes = 0, plen = strlen(PLACEHOLDER);
    for (char *q = tpl; (q = memmem(q, tlen - (size_t)(q - tpl), PLACEHOLDER, plen)); q += plen) holes++;
    if (!holes) die("template %s has no %s", argv[3], PLACEHOLDER);
    char *cmd = malloc(tlen + holes * TOKEN_LEN);
    double *ms = malloc((size_t)n * sizeof *ms);
    if (!cmd || !ms) die("out of memory");

    signal(SIGPIPE, SIG_IGN); /* a dead shell is a write error, not a silent exit */
    pid_t pid = -1;
    char *sh[] = {"/bin/busybox", "sh", NULL};
    if (!strcmp(argv[1], "pipe")) pid = open_pipe(argc > 4 ? argv + 4 : sh);
    else if (!strcmp(argv[1], "attach") && (argc == 5 || argc == 6)) open_attach(argv[4], argc == 6 ? argv[5] : "/var/run/docker.sock");
    else if (!strcmp(argv[1], "fifo") && argc == 5) open_fifo(argv[4]);
    else die("%s", use);

    for (long i = 0; i < WARMUP + n; i++) {
        unsigned char raw[TOKEN_LEN / 2]; /* outside the timing: not part of a round trip */
        if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) die("getrandom: %s", strerror(errno));
        for (int j = 0; j < TOKEN_LEN / 2; j++) sprintf(token + 2 * j, "%02x", raw[j]);
        size_t len = 0;
        for (const char *q = tpl, *end = tpl + tlen, *h;; q = h + plen) {
            if (!(h = memmem(q, (size_t)(end - q), PLACEHOLDER, plen))) h = end;
            memcpy(cmd + len, q, (size_t)(h - q)), len += (size_t)(h - q);
            if (h == end) break;
            memcpy(cmd + len, token, TOKEN_LEN), len += TOKEN_LEN;
        }
        double t = round_trip(cmd, len);
        if (i >= WARMUP) ms[i - WARMUP] = t;
    }
    qsort(ms, (size_t)n, sizeof *ms, cmp_double);
    printf("median_ms=%.4f p10_ms=%.4f p90_ms=%.4f n=%ld\n", percentile(ms, (int)n, 0.5),
           percentile(ms, (int)n, 0.1), percentile(ms, (int)n, 0.9), n);
    if (pid > 0) { /* EOF on stdin ends the shell; reap it */
        close(lane.wfd), close(lane.rfd[0]), close(lane.rfd[1]);
        waitpid(pid, NULL, 0);
    }
    return 0;
}
