/* worker.c: one thread, one libev loop, its own clients and backends.
 *
 * Writes are batched per loop iteration: handlers only mark a client or a
 * backend connection dirty, and the prepare watcher (run once per iteration,
 * just before the loop waits again) writes each dirty one with one writev.
 * So a read holding 100 pipelined requests costs one write to each backend
 * and one to the client.
 */
#include "memrelay/worker_thread.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "memrelay/client.h"
#include "memrelay/health.h"
#include "memrelay/log.h"
#include "memrelay/net.h"
#include "memrelay/replicate.h"
#include "memrelay/tls.h"
#include "memrelay/warmup.h"

/* Connections accepted per readiness event, so one listener cannot starve the loop. */
#define ACCEPTS_PER_EVENT 64

/* Draining: clients are still read and answered; each one leaves as soon
 * as it is quiet (nothing queued, owed, buffered or unread), which is
 * always between two requests. */
static void drain_step(mr_worker *w)
{
    for (mr_client *c = w->clients, *next; c; c = next) {
        next = c->next;
        if (mr_client_is_quiet(c))
            mr_client_close(c);
    }
    if (!w->clients)
        __atomic_store_n(&w->drained, 1, __ATOMIC_RELEASE);
}

/* The main thread has already made the listeners refuse new connections
 * (mr_listener_refuse); stop watching them. */
static void drain_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    mr_worker *w = a->data;
    w->draining = true;
    for (uint32_t p = 0; p < 2 * w->gen->router->npools; p++)
        ev_io_stop(loop, &w->accept_io[p]);
    drain_step(w);
}

void mr_worker_drain(mr_worker *w)
{
    ev_async_send(w->loop, &w->drain);
}

bool mr_worker_drained(mr_worker *w)
{
    return __atomic_load_n(&w->drained, __ATOMIC_ACQUIRE) != 0;
}

static void release_done_holds(mr_worker *w);

/* A warm-up window kept this hold (and its retired backends) so misses can
 * be retried on removed servers; the window is over. */
static void end_warm_hold(mr_worker *w, struct mr_gen_hold *hold)
{
    if (!hold->warm)
        return;
    hold->warm = false;
    if (--hold->reqs == 0)
        w->holds_done = true;
}

/* Every TRIM_INTERVAL seconds, pooled blocks and requests nobody took since
 * the last tick are freed, and once memory use has fallen well below its
 * peak the freed heap goes back to the system: RSS returns near its
 * baseline within a minute of a load spike, and steady load is untouched. */
#define TRIM_INTERVAL 10.0

static void trim_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    mr_worker *w = t->data;
    for (uint32_t n = w->low_free_reqs; n > 0 && w->free_reqs; n--) {
        mr_req *r = w->free_reqs;
        w->free_reqs = r->next;
        w->nfree_reqs--;
        free(r);
        w->reqs_freed_bytes += sizeof(*r);
    }
    w->low_free_reqs = w->nfree_reqs;
    if (mr_gen_warm_until(w->gen) <= ev_now(loop))
        for (struct mr_gen_hold *hold = w->holds; hold; hold = hold->next)
            end_warm_hold(w, hold); /* released at the next flush */
    if (mr_mbuf_pool_shrink(&w->mbufs, w->reqs_freed_bytes))
        malloc_trim(0);
    w->reqs_freed_bytes = 0;
}

static void flush_dirty(mr_worker *w);

static void flush_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
    mr_worker *w = p->data;
    /* Backends first: requests go out before the loop sleeps. Flushing a
     * client can parse more buffered input and dirty more backends, so loop.
     * After the flushes, which give budget back, admit what waits for it
     * (memory_limit); that may dirty clients again. This is also the retry
     * that follows a client's announcing it waits (membudget.c: no wake-up
     * is lost). Four rounds at most; each ends with a flush, so nothing
     * is left dirty while the loop sleeps. */
    flush_dirty(w);
    for (int round = 0; round < 4 && w->mem_wait_head; round++) {
        mr_client_mem_retry(w);
        if (!w->dirty_clients && !w->dirty_bconns)
            break;
        flush_dirty(w);
    }
    if (w->draining)
        drain_step(w);
    if (w->holds_done)
        release_done_holds(w);
}

