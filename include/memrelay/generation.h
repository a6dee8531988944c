/* Layer: cluster (src/cluster/; may use base, dist, config, protocol, net). */
/* generation.h: one loaded configuration and everything built from it.
 *
 * A generation is immutable once published. Reloading builds a new one off
 * the data path (main thread), then every worker switches to it at its next
 * loop iteration; a worker keeps a reference to the old one while requests
 * it started under that config are in flight, so they finish on the config
 * they began with. The last reference frees it (see reload.c, worker.c).
 */
#ifndef MEMRELAY_GENERATION_H
#define MEMRELAY_GENERATION_H

#include <pthread.h>
#include <stdint.h>

#include "memrelay/config.h"
#include "memrelay/router.h"

/* A pool's warm-up window (docs/operations.md, "Resizing a pool without a
 * miss storm"): after a reload that changed the pool's ring, a miss on a
 * key's new owner is retried on its owner in the generation before
 * (warmup.c). `prev` points into that generation's router, which the entry
 * keeps alive with a reference on `from`. A later reload that leaves the
 * pool's ring as it is carries the open window on (the same entry); one
 * that changes it again warms from the generation just before it, and
 * keeps the window it interrupted as `older`: a key whose owner did not
 * change in the second reload is warmed from its owner before the first
 * (a DNS change often comes as two switches: a server added, then one
 * removed). Windows further back are given up. */
typedef struct mr_gen_warm_ring {
    const mr_pool *prev; /* the pool of the same name in `from`, or NULL: none */
    struct mr_gen *from; /* holds one reference while prev is set */
    double until;        /* wall clock (ev_time) when the window closes */
} mr_gen_warm_ring;

typedef struct mr_gen_warm {
    const mr_pool *prev;    /* the pool of the same name in `from`, or NULL: no window */
    struct mr_gen *from;    /* holds one reference while prev is set */
    double until;           /* wall clock (ev_time) when the window closes */
    mr_gen_warm_ring older; /* the window this one interrupted, while it is open */
} mr_gen_warm;

typedef struct mr_gen {
    uint64_t seq;           /* 1 for the config loaded at start, +1 per successful reload */
    mr_config *cfg;         /* owned */
    mr_router *router;      /* owned; server ids are the registry's stable ids (health.h) */
    int *listen_fds;        /* by pool; -1: no listener. Owned, except fds handed on to the next generation */
    int *tls_listen_fds;    /* by pool: the tls_listen sockets, the same way */
    struct mr_tls_set *tls; /* owned: TLS contexts of its pools (the router points at it) */
    char hash[33];          /* md5 of the file's bytes, hex */
    int64_t loaded_at_ms;   /* wall clock */
    uint32_t refs;          /* atomic: the main thread's plus one per worker still using it */
    /* Warm-up windows. `prev` holds one reference on the generation before,
     * set at build time and dropped by the main thread (mr_gen_warm_end)
     * once no worker can read it any more: when the next switch has ended
     * on every worker, or a grace period after the last window closed.
     * Workers read `warm` only while `warm_until` is ahead of their clock. */
    struct mr_gen *prev;
    mr_gen_warm *warm; /* by pool index; NULL when no pool warms */
    double warm_until; /* latest `until` of any pool (0: none): the hot path's one compare */
} mr_gen;

/* What `stats config` and /metrics report about loading (shared; the mutex
 * guards every field). */
typedef struct mr_reload_status {
    pthread_mutex_t lock;
    char path[1024];
    char hash[33];
    uint64_t seq;
    int64_t loaded_at_ms; /* the config in use */
    uint64_t reloads;     /* successful reloads */
    uint64_t failures;    /* reloads refused (invalid file, bind failure, ...) */
    int64_t last_attempt_ms;
    int64_t last_failure_ms;
    char last_error[600]; /* empty after a success */
} mr_reload_status;

/* Drop a reference; the last one frees the generation (closing the
 * listeners it still owns). Any thread. Returns true when it was freed. */
bool mr_gen_release(mr_gen *gen);
void mr_gen_free(mr_gen *gen);

/* The generation's warm_until, as a worker reads it (the main thread
 * zeroes it when the window's previous generation goes). */
static inline double mr_gen_warm_until(const mr_gen *gen)
{
    double v;
    __atomic_load(&gen->warm_until, &v, __ATOMIC_ACQUIRE);
    return v;
}

/* Close the listening sockets gen still owns (main thread, once no worker
 * watches them: every worker has switched to a newer generation). */
void mr_gen_close_listeners(mr_gen *gen);

/* Open the warm-up windows of `gen` over `prev` (main thread, before gen
 * is published): every pool whose name is in both, whose warmup_window is
 * not 0 and whose ring differs gets one ending `now` + its window (a
 * reference on prev each); a pool whose ring is the same keeps prev's open
 * window, if it has one. Returns the number of pools whose window opened
 * now, or -1 out of memory (then none). */
int mr_gen_warm_open(mr_gen *gen, mr_gen *prev, double now);
/* Do two server lines name the same memcached (address)? A reload that
 * changes only a server's connection count gives it a new id. */
bool mr_gen_same_server(const mr_server_conf *a, const mr_server_conf *b);
/* Close gen's windows and drop their references (main thread; only once
 * no worker can still be reading gen->warm: see mr_gen.warm). */
void mr_gen_warm_end(mr_gen *gen);
/* Seconds left of pool `pool`'s window at `now` (0: closed or none). */
double mr_gen_warm_left(const mr_gen *gen, size_t pool, double now);

/* `stats config` lines into buf; bytes written or -1. */
int mr_reload_status_stats(mr_reload_status *st, char *buf, size_t cap);

#endif
