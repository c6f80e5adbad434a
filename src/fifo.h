/* The fifo lane's host side: a per-box directory holding four FIFOs that the
 * box reads and writes through a read-only bind mount: the session shell reads
 * `in` and writes `out` and `err`; the lifeline reads `life`, where nothing is
 * ever written: its EOF, when the host closes its end (or dies), ends the box.
 * A FIFO of its own spares every step a relay (a `cat` between `in` and the
 * shell, as on the attach lane). No Lua; every call returns at once.
 *
 * Who may do what (README.md, "The fifo lane"): as root, the FIFOs belong to the box's
 * uid with modes in/life 0400, out/err 0200: the box reads `in` and `life` and
 * writes `out`/`err`; it cannot open `in` or `life` for writing (so it cannot
 * keep itself alive), nor chmod, rename or unlink anything, because the mount
 * is read-only. Run as another user, lockup cannot give files away: they stay
 * its own with modes in/life 0644, out/err 0622, which holds only while the
 * box runs as some other uid (checked here).
 *
 * The host holds `in` and `life` open read-write (so the box's opens never
 * wait), and `out`/`err` read-only. Until the shell has answered once, a
 * placeholder writer of ours keeps each of those open too: a FIFO with no
 * writer yet would read as EOF. */
#ifndef LK_FIFO_H
#define LK_FIFO_H

#include <stddef.h>

#define LK_FIFO_DIR_MAX 512

typedef struct {
    int in, life, out[2], hold[2]; /* out[0] stdout, out[1] stderr; -1 once closed */
    char dir[LK_FIFO_DIR_MAX];
    int removed;
} lk_fifo;

/* Makes `parent` (mode 0700) when missing. Refuses a parent that is not a
 * directory of this uid's with no access for others (another user could then
 * find, or plant, the boxes' FIFOs). 0, or -1 with errno and *why set. */
int lk_fifo_parent(const char *parent, const char **why);

/* Creates `dir` and its FIFOs for a box running as uid:gid and opens the host's
 * ends. 0, or -1 with errno set and *why naming the step that failed (then
 * nothing is left behind). */
int lk_fifo_open(lk_fifo *f, const char *dir, long uid, long gid, const char **why);

/* LK_OK with *n bytes written to `in`, LK_AGAIN, or LK_FAIL (errno). */
int lk_fifo_send(lk_fifo *f, const char *p, size_t len, size_t *n);
/* Reads stream k (0 stdout, 1 stderr): LK_OK with *n > 0, LK_AGAIN, LK_EOF, LK_FAIL. */
int lk_fifo_read(lk_fifo *f, int k, char *p, size_t len, size_t *n);

/* Writes one word to `life`: the lifeline kills every process but itself and
 * the session shell. LK_OK, LK_AGAIN (the box reads no words: 64 KiB of them
 * wait already), or LK_FAIL (errno). */
int lk_fifo_poke(lk_fifo *f);

/* The shell has opened out and err: drops the placeholder writers, so that
 * the shell's end reads as EOF. */
void lk_fifo_answered(lk_fifo *f);

/* Closes the host's ends (the box's `in` reads EOF: the lifeline ends it) and
 * removes the directory. Idempotent. */
void lk_fifo_close(lk_fifo *f);

/* Removes a lane directory left behind (its owner was killed): its FIFOs, then
 * the directory, which must then be empty. 0 or -1 (errno). */
int lk_fifo_remove(const char *dir);

#endif
