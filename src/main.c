/* main.c: command line, start-up and shutdown. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "memrelay/admin_http.h"
#include "memrelay/client.h"
#include "memrelay/config.h"
#include "memrelay/health.h"
#include "memrelay/key_locks.h"
#include "memrelay/listener.h"
#include "memrelay/log.h"
#include "memrelay/membership.h"
#include "memrelay/membudget.h"
#include "memrelay/reload.h"
#include "memrelay/router.h"
#include "memrelay/stats_reply.h"
#include "memrelay/tls.h"
#include "memrelay/worker_thread.h"

#define DEFAULT_CONFIG "conf/memrelay.yaml"
#define MAX_THREADS 256

/* The health checker started a rejoin: every worker replays what the
 * server missed (health.h, mr_health_hooks). */
typedef struct {
    mr_worker *workers;
    int nworkers;
} worker_set;

static void wake_workers(void *ctx)
{
    const worker_set *ws = ctx;
    for (int i = 0; i < ws->nworkers; i++)
        mr_worker_health_changed(&ws->workers[i]);
}

/* What the data path (core) calls up into: the layers above it, wired here
 * so that no lower file names a higher one (request.h, mr_core_hooks). */
static const mr_core_hooks core_hooks = {
    .reply_ready = mr_client_req_done,
    .req_freed = mr_worker_req_freed,
    .stats_reply = mr_stats_reply,
    .send = NULL, /* a test seam: messages go to their backends */
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: memrelay [options]\n"
                 "A memcached proxy: ketama pools, multi-get splitting, pipelining.\n\n"
                 "  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
                 "      --check-config  validate the configuration, print the resolved pools\n"
                 "                      and routes, and exit 0 (valid) or 1 (invalid)\n"
                 "  -t, --threads N     worker threads (overrides memrelay.threads; default 1)\n"
                 "      --admin ADDR    HTTP admin listener (/metrics, /healthz, /readyz) on\n"
                 "                      host:port, [v6]:port or a port on 127.0.0.1\n"
                 "                      (overrides memrelay.admin_listen; default off)\n"
                 "  -v, --verbose       more log output; repeat for more\n"
                 "  -q, --quiet         only warnings and errors\n"
                 "      --log-file PATH append log lines to PATH (overrides memrelay.log_file);\n"
                 "                      SIGUSR1 reopens it\n"
                 "  -V, --version       print the version and exit\n"
                 "  -h, --help          this help\n");
}

typedef struct {
    const char *config_path;
    bool check_only;
    int threads;          /* 0: from the config */
    int verbosity;        /* 0: the config's log_level; -1: -q; n: -v n times */
    const char *log_file; /* --log-file, or NULL */
    bool has_admin;       /* --admin given */
    mr_addr_conf admin;   /* its address (host allocated) */
} options;

static int parse_options(int argc, char **argv, options *opt)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},  {"check-config", no_argument, NULL, 'C'},
        {"threads", required_argument, NULL, 't'}, {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},         {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},          {"log-file", required_argument, NULL, 'L'},
        {"admin", required_argument, NULL, 'A'},   {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "c:t:vqVh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            opt->config_path = optarg;
            break;
        case 'C':
            opt->check_only = true;
            break;
        case 't': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || n < 1 || n > MAX_THREADS) {
                fprintf(stderr, "memrelay: --threads wants a number from 1 to %d, not '%s'\n", MAX_THREADS,
                        optarg);
                return 1;
            }
            opt->threads = (int)n;
            break;
        }
        case 'L':
            opt->log_file = optarg;
            break;
        case 'A': {
            free(opt->admin.host);
            const char *why = mr_config_admin_addr(optarg, &opt->admin);
            if (why) {
                fprintf(stderr, "memrelay: bad --admin address '%s': %s\n", optarg, why);
                return 1;
            }
            opt->has_admin = true;
            break;
        }
        case 'v':
            opt->verbosity++;
            break;
        case 'q':
            opt->verbosity = -1;
            break;
        case 'V':
            printf("memrelay %s\n", MEMRELAY_VERSION);
            exit(0);
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "memrelay: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 1;
    }
    return 0;
}

/* Graceful shutdown: the first SIGTERM/SIGINT stops accepting and reading,
 * and lets every request already read be answered, for up to
 * memrelay.shutdown_timeout; a second signal, or the timeout, ends it. */
typedef struct {
    mr_worker *workers;
    int nworkers;
    bool draining;
    ev_timer deadline;
    ev_timer poll;
    mr_reloader *reloader;
} shutdown_state;