static void flush_dirty(mr_worker *w)
{
    while (w->dirty_bconns || w->dirty_clients) {
        while (w->dirty_bconns) {
            mr_bconn *bc = w->dirty_bconns;
            w->dirty_bconns = bc->next_dirty;
            bc->dirty = false;
            mr_bconn_flush(bc);
        }
        while (w->dirty_clients) {
            mr_client *c = w->dirty_clients;
            w->dirty_clients = c->next_dirty;
            c->dirty = false;
            mr_client_flush(c);
        }
    }
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    mr_worker *w = io->data;
    uint32_t npools = w->gen->router->npools, idx = (uint32_t)(io - w->accept_io);
    uint32_t pool = idx % npools;
    const mr_pool_conf *pc = &w->gen->cfg->pools[pool];
    uint32_t slot = w->gen->router->pools[pool].slot;
    bool tls_port = idx >= npools; /* the pool's tls_listen */
    const mr_addr_conf *where = tls_port ? &pc->tls_listen : &pc->listen;
    SSL_CTX *tls = tls_port || pc->tls ? w->gen->tls->clients[pool] : NULL;
    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                mr_log_warn("accept on pool %s: %s", pc->name, strerror(errno));
            /* EAGAIN: another worker took it, or none left; EINVAL: the
             * listener was shut for a drain, and drain_cb is on its way. */
            return;
        }
        uint32_t open = __atomic_add_fetch(&w->shared->pool_clients[slot], 1, __ATOMIC_RELAXED);
        if (pc->client_connections && open > pc->client_connections) {
            __atomic_sub_fetch(&w->shared->pool_clients[slot], 1, __ATOMIC_RELAXED);
            /* Over the limit: memcached answers this way and closes too. */
            static const char busy[] = "SERVER_ERROR Too many open connections\r\n";
            ssize_t wr = write(fd, busy, sizeof(busy) - 1);
            (void)wr;
            close(fd);
            MR_STAT_INC(&w->stats, rejected_connections);
            continue;
        }
        mr_net_tune(fd, where->is_unix, pc->tcpkeepalive);
        mr_client_accept(w, fd, pool, slot, tls);
    }
}

/* Servers the health checker lets back: replay what they missed here; and
 * servers whose names resolve elsewhere now: move their connections. */
static void health_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    mr_worker *w = a->data;
    mr_health *h = w->shared->health;
    const mr_router *r = w->gen->router;
    for (uint32_t s = 0; s < r->nservers; s++) {
        if (!r->servers[s].conf || !w->backends[s])
            continue;
        if (mr_health_state_of(h, s) == MR_HEALTH_REJOINING)
            mr_backend_rejoin(w->backends[s]);
        mr_backend_follow_address(w->backends[s]);
    }
}

void mr_worker_health_changed(mr_worker *w)
{
    ev_async_send(w->loop, &w->health_changed);
}

static void stop_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

/* ---- generations ---- */

/* accept_io[p] watches pool p's `listen`, accept_io[npools + p] its `tls_listen`. */
static void start_accepting(mr_worker *w)
{
    uint32_t npools = w->gen->router->npools;
    for (uint32_t i = 0; i < 2 * npools; i++) {
        int fd = i < npools ? w->gen->listen_fds[i] : w->gen->tls_listen_fds[i - npools];
        if (fd < 0)
            continue;
        ev_io_init(&w->accept_io[i], accept_cb, fd, EV_READ);
        w->accept_io[i].data = w;
        if (!w->draining)
            ev_io_start(w->loop, &w->accept_io[i]);
    }
}

/* Close the drained backends of a generation nobody here uses any more,
 * and let the generation go. */
