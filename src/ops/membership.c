/* membership.c: the resolver, pool discovery and the reloader, wired on the
 * main thread (membership.h). */
#include "memrelay/membership.h"

#include <stdlib.h>
#include <string.h>

#include "memrelay/health.h"
#include "memrelay/log.h"

struct mr_membership {
    mr_reloader *reloader;
    struct ev_loop *loop;
    mr_dns *dns;
    mr_discovery *discovery;
    /* The reloader's on_config before ours: called first. */
    void (*next_on_config)(void *ctx, const mr_config *cfg);
    void *next_ctx;
    char **dns_servers; /* what the resolver was made with (a reload that changes them is logged) */
    size_t ndns_servers;
    uint32_t dns_timeout_ms;
};

static const mr_pool_members *members_of(void *ctx, size_t *n)
{
    mr_membership *m = ctx;
    return mr_discovery_members(m->discovery, n);
}

static void members_changed(void *ctx, const char *pool)
{
    mr_membership *m = ctx;
    char why[300];
    snprintf(why, sizeof(why), "DNS membership of pool %s", pool);
    mr_reload_members(m->reloader, why);
}

static bool same_dns_settings(const mr_membership *m, const mr_config *cfg)
{
    if (cfg->ndns_servers != m->ndns_servers || cfg->dns_timeout_ms != m->dns_timeout_ms)
        return false;
    for (size_t i = 0; i < cfg->ndns_servers; i++)
        if (strcmp(cfg->dns_servers[i], m->dns_servers[i]) != 0)
            return false;
    return true;
}

static void on_config(void *ctx, const mr_config *cfg)
{
    mr_membership *m = ctx;
    if (m->next_on_config)
        m->next_on_config(m->next_ctx, cfg);
    if (!same_dns_settings(m, cfg))
        mr_log_warn("reload: memrelay.dns_servers or dns_timeout changed; that takes a restart");
    mr_discovery_configure(m->discovery, cfg);
}

static void stop_waiting(struct ev_loop *loop, ev_timer *t, int revents)
{
    *(bool *)t->data = true;
}

mr_membership *mr_membership_start(mr_reloader *r, struct ev_loop *loop)
{
    const mr_config *cfg = r->current->cfg;
    mr_membership *m = calloc(1, sizeof(*m));
    char err[256];
    if (m == NULL) {
        mr_log_error("out of memory starting the resolver");
        return NULL;
    }
    m->reloader = r;
    m->loop = loop;
    m->dns = mr_dns_new(loop, (const char *const *)cfg->dns_servers, cfg->ndns_servers,
                        cfg->dns_timeout_ms / 2, 2, err, sizeof(err));
    m->dns_servers = cfg->ndns_servers ? calloc(cfg->ndns_servers, sizeof(char *)) : NULL;
    for (size_t i = 0; m->dns_servers && i < cfg->ndns_servers; i++)
        if ((m->dns_servers[i] = strdup(cfg->dns_servers[i])) != NULL)
            m->ndns_servers++;
    m->dns_timeout_ms = cfg->dns_timeout_ms;
    if (m->dns == NULL || m->ndns_servers != cfg->ndns_servers ||
        (m->discovery = mr_discovery_new(loop, m->dns, members_changed, m)) == NULL) {
        mr_log_error("cannot start the resolver: %s", m->dns ? "out of memory" : err);
        mr_membership_free(m);
        return NULL;
    }
    m->next_on_config = r->on_config;
    m->next_ctx = r->on_config_ctx;
    r->on_config = on_config;
    r->on_config_ctx = m;
    r->members = members_of;
    r->members_ctx = m;
    mr_discovery_configure(m->discovery, cfg);
    mr_health_set_resolver(r->health, m->dns, loop);
    if (!mr_config_discovers(cfg) && mr_health_lookups_pending(r->health) == 0)
        return m;
    /* The first answers, before anything serves: a pool starts with its
     * servers (and their addresses) instead of answering "no servers" or
     * "does not resolve" for its first moments. A DNS server that does not
     * answer costs at most this long. */
    bool timed_out = false;
    ev_timer limit;
    ev_timer_init(&limit, stop_waiting, 2.0 * cfg->dns_timeout_ms / 1000.0 + 0.5, 0);
    limit.data = &timed_out;
    ev_timer_start(loop, &limit);
    while ((!mr_discovery_settled(m->discovery) || mr_health_lookups_pending(r->health) > 0) && !timed_out)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &limit);
    if (!mr_discovery_settled(m->discovery) || mr_health_lookups_pending(r->health) > 0)
        mr_log_warn("DNS has not answered every lookup yet: starting with what it gave; lookups go on");
    return m;
}

void mr_membership_free(mr_membership *m)
{
    if (m == NULL)
        return;
    if (m->reloader && m->reloader->members_ctx == m) {
        m->reloader->members = NULL;
        m->reloader->on_config = m->next_on_config;
        m->reloader->on_config_ctx = m->next_ctx;
    }
    mr_discovery_free(m->discovery);
    if (m->reloader && m->dns)
        mr_health_set_resolver(m->reloader->health, NULL, NULL); /* its lookups end before the resolver */
    mr_dns_free(m->dns);
    for (size_t i = 0; i < m->ndns_servers; i++)
        free(m->dns_servers[i]);
    free(m->dns_servers);
    free(m);
}

mr_dns *mr_membership_dns(const mr_membership *m)
{
    return m->dns;
}

const mr_discovery *mr_membership_discovery(const mr_membership *m)
{
    return m->discovery;
}
