/* probe.c: one health probe: connect, TLS, `version`, the answer (probe.h).
 *
 * Every step is resumed by the io watcher, so the probe never blocks; its
 * owner's timer bounds the whole of it.
 */
#include "memrelay/probe.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "memrelay/error.h"
#include "memrelay/tls.h"

static void probe_io_cb(struct ev_loop *loop, ev_io *io, int revents);

void mr_probe_init(mr_probe *p, const mr_probe_ops *ops)
{
    p->ops = ops;
    p->fd = -1;
    ev_init(&p->io, probe_io_cb);
    p->io.data = p;
}

int mr_probe_start(mr_probe *p, struct ev_loop *loop, const mr_sockaddr *addr)
{
    p->loop = loop;
    p->error = MR_ERR_UNAVAILABLE;
    p->buflen = 0;
    p->fd = socket(addr->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->fd < 0)
        return -1;
    if (connect(p->fd, (const struct sockaddr *)&addr->addr, addr->len) < 0 && errno != EINPROGRESS) {
        p->error = mr_net_connect_error(errno);
        return -1;
    }
    ev_io_set(&p->io, p->fd, EV_WRITE);
    ev_io_start(loop, &p->io);
    return 0;
}

void mr_probe_close(mr_probe *p)
{
    if (p->loop)
        ev_io_stop(p->loop, &p->io);
    mr_tls_conn_free(p->tls);
    p->tls = NULL;
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    p->buflen = 0;
}

/* The answer so far: done when a line is complete or the buffer is full;
 * then it is good if it is a VERSION line. */
static bool probe_answered(mr_probe *p, bool *ok)
{
    p->buf[p->buflen] = '\0';
    if (!strstr(p->buf, "\r\n") && p->buflen < sizeof(p->buf) - 1)
        return false;
    *ok = strncmp(p->buf, "VERSION ", 8) == 0;
    return true;
}

static void probe_wait(mr_probe *p, int events)
{
    ev_io_stop(p->loop, &p->io);
    ev_io_set(&p->io, p->fd, events);
    ev_io_start(p->loop, &p->io);
}

/* A probe of a server_tls server: handshake, `version`, read the line. */
static void probe_tls_step(mr_probe *p)
{
    mr_tls_conn *t = p->tls;
    mr_tls_status st = MR_TLS_OK;
    char why[256];
    if (!t->established && (st = mr_tls_handshake(t, why, sizeof(why))) != MR_TLS_OK) {
        if (st != MR_TLS_WANT_READ && st != MR_TLS_WANT_WRITE) {
            p->error = MR_ERR_TLS;
            mr_tls_log_failure("health probe TLS handshake", p->ops->name(p), why);
        }
        goto wait;
    }
    if (!p->tls_sent) {
        static const char version[] = "version\r\n";
        struct iovec v = {(void *)version, sizeof(version) - 1};
        p->tls_sent = mr_tls_writev(t, &v, 1, &st) > 0;
        if (st != MR_TLS_OK)
            goto wait;
    }
    if (mr_tls_has_output(t) && (mr_tls_writev(t, NULL, 0, &st), st != MR_TLS_OK))
        goto wait;
    for (;;) {
        ssize_t n = mr_tls_read(t, p->buf + p->buflen, sizeof(p->buf) - 1 - p->buflen, &st);
        if (n <= 0)
            goto wait;
        p->buflen += (uint32_t)n;
        bool ok;
        if (probe_answered(p, &ok)) {
            p->ops->done(p, ok);
            return;
        }
    }
wait:
    if (st == MR_TLS_WANT_READ || st == MR_TLS_WANT_WRITE) {
        probe_wait(p, st == MR_TLS_WANT_READ ? EV_READ : EV_WRITE);
        return;
    }
    p->ops->done(p, false);
}

static void probe_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    mr_probe *p = io->data;
    if (p->tls) {
        probe_tls_step(p);
        return;
    }
    if (revents & EV_WRITE) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        static const char version[] = "version\r\n";
        if (err)
            p->error = mr_net_connect_error(err);
        p->tls_sent = false;
        int tls = err ? 0 : p->ops->tls_start(p);
        if (tls > 0) {
            probe_tls_step(p);
            return;
        }
        if (tls < 0)
            err = ENOMEM;
        if (err || write(p->fd, version, sizeof(version) - 1) != (ssize_t)sizeof(version) - 1) {
            p->ops->done(p, false);
            return;
        }
        ev_io_stop(loop, io);
        ev_io_set(io, p->fd, EV_READ);
        ev_io_start(loop, io);
        return;
    }
    ssize_t n = read(p->fd, p->buf + p->buflen, sizeof(p->buf) - 1 - p->buflen);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        p->ops->done(p, false);
        return;
    }
    p->buflen += (uint32_t)n;
    bool ok;
    if (!probe_answered(p, &ok))
        return;
    p->ops->done(p, ok);
}
