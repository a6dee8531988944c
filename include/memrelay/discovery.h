/* discovery.h: pools whose servers come from DNS (servers_srv, servers_dns).
 *
 * Main thread only. Each discovering pool is looked up at start and then
 * every `dns_refresh` ms; what the answers say becomes the pool's server
 * lines (mr_pool_members), and a change calls `changed`, which builds a new
 * configuration generation from them (reload.c: the same atomic switch as a
 * reload; servers in both keep their connections and health).
 *
 * What keeps a pool from being emptied by DNS:
 * - a failed lookup, or an answer with no records, changes nothing (the
 *   last good membership stays; the failure is counted and logged once per
 *   change of state);
 * - a server is removed only after it has been missing from two answers in
 *   a row;
 * - one answer removes at most `max_ejected_fraction` of the pool's servers
 *   (at least one while the fraction is above zero); the rest go in later
 *   answers if they stay missing.
 * Additions take effect at the first answer that has them. */
#ifndef MEMRELAY_DISCOVERY_H
#define MEMRELAY_DISCOVERY_H

#include <stdbool.h>
#include <stdint.h>

#include <ev.h>

#include "memrelay/config.h"
#include "memrelay/dns.h"

typedef struct mr_discovery mr_discovery;

/* Called when a pool's membership changed; `why` names the pool and the
 * change, for the log. */
typedef void (*mr_discovery_changed_fn)(void *ctx, const char *why);

mr_discovery *mr_discovery_new(struct ev_loop *loop, mr_dns *dns, mr_discovery_changed_fn changed, void *ctx);
void mr_discovery_free(mr_discovery *d);

/* Follow `cfg`: start looking up pools that discover their servers, stop
 * those that no longer do, keep the membership of a pool whose discovery
 * settings did not change. Looks the new ones up at once. */
void mr_discovery_configure(mr_discovery *d, const mr_config *cfg);

/* Has every discovering pool had its first lookup answered (or failed)? */
bool mr_discovery_settled(const mr_discovery *d);

/* The current members of every discovering pool, for
 * mr_config_load_members: valid until the next callback or configure. */
const mr_pool_members *mr_discovery_members(const mr_discovery *d, size_t *n);

/* Counters for stats and /metrics: a copy, taken under a lock, so any
 * thread may ask. */
typedef struct {
    char pool[256];
    char name[256];   /* the SRV name or servers_dns host */
    const char *kind; /* "srv" or "dns" */
    uint64_t lookups, failures, changes;
    size_t members;
    int64_t last_answer_ms; /* wall clock of the last good answer (0: none yet) */
    char last_error[128];   /* "" when the last lookup succeeded */
} mr_discovery_pool_stats;

size_t mr_discovery_stats(const mr_discovery *d, mr_discovery_pool_stats *out, size_t cap);

#endif
