/* Layer: ops (src/ops/; may use base, dist, config, protocol, net, cluster, core, proxy). */
/* reload.h: loading the configuration at start and again while running.
 *
 * Triggers: SIGHUP, and a change of the file (an ev_stat watch, debounced,
 * so an editor's several writes or Kubernetes' symlink swap make one
 * reload). The new file is parsed, validated and built on the main thread,
 * off the data path; listeners it adds are bound before anything switches.
 * If any step fails the old config keeps serving and the failure is logged
 * and counted. Otherwise the new generation is published to every worker at
 * once (docs/operations.md has the whole story).
 */
#ifndef MEMRELAY_RELOAD_H
#define MEMRELAY_RELOAD_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/stat.h>

#include <ev.h>

#include "memrelay/generation.h"
#include "memrelay/health.h"
#include "memrelay/worker_thread.h"

/* Wait after the last change of the file before reloading. */
#define MR_RELOAD_DEBOUNCE 0.3
/* How often the file is stat()ed when inotify cannot tell (and as a backstop). */
#define MR_RELOAD_POLL 1.0

typedef struct mr_reloader {
    struct ev_loop *loop;
    const char *path;
    mr_health *health;
    mr_shared *shared;
    mr_worker *workers;
    int nworkers;
    mr_gen *current;              /* the main thread's reference; swapped under current_lock */
    pthread_mutex_t current_lock; /* for threads that take a reference of their own (admin HTTP) */
    mr_gen *switching;            /* published; not every worker has switched yet */
    mr_gen
        *leaving; /* the generation switching replaces: the main thread's reference until the switch ends */
    bool again;   /* asked to reload while switching */
    bool again_forced;
    bool paused;        /* shutting down: no more reloads (mr_reload_pause) */
    bool again_members; /* asked to apply a new DNS membership while switching */
    mr_config *parked;  /* loaded, waiting for its new servers' first DNS answers (reload.c) */
    char parked_why[300];
    ev_tstamp parked_until; /* switch anyway then */
    ev_timer parked_timer;
    ev_stat watch;    /* inotify where it can (the path itself) */
    ev_timer poll;    /* stat() of the file the path leads to (symlinks followed) */
    struct stat mark; /* what poll saw last */
    ev_timer debounce;
    ev_async switched;   /* workers report switches and released generations */
    ev_timer warm_close; /* logs the end of the current generation's warm-up window */
    mr_reload_status status;
    /* Called on the main thread after a reload took a new config (process
     * settings such as logging); optional. */
    void (*on_config)(void *ctx, const mr_config *cfg);
    void *on_config_ctx;
    /* The servers DNS found for the pools that discover theirs
     * (discovery.c); every load of the file uses them. Optional. */
    const mr_pool_members *(*members)(void *ctx, size_t *n);
    void *members_ctx;
} mr_reloader;

/* Load the first generation (no workers yet). Returns -1 after logging. */
int mr_reload_init(mr_reloader *r, const char *path, mr_health *health);
/* Watch the file and take reloads from now on (workers running). */
void mr_reload_start(mr_reloader *r, struct ev_loop *loop, mr_shared *shared, mr_worker *workers,
                     int nworkers);
void mr_reload_stop(mr_reloader *r);
/* Stop watching the file (a graceful shutdown): a switch already under way
 * still completes. */
void mr_reload_pause(mr_reloader *r);
/* Reload now. `force`: even if the file's bytes did not change (SIGHUP:
 * certificates and credentials it names may have). Returns 0 on success or
 * when there was nothing to do, -1 when the reload was refused. */
int mr_reload_now(mr_reloader *r, const char *why, bool force);
/* DNS changed a pool's membership: build the file's text (as last loaded)
 * again with the new members and switch to it, as a reload does. */
int mr_reload_members(mr_reloader *r, const char *why);
/* A reference to the generation in force, for a thread other than a
 * worker (the admin listener); drop it with mr_gen_release. */
mr_gen *mr_reload_acquire(mr_reloader *r);

/* After the workers are gone: drop the main thread's references. */
void mr_reload_free(mr_reloader *r);

#endif
