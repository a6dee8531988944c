/* reload.c: building configuration generations and switching workers to
 * them (main thread only). */
#include "memrelay/reload.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "memrelay/clock.h"
#include "memrelay/listener.h"
#include "memrelay/log.h"
#include "memrelay/tls.h"

static bool same_listen(const mr_addr_conf *a, const mr_addr_conf *b)
{
    return a->is_unix == b->is_unix && a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* The two kinds of listener a pool may have: `listen` and `tls_listen`. */
typedef struct {
    bool (*has)(const mr_pool_conf *p);
    const mr_addr_conf *(*addr)(const mr_pool_conf *p);
    int *(*fds)(const mr_gen *gen);
} listener_kind;

static bool has_plain(const mr_pool_conf *p)
{
    return p->has_listen;
}
static const mr_addr_conf *plain_addr(const mr_pool_conf *p)
{
    return &p->listen;
}
static int *plain_fds(const mr_gen *gen)
{
    return gen->listen_fds;
}
static bool has_tls(const mr_pool_conf *p)
{
    return p->has_tls_listen;
}
static const mr_addr_conf *tls_addr(const mr_pool_conf *p)
{
    return &p->tls_listen;
}
static int *tls_fds(const mr_gen *gen)
{
    return gen->tls_listen_fds;
}

static const listener_kind kinds[] = {{has_plain, plain_addr, plain_fds}, {has_tls, tls_addr, tls_fds}};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

/* Listening sockets of the new config: one the old config already has at
 * the same address (and of the same kind) is handed on, so clients keep
 * connecting without a gap and a rebind cannot fail; the others are bound
 * now. taken[k][j] marks old fds handed on. -1 (logged, with err filled)
 * when an address cannot be bound. */
static int open_listeners(mr_gen *gen, const mr_gen *old, bool *taken[NKINDS], char *err, size_t errlen)
{
    const mr_config *cfg = gen->cfg;
    for (size_t k = 0; k < NKINDS; k++) {
        int *fds = kinds[k].fds(gen);
        for (size_t i = 0; i < cfg->npools; i++) {
            const mr_pool_conf *p = &cfg->pools[i];
            if (!kinds[k].has(p))
                continue;
            const int *old_fds = old ? kinds[k].fds(old) : NULL;
            for (size_t j = 0; old && j < old->cfg->npools; j++) {
                if (!taken[k][j] && old_fds[j] >= 0 &&
                    same_listen(kinds[k].addr(p), kinds[k].addr(&old->cfg->pools[j]))) {
                    fds[i] = old_fds[j];
                    taken[k][j] = true;
                    break;
                }
            }
            if (fds[i] >= 0)
                continue;
            if ((fds[i] = mr_listener_open_at(p, kinds[k].addr(p))) < 0) {
                snprintf(err, errlen, "pool %s: cannot listen on its %s address (see the log line before)",
                         p->name, k == 0 ? "listen" : "tls_listen");
                return -1;
            }
        }
    }
    return 0;
}

/* Undo open_listeners: close what was bound for gen, leave handed-on fds. */
static void close_new_listeners(mr_gen *gen, const mr_gen *old)
{
    for (size_t k = 0; k < NKINDS; k++) {
        int *fds = kinds[k].fds(gen);
        for (size_t i = 0; i < gen->cfg->npools; i++) {
            int fd = fds[i];
            if (fd < 0)
                continue;
            bool inherited = false;
            for (size_t j = 0; old && j < old->cfg->npools; j++)
                inherited |= kinds[k].fds(old)[j] == fd;
            if (!inherited)
                mr_listener_close_at(kinds[k].addr(&gen->cfg->pools[i]), fd);
            fds[i] = -1;
        }
    }
}

/* Everything of a generation but its listeners. */
static mr_gen *build(mr_reloader *r, mr_config *cfg, char *err, size_t errlen)
{
    mr_gen *gen = calloc(1, sizeof(*gen));
    if (!gen) {
        snprintf(err, errlen, "out of memory");
        mr_config_free(cfg);
        return NULL;
    }
    gen->cfg = cfg;
    gen->listen_fds = malloc((cfg->npools ? cfg->npools : 1) * sizeof(int));
    gen->tls_listen_fds = malloc((cfg->npools ? cfg->npools : 1) * sizeof(int));
    for (size_t i = 0; gen->listen_fds && gen->tls_listen_fds && i < cfg->npools; i++)
        gen->listen_fds[i] = gen->tls_listen_fds[i] = -1;
    gen->router = gen->listen_fds && gen->tls_listen_fds
                      ? mr_router_build_ids(cfg, mr_health_server_id, r->health)
                      : NULL;
    if (!gen->router) {
        snprintf(err, errlen,
                 "cannot set up its servers (out of memory, or an address that does not resolve: "
                 "see the log line before)");
        mr_gen_free(gen);
        return NULL;
    }
    /* Certificates, keys and CA files are read again on every reload. */
    if (!(gen->tls = mr_tls_set_build(cfg, err, errlen))) {
        mr_gen_free(gen);
        return NULL;
    }
    gen->router->tls = gen->tls;
    for (size_t i = 0; i < cfg->npools; i++) {
        gen->router->pools[i].slot = mr_health_pool_slot(r->health, cfg->pools[i].name);
    }
    gen->loaded_at_ms = mr_wall_ms();
    return gen;
}

static void set_status_ok(mr_reloader *r, const mr_gen *gen, bool reload)
{
    pthread_mutex_lock(&r->status.lock);
    snprintf(r->status.hash, sizeof(r->status.hash), "%s", gen->cfg->hash);
    r->status.seq = gen->seq;
    r->status.loaded_at_ms = gen->loaded_at_ms;
    r->status.last_attempt_ms = gen->loaded_at_ms;
    if (reload)
        r->status.reloads++;
    r->status.last_error[0] = '\0';
    pthread_mutex_unlock(&r->status.lock);
}

static void set_status_failed(mr_reloader *r, const char *msg)
{
    pthread_mutex_lock(&r->status.lock);
    r->status.failures++;
    r->status.last_attempt_ms = r->status.last_failure_ms = mr_wall_ms();
    snprintf(r->status.last_error, sizeof(r->status.last_error), "%s", msg);
    /* One line: it goes into a STAT line. */
    for (char *p = r->status.last_error; *p; p++)
        if (*p == '\r' || *p == '\n')
            *p = ' ';
    pthread_mutex_unlock(&r->status.lock);
}

/* What identifies the file's content cheaply, symlinks followed. */
static void file_mark(const char *path, struct stat *st)
{
    if (stat(path, st) < 0)
        memset(st, 0, sizeof(*st));
}

static bool same_mark(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* The file with the current DNS members (if any pool discovers). */
static mr_config *load_file(mr_reloader *r, mr_config_error *err)
{
    size_t n = 0;
    const mr_pool_members *m = r->members ? r->members(r->members_ctx, &n) : NULL;
    return mr_config_load_file_members(r->path, m, n, err);
}

int mr_reload_init(mr_reloader *r, const char *path, mr_health *health)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->status.lock, NULL);
    pthread_mutex_init(&r->current_lock, NULL);
    r->path = path;
    r->health = health;
    snprintf(r->status.path, sizeof(r->status.path), "%s", path);
    /* Marked before reading: a change made while memrelay starts (after
     * this read, before the watch) is still seen by the first poll. */
    file_mark(path, &r->mark);
    mr_config_error cerr;
    mr_config *cfg = load_file(r, &cerr);
    if (!cfg) {
        mr_log_error("%s", cerr.message);
        return -1;
    }
    char err[512];
    mr_gen *gen = build(r, cfg, err, sizeof(err));
    bool *none[NKINDS] = {NULL, NULL};
    if (!gen || open_listeners(gen, NULL, none, err, sizeof(err)) < 0) {
        mr_log_error("cannot start with %s: %s", path, err);
        if (gen)
            close_new_listeners(gen, NULL);
        mr_gen_free(gen);
        return -1;
    }
    gen->seq = 1;
    gen->refs = 1; /* the main thread's; workers add theirs as they start */
    r->current = gen;
    mr_health_use(health, gen->router);
    set_status_ok(r, gen, false);
    return 0;
}

