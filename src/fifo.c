#include "fifo.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conn.h" /* LK_OK, LK_AGAIN, LK_EOF, LK_FAIL */

/* The FIFOs, in the order of the modes below. */
enum { IN, OUT, ERR, LIFE, NFIFOS };
static const char *const NAMES[NFIFOS] = {"in", "out", "err", "life"};

/* A big pipe buffer on `out` lets the box write on while the host is busy
 * elsewhere: fewer wakeups per megabyte. Best effort (limited for non-root). */
#define OUT_PIPE_SIZE (1 << 20)

int lk_fifo_parent(const char *parent, const char **why) {
    struct stat st;
    if (mkdir(parent, 0700) != 0 && errno != EEXIST) {
        *why = "cannot create the lanes' directory";
        return -1;
    }
    if (lstat(parent, &st) != 0) {
        *why = "cannot stat the lanes' directory";
        return -1;
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077)) {
        errno = EPERM;
        *why = "the lanes' directory must be a directory of this user's with mode 0700";
        return -1;
    }
    return 0;
}

static int path_of(char *out, const char *dir, int i) {
    int n = snprintf(out, LK_FIFO_DIR_MAX + 8, "%s/%s", dir, NAMES[i]);
    return n > 0 && n < LK_FIFO_DIR_MAX + 8 ? 0 : -1;
}

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

int lk_fifo_open(lk_fifo *f, const char *dir, long uid, long gid, const char **why) {
    char path[LK_FIFO_DIR_MAX + 8];
    int root = geteuid() == 0;
    /* in, life: the box reads; out, err: the box writes. Owner bits are the box's (root) or ours. */
    static const mode_t as_root[NFIFOS] = {0400, 0200, 0200, 0400}, as_user[NFIFOS] = {0644, 0622, 0622, 0644};
    memset(f, 0, sizeof *f);
    f->in = f->life = f->out[0] = f->out[1] = f->hold[0] = f->hold[1] = -1;
    f->removed = 1;
    if (strlen(dir) >= LK_FIFO_DIR_MAX) {
        errno = ENAMETOOLONG;
        *why = "lane directory";
        return -1;
    }
    if (!root && uid == (long)geteuid()) {
        errno = EPERM;
        *why = "the box runs as this process's own uid, so it could write to its lane's input; "
               "give it another user, or run lockup as root";
        return -1;
    }
    strcpy(f->dir, dir);
    if (mkdir(dir, 0700) != 0) {
        *why = "cannot create the lane directory";
        return -1;
    }
    f->removed = 0;
    for (int i = 0; i < NFIFOS; i++) {
        path_of(path, dir, i);
        mode_t mode = root ? as_root[i] : as_user[i];
        if (mkfifo(path, 0600) != 0 || (root && chown(path, (uid_t)uid, (gid_t)gid) != 0) ||
            chmod(path, mode) != 0) {
            *why = "cannot create the lane's FIFOs";
            goto fail;
        }
    }
    path_of(path, dir, IN);
    f->in = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
    path_of(path, dir, LIFE);
    f->life = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
    for (int k = 0; f->in >= 0 && f->life >= 0 && k < 2; k++) {
        path_of(path, dir, OUT + k);
        f->out[k] = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
        if (f->out[k] >= 0) f->hold[k] = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
        if (f->hold[k] < 0) break;
    }
    if (f->in < 0 || f->life < 0 || f->hold[0] < 0 || f->hold[1] < 0) {
        *why = "cannot open the lane's FIFOs";
        goto fail;
    }
    (void)fcntl(f->out[0], F_SETPIPE_SZ, OUT_PIPE_SIZE);
    if (chmod(dir, 0711) != 0) { /* the box's uid may now look up the FIFOs by name */
        *why = "cannot set the lane directory's mode";
        goto fail;
    }
    return 0;
fail:;
    int e = errno;
    lk_fifo_close(f);
    errno = e;
    return -1;
}

int lk_fifo_send(lk_fifo *f, const char *p, size_t len, size_t *n) {
    *n = 0;
    for (;;) {
        ssize_t r = write(f->in, p, len);
        if (r >= 0) {
            *n = (size_t)r;
            return LK_OK;
        }
        if (errno == EINTR) continue;
        return errno == EAGAIN ? LK_AGAIN : LK_FAIL;
    }
}

int lk_fifo_read(lk_fifo *f, int k, char *p, size_t len, size_t *n) {
    *n = 0;
    for (;;) {
        ssize_t r = read(f->out[k], p, len);
        if (r > 0) {
            *n = (size_t)r;
            return LK_OK;
        }
        if (r == 0) return LK_EOF;
        if (errno == EINTR) continue;
        return errno == EAGAIN ? LK_AGAIN : LK_FAIL;
    }
}

int lk_fifo_poke(lk_fifo *f) {
    for (;;) {
        if (write(f->life, "k\n", 2) == 2) return LK_OK; /* 2 < PIPE_BUF: all or nothing */
        if (errno == EINTR) continue;
        return errno == EAGAIN ? LK_AGAIN : LK_FAIL;
    }
}

void lk_fifo_answered(lk_fifo *f) {
    close_fd(&f->hold[0]);
    close_fd(&f->hold[1]);
}

int lk_fifo_remove(const char *dir) {
    char path[LK_FIFO_DIR_MAX + 8];
    struct stat st;
    if (strlen(dir) >= LK_FIFO_DIR_MAX) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (int i = 0; i < NFIFOS; i++) { /* only our FIFOs: never anything else found there */
        path_of(path, dir, i);
        if (lstat(path, &st) == 0 && S_ISFIFO(st.st_mode) && unlink(path) != 0) return -1;
    }
    return rmdir(dir);
}

void lk_fifo_close(lk_fifo *f) {
    close_fd(&f->life);
    close_fd(&f->in);
    lk_fifo_answered(f);
    close_fd(&f->out[0]);
    close_fd(&f->out[1]);
    if (!f->removed) {
        f->removed = 1;
        (void)lk_fifo_remove(f->dir);
    }
}
