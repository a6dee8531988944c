/* Layer: cluster (src/cluster/; may use base, dist, config, protocol, net). */
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

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <ev.h>

#include "memrelay/error.h"
#include "memrelay/latency.h"
#include "memrelay/net.h"
#include "memrelay/probe.h"
#include "memrelay/router.h"

struct mr_tls_set;
struct mr_dns;
struct mr_dns_query;

typedef enum { MR_HEALTH_UP = 0, MR_HEALTH_DOWN = 1, MR_HEALTH_REJOINING = 2 } mr_health_state;

/* What the health checker tells the layers above it (main.c installs them
 * with mr_health_start). */
typedef struct mr_health_hooks {
    /* Main thread: a server entered REJOINING; every worker must replay
     * what it missed, then acknowledge (mr_health_rejoin_ack). Also called
     * when a server's name resolves to a new address: each worker moves its
     * connections (their addr_version is old). */
    void (*rejoin_started)(void *ctx);
    void *ctx;
} mr_health_hooks;

/* Server ids are stable for the life of the process: the registry gives a
 * server (by pool name, address and connection count) the same id in every
 * config that has it, so a reload keeps its connections, replay queue and
 * health. Ids are never reused; entries live in fixed chunks that never move. */
#define MR_HEALTH_CHUNK 64u
#define MR_HEALTH_MAX_CHUNKS 1024u
#define MR_MAX_SERVER_IDS (MR_HEALTH_CHUNK * MR_HEALTH_MAX_CHUNKS)
/* Stable slots for per-pool counters (by pool name), across reloads. */
#define MR_MAX_POOL_SLOTS 256u
/* What one server's requests came to, summed over every worker: the
 * workers add with relaxed atomics where a message finishes (request.c),
 * readers load. Kept away from `state` (below) so these writes do not
 * slow the per-request state reads on other cores. */
typedef struct {
    uint64_t requests; /* messages handed to the server that finished: replied or failed */
    uint64_t timeouts; /* messages answered SERVER_ERROR timeout, counted when the deadline passed */
    uint64_t errors[MR_ERR_COUNT]; /* finished messages by the error they ended with ([MR_ERR_NONE] unused) */
    mr_latency_hist latency;       /* queued -> reply complete, for every reply received (late ones too) */
} mr_server_traffic;

typedef struct mr_server_health {
    /* Immutable once the id exists (any thread may read). */
    char *identity; /* registry key: pool, address, connections */
    char *name;     /* the server line as first written, for log lines */
    char *pool;     /* its pool's name */
    /* Where it is (resolve.c). A unix path or an IP literal is fixed; a
     * host name is looked up on the main thread without blocking: when the
     * server first appears, before each probe while it is down, when a
     * worker (re)connects, and every dns_refresh ms (or the record's TTL,
     * when shorter) while it is up. Workers copy `addr` when they connect. */
    char *host;                        /* immutable: the name to look up, or NULL (fixed address) */
    uint16_t port;                     /* immutable */
    uint8_t source;                    /* immutable: mr_servers_source of the line that made it */
    pthread_mutex_t addr_lock;         /* guards addr, resolved_ms and resolve_error */
    mr_sockaddr addr;                  /* len 0: a name that has not resolved yet */
    int64_t resolved_ms;               /* wall clock of the last good lookup (0: none; fixed addresses: 0) */
    char resolve_error[96];            /* why the last lookup failed; "" after a good one */
    uint32_t addr_version;             /* atomic: bumped whenever addr changes */
    uint32_t resolve_wanted;           /* atomic: a worker reconnects; look the name up again */
    uint64_t lookups, lookup_failures; /* atomic */
    /* Shared: atomics only. */
    uint32_t failure_limit;      /* its pool's server_failure_limit (a reload may change it) */
    uint32_t state;              /* mr_health_state */
    uint32_t failures;           /* consecutive failures seen by workers */
    uint32_t last_error;         /* mr_err of the last failure */
    uint32_t rejoin_gen;         /* bumped when a rejoin starts */
    uint32_t rejoin_pending;     /* workers that have not replayed yet */
    uint32_t ejected;            /* out of its pool's ring now */
    int64_t down_at_ms;          /* wall clock when it went down (0 if never) */
    int64_t next_probe_ms;       /* wall clock of the next probe (0: none) */
    int64_t quarantine_until_ms; /* on_rejoin quarantine: no reads before this (wall clock) */
    uint64_t downs, probes, probe_failures, rejoins;
    /* Main thread only: the prober. */
    struct mr_health *health;
    uint32_t id;
    ev_timer timer;              /* the next probe, or the one in flight's deadline */
    ev_tstamp backoff;           /* current wait between failed probes, seconds */
    uint32_t successes;          /* good probes in a row */
    bool probing;                /* a probe is in flight */
    bool idle_probe;             /* the probe in flight checks a live server */
    mr_probe probe;              /* the probe's connection (probe.h); probe.error: why the last one failed */
    struct mr_dns_query *lookup; /* the name's lookup in flight (resolve.c) */
    ev_timer refresh;            /* the next lookup of a live server's name */
    bool probe_after_lookup;     /* a probe waits for the lookup in flight */
    bool lookup_failing;         /* the last lookup failed (logged once per change) */
    bool looked_up;              /* its first lookup has ended */
    /* Shared: atomics only. After the prober's fields, and padded, so it
     * shares no cache line with this or the next server's `state`. */
    mr_server_traffic traffic;
    char pad[64];
} mr_server_health;

