/* A non-blocking byte connection to a Docker Engine, set up by libcurl
 * (unix socket, TCP, or TCP with TLS: libcurl's TLS, none of our own).
 *
 * libcurl only connects (CURLOPT_CONNECT_ONLY, driven through a multi handle so
 * that even the connect never blocks); the HTTP exchange is ours, because the
 * attach and exec endpoints hijack the connection into a raw stream, which
 * libcurl's transfers cannot hand over. Every call returns at once: when it
 * would block it says so, and the caller polls the descriptor. */
#ifndef LK_CONN_H
#define LK_CONN_H

#include <stddef.h>
#include <sys/types.h>

typedef struct lk_conn lk_conn;

enum { LK_OK = 0, LK_AGAIN = 1, LK_EOF = 2, LK_FAIL = -1 };
enum { LK_WANT_READ = 1, LK_WANT_WRITE = 2 };

/* TLS settings, given with an https:// URL: file names of PEM files (NULL:
 * none; a NULL `ca` leaves libcurl's default trust store), and whether the
 * peer's certificate and name are verified. */
typedef struct {
    const char *ca, *cert, *key;
    int verify;
} lk_tls;

/* `url` is http://host:port/ (or http://localhost/ with `unix_path`), or
 * https://host:port/ with `tls`. Returns NULL when out of memory. */
lk_conn *lk_conn_new(const char *url, const char *unix_path, long connect_timeout_ms, const lk_tls *tls);
void lk_conn_free(lk_conn *c);

/* Drives the connect. LK_OK: connected. LK_AGAIN: poll *fd for *want (LK_WANT_*)
 * or *timeout_ms (-1: none) and call again. LK_FAIL: see lk_conn_error. */
int lk_conn_connect(lk_conn *c, int *fd, int *want, long *timeout_ms);

/* LK_OK with *n bytes sent (maybe fewer than asked), LK_AGAIN, or LK_FAIL. */
int lk_conn_send(lk_conn *c, const char *p, size_t len, size_t *n);
/* LK_OK with *n > 0 bytes read, LK_AGAIN, LK_EOF, or LK_FAIL. */
int lk_conn_recv(lk_conn *c, char *p, size_t len, size_t *n);
/* Half-closes the sending side (the peer reads EOF; we can still receive).
 * Over TLS this is a TCP half-close under the TLS stream, as the docker CLI
 * ends an exec's input: dockerd takes it, a TLS proxy in between may not. */
int lk_conn_shutdown_write(lk_conn *c);
/* Whether the connection is TLS. */
int lk_conn_tls(const lk_conn *c);
/* Over TLS, bytes may wait decrypted in the TLS layer while the socket has
 * nothing to read: 1 unless the last receive found nothing (LK_AGAIN), so a
 * caller about to poll the descriptor for reading must receive first. 0 for a
 * plain connection, whose bytes all wait in the socket. */
int lk_conn_maybe_pending(const lk_conn *c);
int lk_conn_fd(const lk_conn *c);

/* The last failure: libcurl's message, and errno from the OS when it had one. */
const char *lk_conn_error(const lk_conn *c);
int lk_conn_errno(const lk_conn *c);

#endif