/* Everything worker w needs to switch to gen, allocated here so that the
 * switch on the worker's thread cannot fail. */
static mr_worker_switch *prepare_switch(mr_reloader *r, mr_worker *w, mr_gen *gen)
{
    const mr_router *old = r->current->router, *nr = gen->router;
    mr_worker_switch *sw = calloc(1, sizeof(*sw));
    if (!sw)
        return NULL;
    sw->gen = gen;
    /* Every id so far: the table also keeps backends that still drain. */
    uint32_t n = r->health->nids;
    if (n < w->nbackends)
        n = w->nbackends;
    sw->nbackends = n;
    size_t slots = n ? n : 1;
    sw->backends = calloc(slots, sizeof(*sw->backends));
    sw->server_slot = malloc(slots * sizeof(*sw->server_slot));
    sw->fresh = calloc(slots, sizeof(*sw->fresh));
    sw->accept_io =
        calloc(2 * (gen->cfg->npools ? gen->cfg->npools : 1), sizeof(ev_io)); /* listen, tls_listen */
    sw->hold = calloc(1, sizeof(*sw->hold));
    sw->retired = calloc(slots, sizeof(*sw->retired));
    if (!sw->backends || !sw->server_slot || !sw->fresh || !sw->accept_io || !sw->hold || !sw->retired) {
        mr_worker_switch_free(sw);
        return NULL;
    }
    for (uint32_t id = 0; id < nr->nservers; id++) {
        const mr_server *srv = &nr->servers[id];
        if (!srv->conf || (id < old->nservers && old->servers[id].conf))
            continue; /* not in the new config, or kept from the old one */
        /* New to this config (or back after a removal: the worker takes its
         * draining backend back if it still has one, and frees this). */
        if (!(sw->fresh[id] = malloc(sizeof(mr_backend))) ||
            mr_backend_init(sw->fresh[id], w, srv, &nr->pools[srv->pool]) < 0) {
            free(sw->fresh[id]);
            sw->fresh[id] = NULL;
            mr_worker_switch_free(sw);
            return NULL;
        }
    }
    return sw;
}

