/* Layer: proxy (src/proxy/; may use base, dist, config, protocol, net, cluster, core). */
/* client.h: one client connection: read, parse, dispatch, reply in order. */
#ifndef MEMRELAY_CLIENT_H
#define MEMRELAY_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <ev.h>

#include "memrelay/binary.h"
#include "memrelay/conn.h"
#include "memrelay/inbuf.h"
#include "memrelay/outq.h"
#include "memrelay/request.h"

struct mr_worker;
struct ssl_ctx_st;

typedef struct mr_client {
    struct mr_worker *worker;
    mr_conn conn; /* the socket, and its TLS state on a TLS listener (conn.h) */
    uint32_t id;  /* picks the backend connection, so one client's requests to a server stay ordered */
    uint32_t listen_pool; /* pool whose listener accepted it (index in the worker's current config) */
    uint32_t pool_slot;   /* that pool's stable slot (client_connections counting) */
    ev_io rio, wio;
    ev_timer auth_wait;     /* running: not read after repeated authentication failures (auth_gate.h) */
    uint32_t auth_failures; /* failed authentication attempts on this connection */
    ev_timer idle;         /* client_idle_timeout: re-armed lazily from last_active; bounds a TLS handshake */
    ev_tstamp last_active; /* last read from or write to it */
    mr_inbuf in;           /* request bytes */
    uint32_t need;         /* bytes the request being read needs in all (0 unknown) */
    uint32_t swallow;      /* bytes still to discard (memcached's swallow after an error) */
    mr_req *swallow_req;   /* its error reply, held back until the swallow ends (as memcached) */
    mr_req *q_head, *q_tail; /* requests awaiting their turn to reply, in arrival order */
    uint32_t nqueued;
    mr_req *s_head, *s_tail; /* its noreply requests not yet answered (they emit nothing), in arrival order */
    uint64_t
        request_bytes; /* bytes (line and data) of its queued and unanswered noreply requests: client_input_limit */
    mr_outq out;       /* reply bytes to write, in order (references into the servers' replies) */
    ev_timer stuck;     /* client_output_timeout: running while out.bytes stays above client_output_limit */
    ev_timer stalled;   /* client_block_timeout: running while it holds a reserved block (c->block) */
    uint32_t reply_avg; /* its replies' running size: bounds its requests in flight (window) */
    uint32_t reply_est; /* memory_limit's guess of each reply owed: reply_avg, item_size_max before one */
    uint32_t nowed;     /* queued requests that may bring a value (retrieval, meta): replies owed */
    bool paused;        /* not reading: too much queued (backpressure) */
    bool closing;       /* close once the queued replies are written */
    bool eof;           /* peer closed its side */
    bool started;       /* its first bytes have been looked at (binary protocol check) */
    bool binary;        /* its first byte was 0x80: memcached's binary protocol for its whole life */
    mr_bin_sasl_state sasl; /* binary: where its SASL exchange is */
    bool authed;            /* may send commands: authenticated, or its pool has no auth_file */
    bool dirty;             /* on the worker's flush list */
    bool mem_wait;          /* on the worker's memory_limit wait list: not read until budget frees */
    uint32_t block;         /* bytes reserved from memory_limit for the data block being read, 0 none */
    uint64_t mem;           /* bytes charged to memory_limit: block + queued + silent + output */
    struct mr_client *next_mem_wait;
    struct mr_client *next_dirty;
    struct mr_client *prev, *next; /* worker's client list */
} mr_client;

/* Take an accepted socket; `tls` is the listener's TLS context, or NULL. */
void mr_client_accept(struct mr_worker *w, int fd, uint32_t listen_pool, uint32_t pool_slot,
                      struct ssl_ctx_st *tls);
/* Reply bytes not yet handed to the socket (queued, or in TLS's buffer)? */
bool mr_client_has_output(const mr_client *c);
/* Nothing queued, owed, buffered or unread: it may be closed between two
 * requests (a graceful drain). */
bool mr_client_is_quiet(const mr_client *c);
/* A request of this client completed: mark the client dirty, so the
 * worker's flush emits what is ready at the head of its queue. */
void mr_client_req_done(mr_client *c, mr_req *req);
/* Put the client on its worker's flush list (once), so the flush at the end
 * of this loop iteration emits and writes what it has. */
void mr_client_mark_dirty(mr_client *c);
/* Write queued replies (called from the worker's flush). */
void mr_client_flush(mr_client *c);
void mr_client_close(mr_client *c);
/* Budget may have freed (memory_limit): resume the worker's waiting
 * clients, oldest first, while it lets them (from the worker's flush and
 * its mem_wake watcher). */
void mr_client_mem_retry(struct mr_worker *w);

#endif