static void release_hold(mr_worker *w, mr_gen_hold **pp)
{
    mr_gen_hold *hold = *pp;
    *pp = hold->next;
    for (uint32_t i = 0; i < hold->nretired; i++) {
        mr_backend *be = hold->retired[i];
        uint32_t id = be->server->id;
        if (id < w->nbackends && w->backends[id] == be)
            w->backends[id] = NULL;
        mr_backend_close(be);
        free(be);
    }
    free(hold->retired);
    if (mr_gen_release(hold->gen))
        mr_log_debug("worker %u freed a configuration generation", w->index);
    free(hold);
    ev_async_send(w->shared->main_loop, w->shared->switched);
}

void mr_worker_req_freed(mr_worker *w, mr_gen *gen)
{
    if (gen == w->gen) {
        w->gen_reqs--;
        return;
    }
    for (mr_gen_hold *hold = w->holds; hold; hold = hold->next) {
        if (hold->gen == gen) {
            /* Released from the flush, not here: this may run inside a
             * retired backend's own read callback. */
            if (--hold->reqs == 0)
                w->holds_done = true;
            return;
        }
    }
}

static void release_done_holds(mr_worker *w)
{
    w->holds_done = false;
    for (mr_gen_hold **pp = &w->holds; *pp;) {
        if ((*pp)->reqs == 0)
            release_hold(w, pp);
        else
            pp = &(*pp)->next;
    }
}

/* The backend of a server the new config no longer has: it drains with the
 * generation that had it. */
static void retire(mr_gen_hold *hold, mr_backend *be)
{
    hold->retired[hold->nretired++] = be;
}

/* Take a retired backend back (its server returned in the new config). */
static bool unretire(mr_worker *w, mr_backend *be)
{
    for (mr_gen_hold *hold = w->holds; hold; hold = hold->next)
        for (uint32_t i = 0; i < hold->nretired; i++)
            if (hold->retired[i] == be) {
                hold->retired[i] = hold->retired[--hold->nretired];
                return true;
            }
    return false;
}

/* Clients of a pool the new config dropped finish what they sent, then close. */
static void remap_clients(mr_worker *w, const mr_config *old, const mr_gen *gen)
{
    for (mr_client *c = w->clients, *next; c; c = next) {
        next = c->next;
        long p = mr_config_pool_index(gen->cfg, old->pools[c->listen_pool].name);
        if (p >= 0 && gen->cfg->pools[p].has_listen) {
            c->listen_pool = (uint32_t)p;
            continue;
        }
        ev_io_stop(w->loop, &c->rio);
        c->closing = true;
        c->listen_pool = 0;
        if (!c->q_head && c->out.count == 0)
            mr_client_close(c);
        else
            mr_client_mark_dirty(c);
    }
}

static void switch_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    mr_worker *w = a->data;
    mr_worker_switch *sw = __atomic_exchange_n(&w->next_switch, NULL, __ATOMIC_ACQ_REL);
    if (!sw)
        return;
    mr_gen *old = w->gen, *gen = sw->gen;
    const mr_router *r = gen->router;

    /* The old generation stays while its requests are in flight; it owns
     * the backends of servers the new config dropped. */
    mr_gen_hold *hold = sw->hold;
    hold->retired = sw->retired;
    hold->gen = old;
    hold->reqs = w->gen_reqs;

    for (uint32_t id = 0; id < sw->nbackends; id++) {
        mr_backend *be = id < w->nbackends ? w->backends[id] : NULL;
        bool wanted = id < r->nservers && r->servers[id].conf;
        const mr_pool *pool = wanted ? &r->pools[r->servers[id].pool] : NULL;
        if (wanted && be) {
            bool was_current = old->router->nservers > id && old->router->servers[id].conf;
            if (!was_current)
                unretire(w, be);
            mr_backend_adopt(be, &r->servers[id], pool);
            if (sw->fresh[id]) {
                mr_backend_close(sw->fresh[id]);
                free(sw->fresh[id]);
            }
        } else if (wanted) {
            be = sw->fresh[id];
            mr_backend_start(be);
        } else if (be && old->router->nservers > id && old->router->servers[id].conf) {
            retire(hold, be);
        }
        sw->backends[id] = be;
        sw->server_slot[id] = UINT32_MAX;
    }
    free(w->backends);
    free(w->server_slot);
    free(sw->fresh);
    w->backends = sw->backends;
    w->server_slot = sw->server_slot;
    w->nbackends = sw->nbackends;

    for (uint32_t i = 0; i < 2 * old->router->npools; i++)
        ev_io_stop(loop, &w->accept_io[i]);
    free(w->accept_io);
    w->accept_io = sw->accept_io;
    w->gen = gen;
    w->gen_reqs = 0;
    start_accepting(w);
    remap_clients(w, old->cfg, gen);

    /* While the new generation's warm-up window is open, servers it dropped
     * stay connected (as if a request held the old generation) so their
     * keys can be read back; the first trim tick after the window (which a
     * later reload may carry on) lets them go. */
    if (hold->nretired && gen->warm_until > ev_now(loop)) {
        hold->warm = true;
        hold->reqs++;
    }
    hold->next = w->holds;
    w->holds = hold;
    if (hold->reqs == 0)
        release_hold(w, &w->holds);
    free(sw);
    __atomic_store_n(&w->switched_seq, (uint32_t)gen->seq, __ATOMIC_RELEASE);
    ev_async_send(w->shared->main_loop, w->shared->switched);
}

