/* resolve.c: servers given by host name follow their addresses.
 *
 * A pod that restarts keeps its name and gets a new IP, so a name is looked
 * up again (c-ares on the main loop, dns.h; never blocking a worker):
 * - when the server first appears (its workers have no address until then);
 * - before each probe while it is down (health.c): a server that came back
 *   on another address is found by its next probe, with no reload;
 * - when a worker (re)connects to it (resolve_wanted);
 * - every dns_refresh ms while it is up, or sooner when the answer's TTL
 *   is shorter (but not more often than once a second).
 * A changed address goes to new connections; each worker moves its
 * connections once the requests already written on them are answered
 * (backend.c). The ring position never changes: it follows the name.
 * A failed lookup keeps the last good address and is counted as the
 * server's (lookup_failures), logged once per change between failing and
 * answering. It marks the server down only when the server has no address
 * at all (it cannot be reached); a server with a last good address is judged
 * by what it answers, so a DNS outage never takes a reachable server out
 * (and a down server's probe, which looked it up first, tries the last good
 * address when the lookup failed).
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "health_internal.h"
#include "memrelay/clock.h"
#include "memrelay/dns.h"
#include "memrelay/log.h"

/* The shortest wait between two lookups of one name, whatever its TTL. */
#define MIN_REFRESH_MS 1000u

static void refresh_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    mr_server_health *sh = t->data;
    /* While down, its probes look it up; while up (or rejoining), this does. */
    if (__atomic_load_n(&sh->state, __ATOMIC_ACQUIRE) != MR_HEALTH_DOWN)
        mr_health_resolve(sh, false);
}

void mr_health_resolve_init(mr_server_health *sh)
{
    ev_init(&sh->refresh, refresh_cb);
    sh->refresh.data = sh;
}

static void schedule_refresh(mr_server_health *sh, uint32_t ttl_s)
{
    mr_health *h = sh->health;
    const mr_pool_conf *pc = mr_health_pool_conf(h, sh->id);
    if (!pc || !h->dns_loop)
        return;
    uint64_t ms = pc->dns_refresh_ms;
    if (ttl_s > 0 && (uint64_t)ttl_s * 1000 < ms)
        ms = (uint64_t)ttl_s * 1000;
    if (ms < MIN_REFRESH_MS)
        ms = MIN_REFRESH_MS;
    ev_timer_stop(h->dns_loop, &sh->refresh);
    ev_timer_set(&sh->refresh, ms / 1000.0, 0);
    ev_timer_start(h->dns_loop, &sh->refresh);
}

static bool same_addr(const mr_sockaddr *a, const mr_sockaddr *b)
{
    return a->len == b->len && memcmp(&a->addr, &b->addr, a->len) == 0;
}

static void answered(void *ctx, const mr_dns_host_result *r)
{
    mr_server_health *sh = ctx;
    mr_health *h = sh->health;
    sh->lookup = NULL;
    bool probe = sh->probe_after_lookup;
    sh->probe_after_lookup = false;
    __atomic_add_fetch(&sh->lookups, 1, __ATOMIC_RELAXED);
    char now_text[INET6_ADDRSTRLEN + 16], was_text[INET6_ADDRSTRLEN + 16];
    uint32_t ttl = 0;
    if (r->status == 0 && r->naddrs > 0) {
        mr_sockaddr found = {.len = r->addrs[0].len};
        memcpy(&found.addr, &r->addrs[0].sa, r->addrs[0].len);
        pthread_mutex_lock(&sh->addr_lock);
        mr_sockaddr was = sh->addr;
        bool moved = !same_addr(&was, &found);
        sh->addr = found;
        sh->resolved_ms = mr_wall_ms();
        sh->resolve_error[0] = '\0';
        pthread_mutex_unlock(&sh->addr_lock);
        if (moved) {
            __atomic_add_fetch(&sh->addr_version, 1, __ATOMIC_ACQ_REL);
            mr_net_format(&found, now_text, sizeof(now_text));
            if (was.len)
                mr_log_info("server %s (pool %s): %s now resolves to %s (was %s): new connections go there",
                            sh->name, sh->pool, sh->host, now_text,
                            mr_net_format(&was, was_text, sizeof(was_text)));
            else
                mr_log_info("server %s (pool %s): %s resolves to %s", sh->name, sh->pool, sh->host, now_text);
            if (h->hooks.rejoin_started)
                h->hooks.rejoin_started(h->hooks.ctx); /* workers move their connections */
        }
        if (sh->lookup_failing)
            mr_log_info("server %s (pool %s): %s resolves again", sh->name, sh->pool, sh->host);
        sh->lookup_failing = false;
        ttl = r->ttl_s;
    } else {
        const char *why = r->status ? mr_dns_strerror(r->status) : "no address";
        __atomic_add_fetch(&sh->lookup_failures, 1, __ATOMIC_RELAXED);
        pthread_mutex_lock(&sh->addr_lock);
        snprintf(sh->resolve_error, sizeof(sh->resolve_error), "%s", why);
        bool known = sh->addr.len != 0;
        if (known)
            mr_net_format(&sh->addr, was_text, sizeof(was_text));
        pthread_mutex_unlock(&sh->addr_lock);
        if (!sh->lookup_failing)
            mr_log_warn("server %s (pool %s): cannot resolve %s (%s); %s%s", sh->name, sh->pool, sh->host,
                        why, known ? "keeping its last address " : "it has no address yet",
                        known ? was_text : "");
        sh->lookup_failing = true;
        /* One that never resolved cannot be reached at all: down. */
        if (!known && h->loop && mr_health_pool_conf(h, sh->id) &&
            __atomic_load_n(&sh->state, __ATOMIC_ACQUIRE) != MR_HEALTH_DOWN)
            mr_health_failure(h, sh->id, MR_ERR_UNRESOLVED, true);
    }
    sh->looked_up = true;
    schedule_refresh(sh, ttl);
    if (probe)
        mr_health_probe_connect(sh);
}

