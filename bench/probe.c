/* probe: the no-Lua baseline for a sentinel round trip in a long-lived shell.
 *
 * Build: make build/probe (make bench builds it), or by hand:
 *   cc -O2 -Wall -Wextra -Wshadow -std=c99 -D_GNU_SOURCE -o build/probe bench/probe.c
 * Usage:
 *   probe [-1] [-p PREAMBLE] pipe   N TEMPLATE_FILE [SHELL...]            host shell over 3 pipes
 *   probe [-1] [-p PREAMBLE] attach N TEMPLATE_FILE CONTAINER_ID [SOCKET]  Docker attach stream
 *   probe [-1] [-p PREAMBLE] fifo   N TEMPLATE_FILE DIR                    DIR/{in,out,err} FIFOs
 * Each iteration replaces every @TOKEN@ in the template with a fresh random
 * token, writes the text to the shell's stdin and waits until stdout and stderr
 * have both shown "\001<token> <1-10 digits>\n" (with -1, stdout only: the
 * article's protocol, `cmd; echo <token> $?`, which knows nothing of stderr).
 * With -p, the text of PREAMBLE (shell definitions the template uses) is sent
 * once, before the first warm-up's command.
 * After 100 untimed warm-ups it prints one line:
 *   median_ms=... p10_ms=... p90_ms=... n=N probe_cpu_us=... [shell_cpu_us=...]
 * probe_cpu_us: this process's CPU time (user + system) per timed round
 * trip; shell_cpu_us (pipe only): the shell's (from /proc/PID/schedstat
 * after the warm-ups and at the end). Both are the work itself, whatever
 * the wakeups cost the clock. */
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WARMUP 100
#define STALL_MS 10000
#define TOKEN_LEN 32
#define PLACEHOLDER "@TOKEN@"

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
 * then the payload. The state lives on between reads (and iterations), as a
 * read can end anywhere in a frame or hold several. */
typedef struct { unsigned char hdr[8]; int have; size_t left; } demux;

static void demux_feed(demux *d, const char *p, size_t n, matcher m[2]) {
    while (n > 0) {
        if (d->have < 8) {
            d->hdr[d->have++] = (unsigned char)*p++, n--;
            if (d->have < 8) continue;
            unsigned char *h = d->hdr;
            if ((h[0] != 1 && h[0] != 2) || h[1] || h[2] || h[3])
                errx(1, "malformed frame header %02x %02x %02x %02x", h[0], h[1], h[2], h[3]);
            d->left = (size_t)h[4] << 24 | (size_t)h[5] << 16 | (size_t)h[6] << 8 | h[7];
        } else {
            size_t k = n < d->left ? n : d->left;
            match(&m[d->hdr[0] - 1], p, k);
            p += k, n -= k, d->left -= k;
        }
        if (d->have == 8 && d->left == 0) d->have = 0; /* also ends an empty frame */
    }
}

/* The shell's stdin is wfd. For attach, rfd[0] is the same socket, carrying
 * both streams muxed; otherwise rfd[0] is its stdout and rfd[1] its stderr. */
static struct { int wfd, rfd[2], nr, muxed, fifo, seen[2], one; demux dm; } lane;

/* Blocking: a template is small, so it fits in the pipe or socket buffer even
 * while the shell's output waits for us to read it. */
static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) err(1, "write to the shell");
        p += w, n -= (size_t)w;
    }
}

static double round_trip(const char *cmd, size_t len) {
    static const char *names[2] = {"stdout", "stderr"};
    matcher m[2] = {{0, 0, 0}, {0, 0, lane.one}}; /* -1: stderr owes nothing */
    char buf[65536];
    double t0 = now_ms();
    write_all(lane.wfd, cmd, len);
    while (!(m[0].done && m[1].done)) {
        struct pollfd pf[2] = {{lane.rfd[0], POLLIN, 0}, {lane.rfd[1], POLLIN, 0}};
        int wait = (int)(t0 + STALL_MS - now_ms());
        if (wait <= 0) errx(1, "stalled: no sentinel within %d s", STALL_MS / 1000);
        if (poll(pf, (nfds_t)lane.nr, wait) < 0 && errno != EINTR) err(1, "poll");
        for (int i = 0; i < lane.nr; i++) {
            if (!pf[i].revents) continue;
            const char *what = lane.muxed ? "attach stream" : names[i];
            ssize_t got = read(pf[i].fd, buf, sizeof buf);
            if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (got < 0) err(1, "read from the shell's %s", what);
            /* A FIFO reads 0 until the container has opened its write end. */
            if (got == 0 && lane.fifo && !lane.seen[i]) continue;
            if (got == 0) errx(1, "EOF on the shell's %s", what);
            lane.seen[i] = 1;
            if (lane.muxed) demux_feed(&lane.dm, buf, (size_t)got, m);
            else match(&m[i], buf, (size_t)got);
        }
    }
    return now_ms() - t0;
}

