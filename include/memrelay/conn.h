/* Layer: net (src/net/; may use base, dist, config, protocol). */
/* conn.h: one connection, plain (TCP or unix socket) or TLS, as clients,
 * backends and the health prober use it (conn.c).
 *
 * A value type embedded where the socket lives (mr_client, mr_bconn,
 * mr_probe), with no function table: the plain path is the one branch on
 * `tls == NULL` its users took before, inlined here. Nothing blocks; a
 * status says what to wait for:
 *   - a read may need the socket writable and a write readable (TLS only;
 *     mr_conn_take_read_wants_write and mr_conn_take_write_wants_read say
 *     so), so callers arm the matching watcher;
 *   - OpenSSL can hold decrypted bytes libev cannot see: after a read that
 *     returned bytes, mr_conn_pending_input says to read again;
 *   - TLS has no writev: mr_conn_writev takes up to MR_TLS_WBUF bytes of the
 *     iovecs per call and keeps what the socket did not accept
 *     (mr_conn_has_output) to send first next time (tls.h).
 * A clean close by the peer (read() == 0, a TLS close_notify or a bare FIN)
 * is MR_IO_EOF; a reset is MR_IO_ERROR on a plain socket but MR_IO_EOF on a
 * TLS one when OpenSSL queued no error (tls.c), and callers treat the two
 * alike where it matters.
 */
#ifndef MEMRELAY_CONN_H
#define MEMRELAY_CONN_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "memrelay/config.h"
#include "memrelay/net.h"
#include "memrelay/tls.h"

typedef enum {
    MR_IO_OK,         /* done, or bytes returned */
    MR_IO_WANT_READ,  /* wait until readable (plain: EAGAIN, EWOULDBLOCK or EINTR on a read) */
    MR_IO_WANT_WRITE, /* wait until writable (plain: EAGAIN or EWOULDBLOCK on a write) */
    MR_IO_EOF,        /* the peer closed */
    MR_IO_ERROR,      /* anything else: close */
} mr_io_status;

typedef struct mr_conn {
    int fd;           /* -1: none */
    mr_tls_conn *tls; /* NULL: plain */
} mr_conn;

/* socket(), TCP_NODELAY and SO_KEEPALIVE when `tune` (mr_net_tune, not for
 * unix sockets), connect(). 0: connected; 1: in progress (wait writable,
 * then mr_conn_connect_done); -1: failed, *sys is the errno (map it with
 * mr_net_connect_error) and no socket is left open. */
int mr_conn_connect(mr_conn *c, const mr_sockaddr *to, bool tune, bool keepalive, int *sys);
/* After an in-progress connect reported writable: 0 connected, else the
 * errno it failed with (SO_ERROR). */
int mr_conn_connect_done(mr_conn *c);
/* Start TLS on a connected socket to server `sc` of pool `pool` when the
 * pool wants it (mr_tls_connect_server): 1 started, 0 plain, -1 out of memory. */
int mr_conn_tls_connect(mr_conn *c, const mr_tls_set *set, uint32_t pool, const mr_pool_conf *pc,
                        const mr_server_conf *sc);
/* Take an accepted socket; `ctx` is its listener's TLS context, or NULL.
 * 0, or -1 when out of memory (the socket is kept: close it with
 * mr_conn_close). */
int mr_conn_accept(mr_conn *c, int fd, SSL_CTX *ctx);
/* Advance a TLS handshake (MR_IO_OK at once when plain). On MR_IO_EOF or
 * MR_IO_ERROR `why` says what failed. */
mr_io_status mr_conn_handshake(mr_conn *c, char *why, size_t len);
/* Send a TLS close_notify if it fits now (never waits), free the TLS state,
 * close the socket. Fine on a closed connection. */
void mr_conn_close(mr_conn *c);

/* The TLS halves of mr_conn_read and mr_conn_writev. */
ssize_t mr_conn_tls_read(mr_conn *c, void *buf, size_t len, mr_io_status *st);
ssize_t mr_conn_tls_writev(mr_conn *c, const struct iovec *iov, int iovcnt, mr_io_status *st);

/* Read up to len bytes: how many (> 0), or 0 with *st saying why not. */
static inline ssize_t mr_conn_read(mr_conn *c, void *buf, size_t len, mr_io_status *st)
{
    if (__builtin_expect(c->tls != NULL, 0))
        return mr_conn_tls_read(c, buf, len, st);
    ssize_t n = read(c->fd, buf, len);
    if (n > 0) {
        *st = MR_IO_OK;
        return n;
    }
    *st = n == 0                                                        ? MR_IO_EOF
          : (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? MR_IO_WANT_READ
                                                                        : MR_IO_ERROR;
    return 0;
}

/* Write iov: the bytes taken (a TLS connection keeps what the socket did
 * not accept and counts it taken); *st is MR_IO_OK when all that was taken
 * went out, else what to wait for. A plain write interrupted by a signal is
 * retried. */
static inline ssize_t mr_conn_writev(mr_conn *c, const struct iovec *iov, int iovcnt, mr_io_status *st)
{
    if (__builtin_expect(c->tls != NULL, 0))
        return mr_conn_tls_writev(c, iov, iovcnt, st);
    for (;;) {
        ssize_t w = writev(c->fd, iov, iovcnt);
        if (w >= 0) {
            *st = MR_IO_OK;
            return w;
        }
        if (errno == EINTR)
            continue;
        *st = errno == EAGAIN || errno == EWOULDBLOCK ? MR_IO_WANT_WRITE : MR_IO_ERROR;
        return 0;
    }
}

/* The handshake is done (always, when plain). */
static inline bool mr_conn_established(const mr_conn *c)
{
    return c->tls == NULL || c->tls->established;
}

/* Decrypted or buffered bytes libev cannot see (never, when plain). */
static inline bool mr_conn_pending_input(const mr_conn *c)
{
    return c->tls != NULL && mr_tls_readable(c->tls);
}

/* Bytes taken by a write that still wait to go out (never, when plain). */
static inline bool mr_conn_has_output(const mr_conn *c)
{
    return c->tls != NULL && mr_tls_has_output(c->tls);
}

/* Does a read shorter than asked mean the socket is drained? True when
 * plain; never for TLS, where one read returns at most one record. */
static inline bool mr_conn_short_read_drains(const mr_conn *c)
{
    return c->tls == NULL;
}

/* The last read waits for writability: say so once, and forget it. */
static inline bool mr_conn_take_read_wants_write(mr_conn *c)
{
    if (c->tls == NULL || !c->tls->read_wants_write)
        return false;
    c->tls->read_wants_write = false;
    return true;
}

/* The last write waits for readability: say so once, and forget it. */
static inline bool mr_conn_take_write_wants_read(mr_conn *c)
{
    if (c->tls == NULL || !c->tls->write_wants_read)
        return false;
    c->tls->write_wants_read = false;
    return true;
}

#endif