void mr_health_resolve(mr_server_health *sh, bool then_probe)
{
    mr_health *h = sh->health;
    if (then_probe)
        sh->probe_after_lookup = true;
    if (!sh->host || !h->dns) {
        if (sh->probe_after_lookup) {
            sh->probe_after_lookup = false;
            mr_health_probe_connect(sh);
        }
        return;
    }
    if (sh->lookup)
        return; /* its answer serves this request too */
    ev_timer_stop(h->dns_loop, &sh->refresh);
    sh->lookup = mr_dns_resolve(h->dns, sh->host, sh->port, AF_UNSPEC, answered, sh);
    if (sh->lookup == NULL) {
        mr_dns_host_result none = {.status = -1};
        answered(sh, &none); /* out of memory: as a failed lookup */
    }
}

void mr_health_resolve_follow(mr_server_health *sh)
{
    if (sh->host && sh->health->dns && !sh->lookup && !ev_is_active(&sh->refresh)) {
        if (sh->looked_up)
            schedule_refresh(sh, 0);
        else
            mr_health_resolve(sh, false);
    }
}

void mr_health_resolve_stop(mr_server_health *sh)
{
    mr_health *h = sh->health;
    mr_dns_cancel(sh->lookup);
    sh->lookup = NULL;
    sh->probe_after_lookup = false;
    if (h && h->dns_loop)
        ev_timer_stop(h->dns_loop, &sh->refresh);
}

void mr_health_set_resolver(mr_health *h, mr_dns *dns, struct ev_loop *loop)
{
    /* Lookups of the resolver in use end here: the next one may be freed. */
    for (uint32_t id = 0; h->dns && id < h->nids; id++)
        mr_health_resolve_stop(mr_health_server(h, id));
    h->dns = dns;
    h->dns_loop = dns ? loop : h->dns_loop;
    if (!dns)
        return;
    for (uint32_t id = 0; id < h->nids; id++) {
        mr_server_health *sh = mr_health_server(h, id);
        if (sh->host && mr_health_pool_conf(h, id))
            mr_health_resolve(sh, false);
    }
}

uint32_t mr_health_lookups_pending(const mr_health *h)
{
    uint32_t n = 0;
    for (uint32_t id = 0; id < h->nids; id++) {
        const mr_server_health *sh = mr_health_server(h, id);
        n += sh->host && !sh->looked_up && mr_health_pool_conf(h, id) != NULL;
    }
    return n;
}

bool mr_health_first_lookup_pending(const mr_health *h, uint32_t server)
{
    const mr_server_health *sh = mr_health_server(h, server);
    return sh->host && !sh->looked_up && h->dns;
}

bool mr_health_addr(mr_health *h, uint32_t server, mr_sockaddr *out, uint32_t *version, bool reconnecting)
{
    mr_server_health *sh = mr_health_server(h, server);
    if (!sh->host) { /* fixed: never changes, no lock needed */
        *out = sh->addr;
        *version = 0;
        return true;
    }
    pthread_mutex_lock(&sh->addr_lock);
    *version = __atomic_load_n(&sh->addr_version, __ATOMIC_ACQUIRE);
    *out = sh->addr;
    pthread_mutex_unlock(&sh->addr_lock);
    /* Connecting (again): the name may have moved since it was last looked up. */
    if (reconnecting && __atomic_exchange_n(&sh->resolve_wanted, 1, __ATOMIC_ACQ_REL) == 0 && h->loop)
        ev_async_send(h->loop, &h->wake);
    return out->len != 0;
}

void mr_health_addr_describe(const mr_health *h, uint32_t server, mr_health_addr_info *out)
{
    static const char *const sources[] = {"static", "srv", "dns"};
    mr_server_health *sh = mr_health_server(h, server);
    snprintf(out->host, sizeof(out->host), "%s", sh->host ? sh->host : "");
    out->source = sh->source < 3 ? sources[sh->source] : "static";
    pthread_mutex_lock(&sh->addr_lock);
    mr_net_format(&sh->addr, out->address, sizeof(out->address));
    out->resolved_ms = sh->resolved_ms;
    snprintf(out->error, sizeof(out->error), "%s", sh->resolve_error);
    pthread_mutex_unlock(&sh->addr_lock);
    out->lookups = __atomic_load_n(&sh->lookups, __ATOMIC_RELAXED);
    out->lookup_failures = __atomic_load_n(&sh->lookup_failures, __ATOMIC_RELAXED);
}