static pid_t open_pipe(char **argv) {
    int in[2], out[2], errp[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(errp, O_CLOEXEC)) err(1, "pipe");
    pid_t pid = fork();
    if (pid < 0) err(1, "fork");
    if (pid == 0) { /* dup2 clears O_CLOEXEC on 0-2; all else closes at exec */
        int tty = fcntl(2, F_DUPFD_CLOEXEC, 3); /* our stderr, for exec's error */
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(errp[1], 2) < 0) _exit(127);
        execvp(argv[0], argv);
        dprintf(tty, "probe: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(in[0]), close(out[1]), close(errp[1]);
    lane.wfd = in[1], lane.rfd[0] = out[0], lane.rfd[1] = errp[0], lane.nr = 2;
    return pid;
}

static void open_attach(const char *id, const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) errx(1, "socket path too long: %s", path);
    strcpy(sa.sun_path, path);
    const char *ok = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-";
    if (!*id || strspn(id, ok) != strlen(id)) errx(1, "bad container id: %s", id); /* URL-safe */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) err(1, "connect %s", path);
    char req[512], head[4096];
    int len = snprintf(req, sizeof req, "POST /v1.41/containers/%s/attach"
                       "?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: docker\r\n"
                       "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n", id);
    if (len < 0 || (size_t)len >= sizeof req) errx(1, "container id too long");
    write_all(fd, req, (size_t)len);
    size_t have = 0;
    char *end = NULL;
    while (!end) { /* the head may come in pieces, and with stream bytes after it */
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, STALL_MS) == 0) errx(1, "no attach response in %d s", STALL_MS / 1000);
        if (have == sizeof head - 1) errx(1, "attach response head too long");
        ssize_t got = read(fd, head + have, sizeof head - 1 - have);
        if (got < 0) err(1, "attach");
        if (got == 0) errx(1, "attach: connection closed");
        have += (size_t)got, head[have] = '\0';
        end = strstr(head, "\r\n\r\n");
    }
    int status = 0;
    if (sscanf(head, "HTTP/1.%*d %d", &status) != 1 || (status != 101 && status != 200))
        errx(1, "attach failed: %.*s", (int)strcspn(head, "\r\n"), head);
    lane.wfd = lane.rfd[0] = fd, lane.nr = 1, lane.muxed = 1;
    matcher junk[2] = {{0, 0, 0}, {0, 0, 0}}; /* output from before our first command */
    demux_feed(&lane.dm, end + 4, have - (size_t)(end + 4 - head), junk);
}

static void on_alarm(int sig) { (void)sig; } /* only there to interrupt open() */

