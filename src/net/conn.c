/* conn.c: connections, plain or TLS (conn.h). */
#include "memrelay/conn.h"

#include <sys/socket.h>

static mr_io_status io_status(mr_tls_status st)
{
    switch (st) {
    case MR_TLS_OK:
        return MR_IO_OK;
    case MR_TLS_WANT_READ:
        return MR_IO_WANT_READ;
    case MR_TLS_WANT_WRITE:
        return MR_IO_WANT_WRITE;
    case MR_TLS_CLOSED:
        return MR_IO_EOF;
    default:
        return MR_IO_ERROR;
    }
}

int mr_conn_connect(mr_conn *c, const mr_sockaddr *to, bool tune, bool keepalive, int *sys)
{
    c->tls = NULL;
    c->fd = socket(to->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        *sys = errno;
        return -1;
    }
    if (tune)
        mr_net_tune(c->fd, to->addr.ss_family == AF_UNIX, keepalive);
    if (connect(c->fd, (const struct sockaddr *)&to->addr, to->len) == 0)
        return 0;
    if (errno == EINPROGRESS)
        return 1;
    *sys = errno;
    close(c->fd);
    c->fd = -1;
    return -1;
}

int mr_conn_connect_done(mr_conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    return err;
}

int mr_conn_tls_connect(mr_conn *c, const mr_tls_set *set, uint32_t pool, const mr_pool_conf *pc,
                        const mr_server_conf *sc)
{
    return mr_tls_connect_server(set, pool, pc, sc, c->fd, &c->tls);
}

int mr_conn_accept(mr_conn *c, int fd, SSL_CTX *ctx)
{
    c->fd = fd;
    c->tls = NULL;
    if (ctx == NULL)
        return 0;
    return (c->tls = mr_tls_accept_new(ctx, fd)) != NULL ? 0 : -1;
}

mr_io_status mr_conn_handshake(mr_conn *c, char *why, size_t len)
{
    return c->tls ? io_status(mr_tls_handshake(c->tls, why, len)) : MR_IO_OK;
}

void mr_conn_close(mr_conn *c)
{
    mr_tls_conn_free(c->tls);
    c->tls = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

ssize_t mr_conn_tls_read(mr_conn *c, void *buf, size_t len, mr_io_status *st)
{
    mr_tls_status ts;
    ssize_t n = mr_tls_read(c->tls, buf, len, &ts);
    *st = io_status(ts);
    return n;
}

ssize_t mr_conn_tls_writev(mr_conn *c, const struct iovec *iov, int iovcnt, mr_io_status *st)
{
    mr_tls_status ts;
    ssize_t n = mr_tls_writev(c->tls, iov, iovcnt, &ts);
    *st = io_status(ts);
    return n;
}
