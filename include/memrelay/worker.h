/* worker.h: a thread with its own libev loop, clients and backend connections. */
#ifndef MEMRELAY_WORKER_H
#define MEMRELAY_WORKER_H

#include <pthread.h>
#include <stdint.h>

#include <ev.h>

#include "memrelay/backend.h"
#include "memrelay/client.h"
#include "memrelay/generation.h"
#include "memrelay/health.h"
#include "memrelay/mbuf.h"
#include "memrelay/request.h"
#include "memrelay/router.h"
#include "memrelay/stats.h"

/* Write generations of replicated keys, by key hash (collisions only cost
 * an extra read-back). */
#define MR_WRITE_GEN_SLOTS 4096u

/* Everything the workers share for the life of the process. The config and
 * what is built from it come in generations (generation.h): each worker
 * follows `mr_worker.gen`. */
typedef struct {
    ev_tstamp started;              /* process start (wall clock) */
    int nworkers;
    struct mr_health *health;       /* server states and the server registry (atomics), shared */
    uint32_t pool_clients[MR_MAX_POOL_SLOTS]; /* open client connections by pool slot (atomics): client_connections */
    mr_reload_status *reload;       /* `stats config` */
    struct ev_loop *main_loop;      /* the main thread's: reload and shutdown control */
    ev_async *switched;             /* on main_loop: a worker finished a switch or released a generation */
    const mr_core_hooks *hooks;     /* what core calls up into (request.h); set by main.c before any worker */
} mr_shared;

/* What a worker needs to move to a new generation, all allocated by the
 * main thread beforehand so the switch itself cannot fail. */
typedef struct mr_worker_switch {
    mr_gen *gen;
    mr_backend **backends;          /* the new table: nbackends slots, zeroed */
    uint32_t *server_slot;          /* the new dispatch scratch, nbackends slots */
    uint32_t nbackends;
    mr_backend **fresh;             /* by id: set up for servers new to this config (NULL elsewhere) */
    ev_io *accept_io;               /* by pool of the new config */
    struct mr_gen_hold *hold;       /* for the generation the worker leaves */
    mr_backend **retired;           /* its room for retired backends: nbackends slots */
} mr_worker_switch;

/* An older generation this worker still needs: requests it started under
 * it are in flight, and backends of servers the new config dropped drain. */
typedef struct mr_gen_hold {
    mr_gen *gen;
    uint32_t reqs;
    mr_backend **retired;           /* owned backends of servers no newer config has */
    uint32_t nretired;
    struct mr_gen_hold *next;
} mr_gen_hold;

typedef struct mr_worker {
    uint32_t index;
    pthread_t thread;
    struct ev_loop *loop;
    mr_shared *shared;
    const mr_core_hooks *hooks;     /* shared->hooks, one load nearer */
    mr_gen *gen;                    /* the config this worker serves new requests with */
    uint32_t gen_reqs;              /* requests started under gen and not yet freed */
    mr_gen_hold *holds;             /* older generations still needed */
    bool holds_done;                /* one has no request left: release it at the next flush */
    mr_worker_switch *next_switch;  /* handed over by the main thread; see mr_worker_switch_to */
    ev_async reload;                /* a new generation is ready */
    uint32_t switched_seq;          /* atomic: the generation this worker has switched to */
    ev_async stop;                  /* another thread asks this loop to end */
    ev_prepare flush;               /* writes everything made dirty this iteration */
    ev_async health_changed;        /* the health checker started a rejoin */
    ev_async drain;                 /* stop accepting and reading; finish what was read */
    bool draining;
    uint32_t drained;               /* atomic: set once draining and no client is left */
    ev_io *accept_io;               /* by pool index of gen: `listen`, then npools more: `tls_listen` */
    mr_backend **backends;          /* by server id; NULL for ids this worker has no backend for */
    uint32_t nbackends;
    mr_mbuf_pool mbufs;
    mr_req *free_reqs;              /* bounded request free list */
    uint32_t nfree_reqs;
    uint32_t low_free_reqs;         /* fewest free since the last trim tick: that many went unused */
    uint64_t reqs_freed_bytes;      /* requests given back to malloc since the last trim tick */
    ev_timer trim;                  /* gives memory unused since the last tick back (after a spike) */
    mr_client *dirty_clients;
    mr_bconn *dirty_bconns;
    mr_client *clients;             /* all open clients */
    uint32_t next_client_id;
    uint32_t rng;                   /* xorshift state for the random distribution (rng.h) */
    uint32_t *server_slot;          /* dispatch scratch, by server id: message index or UINT32_MAX */
    mr_stats stats;
    mr_pool_stats pool_stats[MR_MAX_POOL_SLOTS]; /* by pool slot (stable across reloads) */
    uint32_t write_gen[MR_WRITE_GEN_SLOTS]; /* bumped by every replicated write a key gets on this worker */
} mr_worker;

/* Free-list bounds per worker. They are sized for the working set of a busy
 * worker (a few thousand requests in flight, each holding a request and a
 * share of an input block), so steady load never round-trips blocks through
 * malloc; what a spike leaves behind unused is freed by the trim tick
 * (worker.c), so the bound only caps what can sit idle for ~10-20 s:
 * 4,096 x 16 KiB = 64 MiB of blocks. */
#define MR_WORKER_MAX_FREE_REQS 4096u
#define MR_WORKER_MAX_FREE_MBUFS 4096u

int mr_worker_init(mr_worker *w, uint32_t index, mr_shared *shared, mr_gen *gen);
int mr_worker_start(mr_worker *w);
void mr_worker_stop(mr_worker *w);   /* from another thread */
void mr_worker_join(mr_worker *w);
void mr_worker_destroy(mr_worker *w);

/* From the main thread: a server is rejoining; replay what it missed. */
void mr_worker_health_changed(mr_worker *w);
/* From the main thread: switch to sw->gen at the next loop iteration. The
 * worker acknowledges by storing the generation's seq in switched_seq and
 * waking `ack` (the main loop's async). */
void mr_worker_switch_to(mr_worker *w, mr_worker_switch *sw);
/* Free a switch that was never taken (its generation reference is the caller's). */
void mr_worker_switch_free(mr_worker_switch *sw);
/* The generation of a request is done with one of its requests. */
void mr_worker_req_freed(mr_worker *w, mr_gen *gen);
/* From the main thread: begin a graceful shutdown (see main.c). */
void mr_worker_drain(mr_worker *w);
bool mr_worker_drained(mr_worker *w);

#endif