void mr_worker_switch_free(mr_worker_switch *sw)
{
    if (!sw)
        return;
    for (uint32_t id = 0; sw->fresh && id < sw->nbackends; id++)
        if (sw->fresh[id]) {
            mr_backend_close(sw->fresh[id]);
            free(sw->fresh[id]);
        }
    free(sw->fresh);
    free(sw->backends);
    free(sw->server_slot);
    free(sw->accept_io);
    free(sw->hold);
    free(sw->retired);
    free(sw);
}

void mr_worker_switch_to(mr_worker *w, mr_worker_switch *sw)
{
    __atomic_store_n(&w->next_switch, sw, __ATOMIC_RELEASE);
    ev_async_send(w->loop, &w->reload);
}

/* A key stripe this worker waits for was let go (key_locks.h). */
static void key_wake_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    mr_replicate_resume(a->data);
}

/* Another worker gave memory_limit budget back (membudget.h). */
static void mem_wake_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)loop;
    (void)revents;
    mr_client_mem_retry(a->data);
}

int mr_worker_init(mr_worker *w, uint32_t index, mr_shared *shared, mr_gen *gen)
{
    memset(w, 0, sizeof(*w));
    w->index = index;
    w->shared = shared;
    w->hooks = shared->hooks;
    w->gen = gen;
    __atomic_add_fetch(&gen->refs, 1, __ATOMIC_ACQ_REL);
    w->rng = 0x9e3779b9u ^ (index * 0x85ebca6bu) ^ (uint32_t)getpid();
    if (!w->rng)
        w->rng = 1;
    w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (!w->loop)
        return -1;
    mr_mbuf_pool_init(&w->mbufs, MR_WORKER_MAX_FREE_MBUFS);
    const mr_router *router = gen->router;
    w->nbackends = router->nservers;
    w->backends = calloc(router->nservers ? router->nservers : 1, sizeof(mr_backend *));
    w->server_slot = malloc((router->nservers ? router->nservers : 1) * sizeof(uint32_t));
    w->accept_io = calloc(2 * (size_t)(router->npools ? router->npools : 1), sizeof(ev_io));
    if (!w->backends || !w->server_slot || !w->accept_io)
        return -1;
    for (uint32_t s = 0; s < router->nservers; s++) {
        w->server_slot[s] = UINT32_MAX;
        const mr_server *srv = &router->servers[s];
        if (!srv->conf)
            continue;
        if (!(w->backends[s] = malloc(sizeof(mr_backend))) ||
            mr_backend_init(w->backends[s], w, srv, &router->pools[srv->pool]) < 0)
            return -1;
        mr_backend_start(w->backends[s]);
    }
    start_accepting(w);
    ev_async_init(&w->stop, stop_cb);
    ev_async_start(w->loop, &w->stop);
    ev_async_init(&w->drain, drain_cb);
    w->drain.data = w;
    ev_async_start(w->loop, &w->drain);
    ev_async_init(&w->health_changed, health_cb);
    w->health_changed.data = w;
    ev_async_start(w->loop, &w->health_changed);
    ev_async_init(&w->reload, switch_cb);
    w->reload.data = w;
    ev_async_start(w->loop, &w->reload);
    ev_async_init(&w->key_wake, key_wake_cb);
    w->key_wake.data = w;
    ev_async_start(w->loop, &w->key_wake);
    if (shared->key_locks)
        mr_key_locks_register(shared->key_locks, index, w->loop, &w->key_wake);
    ev_async_init(&w->mem_wake, mem_wake_cb);
    w->mem_wake.data = w;
    ev_async_start(w->loop, &w->mem_wake);
    if (shared->membudget) {
        mr_memcredit_init(shared->membudget, &w->mem);
        mr_membudget_register(shared->membudget, index, w->loop, &w->mem_wake);
    }
    ev_prepare_init(&w->flush, flush_cb);
    w->flush.data = w;
    ev_prepare_start(w->loop, &w->flush);
    ev_timer_init(&w->trim, trim_cb, TRIM_INTERVAL, TRIM_INTERVAL);
    w->trim.data = w;
    ev_timer_start(w->loop, &w->trim);
    mr_stats_register(&w->stats);
    mr_stats_register_pools(w->pool_stats);
    return 0;
}

