/* Layer: ops (src/ops/; may use base, dist, config, protocol, net, cluster, core, proxy). */
/* admin_http.h: the optional HTTP admin listener (libmicrohttpd).
 *
 *   GET /metrics  Prometheus text format 0.0.4 (metrics.h)
 *   GET /healthz  200 "ok" while the process runs
 *   GET /readyz   200 once a configuration is loaded and every pool with
 *                 servers has one whose health state is up; else 503
 *                 naming the pools without one
 *   anything else 404; methods other than GET and HEAD 405
 *
 * It runs in libmicrohttpd's own polling thread, never on a worker's loop,
 * with a bounded number of connections and an idle timeout. It reads only
 * atomics and read-only shared state, and only through the view a source
 * hands out per HTTP request (main.c's holds a reference on the current
 * generation while the request is answered), so a reload can swap what it
 * reads without this module caching pointers.
 */
#ifndef MEMRELAY_ADMIN_HTTP_H
#define MEMRELAY_ADMIN_HTTP_H

#include <stdbool.h>

#include "memrelay/config.h"
#include "memrelay/router.h"
#include "memrelay/worker.h"

struct mr_health;

/* What one HTTP request reads, valid from acquire() to release(). */
typedef struct mr_admin_view {
    const mr_config *cfg;                 /* the configuration in force */
    const mr_router *router;              /* its servers and pools */
    const struct mr_gen *gen;             /* the generation both come from (warm-up windows), or NULL */
    const struct mr_health *health;       /* server states and traffic (atomics) */
    double started;                       /* process start, wall clock seconds */
    mr_reload_status *reload;             /* reload counters (generation.h), or NULL */
    bool draining;                        /* a graceful shutdown has begun: not ready */
    const struct mr_discovery *discovery; /* pools found in DNS (discovery.h), or NULL */
    const struct mr_membudget *membudget; /* memory_limit's budget (membudget.h), or NULL */
    void *token;                          /* the source's: what release() lets go */
} mr_admin_view;

/* Where views come from. acquire() fills *view and returns true, or
 * returns false when there is nothing to read (no configuration loaded:
 * /readyz and /metrics answer 503). release() (may be NULL) ends the use of
 * a view acquire() gave. Both are called on the admin thread, once per
 * HTTP request. */
typedef struct mr_admin_source {
    bool (*acquire)(void *arg, mr_admin_view *view);
    void (*release)(void *arg, mr_admin_view *view);
    void *arg;
} mr_admin_source;

typedef struct mr_admin_http mr_admin_http;

/* Listen on `addr` (TCP; a host name is resolved once, here). `src` is
 * copied. Returns NULL, having logged why, when it cannot listen. */
mr_admin_http *mr_admin_http_start(const mr_addr_conf *addr, const mr_admin_source *src);

/* Stop listening, close every admin connection, join the thread. NULL is fine. */
void mr_admin_http_stop(mr_admin_http *admin);

/* Readiness of a view: true, or false with the reason in `why`
 * (e.g. "pool 'alpha' has no server up"). */
bool mr_admin_ready(const mr_admin_view *view, char *why, size_t cap);

#endif
