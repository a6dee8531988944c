/* router.c: prefix routes, key hashing and the distributions, glued. */
#include "memrelay/router.h"

#include <stdlib.h>
#include <string.h>

#include "memrelay/hash.h"
#include "memrelay/limits.h"

/* Ids default to config order (tests, tools); the process assigns stable
 * ids from its server registry instead (health.c), so a server keeps its id,
 * connections and health across reloads. */
static uint32_t sequential_id(void *ctx, const mr_pool_conf *pool, const mr_server_conf *server)
{
    (void)pool;
    (void)server;
    return (*(uint32_t *)ctx)++;
}

mr_router *mr_router_build(const mr_config *cfg)
{
    uint32_t next = 0;
    return mr_router_build_ids(cfg, sequential_id, &next);
}

mr_router *mr_router_build_ids(const mr_config *cfg, mr_server_id_fn id_of, void *ctx)
{
    mr_router *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->cfg = cfg;
    r->npools = (uint32_t)cfg->npools;
    r->pools = calloc(cfg->npools ? cfg->npools : 1, sizeof(*r->pools));
    r->live = calloc(cfg->npools ? cfg->npools : 1, sizeof(*r->live));
    if (!r->pools || !r->live)
        goto fail;

    /* Ids first: the server table is indexed by id, holes left empty. */
    uint32_t limit = 0;
    for (uint32_t p = 0; p < r->npools; p++) {
        const mr_pool_conf *pc = &cfg->pools[p];
        mr_pool *pool = &r->pools[p];
        pool->nservers = (uint32_t)pc->nservers;
        if (pc->nservers == 0)
            continue;
        if ((pool->server_ids = calloc(pc->nservers, sizeof(uint32_t))) == NULL)
            goto fail;
        for (size_t s = 0; s < pc->nservers; s++) {
            uint32_t id = id_of(ctx, pc, &pc->servers[s]);
            if (id == UINT32_MAX)
                goto fail;
            pool->server_ids[s] = id;
            if (id + 1 > limit)
                limit = id + 1;
        }
    }
    r->servers = calloc(limit ? limit : 1, sizeof(*r->servers));
    if (!r->servers)
        goto fail;
    r->nservers = limit;

    for (uint32_t p = 0; p < r->npools; p++) {
        const mr_pool_conf *pc = &cfg->pools[p];
        mr_pool *pool = &r->pools[p];
        pool->router = r;
        pool->conf = pc;
        pool->index = p;
        pool->slot = p;
        pool->ops = mr_dist_ops_for(pc->distribution);
        if (pc->nservers == 0)
            continue;
        mr_dist_server *ds = calloc(pc->nservers, sizeof(*ds));
        if (!ds)
            goto fail;
        for (size_t s = 0; s < pc->nservers; s++) {
            mr_server *srv = &r->servers[pool->server_ids[s]];
            srv->conf = &pc->servers[s];
            srv->id = pool->server_ids[s];
            srv->pool = p;
            ds[s].ident = pc->servers[s].ident;
            ds[s].weight = pc->servers[s].weight;
        }
        pool->dist = pool->ops->build(ds, pc->nservers);
        free(ds);
        if (!pool->dist)
            goto fail;
    }
    return r;
fail:
    mr_router_free(r);
    return NULL;
}

void mr_live_ring_free(mr_live_ring *ring)
{
    if (ring->dist)
        ring->ops->destroy(ring->dist);
    free(ring->server_ids);
    free(ring);
}

void mr_router_free(mr_router *r)
{
    if (!r)
        return;
    for (uint32_t p = 0; p < r->npools && r->live; p++)
        if (r->live[p])
            mr_live_ring_free(r->live[p]);
    for (uint32_t p = 0; p < r->npools && r->pools; p++) {
        if (r->pools[p].dist)
            r->pools[p].ops->destroy(r->pools[p].dist);
        free(r->pools[p].server_ids);
    }
    free(r->pools);
    free(r->servers);
    free(r->live);
    free(r);
}