static bool all_switched(const mr_reloader *r, const mr_gen *gen)
{
    for (int i = 0; i < r->nworkers; i++)
        if (__atomic_load_n(&r->workers[i].switched_seq, __ATOMIC_ACQUIRE) != (uint32_t)gen->seq)
            return false;
    return true;
}

static void finish_switch(mr_reloader *r)
{
    if (!r->switching || !all_switched(r, r->switching))
        return;
    mr_gen *left = r->leaving;
    r->leaving = NULL;
    if (left) {
        /* No worker serves it any more: its warm-up windows' generations
         * can go (the new one holds what it still warms from), and the
         * listeners it did not hand on close now, even if a window keeps
         * the generation itself a while longer. */
        mr_gen_warm_end(left);
        mr_gen_close_listeners(left);
        mr_gen_release(left);
    }
    mr_log_info("config generation %" PRIu64 " (md5 %s) serving on every worker", r->switching->seq,
                r->switching->cfg->hash);
    r->switching = NULL;
    if (r->again_members && !r->again) {
        r->again_members = false;
        mr_reload_members(r, "a DNS membership change that arrived during the last switch");
    }
    if (r->again) {
        r->again_members = false; /* the reload reads the members too */
        bool force = r->again_forced;
        r->again = r->again_forced = false;
        mr_reload_now(r, "a change that arrived during the last switch", force);
    }
}

static void switched_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    finish_switch(a->data);
}

static int switch_to(mr_reloader *r, mr_config *cfg, const char *why);

/* How long a switch waits for the first lookups of its new servers' names. */
#define RESOLVE_WAIT_POLL 0.01

/* Has every new server of `cfg` a first answer from DNS? Registering them
 * here (the same stable ids the build will use) starts their lookups. */