static void *worker_main(void *arg)
{
    mr_worker *w = arg;
    ev_run(w->loop, 0);
    return NULL;
}

int mr_worker_start(mr_worker *w)
{
    return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? 0 : -1;
}

void mr_worker_stop(mr_worker *w)
{
    ev_async_send(w->loop, &w->stop);
}

void mr_worker_join(mr_worker *w)
{
    pthread_join(w->thread, NULL);
}

void mr_worker_destroy(mr_worker *w)
{
    if (!w->loop)
        return;
    if (w->shared->key_locks)
        mr_key_locks_register(w->shared->key_locks, w->index, NULL, NULL);
    if (w->shared->membudget)
        mr_membudget_register(w->shared->membudget, w->index, NULL, NULL);
    mr_replicate_drop_parked(w);
    mr_warm_release_all(w);
    while (w->clients)
        mr_client_close(w->clients);
    /* Every backend is closed before any is freed: closing one fails its
     * messages, and a replicated request may then look at (or fail over to)
     * another backend of its replica set. */
    for (mr_gen_hold *hold = w->holds; hold; hold = hold->next)
        for (uint32_t i = 0; i < hold->nretired; i++) {
            uint32_t id = hold->retired[i]->server->id;
            if (id < w->nbackends && w->backends[id] == hold->retired[i])
                w->backends[id] = NULL;
            mr_backend_close(hold->retired[i]);
        }
    for (uint32_t s = 0; s < w->nbackends && w->backends; s++)
        if (w->backends[s])
            mr_backend_close(w->backends[s]);
    for (mr_gen_hold *hold = w->holds; hold; hold = hold->next)
        for (uint32_t i = 0; i < hold->nretired; i++)
            free(hold->retired[i]);
    for (uint32_t s = 0; s < w->nbackends && w->backends; s++)
        free(w->backends[s]);
    while (w->free_reqs) {
        mr_req *r = w->free_reqs;
        w->free_reqs = r->next;
        free(r);
    }
    /* Generations still held (requests were in flight at exit). */
    while (w->holds) {
        mr_gen_hold *hold = w->holds;
        w->holds = hold->next;
        free(hold->retired);
        mr_gen_release(hold->gen);
        free(hold);
    }
    mr_gen_release(w->gen);
    if (w->next_switch) { /* a reload the worker never took */
        mr_gen_release(w->next_switch->gen);
        mr_worker_switch_free(w->next_switch);
        w->next_switch = NULL;
    }
    free(w->backends);
    free(w->server_slot);
    free(w->accept_io);
    /* pool_stats stays: `stats` readers may still sum it until exit. */
    mr_mbuf_pool_drain(&w->mbufs);
    ev_loop_destroy(w->loop);
    w->loop = NULL;
}
