/* Opening a host file that a listing saw, without trusting that it is still
 * that file. A directory mounted :rw into a box can change between the lstat
 * of a listing and the open that reads: a file swapped for a symlink to a host
 * secret would send the secret, one swapped for a FIFO would block the open
 * forever. So the open never follows a symlink (unless the caller named the
 * path itself), never blocks, and the descriptor must be the regular file the
 * listing saw (device, inode, type). Core code: no Lua here. */
#ifndef LK_HOSTFILE_H
#define LK_HOSTFILE_H

#include <stddef.h>
#include <sys/stat.h>

/* A file's identity, "dev:ino" in hex: a string, so that a Lua number (a
 * double under LuaJIT) never rounds a 64-bit inode number. */
#define LK_FILE_ID_MAX 40
void lk_file_id(const struct stat *st, char id[LK_FILE_ID_MAX]);

/* Opens `path` read-only, if it is a regular file whose identity is `id` (as
 * lk_file_id gave at listing; NULL: any regular file). With `follow`, a
 * symlink as its last part is followed: only for a path the caller named
 * itself (the identity still pins the file it led to when listed). Returns a
 * blocking, close-on-exec descriptor with *st filled, or -1 with `why` (a
 * message that names the path) set. */
int lk_open_listed(const char *path, const char *id, int follow, struct stat *st, char *why, size_t why_len);

/* The same for a directory to list (never through a symlink): its entries can
 * then be looked at relative to the descriptor, whatever happens to its path. */
int lk_open_listed_dir(const char *path, const char *id, struct stat *st, char *why, size_t why_len);

#endif
