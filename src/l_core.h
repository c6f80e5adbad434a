/* Shared by the binding files: each registers its class into the module table.
 *
 * One convention for non-blocking calls: a call that would block returns
 * false (connect adds what to wait for); a pump returns a status word ("more",
 * "eof", ...) or false; a failure returns nil, message, errno. */
#ifndef LK_L_CORE_H
#define LK_L_CORE_H

#include "compat.h"
#include "conn.h"
#include "fifo.h"

#define LK_CONN "lockup.conn"
#define LK_RESPONSE "lockup.response"
#define LK_STREAM "lockup.stream"
#define LK_FRAMES "lockup.frames"
#define LK_TAR "lockup.tar"
#define LK_SHA256 "lockup.sha256"
#define LK_FIFO "lockup.fifo"
#define LK_POLLER "lockup.poller"
#define LK_CGROUP "lockup.cgroup"

#define LK_READ_CHUNK 65536

void lk_open_conn(lua_State *L);
void lk_open_response(lua_State *L);
void lk_open_stream(lua_State *L);
void lk_open_frames(lua_State *L);
void lk_open_tar(lua_State *L);
void lk_open_hash(lua_State *L);
/* Adds the filesystem functions (lstat, listdir...) to the table on top. */
void lk_open_fs(lua_State *L);
void lk_open_fifo(lua_State *L);
/* Adds core.poller (epoll) and the raw pipe functions to the table on top. */
void lk_open_poller(lua_State *L);
/* Adds core.cgroup (a box's cgroup files) and core.ncpus to the table on top. */
void lk_open_cgroup(lua_State *L);

/* The open connection at index i; raises if it is closed. */
lk_conn *lk_check_conn(lua_State *L, int i);
/* Pushes nil, "<what>: <message>" for a failed connection; returns 2. */
int lk_push_conn_error(lua_State *L, lk_conn *c, const char *what);
/* The open fifo lane at index i; raises if it is closed. */
lk_fifo *lk_check_fifo(lua_State *L, int i);
/* The bytes a send(data [, from]) call asks for: data from its from-th byte. */
const char *lk_check_send(lua_State *L, size_t *len);
/* Pushes what a non-blocking send did: bytes sent, or false (would block). */
int lk_push_sent(lua_State *L, int rc, size_t n);
/* Pushes nil, "<what>: <strerror(errno)>", errno; returns 3. */
int lk_push_errno(lua_State *L, const char *what);

#endif
