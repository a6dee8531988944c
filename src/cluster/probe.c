/* probe.c: one health probe: connect, TLS, `version`, the answer (probe.h).
 *
 * Every step is resumed by the io watcher, so the probe never blocks; its
 * owner's timer bounds the whole of it.
 */
#include "memrelay/probe.h"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "memrelay/error.h"
#include "memrelay/tls.h"

static void probe_io_cb(struct ev_loop *loop, ev_io *io, int revents);

void mr_probe_init(mr_probe *p, const mr_probe_ops *ops)
{
    p->ops = ops;
    p->conn.fd = -1;
    ev_init(&p->io, probe_io_cb);
    p->io.data = p;
}

int mr_probe_start(mr_probe *p, struct ev_loop *loop, const mr_sockaddr *addr)
{
    p->loop = loop;
    p->error = MR_ERR_UNAVAILABLE;
    p->buflen = 0;
    int sys = 0;
    if (mr_conn_connect(&p->conn, addr, false, false, &sys) < 0) {
        p->error = mr_net_connect_error(sys); /* a socket() failure: UNAVAILABLE */
        return -1;
    }
    ev_io_set(&p->io, p->conn.fd, EV_WRITE);
    ev_io_start(loop, &p->io);
    return 0;
}

void mr_probe_close(mr_probe *p)
{
    if (p->loop)
        ev_io_stop(p->loop, &p->io);
    mr_conn_close(&p->conn);
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
    ev_io_set(&p->io, p->conn.fd, events);
    ev_io_start(p->loop, &p->io);
}

/* A probe of a server_tls server: handshake, `version`, read the line. */
static void probe_tls_step(mr_probe *p)
{
    mr_io_status st = MR_IO_OK;
    char why[256];
    if (!mr_conn_established(&p->conn) && (st = mr_conn_handshake(&p->conn, why, sizeof(why))) != MR_IO_OK) {
        if (st != MR_IO_WANT_READ && st != MR_IO_WANT_WRITE) {
            p->error = MR_ERR_TLS;
            mr_tls_log_failure("health probe TLS handshake", p->ops->name(p), why);
        }
        goto wait;
    }
    if (!p->tls_sent) {
        static const char version[] = "version\r\n";
        struct iovec v = {(void *)version, sizeof(version) - 1};
        p->tls_sent = mr_conn_writev(&p->conn, &v, 1, &st) > 0;
        if (st != MR_IO_OK)
            goto wait;
    }
    if (mr_conn_has_output(&p->conn) && (mr_conn_writev(&p->conn, NULL, 0, &st), st != MR_IO_OK))
        goto wait;
    for (;;) {
        ssize_t n = mr_conn_read(&p->conn, p->buf + p->buflen, sizeof(p->buf) - 1 - p->buflen, &st);
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
    if (st == MR_IO_WANT_READ || st == MR_IO_WANT_WRITE) {
        probe_wait(p, st == MR_IO_WANT_READ ? EV_READ : EV_WRITE);
        return;
    }
    p->ops->done(p, false);
}

static void probe_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    mr_probe *p = io->data;
    if (p->conn.tls) {
        probe_tls_step(p);
        return;
    }
    if (revents & EV_WRITE) {
        int err = mr_conn_connect_done(&p->conn);
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
        if (err || write(p->conn.fd, version, sizeof(version) - 1) != (ssize_t)sizeof(version) - 1) {
            p->ops->done(p, false);
            return;
        }
        ev_io_stop(loop, io);
        ev_io_set(io, p->conn.fd, EV_READ);
        ev_io_start(loop, io);
        return;
    }
    mr_io_status st;
    ssize_t n = mr_conn_read(&p->conn, p->buf + p->buflen, sizeof(p->buf) - 1 - p->buflen, &st);
    if (n <= 0) {
        if (st == MR_IO_WANT_READ)
            return; /* EAGAIN or EINTR: wait */
        p->ops->done(p, false);
        return;
    }
    p->buflen += (uint32_t)n;
    bool ok;
    if (!probe_answered(p, &ok))
        return;
    p->ops->done(p, ok);
}
