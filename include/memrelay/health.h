/* health.h: which servers are fit to serve, shared by all workers.
 *
 * Workers report what they see (a refused or reset connection marks a
 * server down at once; timeouts and malformed replies count towards the
 * pool's `server_failure_limit`; any good reply clears the count). A down
 * server gets no client requests: it is probed by the main thread with
 * `version` (first after `server_retry_timeout`, then backing off x1.5 with
 * jitter up to `probe_backoff_max`) and returns only after `probe_success`
 * good probes in a row, once every worker has replayed the writes it missed.
 * Live servers are probed when idle (`probe_interval`).
 *
 * The state of each server is a few atomics: the request path reads them
 * with one relaxed load and never locks. docs/health.md has the state machine.
 */
#ifndef MEMRELAY_HEALTH_H
#define MEMRELAY_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

#include <ev.h>

#include "memrelay/backend.h"
#include "memrelay/router.h"

struct mr_worker;
struct mr_tls_conn;
struct mr_tls_set;

typedef enum { MR_HEALTH_UP = 0, MR_HEALTH_DOWN = 1, MR_HEALTH_REJOINING = 2 } mr_health_state;

typedef struct mr_server_health {
    /* Shared: atomics only. */
    uint32_t state;          /* mr_health_state */
    uint32_t failures;       /* consecutive failures seen by workers */
    uint32_t last_error;     /* mr_err of the last failure */
    uint32_t rejoin_gen;     /* bumped when a rejoin starts */
    uint32_t rejoin_pending; /* workers that have not replayed yet */
    uint32_t ejected;        /* out of its pool's ring now */
    int64_t down_at_ms;      /* wall clock when it went down (0 if never) */
    int64_t next_probe_ms;   /* wall clock of the next probe (0: none) */
    int64_t quarantine_until_ms; /* on_rejoin quarantine: no reads before this (wall clock) */
    uint64_t downs, probes, probe_failures, rejoins;
    /* Main thread only: the prober. */
    struct mr_health *health;
    uint32_t id;
    int fd;
    ev_io io;
    ev_timer timer;
    ev_tstamp backoff;       /* current wait between failed probes, seconds */
    uint32_t successes;      /* good probes in a row */
    bool probing;            /* a probe is in flight */
    bool idle_probe;         /* the probe in flight checks a live server */
    int probe_error;         /* why the last probe failed (mr_err) */
    struct mr_tls_conn *tls; /* server_tls pools: the probe's TLS state */
    bool tls_sent;           /* the probe's `version` went to TLS */
    char buf[64];
    uint32_t buflen;
} mr_server_health;

typedef struct mr_health {
    struct ev_loop *loop;          /* the main thread's */
    const mr_router *router;
    const mr_backend_addr *addrs;
    const struct mr_tls_set *tls;  /* contexts for server_tls pools (set before mr_health_start) */
    mr_server_health *servers;     /* by server id */
    mr_live_ring *graveyard;       /* replaced rings, freed after a grace period */
    ev_async wake;                 /* a worker changed a state */
    ev_timer idle_timer;           /* idle probes of live servers */
    ev_timer reaper;               /* frees old rings */
    struct mr_worker *workers;
    int nworkers;
} mr_health;

mr_health *mr_health_create(const mr_router *router, const mr_backend_addr *addrs);
/* Start probing from `loop` (the main thread's); workers must exist. */
void mr_health_start(mr_health *h, struct ev_loop *loop, struct mr_worker *workers, int nworkers);
void mr_health_stop(mr_health *h);
void mr_health_free(mr_health *h);

/* Worker side. `immediate`: the failure alone marks the server down. */
void mr_health_failure(mr_health *h, uint32_t server, int err, bool immediate);
static inline void mr_health_success(mr_health *h, uint32_t server)
{
    if (__atomic_load_n(&h->servers[server].failures, __ATOMIC_RELAXED) != 0)
        __atomic_store_n(&h->servers[server].failures, 0, __ATOMIC_RELAXED);
}
static inline uint32_t mr_health_state_of(const mr_health *h, uint32_t server)
{
    return __atomic_load_n(&h->servers[server].state, __ATOMIC_ACQUIRE);
}
/* A worker has replayed what `server` missed (rejoin barrier). */
void mr_health_rejoin_ack(mr_health *h, uint32_t server);

const char *mr_health_state_name(uint32_t state);

/* Quarantine (on_rejoin: quarantine): the server takes writes but serves no
 * reads until `ms` from now. */
void mr_health_quarantine(mr_health *h, uint32_t server, uint32_t ms);
/* Is the server out of reads now? One relaxed load unless it is. */
bool mr_health_quarantined(const mr_health *h, uint32_t server);

/* `stats servers` text into buf; returns bytes written or -1. */
int mr_health_stats(const mr_health *h, char *buf, size_t cap);

#endif
