#include "conn.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct lk_conn {
    CURL *easy;
    CURLM *multi;
    int connected;
    int plain; /* no TLS: send and recv straight on the socket */
    int tls;
    int drained; /* TLS: the last recv found nothing (see lk_conn_maybe_pending) */
    int fd;
    int os_errno;
    int started;
    curl_socket_t wait_fd; /* what curl waits on while connecting */
    int wait_what;
    long timer_ms;
    char error[CURL_ERROR_SIZE + 64];
    char curl_error[CURL_ERROR_SIZE];
};

static void set_error(lk_conn *c, CURLcode rc) {
    long os = 0;
    curl_easy_getinfo(c->easy, CURLINFO_OS_ERRNO, &os);
    c->os_errno = (int)os;
    snprintf(c->error, sizeof c->error, "%s", c->curl_error[0] ? c->curl_error : curl_easy_strerror(rc));
}

/* curl reports through these what the connect waits for; the caller polls it.
 * (The socket API rather than curl_multi_fdset: select's fd_set cannot hold
 * descriptors past FD_SETSIZE, and a process with many boxes has that many.) */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *ud, void *socketp) {
    lk_conn *c = ud;
    (void)easy, (void)socketp;
    c->wait_fd = what == CURL_POLL_REMOVE ? CURL_SOCKET_BAD : s;
    c->wait_what = what;
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *ud) {
    (void)multi;
    ((lk_conn *)ud)->timer_ms = timeout_ms;
    return 0;
}

lk_conn *lk_conn_new(const char *url, const char *unix_path, long connect_timeout_ms, const lk_tls *tls) {
    lk_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->fd = -1;
    c->wait_fd = CURL_SOCKET_BAD;
    c->timer_ms = -1;
    c->easy = curl_easy_init();
    c->multi = curl_multi_init();
    if (!c->easy || !c->multi) {
        lk_conn_free(c);
        return NULL;
    }
    curl_easy_setopt(c->easy, CURLOPT_URL, url);
    if (unix_path) curl_easy_setopt(c->easy, CURLOPT_UNIX_SOCKET_PATH, unix_path);
    curl_easy_setopt(c->easy, CURLOPT_CONNECT_ONLY, 1L);
    curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms);
    curl_easy_setopt(c->easy, CURLOPT_ERRORBUFFER, c->curl_error);
    /* Docker's API is reached directly: a proxy from the environment would be wrong. */
    curl_easy_setopt(c->easy, CURLOPT_NOPROXY, "*");
    if (tls) {
        c->tls = 1;
        if (tls->ca) {
            /* The CA given is the only one trusted: not also the system's directory. */
            curl_easy_setopt(c->easy, CURLOPT_CAINFO, tls->ca);
            curl_easy_setopt(c->easy, CURLOPT_CAPATH, (char *)NULL);
        }
        if (tls->cert) curl_easy_setopt(c->easy, CURLOPT_SSLCERT, tls->cert);
        if (tls->key) curl_easy_setopt(c->easy, CURLOPT_SSLKEY, tls->key);
        curl_easy_setopt(c->easy, CURLOPT_SSL_VERIFYPEER, tls->verify ? 1L : 0L);
        curl_easy_setopt(c->easy, CURLOPT_SSL_VERIFYHOST, tls->verify ? 2L : 0L);
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    if (curl_multi_add_handle(c->multi, c->easy) != CURLM_OK) {
        lk_conn_free(c);
        return NULL;
    }
    return c;
}

void lk_conn_free(lk_conn *c) {
    if (!c) return;
    if (c->multi && c->easy) curl_multi_remove_handle(c->multi, c->easy);
    if (c->easy) curl_easy_cleanup(c->easy);
    if (c->multi) curl_multi_cleanup(c->multi);
    free(c);
}

