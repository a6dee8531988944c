/* config_validate.c: the checks that need the whole file.
 *
 * Run after parsing, in file order, so the first problem in the file is
 * the one reported:
 *  1. routes: only on a listening pool, no repeated prefix, target exists;
 *  2. every pool is reachable (it listens, or a route targets it) and has
 *     servers, unless it listens and has a catch-all route;
 *  3. no two pools listen on the same address, and no server is one of
 *     our own listeners;
 * then each pool's routes are sorted longest prefix first, so the router
 * can take the first match.
 */
#include "config_internal.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "memrelay/log.h"

static int check_routes(mr_conf_ctx *ctx, size_t pi)
{
    mr_config *cfg = ctx->cfg;
    mr_pool_conf *p = &cfg->pools[pi];
    const mr_conf_marks *m = &ctx->marks[pi];

    if (p->nroutes > 0 && !p->has_listen)
        return mr_conf_fail(ctx, m->routes,
                            "pool '%s' has routes but no listen: routes apply to the keys a listening pool receives",
                            p->name);
    for (size_t i = 0; i < p->nroutes; i++) {
        mr_route_conf *r = &p->routes[i];
        for (size_t j = 0; j < i; j++)
            if (r->prefix_len == p->routes[j].prefix_len && memcmp(r->prefix, p->routes[j].prefix, r->prefix_len) == 0)
                return mr_conf_fail(ctx, m->route_prefix[i],
                                    "duplicate route prefix '%s' in pool '%s' (also at line %d)", r->prefix, p->name,
                                    m->route_prefix[j].line);
        long target = mr_config_pool_index(cfg, r->pool_name);
        if (target < 0)
            return mr_conf_fail(ctx, m->route_pool[i],
                                "route '%s' in pool '%s' targets pool '%s', which does not exist", r->prefix, p->name,
                                r->pool_name);
        r->pool_index = (size_t)target;
    }
    return 0;
}

static bool has_catch_all(const mr_pool_conf *p)
{
    for (size_t i = 0; i < p->nroutes; i++)
        if (p->routes[i].prefix_len == 0)
            return true;
    return false;
}

static bool is_route_target(const mr_config *cfg, size_t pi)
{
    for (size_t i = 0; i < cfg->npools; i++) {
        for (size_t j = 0; j < cfg->pools[i].nroutes; j++)
            if (cfg->pools[i].routes[j].pool_index == pi)
                return true;
        for (size_t j = 0; j < cfg->pools[i].nreplicate_to; j++)
            if (cfg->pools[i].replicate_to[j] == pi)
                return true;
    }
    return false;
}

/* replicate_to: existing pools with servers, not itself, not twice. */
static int check_replicate_to(mr_conf_ctx *ctx, size_t pi)
{
    mr_config *cfg = ctx->cfg;
    mr_pool_conf *p = &cfg->pools[pi];
    mr_conf_pos at = {p->replicate_to_line, p->replicate_to_column};
    for (size_t i = 0; i < p->nreplicate_to; i++) {
        long t = mr_config_pool_index(cfg, p->replicate_to_names[i]);
        if (t < 0)
            return mr_conf_fail(ctx, at, "pool '%s' replicates to pool '%s', which does not exist", p->name,
                                p->replicate_to_names[i]);
        if ((size_t)t == pi)
            return mr_conf_fail(ctx, at, "pool '%s' cannot replicate to itself", p->name);
        if (cfg->pools[t].nservers == 0)
            return mr_conf_fail(ctx, at, "pool '%s' replicates to pool '%s', which has no servers", p->name,
                                p->replicate_to_names[i]);
        for (size_t j = 0; j < i; j++)
            if (p->replicate_to[j] == (size_t)t)
                return mr_conf_fail(ctx, at, "pool '%s' names pool '%s' twice in replicate_to", p->name,
                                    p->replicate_to_names[i]);
        p->replicate_to[i] = (size_t)t;
    }
    if (p->nreplicate_to > 0 && p->nservers == 0)
        return mr_conf_fail(ctx, at, "pool '%s' has replicate_to but no servers of its own", p->name);
    if (p->replicas + p->nreplicate_to > 16)
        return mr_conf_fail(ctx, at, "pool '%s' keeps more than 16 copies of a key", p->name);
    return 0;
}

static int check_servers(mr_conf_ctx *ctx, size_t pi)
{
    const mr_pool_conf *p = &ctx->cfg->pools[pi];
    mr_conf_pos at = {p->line, p->column};
    bool targeted = is_route_target(ctx->cfg, pi);

    if (!p->has_listen && !targeted)
        return mr_conf_fail(ctx, at, "pool '%s' has no listen and no route reaches it", p->name);
    if (p->nservers > 0 && p->replicas > p->nservers)
        return mr_conf_fail(ctx, (mr_conf_pos){p->replicas_line, p->replicas_column},
                            "pool '%s' wants %u replicas but has only %zu servers", p->name, p->replicas,
                            p->nservers);
    if (p->nservers > 0)
        return 0;
    if (!p->has_listen)
        return mr_conf_fail(ctx, at, "pool '%s' has no servers, but routes send keys to it", p->name);
    if (!has_catch_all(p))
        return mr_conf_fail(ctx, at,
                            "pool '%s' has no servers (a listening pool needs servers unless it has a catch-all "
                            "route with prefix \"\")",
                            p->name);
    if (targeted)
        return mr_conf_fail(ctx, at, "pool '%s' has no servers, but routes send keys to it", p->name);
    return 0;
}