static shutdown_state shutdown_ctl;

static void drain_poll_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    for (int i = 0; i < shutdown_ctl.nworkers; i++)
        if (!mr_worker_drained(&shutdown_ctl.workers[i]))
            return;
    mr_log_info("drained: every request answered");
    ev_break(loop, EVBREAK_ALL);
}

static void drain_deadline_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    mr_log_warn("shutdown_timeout reached with requests still in flight: exiting");
    ev_break(loop, EVBREAK_ALL);
}

static void refuse_listeners(const mr_gen *gen)
{
    for (size_t i = 0; gen && i < gen->cfg->npools; i++) {
        mr_listener_refuse(gen->listen_fds[i]);
        mr_listener_refuse(gen->tls_listen_fds[i]);
    }
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    const mr_config *cfg = shutdown_ctl.reloader->current->cfg;
    if (shutdown_ctl.draining || cfg->shutdown_timeout_ms == 0) {
        mr_log_info("signal %d: shutting down now", w->signum);
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    mr_log_info("signal %d: draining (new connections refused; answering what clients sent, up to %u ms)",
                w->signum, cfg->shutdown_timeout_ms);
    __atomic_store_n(&shutdown_ctl.draining, true, __ATOMIC_RELEASE); /* the admin thread reads it */
    /* New connections are refused from now on (a client fails over at once
     * instead of waiting on a backlog nobody serves), and no reload opens
     * new listeners; connections already accepted are drained. */
    mr_reload_pause(shutdown_ctl.reloader);
    refuse_listeners(shutdown_ctl.reloader->current);
    refuse_listeners(shutdown_ctl.reloader->switching);
    for (int i = 0; i < shutdown_ctl.nworkers; i++)
        mr_worker_drain(&shutdown_ctl.workers[i]);
    ev_timer_init(&shutdown_ctl.deadline, drain_deadline_cb, cfg->shutdown_timeout_ms / 1000.0, 0);
    ev_timer_start(loop, &shutdown_ctl.deadline);
    ev_timer_init(&shutdown_ctl.poll, drain_poll_cb, 0.01, 0.01);
    ev_timer_start(loop, &shutdown_ctl.poll);
}

static void log_listener(const mr_pool_conf *p, const mr_addr_conf *a, bool tls)
{
    const char *kind = tls ? (p->tls_verify_client ? " (TLS, client certificates required)" : " (TLS)") : "";
    if (a->is_unix)
        mr_log_info("pool %s listening on %s%s (%zu servers)", p->name, a->host, kind, p->nservers);
    else if (strchr(a->host, ':'))
        mr_log_info("pool %s listening on [%s]:%u%s (%zu servers)", p->name, a->host, a->port, kind,
                    p->nservers);
    else
        mr_log_info("pool %s listening on %s:%u%s (%zu servers)", p->name, a->host, a->port, kind,
                    p->nservers);
}

static void log_listeners(const mr_config *cfg)
{
    for (size_t i = 0; i < cfg->npools; i++) {
        const mr_pool_conf *p = &cfg->pools[i];
        if (p->has_listen)
            log_listener(p, &p->listen, p->tls);
        if (p->has_tls_listen)
            log_listener(p, &p->tls_listen, true);
    }
}

/* What the admin listener reads: the generation in force, held while an
 * HTTP request reads it. */
typedef struct {
    mr_reloader *reloader;
    mr_health *health;
    double started;
    const mr_discovery *discovery;
    const mr_membudget *membudget;
} admin_ctx;

static bool admin_acquire(void *arg, mr_admin_view *v)
{
    admin_ctx *a = arg;
    mr_gen *gen = mr_reload_acquire(a->reloader);
    if (!gen)
        return false;
    v->cfg = gen->cfg;
    v->router = gen->router;
    v->gen = gen;
    v->health = a->health;
    v->discovery = a->discovery;
    v->membudget = a->membudget;
    v->started = a->started;
    v->reload = &a->reloader->status;
    v->draining = __atomic_load_n(&shutdown_ctl.draining, __ATOMIC_ACQUIRE);
    v->token = gen;
    return true;
}

static void admin_release(void *arg, mr_admin_view *v)
{
    mr_gen_release(v->token);
}

static void on_sighup(struct ev_loop *loop, ev_signal *w, int revents)
{
    mr_reload_now(w->data, "SIGHUP", true);
}

/* Level and destination from the config, the command line winning. A
 * config reload calls this again with the new config. */
static int apply_logging(const mr_config *cfg, const options *opt)
{
    int level = cfg->log_level;
    if (opt->verbosity < 0)
        level = MR_LOG_WARN;
    else if (opt->verbosity > 0)
        level = opt->verbosity >= MR_LOG_TRACE - MR_LOG_INFO ? MR_LOG_TRACE : MR_LOG_INFO + opt->verbosity;
    mr_log_set_level((mr_log_level)level);
    char err[512];
    if (mr_log_open(opt->log_file ? opt->log_file : cfg->log_file, err, sizeof(err)) != 0) {
        mr_log_error("%s", err);
        return -1;
    }
    return 0;
}

/* SIGUSR1: logrotate moved the file away; write to a new one at the path. */
static void on_sigusr1(struct ev_loop *loop, ev_signal *w, int revents)
{
    mr_log_reopen();
}

/* Once a second: report lines the rate limiter held back, even when the
 * flood that caused them has stopped. */
static void on_log_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    mr_log_flush_suppressed();
}

