#include "tar.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hostfile.h"

#define SLICE 65536 /* bytes read from a host file at a time */

static int fail(lk_tar *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->error, sizeof t->error, fmt, ap);
    va_end(ap);
    t->failed = 1;
    return -1;
}

static int archive_failed(lk_tar *t, const char *what) {
    const char *msg = archive_error_string(t->a);
    return fail(t, "%s: %s", what, msg ? msg : "libarchive error");
}

static la_ssize_t on_write(struct archive *a, void *ud, const void *p, size_t n) {
    lk_tar *t = ud;
    if (lk_buf_append(&t->out, p, n)) {
        archive_set_error(a, ENOMEM, "out of memory");
        return -1;
    }
    return (la_ssize_t)n;
}

int lk_tar_init(lk_tar *t) {
    memset(t, 0, sizeof *t);
    lk_buf_init(&t->out);
    t->fd = -1;
    t->a = archive_write_new();
    if (!t->a) return fail(t, "out of memory");
    /* No blocking: every write reaches `out` at once, and the archive ends
     * right after its two zero blocks (a stream, not a tape). */
    if (archive_write_set_format_pax_restricted(t->a) != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(t->a, 0) != ARCHIVE_OK ||
        archive_write_open2(t->a, t, NULL, on_write, NULL, NULL) != ARCHIVE_OK)
        return archive_failed(t, "starting a tar stream");
    return 0;
}

void lk_tar_free(lk_tar *t) {
    if (t->fd >= 0) close(t->fd);
    t->fd = -1;
    if (t->a) archive_write_free(t->a); /* also closes it */
    t->a = NULL;
    lk_buf_free(&t->out);
}

static int usable(lk_tar *t) {
    if (t->failed) return -1;
    if (t->fd >= 0) return fail(t, "a host file is still being streamed into the archive");
    return 0;
}

int lk_tar_header(lk_tar *t, const char *name, int type, unsigned mode, int64_t size, const char *link,
                  time_t mtime) {
    if (usable(t)) return -1;
    struct archive_entry *e = archive_entry_new();
    if (!e) return fail(t, "out of memory");
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, type == LK_TAR_DIR ? AE_IFDIR : type == LK_TAR_SYMLINK ? AE_IFLNK : AE_IFREG);
    archive_entry_set_perm(e, mode & 07777);
    archive_entry_set_size(e, type == LK_TAR_FILE ? size : 0);
    if (type == LK_TAR_SYMLINK) archive_entry_set_symlink(e, link);
    archive_entry_set_mtime(e, mtime, 0);
    /* Owned by root in the archive: an extracting non-root user owns what it
     * writes, and Docker's build takes COPY'd files as root's anyway. */
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    int rc = archive_write_header(t->a, e);
    archive_entry_free(e);
    if (rc != ARCHIVE_OK) return archive_failed(t, name);
    return 0;
}

int lk_tar_data(lk_tar *t, const char *p, size_t n) {
    if (t->failed) return -1;
    while (n > 0) {
        la_ssize_t w = archive_write_data(t->a, p, n);
        if (w <= 0) return archive_failed(t, "writing file data");
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int lk_tar_host_file(lk_tar *t, const char *name, const char *path, int mode, const char *id, int follow) {
    if (usable(t)) return -1;
    struct stat st;
    int fd = lk_open_listed(path, id, follow, &st, t->error, sizeof t->error);
    if (fd < 0) return -1; /* the archive itself is fine: the caller may go on */
    if (lk_tar_header(t, name, LK_TAR_FILE, mode < 0 ? (unsigned)st.st_mode : (unsigned)mode,
                      (int64_t)st.st_size, NULL, st.st_mtime)) {
        close(fd);
        return -1;
    }
    t->fd = fd;
    t->left = (int64_t)st.st_size;
    return 0;
}

int lk_tar_pump(lk_tar *t, size_t want) {
    if (t->failed) return -1;
    char buf[SLICE];
    while (t->fd >= 0 && t->out.len < want) {
        if (t->left == 0) {
            close(t->fd);
            t->fd = -1;
            break;
        }
        size_t ask = t->left < (int64_t)sizeof buf ? (size_t)t->left : sizeof buf;
        ssize_t n = read(t->fd, buf, ask);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int err = n < 0 ? errno : 0;
            close(t->fd);
            t->fd = -1;
            return fail(t, "reading a host file: %s", err ? strerror(err) : "it shrank while being read");
        }
        t->left -= n;
        if (lk_tar_data(t, buf, (size_t)n)) return -1;
    }
    return t->fd >= 0;
}

int lk_tar_finish(lk_tar *t) {
    if (usable(t)) return -1;
    if (archive_write_close(t->a) != ARCHIVE_OK) return archive_failed(t, "ending the tar stream");
    return 0;
}
