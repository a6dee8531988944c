/* Layer: cluster (src/cluster/; may use base, dist, config, protocol, net). */
/* router.h: from a key to the server that owns it.
 *
 * Built once from an mr_config and immutable afterwards, so all worker
 * threads share one router without locks. Servers get global ids
 * (0..nservers-1) that index each worker's backend connection table.
 */
#ifndef MEMRELAY_ROUTER_H
#define MEMRELAY_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memrelay/config.h"
#include "memrelay/dist.h"

typedef struct {
    const mr_server_conf *conf;
    uint32_t id;   /* global server id */
    uint32_t pool; /* index of its pool */
} mr_server;

struct mr_router;
struct mr_tls_set;

/* A pool's ring over its live servers, when auto_eject_hosts takes failed
 * servers out (built and swapped in by the health checker). */
typedef struct mr_live_ring {
    mr_dist *dist;
    uint32_t *server_ids; /* global id of each live server, in config order */
    uint32_t n;
    const mr_dist_ops *ops;         /* how to free dist */
    struct mr_live_ring *next_dead; /* graveyard link until it is safe to free */
    double dead_since;
} mr_live_ring;

typedef struct mr_pool {
    const struct mr_router *router; /* the router it belongs to */
    const mr_pool_conf *conf;
    uint32_t index;         /* in mr_router.pools (same as in the config) */
    uint32_t slot;          /* stable across reloads (by name): per-pool counters */
    const mr_dist_ops *ops; /* its distribution */
    mr_dist *dist;          /* NULL when the pool has no servers */
    uint32_t *server_ids;   /* global id of each pool server, config order */
    uint32_t nservers;
} mr_pool;

typedef struct mr_router {
    const mr_config *cfg; /* borrowed: outlives the router */
    mr_pool *pools;
    uint32_t npools;
    mr_server *servers; /* by server id; conf NULL for ids this config does not use */
    uint32_t nservers;  /* 1 + the highest id (the length of servers) */
    /* The one mutable part, by pool: the live ring when servers are ejected
     * (NULL: the full ring). Swapped atomically by the health checker;
     * workers load it once per lookup. */
    mr_live_ring **live;
    /* TLS contexts by pool (tls.h), owned by the generation; NULL when
     * built without (tests, tools). Read when a connection starts. */
    const struct mr_tls_set *tls;
} mr_router;

void mr_live_ring_free(mr_live_ring *ring);

/* Build rings for every pool, servers numbered 0.. in config order.
 * Returns NULL on allocation failure. */
mr_router *mr_router_build(const mr_config *cfg);

/* The id a server gets; UINT32_MAX fails the build. */
typedef uint32_t (*mr_server_id_fn)(void *ctx, const mr_pool_conf *pool, const mr_server_conf *server);

/* The same with ids chosen by `id_of`: mr_router.servers is then indexed by
 * those ids, and entries of ids not in this config have conf == NULL. */
mr_router *mr_router_build_ids(const mr_config *cfg, mr_server_id_fn id_of, void *ctx);
void mr_router_free(mr_router *router);

/* The pool a key goes to when it arrives on listening pool `listen_pool`:
 * the longest matching prefix route, else the listening pool itself. */
const mr_pool *mr_router_pool_for_key(const mr_router *router, uint32_t listen_pool, const char *key,
                                      size_t len);

/* Global server id owning `key` in `pool` (hash tag applied). `rnd` is a
 * random number, used only by the random distribution. */
uint32_t mr_router_server_for_key(const mr_pool *pool, const char *key, size_t len, uint32_t rnd);

/* Does the pool keep more than one copy of a key? */
static inline bool mr_pool_replicated(const mr_pool *pool)
{
    return pool->conf->replicas > 1 || pool->conf->nreplicate_to > 0;
}

/* The servers holding `key` in `pool`, in preference order: its owner
 * first, then the next distinct servers clockwise (pool `replicas` of
 * them), then the owner in each pool of `replicate_to`. Returns how many
 * were written to out (global ids). */
uint32_t mr_router_replicas_for_key(const mr_pool *pool, const char *key, size_t len, uint32_t rnd,
                                    uint32_t *out, uint32_t max);

/* The pool that answers pool-wide commands (version) for a listening pool:
 * itself if it has servers, else its catch-all route's pool. */
const mr_pool *mr_router_default_pool(const mr_router *router, uint32_t listen_pool);

#endif