static bool names_resolved(mr_reloader *r, const mr_config *cfg)
{
    bool all = true;
    for (size_t p = 0; p < cfg->npools; p++)
        for (size_t s = 0; s < cfg->pools[p].nservers; s++) {
            uint32_t id = mr_health_server_id(r->health, &cfg->pools[p], &cfg->pools[p].servers[s]);
            if (id != UINT32_MAX && mr_health_first_lookup_pending(r->health, id))
                all = false;
        }
    return all;
}

static void parked_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    mr_reloader *r = t->data;
    if (!r->parked || r->switching || (!names_resolved(r, r->parked) && ev_now(loop) < r->parked_until))
        return;
    ev_timer_stop(loop, t);
    mr_config *cfg = r->parked;
    r->parked = NULL;
    switch_to(r, cfg, r->parked_why);
}

/* Workers are running: a generation whose new servers are host names goes
 * out once their names have answered (at most two DNS timeouts), so no
 * request is sent to a server that has no address yet (DNS scale-up and
 * reloads alike). Takes cfg. */
static int switch_when_resolved(mr_reloader *r, mr_config *cfg, const char *why)
{
    if (!r->loop || names_resolved(r, cfg)) {
        if (r->parked) { /* older than this one */
            mr_config_free(r->parked);
            r->parked = NULL;
        }
        return switch_to(r, cfg, why);
    }
    if (r->parked)
        mr_config_free(r->parked); /* a newer one replaces it */
    r->parked = cfg;
    snprintf(r->parked_why, sizeof(r->parked_why), "%s", why);
    r->parked_until = ev_now(r->loop) + 2.0 * cfg->dns_timeout_ms / 1000.0 + 0.5;
    if (!ev_is_active(&r->parked_timer)) {
        ev_timer_init(&r->parked_timer, parked_cb, RESOLVE_WAIT_POLL, RESOLVE_WAIT_POLL);
        r->parked_timer.data = r;
        ev_timer_start(r->loop, &r->parked_timer);
    }
    mr_log_debug("%s: waiting for new servers' names to resolve before switching", why);
    return 0;
}

static void log_threads_change(const mr_reloader *r, const mr_config *cfg)
{
    if (cfg->threads != r->current->cfg->threads)
        mr_log_warn("reload: memrelay.threads changed from %d to %d; that takes a restart (still %d workers)",
                    r->current->cfg->threads, cfg->threads, r->nworkers);
}

int mr_reload_now(mr_reloader *r, const char *why, bool force)
{
    if (r->paused) {
        mr_log_info("reload (%s) skipped: shutting down", why);
        return 0;
    }
    if (r->switching) {
        /* One switch at a time: the next starts when every worker is on
         * the newest generation. */
        r->again = true;
        r->again_forced |= force;
        return 0;
    }
    file_mark(r->path, &r->mark); /* what this reload reads, or newer */
    mr_config_error cerr;
    mr_config *cfg = load_file(r, &cerr);
    if (!cfg) {
        mr_log_error("reload (%s) refused, still serving generation %" PRIu64 ": %s", why, r->current->seq,
                     cerr.message);
        set_status_failed(r, cerr.message);
        return -1;
    }
    if (!force && strcmp(cfg->hash, r->current->cfg->hash) == 0) {
        mr_log_debug("reload (%s): the file's content did not change", why);
        mr_config_free(cfg);
        return 0;
    }
    log_threads_change(r, cfg);
    return switch_when_resolved(r, cfg, why);
}

int mr_reload_members(mr_reloader *r, const char *why)
{
    if (r->paused)
        return 0;
    if (r->switching) {
        r->again_members = true;
        return 0;
    }
    size_t n = 0;
    const mr_pool_members *m = r->members ? r->members(r->members_ctx, &n) : NULL;
    const mr_config *now = r->current->cfg;
    mr_config_error cerr;
    mr_config *cfg = mr_config_load_members(now->text, now->text_len, now->path, m, n, &cerr);
    if (!cfg) {
        /* e.g. fewer servers than `replicas`: the old membership stays. */
        mr_log_error("DNS membership (%s) refused, still serving generation %" PRIu64 ": %s", why,
                     r->current->seq, cerr.message);
        set_status_failed(r, cerr.message);
        return -1;
    }
    return switch_when_resolved(r, cfg, why);
}

