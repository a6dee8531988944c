/* worker.c: one thread, one libev loop, its own clients and backends.
 *
 * Writes are batched per loop iteration: handlers only mark a client or a
 * backend connection dirty, and the prepare watcher (run once per iteration,
 * just before the loop waits again) writes each dirty one with one writev.
 * So a read holding 100 pipelined requests costs one write to each backend
 * and one to the client.
 */
#include "memrelay/worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "memrelay/health.h"
#include "memrelay/log.h"
#include "memrelay/tls.h"

/* Connections accepted per readiness event, so one listener cannot starve the loop. */
#define ACCEPTS_PER_EVENT 64

/* Draining: a client whose requests are all answered and written leaves. */
static void drain_step(mr_worker *w)
{
    for (mr_client *c = w->clients, *next; c; c = next) {
        next = c->next;
        if (!c->q_head && !mr_client_has_output(c))
            mr_client_close(c);
    }
    if (!w->clients)
        __atomic_store_n(&w->drained, 1, __ATOMIC_RELEASE);
}

static void drain_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    mr_worker *w = a->data;
    w->draining = true;
    for (uint32_t p = 0; p < 2 * w->shared->router->npools; p++)
        ev_io_stop(loop, &w->accept_io[p]);
    for (mr_client *c = w->clients; c; c = c->next)
        ev_io_stop(loop, &c->rio);
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

static void flush_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
    mr_worker *w = p->data;
    /* Backends first: requests go out before the loop sleeps. Flushing a
     * client can parse more buffered input and dirty more backends, so loop. */
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
    if (w->draining)
        drain_step(w);
}

void mr_worker_mark_client(mr_worker *w, mr_client *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    c->next_dirty = w->dirty_clients;
    w->dirty_clients = c;
}

void mr_worker_mark_bconn(mr_worker *w, mr_bconn *bc)
{
    if (bc->dirty)
        return;
    bc->dirty = true;
    bc->next_dirty = w->dirty_bconns;
    w->dirty_bconns = bc;
}

uint32_t mr_worker_random(mr_worker *w)
{
    uint32_t x = w->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return w->rng = x;
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    mr_worker *w = io->data;
    uint32_t npools = w->shared->router->npools, idx = (uint32_t)(io - w->accept_io);
    uint32_t pool = idx % npools;
    const mr_pool_conf *pc = &w->shared->cfg->pools[pool];
    bool tls_port = idx >= npools; /* the pool's tls_listen */
    const mr_addr_conf *where = tls_port ? &pc->tls_listen : &pc->listen;
    SSL_CTX *tls = tls_port || pc->tls ? w->shared->tls->clients[pool] : NULL;
    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                mr_log_warn("accept on pool %s: %s", pc->name, strerror(errno));
            return; /* EAGAIN: another worker took it, or none left */
        }
        uint32_t open = __atomic_add_fetch(&w->shared->pool_clients[pool], 1, __ATOMIC_RELAXED);
        if (pc->client_connections && open > pc->client_connections) {
            __atomic_sub_fetch(&w->shared->pool_clients[pool], 1, __ATOMIC_RELAXED);
            /* Over the limit: memcached answers this way and closes too. */
            static const char busy[] = "SERVER_ERROR Too many open connections\r\n";
            ssize_t wr = write(fd, busy, sizeof(busy) - 1);
            (void)wr;
            close(fd);
            MR_STAT_INC(&w->stats, rejected_connections);
            continue;
        }
        if (!where->is_unix) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            if (pc->tcpkeepalive)
                setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        }
        mr_client_accept(w, fd, pool, tls);
    }
}

/* Servers the health checker lets back: replay what they missed here. */
static void health_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    mr_worker *w = a->data;
    mr_health *h = w->shared->health;
    for (uint32_t s = 0; s < w->shared->router->nservers; s++)
        if (mr_health_state_of(h, s) == MR_HEALTH_REJOINING)
            mr_backend_rejoin(&w->backends[s]);
}

void mr_worker_health_changed(mr_worker *w)
{
    ev_async_send(w->loop, &w->health_changed);
}

static void stop_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

int mr_worker_init(mr_worker *w, uint32_t index, const mr_shared *shared)
{
    memset(w, 0, sizeof(*w));
    w->index = index;
    w->shared = shared;
    w->rng = 0x9e3779b9u ^ (index * 0x85ebca6bu) ^ (uint32_t)getpid();
    if (!w->rng)
        w->rng = 1;
    w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (!w->loop)
        return -1;
    mr_mbuf_pool_init(&w->mbufs, 256);
    const mr_router *router = shared->router;
    w->backends = calloc(router->nservers ? router->nservers : 1, sizeof(mr_backend));
    w->server_slot = malloc((router->nservers ? router->nservers : 1) * sizeof(uint32_t));
    w->accept_io = calloc(2 * (size_t)router->npools, sizeof(ev_io));
    w->pool_stats = calloc(router->npools, sizeof(mr_pool_stats));
    if (!w->backends || !w->server_slot || !w->accept_io || !w->pool_stats)
        return -1;
    for (uint32_t s = 0; s < router->nservers; s++) {
        w->server_slot[s] = UINT32_MAX;
        const mr_server *srv = &router->servers[s];
        if (mr_backend_init(&w->backends[s], w, srv, &router->pools[srv->pool]) < 0)
            return -1;
    }
    for (uint32_t p = 0; p < router->npools; p++) {
        if (shared->listen_fds[p] < 0)
            continue;
        ev_io_init(&w->accept_io[p], accept_cb, shared->listen_fds[p], EV_READ);
        w->accept_io[p].data = w;
        ev_io_start(w->loop, &w->accept_io[p]);
    }
    for (uint32_t p = 0; p < router->npools && shared->tls_listen_fds; p++) {
        if (shared->tls_listen_fds[p] < 0)
            continue;
        ev_io *io = &w->accept_io[router->npools + p];
        ev_io_init(io, accept_cb, shared->tls_listen_fds[p], EV_READ);
        io->data = w;
        ev_io_start(w->loop, io);
    }
    ev_async_init(&w->stop, stop_cb);
    ev_async_start(w->loop, &w->stop);
    ev_async_init(&w->drain, drain_cb);
    w->drain.data = w;
    ev_async_start(w->loop, &w->drain);
    ev_async_init(&w->health_changed, health_cb);
    w->health_changed.data = w;
    ev_async_start(w->loop, &w->health_changed);
    ev_prepare_init(&w->flush, flush_cb);
    w->flush.data = w;
    ev_prepare_start(w->loop, &w->flush);
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
    while (w->clients)
        mr_client_close(w->clients);
    const mr_router *router = w->shared->router;
    for (uint32_t s = 0; s < router->nservers && w->backends; s++)
        if (w->backends[s].conns)
            mr_backend_close(&w->backends[s]);
    while (w->free_reqs) {
        mr_req *r = w->free_reqs;
        w->free_reqs = r->next;
        free(r);
    }
    free(w->backends);
    free(w->server_slot);
    free(w->accept_io);
    /* pool_stats stays: `stats` readers may still sum it until exit. */
    mr_mbuf_pool_drain(&w->mbufs);
    ev_loop_destroy(w->loop);
    w->loop = NULL;
}
