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

typedef struct mr_gen {
    uint64_t seq;          /* 1 for the config loaded at start, +1 per successful reload */
    mr_config *cfg;        /* owned */
    mr_router *router;     /* owned; server ids are the registry's stable ids (health.h) */
    int *listen_fds;       /* by pool; -1: no listener. Owned, except fds handed on to the next generation */
    int *tls_listen_fds;   /* by pool: the tls_listen sockets, the same way */
    struct mr_tls_set *tls; /* owned: TLS contexts of its pools (the router points at it) */
    char hash[33];         /* md5 of the file's bytes, hex */
    int64_t loaded_at_ms;  /* wall clock */
    uint32_t refs;         /* atomic: the main thread's plus one per worker still using it */
} mr_gen;

/* What `stats config` and /metrics report about loading (shared; the mutex
 * guards every field). */
typedef struct mr_reload_status {
    pthread_mutex_t lock;
    char path[1024];
    char hash[33];
    uint64_t seq;
    int64_t loaded_at_ms;       /* the config in use */
    uint64_t reloads;           /* successful reloads */
    uint64_t failures;          /* reloads refused (invalid file, bind failure, ...) */
    int64_t last_attempt_ms;
    int64_t last_failure_ms;
    char last_error[600];       /* empty after a success */
} mr_reload_status;

/* Drop a reference; the last one frees the generation (closing the
 * listeners it still owns). Any thread. Returns true when it was freed. */
bool mr_gen_release(mr_gen *gen);
void mr_gen_free(mr_gen *gen);

/* `stats config` lines into buf; bytes written or -1. */
int mr_reload_status_stats(mr_reload_status *st, char *buf, size_t cap);

#endif
