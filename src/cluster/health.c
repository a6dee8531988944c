/* health.c: the state machine of every server: passive failure counting,
 * when to probe, and the rejoin barrier. The registry of servers
 * (registry.c), ring ejection (eject.c) and the probe itself (probe.c)
 * are in their own files.
 *
 * States: UP --(refused/reset at once, or server_failure_limit timeouts or
 * bad replies in a row)--> DOWN --(probe_success good probes in a row)-->
 * REJOINING --(every worker has queued its replay of missed writes)--> UP.
 * Workers flip UP/REJOINING to DOWN with a compare-and-swap, so each
 * transition is logged once; everything else happens on the main thread.
 */
#include "health_internal.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "memrelay/clock.h"
#include "memrelay/log.h"
#include "memrelay/tls.h"

/* Wait between two good probes of a server that is coming back. */
#define PROBE_CONFIRM_GAP 0.25

static const char *const state_names[] = {"up", "down", "rejoining"};

const char *mr_health_state_name(uint32_t state)
{
    return state < 3 ? state_names[state] : "?";
}

/* Main thread: is the server in the current config? */
static bool in_config(const mr_router *r, uint32_t server)
{
    return server < r->nservers && r->servers[server].conf;
}

/* Main thread: its pool's settings in the current config. */
static const mr_pool_conf *pool_conf(const mr_health *h, uint32_t server)
{
    return in_config(h->router, server) ? &h->router->cfg->pools[h->router->servers[server].pool] : NULL;
}

/* ---- worker side ---- */

void mr_health_failure(mr_health *h, uint32_t server, int err, bool immediate)
{
    mr_server_health *sh = mr_health_server(h, server);
    uint32_t n = __atomic_add_fetch(&sh->failures, 1, __ATOMIC_RELAXED);
    if (!immediate && n < __atomic_load_n(&sh->failure_limit, __ATOMIC_RELAXED))
        return;
    uint32_t state = __atomic_load_n(&sh->state, __ATOMIC_ACQUIRE);
    if (state == MR_HEALTH_DOWN)
        return;
    if (!__atomic_compare_exchange_n(&sh->state, &state, MR_HEALTH_DOWN, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE))
        return; /* another worker got there first and logs it */
    __atomic_store_n(&sh->last_error, (uint32_t)err, __ATOMIC_RELAXED);
    __atomic_store_n(&sh->down_at_ms, mr_wall_ms(), __ATOMIC_RELAXED);
    __atomic_add_fetch(&sh->downs, 1, __ATOMIC_RELAXED);
    const char *why = mr_error_reply((mr_err)err);
    mr_log_warn("server %s (pool %s) is down: %.*s%s", sh->name, sh->pool, (int)strlen(why) - 2, why,
                immediate ? "" : " (failure limit reached)");
    ev_async_send(h->loop, &h->wake);
}

