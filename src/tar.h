/* A tar stream writer over libarchive (pax restricted: ustar, with pax headers
 * only for what ustar cannot hold, such as long names). Sans-IO: the archive
 * goes into `out`, which the caller drains and sends wherever it likes; a host
 * file's data is read in slices by lk_tar_pump, so a file of any size streams
 * through bounded memory. Core code: no Lua here. */
#ifndef LK_TAR_H
#define LK_TAR_H

#include <stdint.h>
#include <time.h>

#include "buf.h"

enum { LK_TAR_FILE, LK_TAR_DIR, LK_TAR_SYMLINK };

typedef struct {
    struct archive *a;
    lk_buf out;         /* archive bytes not taken yet */
    int fd;             /* host file whose data is being streamed, or -1 */
    int64_t left;       /* bytes of it still to come */
    int failed;         /* the archive is unusable after an error */
    char error[256];
} lk_tar;

/* Returns 0, or -1 with t->error set. */
int lk_tar_init(lk_tar *t);
void lk_tar_free(lk_tar *t);

/* An entry whose data (for a file: `size` bytes) follows with lk_tar_data.
 * `link` is a symlink's target, else NULL. Returns 0 or -1 (t->error). */
int lk_tar_header(lk_tar *t, const char *name, int type, unsigned mode, int64_t size, const char *link,
                  time_t mtime);
int lk_tar_data(lk_tar *t, const char *p, size_t n);

/* A file entry whose data comes from the host file `path`, read by lk_tar_pump.
 * mode < 0 keeps the file's own permission bits. `id` and `follow` are as for
 * lk_open_listed: the file must still be the regular file a listing saw.
 * Returns 0 or -1 (t->error). */
int lk_tar_host_file(lk_tar *t, const char *name, const char *path, int mode, const char *id, int follow);

/* Reads the pending host file until `out` holds at least `want` bytes or the
 * file is done. Returns 1 while the file has more, 0 once done, -1 on error
 * (a read error, or a file that shrank while it was read). */
int lk_tar_pump(lk_tar *t, size_t want);

/* The end-of-archive blocks. Returns 0 or -1. */
int lk_tar_finish(lk_tar *t);

#endif
