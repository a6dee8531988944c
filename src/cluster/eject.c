/* eject.c: rings without the servers that are down (auto_eject_hosts).
 *
 * A pool's live ring is rebuilt from the current states on the main thread
 * and published with one atomic pointer swap; workers look keys up in it
 * without locking. A replaced ring is freed RING_GRACE later, long after
 * any worker's lookup in it has ended.
 */
#include <stdlib.h>

#include "health_internal.h"
#include "memrelay/log.h"

/* Replaced rings are freed this long after the swap: a worker holds a ring
 * pointer only for one lookup, far shorter. */
#define RING_GRACE 5.0

/* Rebuild a pool's live ring from the current states, keeping at least
 * (1 - max_ejected_fraction) of its servers in. */
void mr_health_eject_update(mr_health *h, const mr_router *r, uint32_t pool_index)
{
    const mr_pool *pool = &r->pools[pool_index];
    const mr_pool_conf *pc = pool->conf;
    if (!pc->auto_eject_hosts || pool->nservers < 2)
        return;
    uint32_t max_out = (uint32_t)((uint64_t)pool->nservers * pc->max_ejected_pct / 100);
    uint32_t out = 0;
    mr_dist_server *ds = calloc(pool->nservers, sizeof(*ds));
    uint32_t *ids = calloc(pool->nservers, sizeof(uint32_t));
    if (!ds || !ids) {
        free(ds);
        free(ids);
        return;
    }
    /* Which down servers leave the ring: those already out stay out, then
     * the ones down longest, up to max_out. */
    bool *chosen = calloc(pool->nservers, sizeof(bool));
    if (!chosen) {
        free(ds);
        free(ids);
        return;
    }
    for (uint32_t round = 0; round < 2; round++) {
        while (out < max_out) {
            int64_t best_at = INT64_MAX;
            uint32_t best = UINT32_MAX;
            for (uint32_t i = 0; i < pool->nservers; i++) {
                const mr_server_health *sh = mr_health_server(h, pool->server_ids[i]);
                bool down = __atomic_load_n(&sh->state, __ATOMIC_ACQUIRE) != MR_HEALTH_UP;
                bool was = __atomic_load_n(&sh->ejected, __ATOMIC_RELAXED) != 0;
                int64_t at = __atomic_load_n(&sh->down_at_ms, __ATOMIC_RELAXED);
                if (!down || chosen[i] || (round == 0 && !was))
                    continue;
                if (at < best_at) {
                    best_at = at;
                    best = i;
                }
            }
            if (best == UINT32_MAX)
                break;
            chosen[best] = true;
            out++;
        }
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i < pool->nservers; i++) {
        uint32_t id = pool->server_ids[i];
        mr_server_health *sh = mr_health_server(h, id);
        bool down = __atomic_load_n(&sh->state, __ATOMIC_ACQUIRE) != MR_HEALTH_UP;
        bool eject = chosen[i];
        if (down && !eject && !__atomic_load_n(&sh->ejected, __ATOMIC_RELAXED))
            mr_log_warn(
                "pool %s: server %s stays in the ring (max_ejected_fraction %u%% reached); its requests "
                "fail fast instead",
                pc->name, r->servers[id].conf->spec, pc->max_ejected_pct);
        if (eject)
            continue;
        ds[n].ident = r->servers[id].conf->ident;
        ds[n].weight = r->servers[id].conf->weight;
        ids[n++] = id;
    }
    mr_live_ring *ring = NULL;
    if (out > 0) {
        ring = calloc(1, sizeof(*ring));
        if (ring) {
            ring->n = n;
            ring->ops = pool->ops;
            ring->server_ids = ids;
            ids = NULL;
            ring->dist = n > 1 ? pool->ops->build(ds, n) : NULL;
            if (n > 1 && !ring->dist) {
                free(ring->server_ids);
                free(ring);
                ring = NULL;
            }
        }
    }
    free(ds);
    free(ids);
    mr_live_ring *old = __atomic_exchange_n(&r->live[pool_index], ring, __ATOMIC_ACQ_REL);
    /* The flags change after the ring they describe is in place: whoever
     * sees `ejected` (stats, metrics, a test) finds the ring without it. */
    for (uint32_t i = 0; i < pool->nservers; i++) {
        uint32_t id = pool->server_ids[i];
        bool was =
            __atomic_exchange_n(&mr_health_server(h, id)->ejected, chosen[i] ? 1u : 0u, __ATOMIC_RELAXED);
        if (chosen[i] != was)
            mr_log_warn("pool %s: server %s %s the ring", pc->name, r->servers[id].conf->spec,
                        chosen[i] ? "ejected from" : "back in");
    }
    free(chosen);
    if (old) {
        old->dead_since = ev_now(h->loop);
        old->next_dead = h->graveyard;
        h->graveyard = old;
        if (!ev_is_active(&h->reaper)) {
            ev_timer_set(&h->reaper, RING_GRACE, 0);
            ev_timer_start(h->loop, &h->reaper);
        }
    }
}

static void reaper_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    mr_health *h = t->data;
    mr_live_ring **pp = &h->graveyard;
    ev_tstamp now = ev_now(loop);
    while (*pp) {
        mr_live_ring *ring = *pp;
        if (now - ring->dead_since >= RING_GRACE) {
            *pp = ring->next_dead;
            mr_live_ring_free(ring);
        } else {
            pp = &ring->next_dead;
        }
    }
    if (h->graveyard) {
        ev_timer_set(t, RING_GRACE, 0);
        ev_timer_start(loop, t);
    }
}

void mr_health_eject_start(mr_health *h)
{
    ev_init(&h->reaper, reaper_cb);
    h->reaper.data = h;
}

void mr_health_eject_stop(mr_health *h)
{
    ev_timer_stop(h->loop, &h->reaper);
}

void mr_health_eject_free(mr_health *h)
{
    while (h->graveyard) {
        mr_live_ring *ring = h->graveyard;
        h->graveyard = ring->next_dead;
        mr_live_ring_free(ring);
    }
}
