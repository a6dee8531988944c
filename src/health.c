/* health.c: server states, passive failure counting, active probes,
 * ejection from the ring, and the rejoin barrier.
 *
 * States: UP --(refused/reset at once, or server_failure_limit timeouts or
 * bad replies in a row)--> DOWN --(probe_success good probes in a row)-->
 * REJOINING --(every worker has queued its replay of missed writes)--> UP.
 * Workers flip UP/REJOINING to DOWN with a compare-and-swap, so each
 * transition is logged once; everything else happens on the main thread.
 */
#include "memrelay/health.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "memrelay/clock.h"
#include "memrelay/log.h"
#include "memrelay/net.h"
#include "memrelay/tls.h"

/* Wait between two good probes of a server that is coming back. */
#define PROBE_CONFIRM_GAP 0.25
/* Replaced rings are freed this long after the swap: a worker holds a ring
 * pointer only for one lookup, far shorter. */
#define RING_GRACE 5.0

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
    if (!__atomic_compare_exchange_n(&sh->state, &state, MR_HEALTH_DOWN, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return; /* another worker got there first and logs it */
    __atomic_store_n(&sh->last_error, (uint32_t)err, __ATOMIC_RELAXED);
    __atomic_store_n(&sh->down_at_ms, mr_wall_ms(), __ATOMIC_RELAXED);
    __atomic_add_fetch(&sh->downs, 1, __ATOMIC_RELAXED);
    const char *why = mr_error_reply((mr_err)err);
    mr_log_warn("server %s (pool %s) is down: %.*s%s", sh->name, sh->pool, (int)strlen(why) - 2, why, immediate ? "" : " (failure limit reached)");
    ev_async_send(h->loop, &h->wake);
}

void mr_health_rejoin_ack(mr_health *h, uint32_t server)
{
    mr_server_health *sh = mr_health_server(h, server);
    if (__atomic_sub_fetch(&sh->rejoin_pending, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    uint32_t expect = MR_HEALTH_REJOINING;
    if (__atomic_compare_exchange_n(&sh->state, &expect, MR_HEALTH_UP, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
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
    mr_log_warn("server %s: quarantined for %u ms (its replay queue overflowed): writes only, reads elsewhere",
                sh->name, ms);
}

bool mr_health_quarantined(const mr_health *h, uint32_t server)
{
    int64_t until = __atomic_load_n(&mr_health_server(h, server)->quarantine_until_ms, __ATOMIC_RELAXED);
    return until != 0 && mr_wall_ms() < until;
}

/* ---- rings without ejected servers (auto_eject_hosts) ---- */

/* Rebuild a pool's live ring from the current states, keeping at least
 * (1 - max_ejected_fraction) of its servers in. */
static void update_ring(mr_health *h, const mr_router *r, uint32_t pool_index)
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
            mr_log_warn("pool %s: server %s stays in the ring (max_ejected_fraction %u%% reached); its requests "
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
        bool was = __atomic_exchange_n(&mr_health_server(h, id)->ejected, chosen[i] ? 1u : 0u, __ATOMIC_RELAXED);
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

/* ---- probes (main thread) ---- */

static void probe_io_cb(struct ev_loop *loop, ev_io *io, int revents);
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
    ev_io_stop(sh->health->loop, &sh->io);
    mr_tls_conn_free(sh->tls);
    sh->tls = NULL;
    if (sh->fd >= 0)
        close(sh->fd);
    sh->fd = -1;
    sh->probing = false;
    sh->buflen = 0;
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
            mr_health_failure(h, sh->id, sh->probe_error, sh->probe_error != MR_ERR_TIMEOUT);
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

static void probe_start(mr_server_health *sh, bool idle)
{
    mr_health *h = sh->health;
    const mr_sockaddr *addr = &sh->addr;
    const mr_pool_conf *pc = pool_conf(h, sh->id);
    sh->idle_probe = idle;
    sh->probing = true;
    sh->probe_error = MR_ERR_UNAVAILABLE;
    sh->buflen = 0;
    sh->fd = socket(addr->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (sh->fd < 0) {
        probe_done(sh, false);
        return;
    }
    if (connect(sh->fd, (const struct sockaddr *)&addr->addr, addr->len) < 0 && errno != EINPROGRESS) {
        sh->probe_error = mr_net_connect_error(errno);
        probe_done(sh, false);
        return;
    }
    ev_io_set(&sh->io, sh->fd, EV_WRITE);
    ev_io_start(h->loop, &sh->io);
    /* The probe gets the pool's request timeout to answer. */
    ev_timer_stop(h->loop, &sh->timer);
    ev_timer_set(&sh->timer, pc->timeout_ms / 1000.0, 0);
    ev_timer_start(h->loop, &sh->timer);
}

/* The probe's answer so far: done when a line is complete or the buffer
 * is full; then it is good if it is a VERSION line. */
static bool probe_answered(mr_server_health *sh, bool *ok)
{
    sh->buf[sh->buflen] = '\0';
    if (!strstr(sh->buf, "\r\n") && sh->buflen < sizeof(sh->buf) - 1)
        return false;
    *ok = strncmp(sh->buf, "VERSION ", 8) == 0;
    return true;
}

static void probe_wait(mr_server_health *sh, int events)
{
    ev_io_stop(sh->health->loop, &sh->io);
    ev_io_set(&sh->io, sh->fd, events);
    ev_io_start(sh->health->loop, &sh->io);
}

/* A probe of a server_tls server: handshake, `version`, read the line,
 * each step resumed by the io watcher; the probe timer bounds it all. A
 * server whose certificate does not verify fails its probes. */
static void probe_tls_step(mr_server_health *sh)
{
    mr_tls_conn *t = sh->tls;
    mr_tls_status st = MR_TLS_OK;
    char why[256];
    if (!t->established && (st = mr_tls_handshake(t, why, sizeof(why))) != MR_TLS_OK) {
        if (st != MR_TLS_WANT_READ && st != MR_TLS_WANT_WRITE) {
            sh->probe_error = MR_ERR_TLS;
            mr_tls_log_failure("health probe TLS handshake", sh->health->router->servers[sh->id].conf->spec, why);
        }
        goto wait;
    }
    if (!sh->tls_sent) {
        static const char version[] = "version\r\n";
        struct iovec v = {(void *)version, sizeof(version) - 1};
        sh->tls_sent = mr_tls_writev(t, &v, 1, &st) > 0;
        if (st != MR_TLS_OK)
            goto wait;
    }
    if (mr_tls_has_output(t) && (mr_tls_writev(t, NULL, 0, &st), st != MR_TLS_OK))
        goto wait;
    for (;;) {
        ssize_t n = mr_tls_read(t, sh->buf + sh->buflen, sizeof(sh->buf) - 1 - sh->buflen, &st);
        if (n <= 0)
            goto wait;
        sh->buflen += (uint32_t)n;
        bool ok;
        if (probe_answered(sh, &ok)) {
            ev_timer_stop(sh->health->loop, &sh->timer);
            probe_done(sh, ok);
            return;
        }
    }
wait:
    if (st == MR_TLS_WANT_READ || st == MR_TLS_WANT_WRITE) {
        probe_wait(sh, st == MR_TLS_WANT_READ ? EV_READ : EV_WRITE);
        return;
    }
    ev_timer_stop(sh->health->loop, &sh->timer);
    probe_done(sh, false);
}

static void probe_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    mr_server_health *sh = io->data;
    if (sh->tls) {
        probe_tls_step(sh);
        return;
    }
    if (revents & EV_WRITE) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(sh->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        static const char version[] = "version\r\n";
        if (err)
            sh->probe_error = mr_net_connect_error(err);
        const mr_router *r = sh->health->router;
        sh->tls_sent = false;
        int tls = err ? 0
                      : mr_tls_connect_server(r->tls, r->servers[sh->id].pool, pool_conf(sh->health, sh->id),
                                              r->servers[sh->id].conf, sh->fd, &sh->tls);
        if (tls > 0) {
            probe_tls_step(sh);
            return;
        }
        if (tls < 0)
            err = ENOMEM;
        if (err || write(sh->fd, version, sizeof(version) - 1) != (ssize_t)sizeof(version) - 1) {
            ev_timer_stop(loop, &sh->timer);
            probe_done(sh, false);
            return;
        }
        ev_io_stop(loop, io);
        ev_io_set(io, sh->fd, EV_READ);
        ev_io_start(loop, io);
        return;
    }
    ssize_t n = read(sh->fd, sh->buf + sh->buflen, sizeof(sh->buf) - 1 - sh->buflen);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        ev_timer_stop(loop, &sh->timer);
        probe_done(sh, false);
        return;
    }
    sh->buflen += (uint32_t)n;
    bool ok;
    if (!probe_answered(sh, &ok))
        return;
    ev_timer_stop(loop, &sh->timer);
    probe_done(sh, ok);
}

static void probe_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    mr_server_health *sh = t->data;
    if (sh->probing) { /* the probe in flight took too long */
        sh->probe_error = MR_ERR_TIMEOUT;
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
        uint32_t state = __atomic_load_n(&sh->state, __ATOMIC_ACQUIRE);
        if (state == MR_HEALTH_DOWN && !sh->probing && !ev_is_active(&sh->timer)) {
            const mr_pool_conf *pc = pool_conf(h, i);
            sh->successes = 0;
            sh->backoff = pc->server_retry_timeout_ms / 1000.0;
            schedule_probe(sh, sh->backoff);
        }
    }
    for (uint32_t p = 0; p < h->router->npools; p++)
        update_ring(h, h->router, p);
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
    return calloc(1, sizeof(mr_health));
}

/* What makes two config entries the same server: its pool, its address, its
 * connection count and whether it speaks TLS (a change of any means new
 * connections). */
static char *identity_of(const mr_pool_conf *pc, const mr_server_conf *sc)
{
    char buf[1024];
    int n;
    if (sc->addr.is_unix)
        n = snprintf(buf, sizeof(buf), "%s\n%s\n%u", pc->name, sc->addr.host, pc->server_connections);
    else
        n = snprintf(buf, sizeof(buf), "%s\n%s:%u\n%u%s", pc->name, sc->addr.host, sc->addr.port,
                     pc->server_connections, pc->server_tls ? "\ntls" : "");
    return n > 0 && (size_t)n < sizeof(buf) ? strdup(buf) : NULL;
}

uint32_t mr_health_server_id(void *ctx, const mr_pool_conf *pc, const mr_server_conf *sc)
{
    mr_health *h = ctx;
    char *ident = identity_of(pc, sc);
    if (!ident)
        return UINT32_MAX;
    for (uint32_t id = 0; id < h->nids; id++) {
        if (strcmp(mr_health_server(h, id)->identity, ident) == 0) {
            free(ident);
            return id;
        }
    }
    uint32_t id = h->nids;
    if (id >= MR_MAX_SERVER_IDS) {
        mr_log_error("server %s: more than %u distinct servers since start; restart to reuse ids", sc->spec,
                     MR_MAX_SERVER_IDS);
        free(ident);
        return UINT32_MAX;
    }
    mr_sockaddr addr;
    if (mr_net_resolve(sc, &addr) < 0) {
        free(ident);
        return UINT32_MAX;
    }
    uint32_t chunk = id / MR_HEALTH_CHUNK;
    if (!h->chunks[chunk] && !(h->chunks[chunk] = calloc(MR_HEALTH_CHUNK, sizeof(mr_server_health)))) {
        free(ident);
        return UINT32_MAX;
    }
    mr_server_health *sh = mr_health_server(h, id);
    sh->name = strdup(sc->spec);
    sh->pool = strdup(pc->name);
    if (!sh->name || !sh->pool) {
        free(sh->name);
        free(sh->pool);
        sh->name = sh->pool = NULL;
        free(ident);
        return UINT32_MAX;
    }
    sh->identity = ident;
    sh->addr = addr;
    sh->failure_limit = pc->server_failure_limit;
    sh->health = h;
    sh->id = id;
    sh->fd = -1;
    ev_init(&sh->io, probe_io_cb);
    ev_init(&sh->timer, probe_timer_cb);
    sh->io.data = sh->timer.data = sh;
    /* Published last: readers iterate ids below nids. */
    __atomic_store_n(&h->nids, id + 1, __ATOMIC_RELEASE);
    return id;
}

uint32_t mr_health_pool_slot(mr_health *h, const char *pool)
{
    for (uint32_t i = 0; i < h->npool_slots; i++)
        if (strcmp(h->pool_slots[i], pool) == 0)
            return i;
    if (h->npool_slots >= MR_MAX_POOL_SLOTS - 1 || !(h->pool_slots[h->npool_slots] = strdup(pool)))
        return MR_MAX_POOL_SLOTS - 1;
    return h->npool_slots++;
}

void mr_health_prepare(mr_health *h, const mr_router *router)
{
    if (!h->loop)
        return; /* the first config: nothing is down yet */
    for (uint32_t p = 0; p < router->npools; p++)
        update_ring(h, router, p);
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
            continue;
        }
        ev_timer_stop(h->loop, &sh->timer);
        probe_close(sh);
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
    ev_init(&h->reaper, reaper_cb);
    h->reaper.data = h;
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
    }
    ev_async_stop(h->loop, &h->wake);
    ev_timer_stop(h->loop, &h->idle_timer);
    ev_timer_stop(h->loop, &h->reaper);
}

void mr_health_free(mr_health *h)
{
    if (!h)
        return;
    while (h->graveyard) {
        mr_live_ring *ring = h->graveyard;
        h->graveyard = ring->next_dead;
        mr_live_ring_free(ring);
    }
    for (uint32_t i = 0; i < h->nids; i++) {
        free(mr_health_server(h, i)->identity);
        free(mr_health_server(h, i)->name);
        free(mr_health_server(h, i)->pool);
    }
    for (uint32_t c = 0; c < MR_HEALTH_MAX_CHUNKS; c++)
        free(h->chunks[c]);
    for (uint32_t i = 0; i < h->npool_slots; i++)
        free(h->pool_slots[i]);
    free(h);
}

int mr_health_stats(const mr_health *h, const mr_router *router, char *buf, size_t cap)
{
    size_t off = 0;
    int64_t now = mr_wall_ms();
#define APPEND(...)                                                        \
    do {                                                                   \
        int n_ = snprintf(buf + off, cap - off, __VA_ARGS__);              \
        if (n_ < 0 || (size_t)n_ >= cap - off)                             \
            return -1;                                                     \
        off += (size_t)n_;                                                 \
    } while (0)
    for (uint32_t i = 0; i < router->nservers; i++) {
        if (!router->servers[i].conf)
            continue;
        const mr_server_health *sh = mr_health_server(h, i);
        const char *name = router->servers[i].conf->spec;
        const char *pool = router->cfg->pools[router->servers[i].pool].name;
        uint32_t state = __atomic_load_n(&sh->state, __ATOMIC_ACQUIRE);
        int64_t down_at = __atomic_load_n(&sh->down_at_ms, __ATOMIC_RELAXED);
        int64_t next = __atomic_load_n(&sh->next_probe_ms, __ATOMIC_RELAXED);
        const char *err = mr_error_reply((mr_err)__atomic_load_n(&sh->last_error, __ATOMIC_RELAXED));
        APPEND("STAT %s:%s:pool %s\r\n", pool, name, pool);
        APPEND("STAT %s:%s:state %s\r\n", pool, name, mr_health_state_name(state));
        APPEND("STAT %s:%s:ejected %u\r\n", pool, name, __atomic_load_n(&sh->ejected, __ATOMIC_RELAXED));
        APPEND("STAT %s:%s:failures %u\r\n", pool, name, __atomic_load_n(&sh->failures, __ATOMIC_RELAXED));
        APPEND("STAT %s:%s:last_error %.*s\r\n", pool, name, *err ? (int)strlen(err) - 2 : 4, *err ? err : "none");
        APPEND("STAT %s:%s:down_since_ms %lld\r\n", pool, name, state == MR_HEALTH_UP ? 0LL : (long long)down_at);
        APPEND("STAT %s:%s:next_probe_in_ms %lld\r\n", pool, name,
               state == MR_HEALTH_DOWN && next > now ? (long long)(next - now) : 0LL);
        APPEND("STAT %s:%s:quarantined %d\r\n", pool, name, mr_health_quarantined(h, i) ? 1 : 0);
        APPEND("STAT %s:%s:downs %llu\r\n", pool, name, (unsigned long long)__atomic_load_n(&sh->downs, __ATOMIC_RELAXED));
        APPEND("STAT %s:%s:probes %llu\r\n", pool, name, (unsigned long long)__atomic_load_n(&sh->probes, __ATOMIC_RELAXED));
        APPEND("STAT %s:%s:probe_failures %llu\r\n", pool, name,
               (unsigned long long)__atomic_load_n(&sh->probe_failures, __ATOMIC_RELAXED));
        APPEND("STAT %s:%s:rejoins %llu\r\n", pool, name, (unsigned long long)__atomic_load_n(&sh->rejoins, __ATOMIC_RELAXED));
        /* Traffic: every worker's requests to this server. */
        const mr_server_traffic *t = &sh->traffic;
        APPEND("STAT %s:%s:requests %llu\r\n", pool, name,
               (unsigned long long)__atomic_load_n(&t->requests, __ATOMIC_RELAXED));
        for (int e = MR_ERR_NONE + 1; e < MR_ERR_COUNT; e++)
            APPEND("STAT %s:%s:errors_%s %llu\r\n", pool, name, mr_error_class((mr_err)e),
                   (unsigned long long)__atomic_load_n(&t->errors[e], __ATOMIC_RELAXED));
        APPEND("STAT %s:%s:timeouts %llu\r\n", pool, name,
               (unsigned long long)__atomic_load_n(&t->timeouts, __ATOMIC_RELAXED));
        mr_latency_hist lat;
        mr_latency_snapshot(&t->latency, &lat);
        APPEND("STAT %s:%s:latency_p50_us %llu\r\n", pool, name,
               (unsigned long long)mr_latency_percentile_us(&lat, 0.50));
        APPEND("STAT %s:%s:latency_p99_us %llu\r\n", pool, name,
               (unsigned long long)mr_latency_percentile_us(&lat, 0.99));
    }
    APPEND("END\r\n");
#undef APPEND
    return (int)off;
}