static void open_fifo(const char *dir) {
    char path[3][4096];
    const char *names[3] = {"out", "err", "in"};
    for (int i = 0; i < 3; i++)
        if ((size_t)snprintf(path[i], sizeof path[i], "%s/%s", dir, names[i]) >= sizeof path[i])
            errx(1, "path too long: %s", dir);
    for (int i = 0; i < 2; i++) /* non-blocking: the container's writers come later */
        if ((lane.rfd[i] = open(path[i], O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0)
            err(1, "open %s", path[i]);
    /* Blocks until the container opens its read end. The alarm has no
     * SA_RESTART, so a container that never does so makes it fail with EINTR. */
    struct sigaction sa = {.sa_handler = on_alarm};
    sigaction(SIGALRM, &sa, NULL);
    alarm(STALL_MS / 1000);
    if ((lane.wfd = open(path[2], O_WRONLY | O_CLOEXEC)) < 0) {
        if (errno == EINTR) errx(1, "open %s: no reader within %d s", path[2], STALL_MS / 1000);
        err(1, "open %s", path[2]);
    }
    alarm(0);
    lane.nr = 2, lane.fifo = 1;
}

/* This process's CPU time, user and system, in us. */
static double self_cpu_us(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6
           + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* The CPU time a process has run, in ns (the first field of schedstat), or -1. */
static double cpu_ns(pid_t pid) {
    char path[64];
    double ns = -1;
    snprintf(path, sizeof path, "/proc/%d/schedstat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f && fscanf(f, "%lf", &ns) != 1) ns = -1;
    if (f) fclose(f);
    return ns;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(const double *s, long n, double q) { /* interpolated, as numpy's */
    double at = q * (double)(n - 1);
    long lo = (long)at;
    return lo + 1 < n ? s[lo] + (at - (double)lo) * (s[lo + 1] - s[lo]) : s[lo];
}

int main(int argc, char **argv) {
    const char *use = "usage: probe [-1] [-p PREAMBLE] pipe N TEMPLATE [SHELL...]"
                      " | ... attach N TEMPLATE ID [SOCKET] | ... fifo N TEMPLATE DIR";
    static char pre[65536];
    size_t plen0 = 0;
    for (;;) {
        if (argc > 1 && !strcmp(argv[1], "-1")) lane.one = 1, argc--, argv++;
        else if (argc > 2 && !strcmp(argv[1], "-p")) {
            FILE *pf = fopen(argv[2], "rb");
            if (!pf) err(1, "open %s", argv[2]);
            plen0 = fread(pre, 1, sizeof pre, pf);
            if (ferror(pf) || !feof(pf)) errx(1, "read %s: error, or %zu bytes or more", argv[2], sizeof pre);
            fclose(pf);
            argc -= 2, argv += 2;
        } else break;
    }
    if (argc < 4) errx(1, "%s", use);
    char *e;
    long n = strtol(argv[2], &e, 10);
    if (*e || n < 1 || n > 10000000) errx(1, "bad N: %s", argv[2]);
    FILE *f = fopen(argv[3], "rb");
    if (!f) err(1, "open %s", argv[3]);
    static char tpl[65536];
    size_t tlen = fread(tpl, 1, sizeof tpl, f);
    if (ferror(f) || !feof(f)) errx(1, "read %s: error, or %zu bytes or more", argv[3], sizeof tpl);
    fclose(f);
    size_t holes = 0, plen = strlen(PLACEHOLDER);
    for (char *q = tpl; (q = memmem(q, tlen - (size_t)(q - tpl), PLACEHOLDER, plen)); q += plen)
        holes++;
    if (!holes) errx(1, "template %s has no %s", argv[3], PLACEHOLDER);
    char *cmd = malloc(plen0 + tlen + holes * TOKEN_LEN);
    double *ms = malloc((size_t)n * sizeof *ms);
    if (!cmd || !ms) errx(1, "out of memory");

    signal(SIGPIPE, SIG_IGN); /* a dead shell is a write error, not a silent exit */
    pid_t pid = -1;
    char *sh[] = {"/bin/busybox", "sh", NULL};
    if (!strcmp(argv[1], "pipe")) pid = open_pipe(argc > 4 ? argv + 4 : sh);
    else if (!strcmp(argv[1], "attach") && (argc == 5 || argc == 6))
        open_attach(argv[4], argc == 6 ? argv[5] : "/var/run/docker.sock");
    else if (!strcmp(argv[1], "fifo") && argc == 5) open_fifo(argv[4]);
    else errx(1, "%s", use);

    double cpu0 = -1, self0 = 0;
    for (long i = 0; i < WARMUP + n; i++) {
        if (i == WARMUP) self0 = self_cpu_us(), cpu0 = pid > 0 ? cpu_ns(pid) : -1;
        unsigned char raw[TOKEN_LEN / 2]; /* outside the timing: not part of a round trip */
        if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) err(1, "getrandom");
        for (int j = 0; j < TOKEN_LEN / 2; j++) sprintf(token + 2 * j, "%02x", raw[j]);
        size_t len = 0;
        if (i == 0) memcpy(cmd, pre, plen0), len = plen0;
        for (const char *q = tpl, *end = tpl + tlen, *h;; q = h + plen) {
            if (!(h = memmem(q, (size_t)(end - q), PLACEHOLDER, plen))) h = end;
            memcpy(cmd + len, q, (size_t)(h - q)), len += (size_t)(h - q);
            if (h == end) break;
            memcpy(cmd + len, token, TOKEN_LEN), len += TOKEN_LEN;
        }
        double t = round_trip(cmd, len);
        if (i >= WARMUP) ms[i - WARMUP] = t;
    }
    double self1 = self_cpu_us();
    qsort(ms, (size_t)n, sizeof *ms, cmp_double);
    printf("median_ms=%.4f p10_ms=%.4f p90_ms=%.4f n=%ld", percentile(ms, n, 0.5),
           percentile(ms, n, 0.1), percentile(ms, n, 0.9), n);
    printf(" probe_cpu_us=%.2f", (self1 - self0) / (double)n);
    if (pid > 0) { /* EOF on its stdin ends the shell; reap it */
        double cpu1 = cpu_ns(pid);
        if (cpu0 >= 0 && cpu1 >= cpu0) printf(" shell_cpu_us=%.2f", (cpu1 - cpu0) / 1e3 / (double)n);
        close(lane.wfd), close(lane.rfd[0]), close(lane.rfd[1]);
        waitpid(pid, NULL, 0);
    }
    printf("\n");
    free(cmd), free(ms);
    return 0;
}