/* memory_limit's budget, made once at start-up (set before any worker runs). */
static mr_membudget *membudget;

/* A reload took a new config: its logging settings and memory_limit apply now. */
static void on_config(void *ctx, const mr_config *cfg)
{
    apply_logging(cfg, ctx);
    if (membudget)
        mr_membudget_set_limit(membudget, cfg->memory_limit);
}

int main(int argc, char **argv)
{
    options opt = {.config_path = DEFAULT_CONFIG};
    if (parse_options(argc, argv, &opt) != 0) {
        free(opt.admin.host);
        return 1;
    }
    if (opt.check_only) {
        mr_config_error err;
        mr_config *cfg = mr_config_load(opt.config_path, &err);
        if (!cfg) {
            fprintf(stderr, "memrelay: %s\n", err.message);
            return 1;
        }
        mr_config_warn_unprotected(cfg);
        mr_config_print(stdout, cfg);
        printf("configuration %s is valid\n", opt.config_path);
        mr_config_free(cfg);
        free(opt.admin.host);
        return 0;
    }
    /* Until the config is read: the command line's level, on stderr. */
    if (opt.verbosity != 0)
        mr_log_set_level(opt.verbosity < 0 ? MR_LOG_WARN
                                           : (mr_log_level)(opt.verbosity >= MR_LOG_TRACE - MR_LOG_INFO
                                                                ? MR_LOG_TRACE
                                                                : MR_LOG_INFO + opt.verbosity));

    static mr_reloader reloader;
    static mr_shared shared;
    mr_health *health = mr_health_create();
    if (!health || mr_reload_init(&reloader, opt.config_path, health) < 0) {
        mr_health_free(health);
        free(opt.admin.host);
        return 1;
    }
    const mr_config *cfg = reloader.current->cfg;
    if (apply_logging(cfg, &opt) != 0) {
        mr_reload_free(&reloader);
        mr_health_free(health);
        free(opt.admin.host);
        return 1;
    }
    mr_config_warn_unprotected(cfg);
    reloader.on_config = on_config;
    reloader.on_config_ctx = &opt;
    int nworkers = opt.threads ? opt.threads : (cfg->threads > 0 ? cfg->threads : 1);
    int rc = 1;
    mr_worker *workers = calloc((size_t)nworkers, sizeof(mr_worker));
    if (!workers) {
        mr_log_error("start-up failed");
        mr_reload_free(&reloader);
        mr_health_free(health);
        free(opt.admin.host);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    /* Block the control signals in workers: only the main loop handles them. */
    sigset_t stop_set, old_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    sigaddset(&stop_set, SIGHUP);
    sigaddset(&stop_set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &stop_set, &old_set);

    struct ev_loop *main_loop = ev_default_loop(EVFLAG_AUTO);
    ev_signal log_reopen;
    ev_timer log_tick;
    ev_signal_init(&log_reopen, on_sigusr1, SIGUSR1);
    ev_signal_start(main_loop, &log_reopen);
    ev_timer_init(&log_tick, on_log_tick, 1.0, 1.0);
    ev_timer_start(main_loop, &log_tick);
    /* The resolver, and the servers of pools that find theirs in DNS: the
     * generation is rebuilt with the first answers before anything serves. */
    mr_membership *membership = mr_membership_start(&reloader, main_loop);
    if (!membership) {
        mr_reload_free(&reloader);
        mr_health_free(health);
        free(workers);
        free(opt.admin.host);
        return 1;
    }
    cfg = reloader.current->cfg;
    shared.discovery = mr_membership_discovery(membership);
    shared.started = ev_time();
    shared.nworkers = nworkers;
    /* One worker needs no key locks: its connections keep every key's order. */
    if (nworkers > 1 && !(shared.key_locks = mr_key_locks_new((uint32_t)nworkers))) {
        fprintf(stderr, "memrelay: out of memory\n");
        return 1;
    }
    if (!(membudget = mr_membudget_new(cfg->memory_limit, (uint32_t)nworkers))) {
        fprintf(stderr, "memrelay: out of memory\n");
        return 1;
    }
    shared.membudget = membudget;
    shared.health = health;
    shared.hooks = &core_hooks;
    /* The health checker's async watcher, and the reloader's, must exist
     * before a worker can report to them. */
    static worker_set all_workers;
    all_workers = (worker_set){workers, nworkers};
    const mr_health_hooks health_hooks = {wake_workers, &all_workers};
    mr_health_start(health, main_loop, nworkers, &health_hooks);
    mr_reload_start(&reloader, main_loop, &shared, workers, nworkers);
    int started = 0, inited = 0;
    for (int i = 0; i < nworkers; i++) {
        if (mr_worker_init(&workers[i], (uint32_t)i, &shared, reloader.current) < 0) {
            mr_log_error("cannot start worker %d", i);
            inited++;
            break;
        }
        inited++;
        if (mr_worker_start(&workers[i]) < 0) {
            mr_log_error("cannot start worker %d", i);
            break;
        }
        started++;
    }
    /* The admin listener's thread starts with the stop signals blocked too;
     * --admin overrides memrelay.admin_listen; neither: no listener. */
    const mr_addr_conf *admin_addr = NULL;
    if (opt.has_admin)
        admin_addr = &opt.admin;
    else if (cfg->has_admin_listen)
        admin_addr = &cfg->admin_listen;
    static admin_ctx admin_arg;
    admin_arg = (admin_ctx){&reloader, health, shared.started, shared.discovery, membudget};
    mr_admin_source admin_source = {admin_acquire, admin_release, &admin_arg};
    mr_admin_http *admin = NULL;
    if (admin_addr && !mr_addr_is_loopback(admin_addr))
        mr_log_warn(
            "the HTTP admin listener is on %s, not loopback, and has no authentication: anyone who can "
            "reach it can read the metrics (keep it on 127.0.0.1 or firewall it)",
            admin_addr->host);
    bool run = started == nworkers;
    if (run && admin_addr && !(admin = mr_admin_http_start(admin_addr, &admin_source)))
        run = false; /* asked for and cannot listen: stop, as for a pool's listener */
    /* The handlers exist before the signals are unblocked: a SIGHUP or
     * SIGTERM sent during start-up waits for them instead of killing us. */
    ev_signal sigint, sigterm, sighup;
    if (run) {
        shutdown_ctl.workers = workers;
        shutdown_ctl.nworkers = nworkers;
        shutdown_ctl.reloader = &reloader;
        ev_signal_init(&sigint, on_signal, SIGINT);
        ev_signal_init(&sigterm, on_signal, SIGTERM);
        ev_signal_init(&sighup, on_sighup, SIGHUP);
        sighup.data = &reloader;
        ev_signal_start(main_loop, &sigint);
        ev_signal_start(main_loop, &sigterm);
        ev_signal_start(main_loop, &sighup);
    }
    pthread_sigmask(SIG_SETMASK, &old_set, NULL);
    if (run) {
        mr_log_info("memrelay %s started: %d worker thread%s, config %s (md5 %s)", MEMRELAY_VERSION, nworkers,
                    nworkers == 1 ? "" : "s", opt.config_path, cfg->hash);
        log_listeners(cfg);
        ev_run(main_loop, 0);
        rc = 0;
    }
    mr_admin_http_stop(admin); /* before the workers: it reads their counters */
    for (int i = 0; i < started; i++)
        mr_worker_stop(&workers[i]);
    for (int i = 0; i < started; i++)
        mr_worker_join(&workers[i]);
    for (int i = 0; i < inited; i++)
        mr_worker_destroy(&workers[i]);
    mr_reload_stop(&reloader);
    mr_membership_free(membership);
    mr_health_stop(health);
    mr_reload_free(&reloader);
    ev_loop_destroy(main_loop);
    free(workers);
    mr_health_free(health);
    mr_key_locks_free(shared.key_locks);
    mr_membudget_free(membudget);
    free(opt.admin.host);
    return rc;
}