void mr_health_rejoin_ack(mr_health *h, uint32_t server)
{
    mr_server_health *sh = mr_health_server(h, server);
    if (__atomic_sub_fetch(&sh->rejoin_pending, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    uint32_t expect = MR_HEALTH_REJOINING;
    if (__atomic_compare_exchange_n(&sh->state, &expect, MR_HEALTH_UP, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&sh->failures, 0, __ATOMIC_RELAXED);
        __atomic_add_fetch(&sh->rejoins, 1, __ATOMIC_RELAXED);
        mr_log_warn("server %s is back in service (missed writes replayed)", sh->name);
        ev_async_send(h->loop, &h->wake);
    }
}

void mr_health_quarantine(mr_health *h, uint32_t server, uint32_t ms)
{
    int64_t until = mr_wall_ms() + ms;
    mr_server_health *sh = mr_health_server(h, server);
    __atomic_store_n(&sh->quarantine_until_ms, until, __ATOMIC_RELAXED);
    mr_log_warn(
        "server %s: quarantined for %u ms (its replay queue overflowed): writes only, reads elsewhere",
        sh->name, ms);
}

bool mr_health_quarantined(const mr_health *h, uint32_t server)
{
    int64_t until = __atomic_load_n(&mr_health_server(h, server)->quarantine_until_ms, __ATOMIC_RELAXED);
    return until != 0 && mr_wall_ms() < until;
}

/* ---- probes (main thread) ---- */

static void probe_timer_cb(struct ev_loop *loop, ev_timer *t, int revents);

static void schedule_probe(mr_server_health *sh, ev_tstamp after)
{
    mr_health *h = sh->health;
    ev_timer_stop(h->loop, &sh->timer);
    ev_timer_set(&sh->timer, after, 0);
    ev_timer_start(h->loop, &sh->timer);
    __atomic_store_n(&sh->next_probe_ms, mr_wall_ms() + (int64_t)(after * 1000), __ATOMIC_RELAXED);
}

static void probe_close(mr_server_health *sh)
{
    mr_probe_close(&sh->probe);
    sh->probing = false;
}

/* Jitter of +-10% keeps many servers from being probed in lockstep. */
static ev_tstamp jitter(ev_tstamp t)
{
    return t * (0.9 + 0.2 * ((double)rand() / RAND_MAX));
}

static void start_rejoin(mr_server_health *sh)
{
    mr_health *h = sh->health;
    __atomic_store_n(&sh->rejoin_pending, (uint32_t)h->nworkers, __ATOMIC_RELAXED);
    __atomic_add_fetch(&sh->rejoin_gen, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&sh->state, MR_HEALTH_REJOINING, __ATOMIC_RELEASE);
    __atomic_store_n(&sh->next_probe_ms, 0, __ATOMIC_RELAXED);
    mr_log_warn("server %s answered %u probes: rejoining (replaying missed writes)", sh->name, sh->successes);
    h->hooks.rejoin_started(h->hooks.ctx);
}

static void probe_done(mr_server_health *sh, bool ok)
{
    mr_health *h = sh->health;
    const mr_pool_conf *pc = pool_conf(h, sh->id);
    bool idle = sh->idle_probe;
    probe_close(sh);
    if (!pc)
        return; /* a reload removed the server while its probe was out */
    __atomic_add_fetch(&sh->probes, 1, __ATOMIC_RELAXED);
    if (!ok)
        __atomic_add_fetch(&sh->probe_failures, 1, __ATOMIC_RELAXED);
    if (idle) {
        /* A live server that fails its idle probe is down now, before a
         * client request finds out the hard way. */
        /* A refused connection is as conclusive as it is for a request; a
         * probe that got no answer counts like a request timeout. */
        if (!ok)
            mr_health_failure(h, sh->id, sh->probe.error, sh->probe.error != MR_ERR_TIMEOUT);
        /* Marked down meanwhile (by this probe or a worker, whose wake-up
         * skipped us because a probe was in flight): start its probes. */
        if (__atomic_load_n(&sh->state, __ATOMIC_ACQUIRE) == MR_HEALTH_DOWN && !ev_is_active(&sh->timer)) {
            sh->successes = 0;
            sh->backoff = pc->server_retry_timeout_ms / 1000.0;
            schedule_probe(sh, sh->backoff);
        }
        return;
    }
    if (__atomic_load_n(&sh->state, __ATOMIC_ACQUIRE) != MR_HEALTH_DOWN)
        return;
    if (ok) {
        if (++sh->successes >= pc->probe_success) {
            start_rejoin(sh);
            return;
        }
        schedule_probe(sh, PROBE_CONFIRM_GAP);
        return;
    }
    sh->successes = 0;
    sh->backoff *= 1.5;
    if (sh->backoff > pc->probe_backoff_max_ms / 1000.0)
        sh->backoff = pc->probe_backoff_max_ms / 1000.0;
    schedule_probe(sh, jitter(sh->backoff));
}

const mr_pool_conf *mr_health_pool_conf(const mr_health *h, uint32_t server)
{
    return pool_conf(h, server);
}

/* A down server given by name is looked up again first: it may have come
 * back somewhere else (a pod restarted with a new IP). The probe follows the
 * answer (mr_health_probe_connect), or the last good address if the lookup
 * failed. A live server's idle probe uses the address it has. */
static void probe_start(mr_server_health *sh, bool idle)
{
    sh->idle_probe = idle;
    sh->probing = true;
    if (sh->host && !idle && sh->health->dns) {
        mr_health_resolve(sh, true);
        return;
    }
    mr_health_probe_connect(sh);
}

void mr_health_probe_connect(mr_server_health *sh)
{
    mr_health *h = sh->health;
    const mr_pool_conf *pc = pool_conf(h, sh->id);
    mr_sockaddr addr;
    uint32_t version;
    if (!pc) {
        probe_done(sh, false); /* removed by a reload meanwhile */
        return;
    }
    if (!mr_health_addr(h, sh->id, &addr, &version, false)) {
        sh->probe.error = MR_ERR_UNRESOLVED;
        probe_done(sh, false);
        return;
    }
    if (mr_probe_start(&sh->probe, h->loop, &addr) < 0) {
        probe_done(sh, false);
        return;
    }
    /* The probe gets the pool's request timeout to answer. */
    ev_timer_stop(h->loop, &sh->timer);
    ev_timer_set(&sh->timer, pc->timeout_ms / 1000.0, 0);
    ev_timer_start(h->loop, &sh->timer);
}

/* ---- what the probe asks of the state machine (probe.h) ---- */

static mr_server_health *server_of(const mr_probe *p)
{
    return (mr_server_health *)((char *)p - offsetof(mr_server_health, probe));
}

static int probe_tls_start(mr_probe *p)
{
    mr_server_health *sh = server_of(p);
    const mr_router *r = sh->health->router;
    return mr_conn_tls_connect(&p->conn, r->tls, r->servers[sh->id].pool, pool_conf(sh->health, sh->id),
                               r->servers[sh->id].conf);
}

static const char *probe_name(const mr_probe *p)
{
    mr_server_health *sh = server_of(p);
    return sh->health->router->servers[sh->id].conf->spec;
}

static void probe_finished(mr_probe *p, bool ok)
{
    mr_server_health *sh = server_of(p);
    ev_timer_stop(sh->health->loop, &sh->timer);
    probe_done(sh, ok);
}

static const mr_probe_ops probe_ops = {probe_tls_start, probe_name, probe_finished};

static void probe_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    mr_server_health *sh = t->data;
    if (sh->probing) { /* the probe in flight took too long */
        sh->probe.error = MR_ERR_TIMEOUT;
        probe_done(sh, false);
        return;
    }
    if (__atomic_load_n(&sh->state, __ATOMIC_ACQUIRE) == MR_HEALTH_DOWN)
        probe_start(sh, false);
}

/* Start probing newly down servers, fix rings. */
static void check_states(mr_health *h)
{
    for (uint32_t i = 0; i < h->router->nservers; i++) {
        if (!in_config(h->router, i))
            continue;
        mr_server_health *sh = mr_health_server(h, i);
        if (__atomic_exchange_n(&sh->resolve_wanted, 0, __ATOMIC_ACQ_REL))
            mr_health_resolve(sh, false); /* a worker reconnects to it */
        uint32_t state = __atomic_load_n(&sh->state, __ATOMIC_ACQUIRE);
        if (state == MR_HEALTH_DOWN && !sh->probing && !ev_is_active(&sh->timer)) {
            const mr_pool_conf *pc = pool_conf(h, i);
            sh->successes = 0;
            sh->backoff = pc->server_retry_timeout_ms / 1000.0;
            schedule_probe(sh, sh->backoff);
        }
    }
    for (uint32_t p = 0; p < h->router->npools; p++)
        mr_health_eject_update(h, h->router, p);
}

/* Workers changed a state. */
static void wake_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    check_states(a->data);
}