static int check_listeners(mr_conf_ctx *ctx)
{
    const mr_config *cfg = ctx->cfg;
    size_t listening = 0;
    char buf[160];

    for (size_t i = 0; i < cfg->npools; i++) {
        const mr_pool_conf *p = &cfg->pools[i];
        if (!p->has_listen)
            continue;
        listening++;
        for (size_t j = 0; j < i; j++) {
            const mr_pool_conf *o = &cfg->pools[j];
            if (o->has_listen && mr_conf_addr_equal(&o->listen, &p->listen))
                return mr_conf_fail(
                    ctx, ctx->marks[i].listen, "pool '%s' listens on %s, as pool '%s' already does (line %d)", p->name,
                    mr_conf_addr_format(&p->listen, buf, sizeof(buf)), o->name, ctx->marks[j].listen.line);
        }
    }
    /* A server that is one of our own listeners would loop requests back. */
    for (size_t i = 0; i < cfg->npools; i++) {
        const mr_pool_conf *p = &cfg->pools[i];
        for (size_t j = 0; j < p->nservers; j++) {
            const mr_server_conf *s = &p->servers[j];
            for (size_t l = 0; l < cfg->npools; l++)
                if (cfg->pools[l].has_listen && mr_conf_addr_equal(&cfg->pools[l].listen, &s->addr))
                    return mr_conf_fail(ctx, (mr_conf_pos){s->line, s->column},
                                        "server '%s' in pool '%s' is the listen address of pool '%s': requests "
                                        "would loop back into memrelay",
                                        s->spec, p->name, cfg->pools[l].name);
        }
    }
    if (listening == 0)
        return mr_conf_fail(ctx, ctx->root, "no pool has a listen address: nothing would accept clients");
    return 0;
}

/* Longest prefix first; equal lengths in byte order, so the result does
 * not depend on the order in the file. */
static int route_order(const void *a, const void *b)
{
    const mr_route_conf *ra = a, *rb = b;
    if (ra->prefix_len != rb->prefix_len)
        return ra->prefix_len > rb->prefix_len ? -1 : 1;
    return memcmp(ra->prefix, rb->prefix, ra->prefix_len);
}

int mr_conf_validate(mr_conf_ctx *ctx)
{
    mr_config *cfg = ctx->cfg;

    if (cfg->npools == 0)
        return mr_conf_fail(ctx, ctx->root, "no pools are defined");
    for (size_t i = 0; i < cfg->npools; i++)
        if (check_routes(ctx, i) != 0)
            return -1;
    for (size_t i = 0; i < cfg->npools; i++)
        if (check_replicate_to(ctx, i) != 0)
            return -1;
    for (size_t i = 0; i < cfg->npools; i++)
        if (check_servers(ctx, i) != 0)
            return -1;
    if (check_listeners(ctx) != 0)
        return -1;
    for (size_t i = 0; i < cfg->npools; i++)
        if (cfg->pools[i].nroutes > 1)
            qsort(cfg->pools[i].routes, cfg->pools[i].nroutes, sizeof(mr_route_conf), route_order);
    return 0;
}

/* ---- exposure of listeners (safe defaults) ---- */

static bool is_loopback_host(const char *host)
{
    unsigned char a[16];
    static const unsigned char v6_loopback[16] = {[15] = 1};
    static const unsigned char v4_mapped[12] = {[10] = 0xff, [11] = 0xff};
    if (inet_pton(AF_INET, host, a) == 1)
        return a[0] == 127;
    if (inet_pton(AF_INET6, host, a) == 1)
        return memcmp(a, v6_loopback, 16) == 0 || (memcmp(a, v4_mapped, 12) == 0 && a[12] == 127);
    /* A name: only "localhost" is taken on trust (resolvers map it to
     * loopback); any other name may resolve anywhere. */
    return strcasecmp(host, "localhost") == 0 || strcasecmp(host, "localhost.") == 0;
}

bool mr_listener_is_protected(const mr_pool_conf *pool)
{
    if (!pool->has_listen || pool->listen.is_unix)
        return true;
    if (pool->auth != NULL)
        return true;
    return is_loopback_host(pool->listen.host);
}

size_t mr_config_warn_unprotected(const mr_config *cfg)
{
    size_t n = 0;
    char buf[160];
    for (size_t i = 0; i < cfg->npools; i++) {
        const mr_pool_conf *p = &cfg->pools[i];
        if (mr_listener_is_protected(p))
            continue;
        n++;
        mr_log_warn("pool %s listens on %s, which is not a loopback address, without authentication: "
                    "anyone who can reach it can read and change the cache (set auth_file, or listen on "
                    "127.0.0.1 or a unix socket)",
                    p->name, mr_conf_addr_format(&p->listen, buf, sizeof(buf)));
    }
    return n;
}