const mr_pool *mr_router_pool_for_key(const mr_router *r, uint32_t listen_pool, const char *key, size_t len)
{
    const mr_pool_conf *pc = &r->cfg->pools[listen_pool];
    /* Routes are sorted longest prefix first, so the first match wins. */
    for (size_t i = 0; i < pc->nroutes; i++) {
        const mr_route_conf *route = &pc->routes[i];
        if (route->prefix_len <= len && memcmp(route->prefix, key, route->prefix_len) == 0)
            return &r->pools[route->pool_index];
    }
    return &r->pools[listen_pool];
}

/* The 32-bit point a key hashes to in a pool (hash tag applied); the random
 * distribution uses the caller's random number instead. */
static uint32_t key_hash(const mr_pool *pool, const char *key, size_t len, uint32_t rnd)
{
    if (pool->conf->distribution == MR_DIST_RANDOM)
        return rnd;
    const char *span = key;
    size_t span_len = len;
    if (pool->conf->has_hash_tag)
        mr_hash_tag_span(key, len, pool->conf->hash_tag, &span, &span_len);
    return mr_hash(pool->conf->hash, span, span_len);
}

static const mr_live_ring *live_ring(const mr_pool *pool)
{
    if (!pool->conf->auto_eject_hosts)
        return NULL;
    const mr_live_ring *ring = __atomic_load_n(&pool->router->live[pool->index], __ATOMIC_ACQUIRE);
    return ring && ring->n > 0 ? ring : NULL;
}

uint32_t mr_router_server_for_key(const mr_pool *pool, const char *key, size_t len, uint32_t rnd)
{
    if (pool->nservers == 1)
        return pool->server_ids[0];
    const mr_live_ring *ring = live_ring(pool);
    uint32_t h = key_hash(pool, key, len, rnd);
    if (ring)
        return ring->server_ids[ring->n == 1 ? 0 : pool->ops->pick(ring->dist, h)];
    return pool->server_ids[pool->ops->pick(pool->dist, h)];
}

static uint32_t own_replicas(const mr_pool *pool, const char *key, size_t len, uint32_t rnd, uint32_t *out,
                             uint32_t want);

uint32_t mr_router_replicas_for_key(const mr_pool *pool, const char *key, size_t len, uint32_t rnd,
                                    uint32_t *out, uint32_t max)
{
    uint32_t want = pool->conf->replicas < max ? pool->conf->replicas : max;
    if (want == 0)
        return 0;
    uint32_t n = 0;
    if (pool->nservers == 1 || want == 1) {
        out[n++] = mr_router_server_for_key(pool, key, len, rnd);
    } else {
        n = own_replicas(pool, key, len, rnd, out, want);
    }
    /* Cross-pool copies: the key's owner in each replicate_to pool. */
    for (size_t i = 0; i < pool->conf->nreplicate_to && n < max; i++) {
        const mr_pool *other = &pool->router->pools[pool->conf->replicate_to[i]];
        out[n++] = mr_router_server_for_key(other, key, len, rnd);
    }
    return n;
}

static uint32_t own_replicas(const mr_pool *pool, const char *key, size_t len, uint32_t rnd, uint32_t *out,
                             uint32_t want)
{
    uint32_t h = key_hash(pool, key, len, rnd);
    uint32_t idx[MR_MAX_REPLICAS];
    const mr_live_ring *ring = live_ring(pool);
    const mr_dist *dist = ring ? ring->dist : pool->dist;
    const uint32_t *ids = ring ? ring->server_ids : pool->server_ids;
    if (ring && ring->n == 1) {
        out[0] = ids[0];
        return 1;
    }
    size_t n = pool->ops->successors(dist, h, idx, want < MR_MAX_REPLICAS ? want : MR_MAX_REPLICAS);
    for (size_t i = 0; i < n; i++)
        out[i] = ids[idx[i]];
    return (uint32_t)n;
}

const mr_pool *mr_router_default_pool(const mr_router *r, uint32_t listen_pool)
{
    const mr_pool *own = &r->pools[listen_pool];
    if (own->nservers > 0)
        return own;
    return mr_router_pool_for_key(r, listen_pool, "", 0);
}
