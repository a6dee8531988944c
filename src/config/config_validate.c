/* config_validate.c: the checks that need the whole file.
 *
 * Run after parsing, in file order, so the first problem in the file is
 * the one reported:
 *  1. routes: only on a listening pool, no repeated prefix, target exists;
 *  2. every pool is reachable (it listens, or a route targets it) and has
 *     servers, unless it listens and has a catch-all route;
 *  3. no two pools listen on the same address, and no server is one of
 *     our own listeners; the admin listener is neither;
 *  4. TLS settings: each needs the others it depends on, none is set where
 *     it has no effect, and every certificate, key and CA file is read and
 *     parsed now (a key must match its certificate), so a bad file stops
 *     the load with the position of its key instead of failing later;
 * then each pool's routes are sorted longest prefix first, so the router
 * can take the first match.
 */
#include "config_internal.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "memrelay/log.h"

#include "memrelay/tls_files.h"

static int check_routes(mr_conf_ctx *ctx, size_t pi)
{
    mr_config *cfg = ctx->cfg;
    mr_pool_conf *p = &cfg->pools[pi];
    const mr_conf_marks *m = &ctx->marks[pi];

    if (p->nroutes > 0 && !p->has_listen)
        return mr_conf_fail(
            ctx, m->routes,
            "pool '%s' has routes but no listen: routes apply to the keys a listening pool receives",
            p->name);
    for (size_t i = 0; i < p->nroutes; i++) {
        mr_route_conf *r = &p->routes[i];
        for (size_t j = 0; j < i; j++)
            if (r->prefix_len == p->routes[j].prefix_len &&
                memcmp(r->prefix, p->routes[j].prefix, r->prefix_len) == 0)
                return mr_conf_fail(ctx, m->route_prefix[i],
                                    "duplicate route prefix '%s' in pool '%s' (also at line %d)", r->prefix,
                                    p->name, m->route_prefix[j].line);
        long target = mr_config_pool_index(cfg, r->pool_name);
        if (target < 0)
            return mr_conf_fail(ctx, m->route_pool[i],
                                "route '%s' in pool '%s' targets pool '%s', which does not exist", r->prefix,
                                p->name, r->pool_name);
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
    if (p->replicas + p->nreplicate_to > MR_MAX_REPLICAS)
        return mr_conf_fail(ctx, at, "pool '%s' keeps more than %d copies of a key", p->name,
                            MR_MAX_REPLICAS);
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
    /* Servers from DNS: none found yet (the first answer has not come, or
     * had nothing); its requests get SERVER_ERROR no servers meanwhile. */
    if (p->discovery != MR_SERVERS_STATIC)
        return 0;
    if (!p->has_listen)
        return mr_conf_fail(ctx, at, "pool '%s' has no servers, but routes send keys to it", p->name);
    if (!has_catch_all(p))
        return mr_conf_fail(
            ctx, at,
            "pool '%s' has no servers (a listening pool needs servers unless it has a catch-all "
            "route with prefix \"\")",
            p->name);
    if (targeted)
        return mr_conf_fail(ctx, at, "pool '%s' has no servers, but routes send keys to it", p->name);
    return 0;
}

/* A pool's listening addresses: `listen`, then `tls_listen`. Returns how
 * many (0 to 2) with their positions. */
static int listen_addrs(const mr_conf_ctx *ctx, size_t pi, const mr_addr_conf *out[2], mr_conf_pos at[2])
{
    const mr_pool_conf *p = &ctx->cfg->pools[pi];
    int n = 0;
    if (p->has_listen) {
        out[n] = &p->listen;
        at[n++] = ctx->marks[pi].listen;
    }
    if (p->has_tls_listen) {
        out[n] = &p->tls_listen;
        at[n++] = mr_conf_key_pos(&ctx->marks[pi], "tls_listen");
    }
    return n;
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
        const mr_addr_conf *mine[2], *theirs[2];
        mr_conf_pos mine_at[2], theirs_at[2];
        int n = listen_addrs(ctx, i, mine, mine_at);
        for (size_t j = 0; j <= i; j++) {
            const mr_pool_conf *o = &cfg->pools[j];
            int m = listen_addrs(ctx, j, theirs, theirs_at);
            for (int a = 0; a < n; a++)
                for (int b = 0; b < m && (j < i || b < a); b++)
                    if (mr_conf_addr_equal(theirs[b], mine[a]))
                        return mr_conf_fail(ctx, mine_at[a],
                                            "pool '%s' listens on %s, as pool '%s' already does (line %d)",
                                            p->name, mr_conf_addr_format(mine[a], buf, sizeof(buf)), o->name,
                                            theirs_at[b].line);
        }
    }
    /* A server that is one of our own listeners would loop requests back. */
    for (size_t i = 0; i < cfg->npools; i++) {
        const mr_pool_conf *p = &cfg->pools[i];
        for (size_t j = 0; j < p->nservers; j++) {
            const mr_server_conf *s = &p->servers[j];
            for (size_t l = 0; l < cfg->npools; l++) {
                const mr_addr_conf *ours[2];
                mr_conf_pos ours_at[2];
                int n = listen_addrs(ctx, l, ours, ours_at);
                for (int a = 0; a < n; a++)
                    if (mr_conf_addr_equal(ours[a], &s->addr))
                        return mr_conf_fail(
                            ctx, (mr_conf_pos){s->line, s->column},
                            "server '%s' in pool '%s' is the listen address of pool '%s': requests "
                            "would loop back into memrelay",
                            s->spec, p->name, cfg->pools[l].name);
            }
        }
    }
    if (listening == 0)
        return mr_conf_fail(ctx, ctx->root, "no pool has a listen address: nothing would accept clients");
    /* memory_limit admits a data block only whole: the largest must fit twice
     * (once beside the credit the workers keep at hand, membudget.h). */
    for (size_t i = 0; i < cfg->npools; i++) {
        const mr_pool_conf *p = &cfg->pools[i];
        if (cfg->memory_limit < 2ull * p->item_size_max)
            return mr_conf_fail(ctx, ctx->memory_limit.line ? ctx->memory_limit : ctx->root,
                                "memory_limit (%llu bytes) must be at least twice item_size_max of pool "
                                "'%s' (%u bytes)",
                                (unsigned long long)cfg->memory_limit, p->name, (unsigned)p->item_size_max);
    }
    /* The admin listener needs an address of its own, and is no server. */
    if (cfg->has_admin_listen) {
        for (size_t i = 0; i < cfg->npools; i++) {
            const mr_pool_conf *p = &cfg->pools[i];
            if (p->has_listen && mr_conf_addr_equal(&p->listen, &cfg->admin_listen))
                return mr_conf_fail(ctx, ctx->admin_listen,
                                    "admin_listen %s is the listen address of pool '%s'",
                                    mr_conf_addr_format(&cfg->admin_listen, buf, sizeof(buf)), p->name);
            for (size_t j = 0; j < p->nservers; j++)
                if (mr_conf_addr_equal(&p->servers[j].addr, &cfg->admin_listen))
                    return mr_conf_fail(ctx, ctx->admin_listen, "admin_listen %s is server '%s' of pool '%s'",
                                        mr_conf_addr_format(&cfg->admin_listen, buf, sizeof(buf)),
                                        p->servers[j].spec, p->name);
        }
    }
    return 0;
}

