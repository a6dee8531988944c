/* worker.h: a thread with its own libev loop, clients and backend connections. */
#ifndef MEMRELAY_WORKER_H
#define MEMRELAY_WORKER_H

#include <pthread.h>
#include <stdint.h>

#include <ev.h>

#include "memrelay/backend.h"
#include "memrelay/client.h"
#include "memrelay/mbuf.h"
#include "memrelay/request.h"
#include "memrelay/router.h"
#include "memrelay/stats.h"

/* Write generations of replicated keys, by key hash (collisions only cost
 * an extra read-back). */
#define MR_WRITE_GEN_SLOTS 4096u

/* Everything the workers share, immutable while they run. */
typedef struct {
    const mr_config *cfg;
    const mr_router *router;
    const mr_backend_addr *addrs;   /* by server id */
    int *listen_fds;                /* by pool index; -1 for pools without listen */
    ev_tstamp started;              /* process start (wall clock) */
    int nworkers;
    struct mr_health *health;       /* server states (atomics), shared */
    uint32_t *pool_clients;         /* open client connections by pool (atomics): client_connections */
    int *tls_listen_fds;            /* by pool index: the tls_listen socket; -1 for pools without one */
    const struct mr_tls_set *tls;   /* TLS contexts by pool (tls.h); read when a connection starts */
} mr_shared;

typedef struct mr_worker {
    uint32_t index;
    pthread_t thread;
    struct ev_loop *loop;
    const mr_shared *shared;
    ev_async stop;                  /* another thread asks this loop to end */
    ev_prepare flush;               /* writes everything made dirty this iteration */
    ev_async health_changed;        /* the health checker started a rejoin */
    ev_async drain;                 /* stop accepting and reading; finish what was read */
    bool draining;
    uint32_t drained;               /* atomic: set once draining and no client is left */
    ev_io *accept_io;               /* by pool index: `listen`, then npools more: `tls_listen` */
    mr_backend *backends;           /* by server id */
    mr_mbuf_pool mbufs;
    mr_req *free_reqs;              /* bounded request free list */
    uint32_t nfree_reqs;
    mr_client *dirty_clients;
    mr_bconn *dirty_bconns;
    mr_client *clients;             /* all open clients */
    uint32_t next_client_id;
    uint32_t rng;                   /* xorshift state for the random distribution */
    uint32_t *server_slot;          /* dispatch scratch, by server id: message index or UINT32_MAX */
    mr_stats stats;
    mr_pool_stats *pool_stats;      /* by pool index */
    uint32_t write_gen[MR_WRITE_GEN_SLOTS]; /* bumped by every replicated write a key gets on this worker */
} mr_worker;

#define MR_WORKER_MAX_FREE_REQS 1024u

int mr_worker_init(mr_worker *w, uint32_t index, const mr_shared *shared);
int mr_worker_start(mr_worker *w);
void mr_worker_stop(mr_worker *w);   /* from another thread */
void mr_worker_join(mr_worker *w);
void mr_worker_destroy(mr_worker *w);

void mr_worker_mark_client(mr_worker *w, mr_client *c);
void mr_worker_mark_bconn(mr_worker *w, mr_bconn *bc);
uint32_t mr_worker_random(mr_worker *w);
/* From the main thread: a server is rejoining; replay what it missed. */
void mr_worker_health_changed(mr_worker *w);
/* From the main thread: begin a graceful shutdown (see main.c). */
void mr_worker_drain(mr_worker *w);
bool mr_worker_drained(mr_worker *w);

#endif
