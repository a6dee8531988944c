/* Layer: cluster (src/cluster/; may use base, dist, config, protocol, net). */
/* probe.h: one health probe of one server (probe.c): connect, TLS when the
 * server's pool wants it, send `version`, read the answer.
 *
 * A probe knows nothing about server states: its owner (health.c, the
 * state machine) starts it, bounds it with its own timer, and is told the
 * outcome through the probe's ops. Main thread only; never blocks. A server
 * whose certificate does not verify fails its probes.
 */
#ifndef MEMRELAY_PROBE_H
#define MEMRELAY_PROBE_H

#include <stdbool.h>
#include <stdint.h>

#include <ev.h>

#include "memrelay/conn.h"
#include "memrelay/net.h"

struct mr_probe;

/* What a probe asks of its owner. */
typedef struct mr_probe_ops {
    /* The socket connected: start TLS on p->conn if the server's pool wants
     * it (mr_conn_tls_connect: 1 started, 0 plain, -1 out of memory). */
    int (*tls_start)(struct mr_probe *p);
    /* The server's name for log lines. */
    const char *(*name)(const struct mr_probe *p);
    /* The probe is over: ok when the server answered a VERSION line;
     * otherwise p->error says why. Called from the probe's io watcher. */
    void (*done)(struct mr_probe *p, bool ok);
} mr_probe_ops;

typedef struct mr_probe {
    const mr_probe_ops *ops;
    struct ev_loop *loop; /* the loop it runs on (from mr_probe_start) */
    mr_conn conn;         /* fd -1: not running; tls: server_tls pools (conn.h) */
    ev_io io;
    int error;     /* mr_err: why the probe failed (UNAVAILABLE until it knows better) */
    bool tls_sent; /* the probe's `version` went to TLS */
    char buf[64];  /* the answer so far */
    uint32_t buflen;
} mr_probe;

void mr_probe_init(mr_probe *p, const mr_probe_ops *ops);
/* Connect to `addr` on `loop`. 0: running, ops->done will be called (unless
 * it is closed first); -1: it failed at once, p->error says why and done
 * is not called. */
int mr_probe_start(mr_probe *p, struct ev_loop *loop, const mr_sockaddr *addr);
/* Stop it and release its socket and TLS state (done is not called). Fine
 * on a probe that is not running. */
void mr_probe_close(mr_probe *p);

#endif