/* ---- TLS ---- */

/* Where key `key` of pool pi was set, or the pool itself if it was not. */
static mr_conf_pos key_or_pool(const mr_conf_ctx *ctx, size_t pi, const char *key)
{
    mr_conf_pos at = mr_conf_key_pos(&ctx->marks[pi], key);
    const mr_pool_conf *p = &ctx->cfg->pools[pi];
    return at.line ? at : (mr_conf_pos){p->line, p->column};
}

static bool is_set(const mr_conf_ctx *ctx, size_t pi, const char *key)
{
    return mr_conf_key_pos(&ctx->marks[pi], key).line > 0;
}

/* Keys that only matter when `enabler` is on: set without it is a mistake
 * (a certificate nobody presents, a CA nobody checks against). */
static int check_unused(mr_conf_ctx *ctx, size_t pi, const char *const *keys, size_t n, const char *because)
{
    for (size_t k = 0; k < n; k++)
        if (is_set(ctx, pi, keys[k]))
            return mr_conf_fail(ctx, key_or_pool(ctx, pi, keys[k]), "'%s' in pool '%s' has no effect: %s",
                                keys[k], ctx->cfg->pools[pi].name, because);
    return 0;
}

/* A file check's failure, placed at the key that named the file. */
static int file_fail(mr_conf_ctx *ctx, size_t pi, const char *key, const char *why)
{
    return mr_conf_fail(ctx, key_or_pool(ctx, pi, key), "'%s' in pool '%s': %s", key,
                        ctx->cfg->pools[pi].name, why);
}