typedef struct mr_health {
    struct ev_loop *loop;                           /* the main thread's */
    const mr_router *router;                        /* the current config's (main thread only) */
    mr_server_health *chunks[MR_HEALTH_MAX_CHUNKS]; /* by server id / MR_HEALTH_CHUNK */
    uint32_t nids;                                  /* ids handed out so far */
    char *pool_slots[MR_MAX_POOL_SLOTS];            /* pool name of each counter slot */
    uint32_t npool_slots;
    mr_live_ring *graveyard; /* replaced rings, freed after a grace period */
    ev_async wake;           /* a worker changed a state */
    ev_timer idle_timer;     /* idle probes of live servers */
    ev_timer reaper;         /* frees old rings */
    mr_health_hooks hooks;   /* from mr_health_start */
    /* What the registry sets up each new server's prober with (health.c's). */
    const mr_probe_ops *probe_ops;
    void (*probe_timer_cb)(struct ev_loop *loop, ev_timer *t, int revents);
    int nworkers;             /* the acknowledgements a rejoin waits for */
    struct mr_dns *dns;       /* looks up servers' names (mr_health_set_resolver); NULL: none yet */
    struct ev_loop *dns_loop; /* the main loop, which runs dns */
} mr_health;

mr_health *mr_health_create(void);

/* Main thread, while building a config: the stable id of a server
 * (resolving its address the first time), or UINT32_MAX on failure. Fits
 * mr_router_build_ids (ctx: the mr_health). */
uint32_t mr_health_server_id(void *h, const mr_pool_conf *pool, const mr_server_conf *server);
/* Main thread: the stable counter slot of a pool name (MR_MAX_POOL_SLOTS - 1,
 * a shared overflow slot, when all are taken). */
uint32_t mr_health_pool_slot(mr_health *h, const char *pool);
/* Main thread: compute `router`'s live rings from the current states, before
 * it is published (auto_eject_hosts). */
void mr_health_prepare(mr_health *h, const mr_router *router);
/* Main thread: `router` is the config now: probe its servers, stop probing
 * servers it no longer has. */
void mr_health_use(mr_health *h, const mr_router *router);
/* Start probing from `loop` (the main thread's). A rejoin waits for
 * `nworkers` acknowledgements and is announced through `hooks`. */
void mr_health_start(mr_health *h, struct ev_loop *loop, int nworkers, const mr_health_hooks *hooks);
void mr_health_stop(mr_health *h);
void mr_health_free(mr_health *h);

static inline mr_server_health *mr_health_server(const mr_health *h, uint32_t id)
{
    return &h->chunks[id / MR_HEALTH_CHUNK][id % MR_HEALTH_CHUNK];
}

/* Main thread: look servers' names up with `dns` from now on (each named
 * server at once). Until then a named server has no address. NULL: stop
 * every lookup of the resolver in use (before it is freed). */
void mr_health_set_resolver(mr_health *h, struct mr_dns *dns, struct ev_loop *loop);
/* Main thread: named servers whose first lookup has not ended yet. */
uint32_t mr_health_lookups_pending(const mr_health *h);
/* Main thread: is this server's first lookup still out? */
bool mr_health_first_lookup_pending(const mr_health *h, uint32_t server);

/* Any thread: where to connect to the server now, and the version of that
 * address. False: nowhere yet (a name not resolved). `reconnecting` (a
 * worker connects): the main thread is asked to look the name up again. */
bool mr_health_addr(mr_health *h, uint32_t server, mr_sockaddr *out, uint32_t *version, bool reconnecting);
/* Where a server is and how it got there, for `stats servers` and /metrics
 * (any thread). */
typedef struct {
    char host[256];                      /* the name it is looked up by, or "" (a fixed address) */
    char address[INET6_ADDRSTRLEN + 16]; /* current address, or "unresolved" */
    const char *source;                  /* "static", "srv" or "dns": where its server line came from */
    int64_t resolved_ms;                 /* wall clock of the last good lookup (0: none, or fixed) */
    char error[96];                      /* why the last lookup failed, "" */
    uint64_t lookups, lookup_failures;
} mr_health_addr_info;
void mr_health_addr_describe(const mr_health *h, uint32_t server, mr_health_addr_info *out);

static inline uint32_t mr_health_addr_version(const mr_health *h, uint32_t server)
{
    return __atomic_load_n(&mr_health_server(h, server)->addr_version, __ATOMIC_ACQUIRE);
}

/* Worker side. `immediate`: the failure alone marks the server down. */
void mr_health_failure(mr_health *h, uint32_t server, int err, bool immediate);
static inline void mr_health_success(mr_health *h, uint32_t server)
{
    if (__atomic_load_n(&mr_health_server(h, server)->failures, __ATOMIC_RELAXED) != 0)
        __atomic_store_n(&mr_health_server(h, server)->failures, 0, __ATOMIC_RELAXED);
}
static inline uint32_t mr_health_state_of(const mr_health *h, uint32_t server)
{
    return __atomic_load_n(&mr_health_server(h, server)->state, __ATOMIC_ACQUIRE);
}
/* A worker has replayed what `server` missed (rejoin barrier). */
void mr_health_rejoin_ack(mr_health *h, uint32_t server);

const char *mr_health_state_name(uint32_t state);

/* Quarantine (on_rejoin: quarantine): the server takes writes but serves no
 * reads until `ms` from now. */
void mr_health_quarantine(mr_health *h, uint32_t server, uint32_t ms);
/* Is the server out of reads now? One relaxed load unless it is. */
bool mr_health_quarantined(const mr_health *h, uint32_t server);

#endif
