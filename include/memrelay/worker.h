/* Layer: core (src/core/; may use base, dist, config, protocol, net, cluster). */
/* worker.h: the per-thread context every data-path file reads.
 *
 * A worker is a thread with its own libev loop, clients and backend
 * connections; this header has only the data it shares with the data path
 * (its loop, buffer and request pools, backends, counters, generation, the
 * hooks of the layers above). It declares no function: running workers is
 * worker_thread.h's (proxy, worker.c), so the data path (core) can read its
 * worker without depending on the layer above it. */
#ifndef MEMRELAY_WORKER_H
#define MEMRELAY_WORKER_H

#include <pthread.h>
#include <stdint.h>

#include <ev.h>

#include "memrelay/backend.h"
#include "memrelay/generation.h"
#include "memrelay/health.h"
#include "memrelay/key_locks.h"
#include "memrelay/mbuf.h"
#include "memrelay/membudget.h"
#include "memrelay/request.h"
#include "memrelay/router.h"
#include "memrelay/stats.h"

struct mr_client;
struct mr_worker_switch;
struct mr_gen_hold;

/* Write generations of replicated keys, by key hash (collisions only cost
 * an extra read-back). */
#define MR_WRITE_GEN_SLOTS 4096u

/* Everything the workers share for the life of the process. The config and
 * what is built from it come in generations (generation.h): each worker
 * follows `mr_worker.gen`. */
typedef struct {
    ev_tstamp started; /* process start (wall clock) */
    int nworkers;
    struct mr_health *health; /* server states and the server registry (atomics), shared */
    uint32_t pool_clients
        [MR_MAX_POOL_SLOTS];    /* open client connections by pool slot (atomics): client_connections */
    mr_reload_status *reload;   /* `stats config` */
    struct ev_loop *main_loop;  /* the main thread's: reload and shutdown control */
    ev_async *switched;         /* on main_loop: a worker finished a switch or released a generation */
    const mr_core_hooks *hooks; /* what core calls up into (request.h); set by main.c before any worker */
    const struct mr_discovery
        *discovery;          /* pools whose servers come from DNS (discovery.h): their counters */
    mr_key_locks *key_locks; /* replicated writes: one worker per key stripe at a time (key_locks.h);
                                       NULL with one worker */
    mr_key_writes warm_writes[MR_KEY_STRIPES]; /* writes to moved keys in a warm-up window (key_locks.h) */
    mr_membudget *membudget; /* memory_limit: bytes buffered for clients, all workers (membudget.h) */
} mr_shared;

typedef struct mr_worker {
    uint32_t index;
    pthread_t thread;
    struct ev_loop *loop;
    mr_shared *shared;
    const mr_core_hooks *hooks;           /* shared->hooks, one load nearer */
    mr_gen *gen;                          /* the config this worker serves new requests with */
    uint32_t gen_reqs;                    /* requests started under gen and not yet freed */
    struct mr_gen_hold *holds;            /* older generations still needed (worker_thread.h) */
    bool holds_done;                      /* one has no request left: release it at the next flush */
    struct mr_worker_switch *next_switch; /* handed over by the main thread; see mr_worker_switch_to */
    ev_async reload;                      /* a new generation is ready */
    uint32_t switched_seq;                /* atomic: the generation this worker has switched to */
    ev_async stop;                        /* another thread asks this loop to end */
    ev_prepare flush;                     /* writes everything made dirty this iteration */
    ev_async health_changed;              /* the health checker started a rejoin */
    ev_async drain;                       /* stop accepting and reading; finish what was read */
    bool draining;
    uint32_t drained;      /* atomic: set once draining and no client is left */
    ev_io *accept_io;      /* by pool index of gen: `listen`, then npools more: `tls_listen` */
    mr_backend **backends; /* by server id; NULL for ids this worker has no backend for */
    uint32_t nbackends;
    mr_mbuf_pool mbufs;
    mr_req *free_reqs; /* bounded request free list */
    uint32_t nfree_reqs;
    uint32_t low_free_reqs;    /* fewest free since the last trim tick: that many went unused */
    uint64_t reqs_freed_bytes; /* requests given back to malloc since the last trim tick */
    ev_timer trim;             /* gives memory unused since the last tick back (after a spike) */
    struct mr_client *dirty_clients;
    mr_bconn *dirty_bconns;
    struct mr_client *clients; /* all open clients */
    uint32_t next_client_id;
    uint32_t rng;          /* xorshift state for the random distribution (rng.h) */
    uint32_t *server_slot; /* dispatch scratch, by server id: message index or UINT32_MAX */
    mr_stats stats;
    mr_pool_stats pool_stats[MR_MAX_POOL_SLOTS]; /* by pool slot (stable across reloads) */
    uint32_t write_gen[MR_WRITE_GEN_SLOTS]; /* bumped by every replicated write a key gets on this worker */
    mr_key_waits key_waits;                 /* its holds of key stripes and its requests waiting for one */
    ev_async key_wake;                      /* a key stripe it waits for was let go (key_locks.h) */
    struct mr_req *warm_held;               /* writes holding their reply for warm copies (warmup.c) */
    ev_timer warm_poll;                     /* while warm_held is not empty: looks at their copies again */
    mr_memcredit mem;                       /* its clients' share of memory_limit (membudget.h) */
    ev_async mem_wake;                      /* another worker gave budget back: retry mem_wait_head */
    struct mr_client *mem_wait_head;        /* clients not read until budget frees, oldest first */
    struct mr_client *mem_wait_tail;
} mr_worker;

/* Free-list bounds per worker. They are sized for the working set of a busy
 * worker (a few thousand requests in flight, each holding a request and a
 * share of an input block), so steady load never round-trips blocks through
 * malloc; what a spike leaves behind unused is freed by the trim tick
 * (worker.c), so the bound only caps what can sit idle for ~10-20 s:
 * 4,096 x 16 KiB = 64 MiB of blocks. */
#define MR_WORKER_MAX_FREE_REQS 4096u
#define MR_WORKER_MAX_FREE_MBUFS 4096u

#endif
