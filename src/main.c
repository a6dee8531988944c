/* main.c: command line, start-up and shutdown. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "memrelay/config.h"
#include "memrelay/health.h"
#include "memrelay/listener.h"
#include "memrelay/log.h"
#include "memrelay/router.h"
#include "memrelay/worker.h"

#define DEFAULT_CONFIG "conf/memrelay.yaml"
#define MAX_THREADS 256

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: memrelay [options]\n"
            "A memcached proxy: ketama pools, multi-get splitting, pipelining.\n\n"
            "  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
            "      --check-config  validate the configuration, print the resolved pools\n"
            "                      and routes, and exit 0 (valid) or 1 (invalid)\n"
            "  -t, --threads N     worker threads (overrides memrelay.threads; default 1)\n"
            "  -v, --verbose       more log output; repeat for more\n"
            "  -q, --quiet         only warnings and errors\n"
            "  -V, --version       print the version and exit\n"
            "  -h, --help          this help\n");
}

typedef struct {
    const char *config_path;
    bool check_only;
    int threads; /* 0: from the config */
    int verbosity;
} options;

static int parse_options(int argc, char **argv, options *opt)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 'C'},
        {"threads", required_argument, NULL, 't'}, {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},         {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
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

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    const mr_config *cfg = w->data;
    if (shutdown_ctl.draining || cfg->shutdown_timeout_ms == 0) {
        mr_log_info("signal %d: shutting down now", w->signum);
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    mr_log_info("signal %d: draining (no new connections or requests; up to %u ms)", w->signum,
                cfg->shutdown_timeout_ms);
    shutdown_ctl.draining = true;
    for (int i = 0; i < shutdown_ctl.nworkers; i++)
        mr_worker_drain(&shutdown_ctl.workers[i]);
    ev_timer_init(&shutdown_ctl.deadline, drain_deadline_cb, cfg->shutdown_timeout_ms / 1000.0, 0);
    ev_timer_start(loop, &shutdown_ctl.deadline);
    ev_timer_init(&shutdown_ctl.poll, drain_poll_cb, 0.01, 0.01);
    ev_timer_start(loop, &shutdown_ctl.poll);
}

static void log_listeners(const mr_config *cfg)
{
    for (size_t i = 0; i < cfg->npools; i++) {
        const mr_pool_conf *p = &cfg->pools[i];
        if (!p->has_listen)
            continue;
        if (p->listen.is_unix)
            mr_log_info("pool %s listening on %s (%zu servers)", p->name, p->listen.host, p->nservers);
        else if (strchr(p->listen.host, ':'))
            mr_log_info("pool %s listening on [%s]:%u (%zu servers)", p->name, p->listen.host, p->listen.port,
                        p->nservers);
        else
            mr_log_info("pool %s listening on %s:%u (%zu servers)", p->name, p->listen.host, p->listen.port,
                        p->nservers);
    }
}

int main(int argc, char **argv)
{
    options opt = {.config_path = DEFAULT_CONFIG};
    if (parse_options(argc, argv, &opt) != 0)
        return 1;
    int level = MR_LOG_INFO + opt.verbosity;
    if (level < MR_LOG_WARN)
        level = MR_LOG_WARN;
    if (level > MR_LOG_TRACE)
        level = MR_LOG_TRACE;
    mr_log_set_level((mr_log_level)level);

    mr_config_error err;
    mr_config *cfg = mr_config_load(opt.config_path, &err);
    if (!cfg) {
        fprintf(stderr, "memrelay: %s\n", err.message);
        return 1;
    }
    mr_config_warn_unprotected(cfg);
    if (opt.check_only) {
        mr_config_print(stdout, cfg);
        printf("configuration %s is valid\n", opt.config_path);
        mr_config_free(cfg);
        return 0;
    }
    int nworkers = opt.threads ? opt.threads : (cfg->threads > 0 ? cfg->threads : 1);

    int rc = 1;
    mr_router *router = mr_router_build(cfg);
    mr_backend_addr *addrs = router ? mr_backend_resolve_all(router) : NULL;
    mr_health *health = addrs ? mr_health_create(router, addrs) : NULL;
    int *listen_fds = calloc(cfg->npools, sizeof(int));
    uint32_t *pool_clients = calloc(cfg->npools, sizeof(uint32_t));
    mr_worker *workers = calloc((size_t)nworkers, sizeof(mr_worker));
    if (!router || !addrs || !health || !listen_fds || !pool_clients || !workers) {
        mr_log_error("start-up failed");
        goto out;
    }
    for (size_t i = 0; i < cfg->npools; i++)
        listen_fds[i] = -1;
    for (size_t i = 0; i < cfg->npools; i++) {
        if (!cfg->pools[i].has_listen)
            continue;
        if ((listen_fds[i] = mr_listener_open(&cfg->pools[i])) < 0)
            goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    /* Block the stop signals in workers: only the main loop handles them. */
    sigset_t stop_set, old_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    sigaddset(&stop_set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop_set, &old_set);

    struct ev_loop *main_loop = ev_default_loop(EVFLAG_AUTO);
    mr_shared shared = {
        .cfg = cfg, .router = router, .addrs = addrs, .listen_fds = listen_fds,
        .started = ev_time(), .nworkers = nworkers, .health = health, .pool_clients = pool_clients,
    };
    /* The health checker's async watcher must exist before a worker can
     * report a failure. */
    mr_health_start(health, main_loop, workers, nworkers);
    int started = 0;
    for (int i = 0; i < nworkers; i++) {
        if (mr_worker_init(&workers[i], (uint32_t)i, &shared) < 0 || mr_worker_start(&workers[i]) < 0) {
            mr_log_error("cannot start worker %d", i);
            break;
        }
        started++;
    }
    pthread_sigmask(SIG_SETMASK, &old_set, NULL);
    if (started == nworkers) {
        mr_log_info("memrelay %s started: %d worker thread%s, config %s", MEMRELAY_VERSION, nworkers,
                    nworkers == 1 ? "" : "s", opt.config_path);
        log_listeners(cfg);
        ev_signal sigint, sigterm;
        shutdown_ctl.workers = workers;
        shutdown_ctl.nworkers = nworkers;
        ev_signal_init(&sigint, on_signal, SIGINT);
        ev_signal_init(&sigterm, on_signal, SIGTERM);
        sigint.data = sigterm.data = cfg;
        ev_signal_start(main_loop, &sigint);
        ev_signal_start(main_loop, &sigterm);
        ev_run(main_loop, 0);
        rc = 0;
    }
    for (int i = 0; i < started; i++)
        mr_worker_stop(&workers[i]);
    for (int i = 0; i < started; i++)
        mr_worker_join(&workers[i]);
    for (int i = 0; i < nworkers; i++)
        mr_worker_destroy(&workers[i]);
    mr_health_stop(health);
    ev_loop_destroy(main_loop);
out:
    for (size_t i = 0; listen_fds && i < cfg->npools; i++)
        if (listen_fds[i] >= 0)
            mr_listener_close(&cfg->pools[i], listen_fds[i]);
    free(workers);
    free(listen_fds);
    free(pool_clients);
    mr_health_free(health);
    free(addrs);
    mr_router_free(router);
    mr_config_free(cfg);
    return rc;
}