static void idle_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    mr_health *h = t->data;
    for (uint32_t i = 0; i < h->router->nservers; i++) {
        mr_server_health *sh = mr_health_server(h, i);
        const mr_pool_conf *pc = pool_conf(h, i);
        if (pc && pc->probe_interval_ms && !sh->probing &&
            __atomic_load_n(&sh->state, __ATOMIC_ACQUIRE) == MR_HEALTH_UP)
            probe_start(sh, true);
    }
}

mr_health *mr_health_create(void)
{
    mr_health *h = calloc(1, sizeof(mr_health));
    if (h) {
        h->probe_ops = &probe_ops;
        h->probe_timer_cb = probe_timer_cb;
    }
    return h;
}

void mr_health_prepare(mr_health *h, const mr_router *router)
{
    if (!h->loop)
        return; /* the first config: nothing is down yet */
    for (uint32_t p = 0; p < router->npools; p++)
        mr_health_eject_update(h, router, p);
}

/* Idle probes run at the shortest probe_interval of any pool. */
static void set_idle_timer(mr_health *h)
{
    uint32_t interval = 0;
    for (size_t p = 0; p < h->router->cfg->npools; p++) {
        uint32_t v = h->router->cfg->pools[p].probe_interval_ms;
        if (v && (!interval || v < interval))
            interval = v;
    }
    ev_timer_stop(h->loop, &h->idle_timer);
    if (interval) {
        ev_timer_set(&h->idle_timer, interval / 1000.0, interval / 1000.0);
        ev_timer_start(h->loop, &h->idle_timer);
    }
}

