#include "hostfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* What a box may have planted, said once for every refusal below. */
#define CHANGED                                                                                                    \
    "changed between listing and reading (a link or FIFO planted by a box that has its directory mounted :rw, " \
    "or a concurrent writer); nothing of it was read: send a directory no running box can write to, or retry"

void lk_file_id(const struct stat *st, char id[LK_FILE_ID_MAX]) {
    snprintf(id, LK_FILE_ID_MAX, "%llx:%llx", (unsigned long long)st->st_dev, (unsigned long long)st->st_ino);
}

static const char *kind(mode_t m) {
    return S_ISDIR(m) ? "a directory" : S_ISLNK(m) ? "a symlink" : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket"
           : S_ISCHR(m) || S_ISBLK(m) ? "a device" : "not a regular file";
}

/* Why the open descriptor is not the file (or with `dir`, the directory) the
 * listing saw, or NULL. */
static const char *mismatch(int fd, const char *id, int dir, struct stat *st, char *why, size_t why_len,
                            const char *path) {
    char now[LK_FILE_ID_MAX];
    if (fstat(fd, st)) {
        snprintf(why, why_len, "%s: %s", path, strerror(errno));
        return why;
    }
    if (dir ? !S_ISDIR(st->st_mode) : !S_ISREG(st->st_mode)) {
        if (id) snprintf(why, why_len, "%s: now %s: " CHANGED, path, kind(st->st_mode));
        else snprintf(why, why_len, "%s: %s", path, S_ISDIR(st->st_mode) ? "is a directory" : "not a regular file");
        return why;
    }
    lk_file_id(st, now);
    if (id && strcmp(id, now)) {
        snprintf(why, why_len, "%s: now another %s: " CHANGED, path, dir ? "directory" : "file");
        return why;
    }
    return NULL;
}

static int open_checked(const char *path, const char *id, int follow, int dir, struct stat *st, char *why,
                        size_t why_len) {
    /* O_NONBLOCK: opening a FIFO for reading would wait for a writer. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW) |
                            (dir ? O_DIRECTORY : 0));
    if (fd < 0) {
        int err = errno;
        /* O_NOFOLLOW says ELOOP for a symlink, or with O_DIRECTORY, ENOTDIR */
        if (id && ((err == ELOOP && !follow) || (err == ENOTDIR && dir)) && !lstat(path, st))
            snprintf(why, why_len, "%s: now %s: " CHANGED, path, kind(st->st_mode));
        else snprintf(why, why_len, "%s: %s", path, strerror(err));
        return -1;
    }
    int flags;
    if (mismatch(fd, id, dir, st, why, why_len, path)) {
        close(fd);
        return -1;
    }
    /* What is left to do with it could not block anyway, but its users expect a plain descriptor. */
    if ((flags = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
        snprintf(why, why_len, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int lk_open_listed(const char *path, const char *id, int follow, struct stat *st, char *why, size_t why_len) {
    return open_checked(path, id, follow, 0, st, why, why_len);
}

int lk_open_listed_dir(const char *path, const char *id, struct stat *st, char *why, size_t why_len) {
    return open_checked(path, id, 0, 1, st, why, why_len);
}