static int check_tls_clients(mr_conf_ctx *ctx, size_t pi)
{
    static const char *const keys[] = {"tls_cert",          "tls_key",     "tls_ca",
                                       "tls_verify_client", "tls_ciphers", "tls_ciphersuites",
                                       "tls_min_version"};
    const mr_pool_conf *p = &ctx->cfg->pools[pi];
    char why[512];

    if (p->has_tls_listen && !p->has_listen)
        return mr_conf_fail(
            ctx, key_or_pool(ctx, pi, "tls_listen"),
            "pool '%s' has tls_listen but no listen: tls_listen adds a TLS port beside listen; for a "
            "TLS-only pool write listen with tls: true",
            p->name);
    if (p->tls && !p->has_listen)
        return mr_conf_fail(ctx, key_or_pool(ctx, pi, "tls"),
                            "'tls' in pool '%s' has no effect: the pool has no listen", p->name);
    if (!mr_pool_tls_clients(p))
        return check_unused(ctx, pi, keys, sizeof(keys) / sizeof(keys[0]),
                            "the pool has no TLS listener (set tls: true, or tls_listen)");
    if (p->tls_cert == NULL || p->tls_key == NULL)
        return mr_conf_fail(ctx, key_or_pool(ctx, pi, p->tls ? "tls" : "tls_listen"),
                            "pool '%s' has a TLS listener but no %s", p->name,
                            p->tls_cert ? "tls_key" : "tls_cert");
    if (p->tls_verify_client && p->tls_ca == NULL)
        return mr_conf_fail(
            ctx, key_or_pool(ctx, pi, "tls_verify_client"),
            "pool '%s' has tls_verify_client: true but no tls_ca to check client certificates against",
            p->name);
    if (p->tls_ca && !p->tls_verify_client)
        return mr_conf_fail(ctx, key_or_pool(ctx, pi, "tls_ca"),
                            "'tls_ca' in pool '%s' has no effect without tls_verify_client: true", p->name);
    if (mr_tls_check_cert(p->tls_cert, why, sizeof(why)) != 0)
        return file_fail(ctx, pi, "tls_cert", why);
    if (mr_tls_check_key(p->tls_cert, p->tls_key, why, sizeof(why)) != 0)
        return file_fail(ctx, pi, "tls_key", why);
    if (p->tls_ca && mr_tls_check_ca(p->tls_ca, why, sizeof(why)) != 0)
        return file_fail(ctx, pi, "tls_ca", why);
    if (p->tls_ciphers && mr_tls_check_ciphers(p->tls_ciphers, false, why, sizeof(why)) != 0)
        return file_fail(ctx, pi, "tls_ciphers", why);
    if (p->tls_ciphersuites && mr_tls_check_ciphers(p->tls_ciphersuites, true, why, sizeof(why)) != 0)
        return file_fail(ctx, pi, "tls_ciphersuites", why);
    return 0;
}

static int check_tls_servers(mr_conf_ctx *ctx, size_t pi)
{
    static const char *const keys[] = {"server_tls_ca", "server_tls_verify", "server_tls_name",
                                       "server_tls_cert", "server_tls_key"};
    const mr_pool_conf *p = &ctx->cfg->pools[pi];
    char why[512];

    if (!p->server_tls)
        return check_unused(ctx, pi, keys, sizeof(keys) / sizeof(keys[0]), "server_tls is not true");
    for (size_t i = 0; i < p->nservers; i++)
        if (p->servers[i].addr.is_unix)
            return mr_conf_fail(
                ctx, (mr_conf_pos){p->servers[i].line, p->servers[i].column},
                "server '%s' in pool '%s' is a unix socket: server_tls applies to TCP servers",
                p->servers[i].spec, p->name);
    if ((p->server_tls_cert == NULL) != (p->server_tls_key == NULL))
        return mr_conf_fail(
            ctx, key_or_pool(ctx, pi, p->server_tls_cert ? "server_tls_cert" : "server_tls_key"),
            "pool '%s' needs both server_tls_cert and server_tls_key (a client certificate and its "
            "key), or neither",
            p->name);
    if (p->server_tls_ca && !p->server_tls_verify)
        return mr_conf_fail(ctx, key_or_pool(ctx, pi, "server_tls_ca"),
                            "'server_tls_ca' in pool '%s' has no effect with server_tls_verify: false",
                            p->name);
    if (p->server_tls_ca && mr_tls_check_ca(p->server_tls_ca, why, sizeof(why)) != 0)
        return file_fail(ctx, pi, "server_tls_ca", why);
    if (p->server_tls_cert && mr_tls_check_cert(p->server_tls_cert, why, sizeof(why)) != 0)
        return file_fail(ctx, pi, "server_tls_cert", why);
    if (p->server_tls_cert && mr_tls_check_key(p->server_tls_cert, p->server_tls_key, why, sizeof(why)) != 0)
        return file_fail(ctx, pi, "server_tls_key", why);
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
        if (check_tls_clients(ctx, i) != 0 || check_tls_servers(ctx, i) != 0)
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
    /* Authentication, or TLS (the `listen` socket itself; a `tls_listen`
     * is TLS by definition): the issue asks for one or the other. */
    if (pool->auth != NULL || pool->tls)
        return true;
    return is_loopback_host(pool->listen.host);
}

bool mr_addr_is_loopback(const mr_addr_conf *addr)
{
    return addr->is_unix || is_loopback_host(addr->host);
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
        mr_log_warn(
            "pool %s listens on %s, which is not a loopback address, without TLS or authentication: "
            "anyone who can reach it can read and change the cache (set auth_file or tls, or listen on "
            "127.0.0.1 or a unix socket)",
            p->name, mr_conf_addr_format(&p->listen, buf, sizeof(buf)));
    }
    return n;
}