int lk_conn_connect(lk_conn *c, int *fd, int *want, long *timeout_ms) {
    if (c->connected) return LK_OK;
    int running = 0, left = 0;
    CURLMcode mc = CURLM_OK;
    if (c->started && c->wait_fd != CURL_SOCKET_BAD)
        mc = curl_multi_socket_action(c->multi, c->wait_fd, 0, &running);
    if (mc == CURLM_OK) /* also runs curl's timers: the connect timeout, retries */
        mc = curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    c->started = 1;
    if (mc != CURLM_OK) {
        snprintf(c->error, sizeof c->error, "libcurl: %s", curl_multi_strerror(mc));
        return LK_FAIL;
    }
    CURLMsg *m;
    while ((m = curl_multi_info_read(c->multi, &left)))
        if (m->msg == CURLMSG_DONE) {
            if (m->data.result != CURLE_OK) {
                set_error(c, m->data.result);
                return LK_FAIL;
            }
            curl_socket_t s = CURL_SOCKET_BAD;
            curl_easy_getinfo(c->easy, CURLINFO_ACTIVESOCKET, &s);
            c->fd = (int)s;
            c->connected = 1;
            c->plain = !c->tls;
            return LK_OK;
        }
    *fd = c->wait_fd == CURL_SOCKET_BAD ? -1 : (int)c->wait_fd;
    *want = (c->wait_what & CURL_POLL_IN ? LK_WANT_READ : 0) | (c->wait_what & CURL_POLL_OUT ? LK_WANT_WRITE : 0);
    *timeout_ms = c->timer_ms;
    return LK_AGAIN;
}

/* A plain connection (unix socket or TCP without TLS) moves bytes with
 * send(2) and recv(2) on curl's socket: a step's round trip makes a few of
 * these calls, and curl's own layers cost more than the syscalls. A TLS
 * connection goes through curl_easy_send/recv (libcurl's TLS). */
static int plain_result(lk_conn *c, ssize_t r, size_t *n) {
    if (r >= 0) {
        *n = (size_t)r;
        return LK_OK;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) return LK_AGAIN;
    c->os_errno = errno;
    snprintf(c->error, sizeof c->error, "%s", strerror(errno));
    return LK_FAIL;
}

int lk_conn_send(lk_conn *c, const char *p, size_t len, size_t *n) {
    *n = 0;
    if (c->plain) {
        ssize_t r;
        do r = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (r < 0 && errno == EINTR);
        return plain_result(c, r, n);
    }
    CURLcode rc = curl_easy_send(c->easy, p, len, n);
    if (rc == CURLE_OK) return LK_OK;
    if (rc == CURLE_AGAIN) return LK_AGAIN;
    set_error(c, rc);
    return LK_FAIL;
}

int lk_conn_recv(lk_conn *c, char *p, size_t len, size_t *n) {
    *n = 0;
    if (c->plain) {
        ssize_t r;
        do r = recv(c->fd, p, len, MSG_DONTWAIT);
        while (r < 0 && errno == EINTR);
        int rc = plain_result(c, r, n);
        return rc == LK_OK && *n == 0 ? LK_EOF : rc;
    }
    CURLcode rc = curl_easy_recv(c->easy, p, len, n);
    c->drained = rc == CURLE_AGAIN;
    if (rc == CURLE_AGAIN) return LK_AGAIN;
    if (rc != CURLE_OK) {
        set_error(c, rc);
        return LK_FAIL;
    }
    return *n ? LK_OK : LK_EOF;
}

int lk_conn_shutdown_write(lk_conn *c) {
    /* Over TLS too, as the docker CLI does (a TCP half-close under the TLS
     * stream, no close_notify): dockerd's TLS takes the end of TCP at a record
     * boundary as the end of the input. A proxy in between may not: lockup
     * ends an exec's input of known size with `head -c` in the box instead. */
    if (c->fd < 0 || shutdown(c->fd, SHUT_WR) != 0) {
        c->os_errno = errno;
        snprintf(c->error, sizeof c->error, "shutdown: %s", strerror(errno));
        return LK_FAIL;
    }
    return LK_OK;
}

int lk_conn_fd(const lk_conn *c) { return c->fd; }
int lk_conn_tls(const lk_conn *c) { return c->tls; }
int lk_conn_maybe_pending(const lk_conn *c) { return c->tls && c->connected && !c->drained; }
const char *lk_conn_error(const lk_conn *c) { return c->error; }
int lk_conn_errno(const lk_conn *c) { return c->os_errno; }