static void warm_close_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    mr_reloader *r = t->data;
    if (r->current && r->current->warm)
        mr_log_info("warm-up window of config generation %" PRIu64
                    " closed: misses no longer try the previous "
                    "owner",
                    r->current->seq);
}

/* Pools whose ring changed get a warm-up window (warmup.c): one log line
 * now, one when it closes. Out of memory only costs the window. */
static void open_warmup(mr_reloader *r, mr_gen *gen, mr_gen *old)
{
    double now = ev_time();
    int n = mr_gen_warm_open(gen, old, now);
    if (r->loop)
        ev_timer_stop(r->loop, &r->warm_close);
    if (n < 0) {
        mr_log_warn("warm-up window not opened (out of memory): moved keys miss on their new owner");
        return;
    }
    for (size_t i = 0; n > 0 && i < gen->cfg->npools; i++)
        if (gen->warm[i].prev && gen->warm[i].from == old)
            mr_log_info(
                "warm-up window opened for pool %s (%u ms): a miss on a key's new owner tries its owner in "
                "generation %" PRIu64,
                gen->cfg->pools[i].name, gen->cfg->pools[i].warmup_window_ms, old->seq);
    if (gen->warm && r->loop) {
        ev_timer_set(&r->warm_close, gen->warm_until - now, 0);
        ev_timer_start(r->loop, &r->warm_close);
    }
}

/* Build `cfg` into a generation and switch every worker to it (takes cfg). */
static int switch_to(mr_reloader *r, mr_config *cfg, const char *why)
{
    char err[512];
    size_t nold = r->current->cfg->npools ? r->current->cfg->npools : 1;
    bool *taken[NKINDS] = {calloc(nold, sizeof(bool)), calloc(nold, sizeof(bool))};
    mr_gen *gen = taken[0] && taken[1] ? build(r, cfg, err, sizeof(err)) : NULL;
    if (!taken[0] || !taken[1]) {
        snprintf(err, sizeof(err), "out of memory");
        mr_config_free(cfg);
    }
    if (gen && open_listeners(gen, r->current, taken, err, sizeof(err)) < 0) {
        close_new_listeners(gen, r->current);
        mr_gen_free(gen);
        gen = NULL;
    }
    mr_worker_switch **sws = gen ? calloc((size_t)r->nworkers, sizeof(*sws)) : NULL;
    bool prepared = sws != NULL;
    for (int i = 0; prepared && i < r->nworkers; i++)
        prepared = (sws[i] = prepare_switch(r, &r->workers[i], gen)) != NULL;
    if (gen && !prepared) {
        snprintf(err, sizeof(err), "out of memory preparing the workers");
        for (int i = 0; sws && i < r->nworkers; i++)
            mr_worker_switch_free(sws[i]);
        close_new_listeners(gen, r->current);
        mr_gen_free(gen);
        gen = NULL;
    }
    if (!gen) {
        free(sws);
        free(taken[0]);
        free(taken[1]);
        mr_log_error("reload (%s) refused, still serving generation %" PRIu64 ": %s", why, r->current->seq,
                     err);
        set_status_failed(r, err);
        return -1;
    }

    /* Nothing can fail from here on. */
    mr_gen *old = r->current;
    for (size_t k = 0; k < NKINDS; k++) {
        for (size_t j = 0; j < old->cfg->npools; j++)
            if (taken[k][j])
                kinds[k].fds(old)[j] = -1; /* handed on: the old generation must not close it */
        free(taken[k]);
    }
    gen->seq = old->seq + 1;
    gen->refs = 1 + (uint32_t)r->nworkers;
    open_warmup(r, gen, old);
    mr_health_prepare(r->health, gen->router);
    mr_health_use(r->health, gen->router);
    pthread_mutex_lock(&r->current_lock);
    r->current = gen;
    pthread_mutex_unlock(&r->current_lock);
    r->switching = gen;
    set_status_ok(r, gen, true);
    mr_log_info("reload (%s): config generation %" PRIu64 " (md5 %s), %zu pools; switching workers", why,
                gen->seq, gen->cfg->hash, gen->cfg->npools);
    if (r->on_config)
        r->on_config(r->on_config_ctx, gen->cfg);
    mr_config_warn_unprotected(gen->cfg);
    for (int i = 0; i < r->nworkers; i++)
        mr_worker_switch_to(&r->workers[i], sws[i]);
    free(sws);
    r->leaving = old; /* released when every worker has switched */
    finish_switch(r); /* no workers (yet): done at once */
    return 0;
}

