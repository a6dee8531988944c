/* generation.c: freeing a configuration generation, and `stats config`. */
#include "memrelay/generation.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memrelay/listener.h"
#include "memrelay/tls.h"

bool mr_gen_same_server(const mr_server_conf *a, const mr_server_conf *b)
{
    return a->addr.is_unix == b->addr.is_unix && a->addr.port == b->addr.port &&
           strcmp(a->addr.host, b->addr.host) == 0;
}

/* Would a key land on the same server in both pools? The same servers in
 * the same order (by address and ketama identity: a server whose
 * connection count changed gets a new id but holds the same keys) with the
 * same weights, hash and distribution make the same ring. */
static bool same_ring(const mr_pool *a, const mr_pool *b)
{
    const mr_pool_conf *ca = a->conf, *cb = b->conf;
    if (a->nservers != b->nservers || ca->hash != cb->hash || ca->distribution != cb->distribution ||
        ca->has_hash_tag != cb->has_hash_tag ||
        (ca->has_hash_tag && memcmp(ca->hash_tag, cb->hash_tag, sizeof(ca->hash_tag)) != 0))
        return false;
    for (uint32_t i = 0; i < a->nservers; i++) {
        const mr_server_conf *sa = &ca->servers[i], *sb = &cb->servers[i];
        if (!mr_gen_same_server(sa, sb) || sa->weight != sb->weight || strcmp(sa->ident, sb->ident) != 0)
            return false;
    }
    return true;
}

int mr_gen_warm_open(mr_gen *gen, mr_gen *prev, double now)
{
    if (!prev)
        return 0;
    const mr_router *nr = gen->router, *pr = prev->router;
    mr_gen_warm *warm = calloc(nr->npools ? nr->npools : 1, sizeof(*warm));
    if (!warm)
        return -1;
    int opened = 0, n = 0;
    double until = 0, prev_until = mr_gen_warm_until(prev);
    for (uint32_t i = 0; i < nr->npools; i++) {
        const mr_pool *np = &nr->pools[i];
        long j = mr_config_pool_index(prev->cfg, np->conf->name);
        /* A random pool has no owner to warm from (docs/operations.md). */
        if (j < 0 || np->conf->warmup_window_ms == 0 || np->conf->distribution == MR_DIST_RANDOM)
            continue;
        const mr_pool *pp = &pr->pools[j];
        if (pp->nservers == 0 || np->nservers == 0)
            continue;
        const mr_gen_warm *open_before =
            prev->warm && prev->warm[j].prev && prev->warm[j].until > now && prev_until > now ? &prev->warm[j]
                                                                                              : NULL;
        if (same_ring(np, pp)) {
            /* Nothing moved now: an open window of the pool carries on. */
            if (open_before) {
                warm[i] = *open_before;
                __atomic_add_fetch(&warm[i].from->refs, 1, __ATOMIC_ACQ_REL);
                if (warm[i].older.prev && warm[i].older.until > now)
                    __atomic_add_fetch(&warm[i].older.from->refs, 1, __ATOMIC_ACQ_REL);
                else
                    warm[i].older = (mr_gen_warm_ring){0};
            }
        } else {
            warm[i].prev = pp;
            warm[i].from = prev;
            warm[i].until = now + np->conf->warmup_window_ms / 1000.0;
            __atomic_add_fetch(&prev->refs, 1, __ATOMIC_ACQ_REL);
            if (open_before) { /* the window this reload interrupts */
                warm[i].older.prev = open_before->prev;
                warm[i].older.from = open_before->from;
                warm[i].older.until = open_before->until;
                __atomic_add_fetch(&warm[i].older.from->refs, 1, __ATOMIC_ACQ_REL);
            }
            opened++;
        }
        if (warm[i].prev) {
            n++;
            if (warm[i].until > until)
                until = warm[i].until;
        }
    }
    if (n == 0) {
        free(warm);
        return 0;
    }
    gen->warm = warm;
    gen->warm_until = until;
    return opened;
}

void mr_gen_warm_end(mr_gen *gen)
{
    if (!gen->warm)
        return;
    /* Workers test warm_until before they read warm: closing it first
     * keeps a late reader off the pools being freed. */
    double closed = 0;
    __atomic_store(&gen->warm_until, &closed, __ATOMIC_RELEASE);
    for (size_t i = 0; i < gen->cfg->npools; i++) {
        mr_gen *from = gen->warm[i].from, *older = gen->warm[i].older.from;
        gen->warm[i].prev = gen->warm[i].older.prev = NULL;
        gen->warm[i].from = gen->warm[i].older.from = NULL;
        if (from)
            mr_gen_release(from);
        if (older)
            mr_gen_release(older);
    }
}

double mr_gen_warm_left(const mr_gen *gen, size_t pool, double now)
{
    double until = mr_gen_warm_until(gen);
    if (!gen->warm || until <= now || pool >= gen->cfg->npools || !gen->warm[pool].prev)
        return 0;
    double left = gen->warm[pool].until - now;
    return left > 0 ? left : 0;
}

void mr_gen_close_listeners(mr_gen *gen)
{
    for (size_t i = 0; gen->listen_fds && i < gen->cfg->npools; i++)
        if (gen->listen_fds[i] >= 0) {
            mr_listener_close(&gen->cfg->pools[i], gen->listen_fds[i]);
            gen->listen_fds[i] = -1;
        }
    for (size_t i = 0; gen->tls_listen_fds && i < gen->cfg->npools; i++)
        if (gen->tls_listen_fds[i] >= 0) {
            mr_listener_close_at(&gen->cfg->pools[i].tls_listen, gen->tls_listen_fds[i]);
            gen->tls_listen_fds[i] = -1;
        }
}

void mr_gen_free(mr_gen *gen)
{
    if (!gen)
        return;
    mr_gen_warm_end(gen);
    free(gen->warm);
    mr_gen_close_listeners(gen);
    free(gen->listen_fds);
    free(gen->tls_listen_fds);
    mr_tls_set_free(gen->tls);
    mr_router_free(gen->router);
    mr_config_free(gen->cfg);
    free(gen);
}

bool mr_gen_release(mr_gen *gen)
{
    if (!gen || __atomic_sub_fetch(&gen->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return false;
    mr_gen_free(gen);
    return true;
}

int mr_reload_status_stats(mr_reload_status *st, char *buf, size_t cap)
{
    pthread_mutex_lock(&st->lock);
    int n = snprintf(buf, cap,
                     "STAT config_file %s\r\n"
                     "STAT config_hash %s\r\n"
                     "STAT config_generation %" PRIu64 "\r\n"
                     "STAT config_loaded_at_ms %" PRId64 "\r\n"
                     "STAT reloads %" PRIu64 "\r\n"
                     "STAT reload_failures %" PRIu64 "\r\n"
                     "STAT last_reload_attempt_ms %" PRId64 "\r\n"
                     "STAT last_reload_failure_ms %" PRId64 "\r\n"
                     "STAT last_reload_error %s\r\n"
                     "END\r\n",
                     st->path, st->hash, st->seq, st->loaded_at_ms, st->reloads, st->failures,
                     st->last_attempt_ms, st->last_failure_ms, st->last_error[0] ? st->last_error : "none");
    pthread_mutex_unlock(&st->lock);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}
