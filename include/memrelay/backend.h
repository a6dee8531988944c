/* Layer: core (src/core/; may use base, dist, config, protocol, net, cluster). */
/* backend.h: a worker's connections to one memcached server.
 *
 * Each worker has its own mr_backend per server (no sharing, no locks), with
 * `server_connections` pipelined connections. Messages wait on a connection's
 * `pending` queue until written, then on `sent` until their reply arrives;
 * replies pair with `sent` strictly FIFO, as memcached answers in order.
 */
#ifndef MEMRELAY_BACKEND_H
#define MEMRELAY_BACKEND_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <ev.h>

#include "memrelay/conn.h"
#include "memrelay/inbuf.h"
#include "memrelay/replay_queue.h"
#include "memrelay/request.h"
#include "memrelay/router.h"

struct mr_worker;
struct mr_backend;

typedef enum { MR_BCONN_IDLE, MR_BCONN_CONNECTING, MR_BCONN_CONNECTED } mr_bconn_state;

typedef struct mr_bconn {
    struct mr_backend *be;
    mr_bconn_state state; /* with server_tls, CONNECTING lasts until the TLS handshake is done */
    mr_conn conn;         /* the socket, and its TLS state with server_tls (conn.h) */
    ev_io rio;            /* readable */
    ev_io wio;            /* writable (connect completion, or a full socket) */
    ev_timer timer;       /* earliest deadline of the queued messages */
    mr_msg *pending_head, *pending_tail; /* not yet fully written */
    mr_msg *sent_head, *sent_tail;       /* written, awaiting replies, in order */
    uint32_t nqueued;                    /* messages on both queues */
    mr_inbuf in;                         /* reply bytes */
    uint32_t need;                       /* bytes the reply element being read needs in all (0 unknown) */
    ev_tstamp connect_deadline;          /* CONNECTING: give up at this time */
    ev_tstamp last_read;                 /* when the server last sent bytes (it is alive, if slow) */
    ev_tstamp last_write;                /* when the server last took bytes of our requests */
    bool dirty;                          /* on the worker's flush list */
    struct mr_bconn *next_dirty;
    uint32_t addr_version; /* the server's address version it connected to (health.h) */
    bool moving;           /* the server's name resolves elsewhere now: write no more here;
                                reconnect once what was written is answered (backend.c) */
} mr_bconn;

typedef struct mr_backend {
    struct mr_worker *worker;
    const mr_server *server;
    const mr_pool *pool;
    ev_tstamp timeout; /* pool timeout, seconds */
    mr_bconn *conns;
    uint32_t nconns;
    /* Reconnect backoff: after a failed connect, requests fail fast with
     * `down_error` until retry_at, then the next request tries again. */
    mr_err down_error;
    ev_tstamp retry_at;
    uint32_t failures;      /* consecutive connect failures */
    mr_replay_queue replay; /* replicated writes this server missed */
    ev_timer retry_timer;   /* reconnects on its own while writes wait to be replayed */
    uint32_t rejoin_acked;  /* the rejoin generation this worker has replayed for */
} mr_backend;

/* The server's name may resolve to a new address (health.h): connections
 * made to an older one move there once their written requests are answered. */
void mr_backend_follow_address(mr_backend *be);

/* The health checker lets the server back: replay what it missed, then
 * tell the health checker (at once if nothing was missed). */
void mr_backend_rejoin(mr_backend *be);

/* Set up a backend without touching the worker's loop (any thread may call
 * it); mr_backend_start, on the worker's thread, preconnects if configured. */
int mr_backend_init(mr_backend *be, struct mr_worker *w, const mr_server *server, const mr_pool *pool);
void mr_backend_start(mr_backend *be);
/* A reload kept the server: follow its new router entry and pool settings. */
void mr_backend_adopt(mr_backend *be, const mr_server *server, const mr_pool *pool);
/* Nothing queued on any connection: a retired backend may close. */
bool mr_backend_idle(const mr_backend *be);
void mr_backend_close(mr_backend *be);

/* Queue a message on connection `conn_hint % nconns`. Fails the message at
 * once (mr_msg_finish with an error) when the server is known down or the
 * queue is full. */
void mr_backend_send(mr_backend *be, uint32_t conn_hint, mr_msg *msg);

/* A replicated write did not reach the server: keep `out[0..nout)` (the
 * replication sends the key's delete) to replay when it is back, bounded by
 * the pool's replay_queue. Past it, or with nout 0 (it could not be made),
 * the queue overflows: with on_rejoin: flush it is emptied, keeps nothing
 * more, and the server is flushed on return; with quarantine it keeps the
 * oldest and the server is quarantined. */
void mr_backend_replay_later(mr_backend *be, const mr_slice *out, uint32_t nout);

/* Write what the connection has pending (called from the worker's flush). */
void mr_bconn_flush(mr_bconn *bc);

#endif