static void debounce_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    mr_reload_now(t->data, "the file changed", false);
}

static void changed(mr_reloader *r)
{
    /* Several writes (or a symlink swap and the removal of the old target)
     * come in a burst: reload once, after it. */
    ev_timer_stop(r->loop, &r->debounce);
    ev_timer_set(&r->debounce, MR_RELOAD_DEBOUNCE, 0);
    ev_timer_start(r->loop, &r->debounce);
}

static void watch_cb(struct ev_loop *loop, ev_stat *w, int revents)
{
    changed(w->data);
}

/* ev_stat's inotify watch does not follow symlinks: when Kubernetes swaps
 * the `..data` link of a ConfigMap volume, the link the config path names
 * is untouched. So the followed file is also stat()ed on a timer. */
static void poll_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    mr_reloader *r = t->data;
    struct stat now;
    file_mark(r->path, &now);
    if (!same_mark(&now, &r->mark)) {
        r->mark = now;
        changed(r);
    }
}

void mr_reload_start(mr_reloader *r, struct ev_loop *loop, mr_shared *shared, mr_worker *workers,
                     int nworkers)
{
    r->loop = loop;
    r->shared = shared;
    r->workers = workers;
    r->nworkers = nworkers;
    shared->reload = &r->status;
    shared->main_loop = loop;
    shared->switched = &r->switched;
    ev_async_init(&r->switched, switched_cb);
    r->switched.data = r;
    ev_async_start(loop, &r->switched);
    ev_init(&r->warm_close, warm_close_cb);
    r->warm_close.data = r;
    ev_init(&r->debounce, debounce_cb);
    r->debounce.data = r;
    ev_stat_init(&r->watch, watch_cb, r->path, MR_RELOAD_POLL);
    r->watch.data = r;
    ev_stat_start(loop, &r->watch);
    ev_timer_init(&r->poll, poll_cb, MR_RELOAD_POLL, MR_RELOAD_POLL);
    r->poll.data = r;
    ev_timer_start(loop, &r->poll);
}

void mr_reload_stop(mr_reloader *r)
{
    if (!r->loop)
        return;
    ev_stat_stop(r->loop, &r->watch);
    ev_timer_stop(r->loop, &r->poll);
    ev_timer_stop(r->loop, &r->debounce);
    ev_timer_stop(r->loop, &r->warm_close);
    ev_timer_stop(r->loop, &r->parked_timer);
    ev_async_stop(r->loop, &r->switched);
}

void mr_reload_pause(mr_reloader *r)
{
    r->paused = true;
    if (!r->loop)
        return;
    ev_stat_stop(r->loop, &r->watch);
    ev_timer_stop(r->loop, &r->poll);
    ev_timer_stop(r->loop, &r->debounce);
    ev_timer_stop(r->loop, &r->parked_timer);
}

mr_gen *mr_reload_acquire(mr_reloader *r)
{
    pthread_mutex_lock(&r->current_lock);
    mr_gen *gen = r->current;
    if (gen)
        __atomic_add_fetch(&gen->refs, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_unlock(&r->current_lock);
    return gen;
}

void mr_reload_free(mr_reloader *r)
{
    pthread_mutex_lock(&r->current_lock);
    mr_gen *gen = r->current;
    r->current = NULL;
    pthread_mutex_unlock(&r->current_lock);
    mr_gen_release(r->leaving);
    r->leaving = NULL;
    mr_config_free(r->parked);
    r->parked = NULL;
    mr_gen_release(gen);
    pthread_mutex_destroy(&r->status.lock);
    pthread_mutex_destroy(&r->current_lock);
}