void mr_health_use(mr_health *h, const mr_router *router)
{
    h->router = router;
    if (!h->loop)
        return;
    for (uint32_t id = 0; id < h->nids; id++) {
        mr_server_health *sh = mr_health_server(h, id);
        if (in_config(router, id)) {
            const mr_pool_conf *pc = &router->cfg->pools[router->servers[id].pool];
            __atomic_store_n(&sh->failure_limit, pc->server_failure_limit, __ATOMIC_RELAXED);
            mr_health_resolve_follow(sh);
            continue;
        }
        ev_timer_stop(h->loop, &sh->timer);
        probe_close(sh);
        mr_health_resolve_stop(sh);
        __atomic_store_n(&sh->next_probe_ms, 0, __ATOMIC_RELAXED);
        /* A rejoin it was in cannot complete (workers ack only servers of
         * their config): back to down, so if it returns it is probed and
         * rejoins afresh. */
        uint32_t rejoining = MR_HEALTH_REJOINING;
        __atomic_compare_exchange_n(&sh->state, &rejoining, MR_HEALTH_DOWN, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE);
    }
    check_states(h);
    set_idle_timer(h);
}

void mr_health_start(mr_health *h, struct ev_loop *loop, int nworkers, const mr_health_hooks *hooks)
{
    h->loop = loop;
    h->hooks = *hooks;
    h->nworkers = nworkers;
    ev_async_init(&h->wake, wake_cb);
    h->wake.data = h;
    ev_async_start(loop, &h->wake);
    mr_health_eject_start(h);
    ev_init(&h->idle_timer, idle_cb);
    h->idle_timer.data = h;
    set_idle_timer(h);
}

void mr_health_stop(mr_health *h)
{
    if (!h || !h->loop)
        return;
    for (uint32_t i = 0; i < h->nids; i++) {
        ev_timer_stop(h->loop, &mr_health_server(h, i)->timer);
        probe_close(mr_health_server(h, i));
        mr_health_resolve_stop(mr_health_server(h, i));
    }
    ev_async_stop(h->loop, &h->wake);
    ev_timer_stop(h->loop, &h->idle_timer);
    mr_health_eject_stop(h);
}

void mr_health_free(mr_health *h)
{
    if (!h)
        return;
    mr_health_eject_free(h);
    mr_health_registry_free(h);
    free(h);
}
