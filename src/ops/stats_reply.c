/* stats_reply.c: the `stats` command, in memcached's format.
 *
 * Field names follow memcached's where the meaning is the same, so existing
 * stats tools keep working; memrelay's own counters follow them.
 */
#include "memrelay/stats_reply.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "memrelay/clock.h"
#include "memrelay/discovery.h"
#include "memrelay/health.h"
#include "memrelay/latency.h"
#include "memrelay/limits.h"
#include "memrelay/log.h"
#include "memrelay/membudget.h"
#include "memrelay/request.h"
#include "memrelay/stats.h"
#include "memrelay/worker.h"

/* `stats reset` keeps a baseline that later totals are reported against.
 * Only the admin path touches it, under this lock. */
static pthread_mutex_t baseline_lock = PTHREAD_MUTEX_INITIALIZER;
static mr_stats baseline;

/* Gauges are never reset. */
static bool is_gauge(const char *name)
{
    return strcmp(name, "curr_connections") == 0;
}

static int append(mr_mbuf *mb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#include <stdarg.h>
static int append(mr_mbuf *mb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(mb->data + mb->len, mb->cap - mb->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (uint32_t)n >= mb->cap - mb->len)
        return -1;
    mb->len += (uint32_t)n;
    return 0;
}

static int full_stats(mr_worker *w, mr_mbuf *mb)
{
    mr_stats total;
    mr_stats_sum(&total);
    pthread_mutex_lock(&baseline_lock);
    mr_stats base = baseline;
    pthread_mutex_unlock(&baseline_lock);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    int rc = 0;
    rc |= append(mb, "STAT pid %ld\r\n", (long)getpid());
    rc |= append(mb, "STAT uptime %ld\r\n", (long)(now.tv_sec - (time_t)w->shared->started));
    rc |= append(mb, "STAT time %ld\r\n", (long)now.tv_sec);
    rc |= append(mb, "STAT version memrelay-%s\r\n", MEMRELAY_VERSION);
    rc |= append(mb, "STAT pointer_size %d\r\n", (int)(8 * sizeof(void *)));
    rc |= append(mb, "STAT rusage_user %ld.%06ld\r\n", (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec);
    rc |= append(mb, "STAT rusage_system %ld.%06ld\r\n", (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec);
    rc |= append(mb, "STAT threads %d\r\n", w->shared->nworkers);
#define MR_STAT_LINE(name)                      \
    rc |= append(mb, "STAT " #name " %llu\r\n", \
                 (unsigned long long)(is_gauge(#name) ? total.name : total.name - base.name));
    MR_STATS(MR_STAT_LINE)
#undef MR_STAT_LINE
    if (w->shared->membudget) {
        mr_membudget_view m;
        mr_membudget_read(w->shared->membudget, &m);
        rc |= append(mb, "STAT memory_limit %llu\r\n", (unsigned long long)m.limit);
        rc |= append(mb, "STAT memory_used %llu\r\n", (unsigned long long)m.used);
        rc |= append(mb, "STAT memory_peak %llu\r\n", (unsigned long long)m.peak);
    }
    rc |= append(mb, "END\r\n");
    return rc;
}

/* A discovering pool's DNS counters (discovery.h), or NULL. */
static const mr_discovery_pool_stats *dns_stats_of(const mr_discovery_pool_stats *all, size_t n,
                                                   const char *pool)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(all[i].pool, pool) == 0)
            return &all[i];
    return NULL;
}

/* `stats pools`: each pool's settings that matter at a glance and its
 * replication counters, as "STAT <pool>:<name> <value>". */
static int pool_stats(mr_worker *w, mr_mbuf *mb)
{
    static const char *const ack_names[] = {"one", "quorum", "all"};
    static const char *const sources[] = {"static", "srv", "dns"};
    const mr_config *cfg = w->gen->cfg;
    mr_discovery_pool_stats dns[16];
    size_t ndns = w->shared->discovery ? mr_discovery_stats(w->shared->discovery, dns, 16) : 0;
    int64_t now = mr_wall_ms();
    int rc = 0;
    for (size_t i = 0; i < cfg->npools; i++) {
        const mr_pool_conf *p = &cfg->pools[i];
        mr_pool_stats ps;
        mr_pool_stats_sum(w->gen->router->pools[i].slot, &ps);
        rc |= append(mb, "STAT %s:servers %zu\r\n", p->name, p->nservers);
        rc |= append(mb, "STAT %s:servers_from %s\r\n", p->name, sources[p->discovery]);
        const mr_discovery_pool_stats *d = dns_stats_of(dns, ndns, p->name);
        if (d) {
            rc |= append(mb, "STAT %s:dns_name %s\r\n", p->name, d->name);
            rc |= append(mb, "STAT %s:dns_lookups %llu\r\n", p->name, (unsigned long long)d->lookups);
            rc |=
                append(mb, "STAT %s:dns_lookup_failures %llu\r\n", p->name, (unsigned long long)d->failures);
            rc |= append(mb, "STAT %s:dns_membership_changes %llu\r\n", p->name,
                         (unsigned long long)d->changes);
            rc |= append(mb, "STAT %s:dns_last_answer_ms_ago %lld\r\n", p->name,
                         d->last_answer_ms ? (long long)(now - d->last_answer_ms) : -1LL);
            rc |= append(mb, "STAT %s:dns_last_error %s\r\n", p->name,
                         d->last_error[0] ? d->last_error : "none");
        }
        rc |= append(mb, "STAT %s:replicas %u\r\n", p->name, p->replicas);
        rc |= append(mb, "STAT %s:replicate_to %zu\r\n", p->name, p->nreplicate_to);
        rc |= append(mb, "STAT %s:write_ack %s\r\n", p->name, ack_names[p->write_ack]);
        rc |= append(mb, "STAT %s:warmup_window %u\r\n", p->name, p->warmup_window_ms);
        rc |= append(mb, "STAT %s:warmup_window_left_ms %lld\r\n", p->name,
                     (long long)(mr_gen_warm_left(w->gen, i, ev_now(w->loop)) * 1000.0));
#define MR_POOL_STAT_LINE(field) \
    rc |= append(mb, "STAT %s:" #field " %llu\r\n", p->name, (unsigned long long)ps.field);
        MR_POOL_STATS(MR_POOL_STAT_LINE)
#undef MR_POOL_STAT_LINE
    }
    rc |= append(mb, "END\r\n");
    return rc;
}

/* `stats route <key>`: where a key goes from this listener and why, like
 * mcrouter's __mcrouter__.route: the route that matched, the pool, the hash
 * and its value, the servers holding the key in order and their states. */
static int route_explain(mr_worker *w, uint32_t listen_pool, mr_mbuf *mb, const char *key, uint32_t klen)
{
    const mr_router *r = w->gen->router;
    const mr_pool_conf *lp = &r->cfg->pools[listen_pool];
    const mr_pool *pool = mr_router_pool_for_key(r, listen_pool, key, klen);
    const char *via = "own servers";
    for (size_t i = 0; i < lp->nroutes; i++) {
        if (lp->routes[i].prefix_len <= klen &&
            memcmp(lp->routes[i].prefix, key, lp->routes[i].prefix_len) == 0) {
            via = lp->routes[i].prefix;
            break;
        }
    }
    const char *span = key;
    size_t span_len = klen;
    if (pool->conf->has_hash_tag)
        mr_hash_tag_span(key, klen, pool->conf->hash_tag, &span, &span_len);
    uint32_t servers[MR_MAX_REPLICAS];
    uint32_t n =
        pool->nservers ? mr_router_replicas_for_key(pool, key, klen, 0, servers, MR_MAX_REPLICAS) : 0;
    int rc = 0;
    rc |= append(mb, "STAT key %.*s\r\n", (int)klen, key);
    rc |= append(mb, "STAT listener_pool %s\r\n", lp->name);
    if (via == NULL || strcmp(via, "own servers") == 0)
        rc |= append(mb, "STAT route own servers\r\n");
    else
        rc |= append(mb, "STAT route prefix \"%s\"\r\n", via);
    rc |= append(mb, "STAT pool %s\r\n", pool->conf->name);
    rc |= append(mb, "STAT distribution %s\r\n", mr_dist_name(pool->conf->distribution));
    rc |= append(mb, "STAT hash %s\r\n", mr_hash_name(pool->conf->hash));
    rc |= append(mb, "STAT hashed_part %.*s\r\n", (int)span_len, span);
    rc |= append(mb, "STAT hash_value %u\r\n", mr_hash(pool->conf->hash, span, span_len));
    for (uint32_t i = 0; i < n; i++) {
        const mr_server *s = &r->servers[servers[i]];
        const char *state =
            w->shared->health ? mr_health_state_name(mr_health_state_of(w->shared->health, s->id)) : "up";
        rc |= append(mb, "STAT %s %s ident=%s pool=%s state=%s\r\n", i == 0 ? "primary" : "replica",
                     s->conf->spec, s->conf->ident, r->cfg->pools[s->pool].name, state);
    }
    rc |= append(mb, "END\r\n");
    return rc;
}

static const char *yes_no(bool b)
{
    return b ? "yes" : "no";
}

/* A TCP address as host:port (IPv6 in brackets), or a unix socket's path. */
static const char *addr_text(const mr_addr_conf *a, char *buf, size_t cap)
{
    if (a->is_unix)
        return a->host;
    snprintf(buf, cap, strchr(a->host, ':') ? "[%s]:%u" : "%s:%u", a->host, (unsigned)a->port);
    return buf;
}

/* `stats settings`: the settings of the pool the client connected to, in
 * memcached's `STAT <name> <value>` lines. A setting memcached also has,
 * with the same meaning and unit, keeps memcached's name and spelling
 * (yes/no, NULL for nothing) so stats tools read it; the rest are named as
 * the configuration keys (docs/configuration.md), durations in ms. Values
 * come from the configuration the worker serves now (reloads show). */
static int settings_stats(mr_worker *w, uint32_t listen_pool, mr_mbuf *mb)
{
    static const char *const ack_names[] = {"one", "quorum", "all"};
    const mr_config *cfg = w->gen->cfg;
    const mr_pool_conf *p = &cfg->pools[listen_pool];
    const mr_addr_conf *l = &p->listen;
    /* Without client_connections the open-file limit is what bounds connections. */
    unsigned long long maxconns = p->client_connections;
    struct rlimit rl;
    if (maxconns == 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0)
        maxconns = rl.rlim_cur == RLIM_INFINITY ? 0 : (unsigned long long)rl.rlim_cur;
    bool tls = mr_pool_tls_clients(p);
    char buf[300];
    int rc = 0;
    /* memcached's names, in memcached's order */
    rc |= append(mb, "STAT maxconns %llu\r\n", maxconns);
    rc |= append(mb, "STAT tcpport %u\r\n", l->is_unix ? 0u : (unsigned)l->port);
    rc |= append(mb, "STAT udpport 0\r\n");
    rc |= append(mb, "STAT inter %s\r\n", l->is_unix ? "NULL" : l->host);
    rc |= append(mb, "STAT domain_socket %s\r\n", l->is_unix ? l->host : "NULL");
    rc |= append(mb, "STAT shutdown_command no\r\n");
    rc |= append(mb, "STAT num_threads %d\r\n", w->shared->nworkers);
    rc |= append(mb, "STAT tcp_backlog %d\r\n", p->backlog);
    /* both protocols on every listener, as memcached's default -B auto */
    rc |= append(mb, "STAT binding_protocol auto-negotiate\r\n");
    rc |= append(mb, "STAT auth_enabled_sasl %s\r\n", yes_no(p->auth != NULL)); /* binary SASL PLAIN */
    rc |= append(mb, "STAT auth_enabled_ascii %s\r\n", p->auth ? p->auth_file : "no");
    rc |= append(mb, "STAT item_size_max %u\r\n", (unsigned)p->item_size_max);
    rc |= append(mb, "STAT ssl_enabled %s\r\n", yes_no(tls));
    if (tls) {
        rc |= append(mb, "STAT ssl_chain_cert %s\r\n", p->tls_cert);
        rc |= append(mb, "STAT ssl_key %s\r\n", p->tls_key);
        rc |= append(mb, "STAT ssl_verify_mode %d\r\n", p->tls_verify_client ? 3 : 0); /* OpenSSL's flags */
        rc |= append(mb, "STAT ssl_ciphers %s\r\n", p->tls_ciphers ? p->tls_ciphers : "NULL");
        rc |= append(mb, "STAT ssl_ca_cert %s\r\n", p->tls_ca ? p->tls_ca : "NULL");
        rc |= append(mb, "STAT ssl_min_version tlsv1.%u\r\n", p->tls_min_version == 13 ? 3u : 2u);
    }
    /* memrelay's own */
    rc |= append(mb, "STAT pool %s\r\n", p->name);
    rc |= append(mb, "STAT listen %s\r\n", addr_text(l, buf, sizeof(buf)));
    rc |= append(mb, "STAT tls %s\r\n", yes_no(p->tls));
    rc |= append(mb, "STAT tls_listen %s\r\n",
                 p->has_tls_listen ? addr_text(&p->tls_listen, buf, sizeof(buf)) : "NULL");
    if (tls)
        rc |= append(mb, "STAT tls_verify_client %s\r\n", yes_no(p->tls_verify_client));
    rc |= append(mb, "STAT servers %zu\r\n", p->nservers);
    rc |= append(mb, "STAT routes %zu\r\n", p->nroutes);
    rc |= append(mb, "STAT hash %s\r\n", mr_hash_name(p->hash));
    if (p->has_hash_tag)
        rc |= append(mb, "STAT hash_tag %c%c\r\n", p->hash_tag[0], p->hash_tag[1]);
    else
        rc |= append(mb, "STAT hash_tag NULL\r\n");
    rc |= append(mb, "STAT distribution %s\r\n", mr_dist_name(p->distribution));
    rc |= append(mb, "STAT timeout %u\r\n", (unsigned)p->timeout_ms);
    rc |= append(mb, "STAT preconnect %s\r\n", yes_no(p->preconnect));
    rc |= append(mb, "STAT server_connections %u\r\n", (unsigned)p->server_connections);
    rc |= append(mb, "STAT auto_eject_hosts %s\r\n", yes_no(p->auto_eject_hosts));
    rc |= append(mb, "STAT server_retry_timeout %u\r\n", (unsigned)p->server_retry_timeout_ms);
    rc |= append(mb, "STAT server_failure_limit %u\r\n", (unsigned)p->server_failure_limit);
    rc |= append(mb, "STAT tcpkeepalive %s\r\n", yes_no(p->tcpkeepalive));
    rc |= append(mb, "STAT client_connections %u\r\n", (unsigned)p->client_connections);
    rc |= append(mb, "STAT client_queue_limit %u\r\n", (unsigned)p->client_queue_limit);
    rc |= append(mb, "STAT client_output_limit %u\r\n", (unsigned)p->client_output_limit);
    rc |= append(mb, "STAT client_input_limit %u\r\n", (unsigned)p->client_input_limit);
    rc |= append(mb, "STAT client_idle_timeout %u\r\n", (unsigned)p->client_idle_timeout_ms);
    rc |= append(mb, "STAT client_output_timeout %u\r\n", (unsigned)p->client_output_timeout_ms);
    rc |= append(mb, "STAT client_block_timeout %u\r\n", (unsigned)p->client_block_timeout_ms);
    rc |= append(mb, "STAT server_queue_limit %u\r\n", (unsigned)p->server_queue_limit);
    rc |= append(mb, "STAT multiget_errors %s\r\n",
                 p->multiget_errors == MR_MULTIGET_ERRORS_FAIL ? "fail" : "miss");
    rc |= append(mb, "STAT replicas %u\r\n", (unsigned)p->replicas);
    rc |= append(mb, "STAT write_ack %s\r\n", ack_names[p->write_ack]);
    rc |= append(mb, "STAT read_miss_failover %s\r\n", yes_no(p->read_miss_failover));
    rc |= append(mb, "STAT replay_queue %u\r\n", (unsigned)p->replay_queue);
    rc |= append(mb, "STAT replicate_to %s", p->nreplicate_to ? "" : "NULL");
    for (size_t i = 0; i < p->nreplicate_to; i++)
        rc |= append(mb, "%s%s", i ? "," : "", p->replicate_to_names[i]);
    rc |= append(mb, "\r\n");
    rc |= append(mb, "STAT probe_success %u\r\n", (unsigned)p->probe_success);
    rc |= append(mb, "STAT probe_interval %u\r\n", (unsigned)p->probe_interval_ms);
    rc |= append(mb, "STAT probe_backoff_max %u\r\n", (unsigned)p->probe_backoff_max_ms);
    rc |= append(mb, "STAT max_ejected_fraction %u.%02u\r\n", (unsigned)p->max_ejected_pct / 100,
                 (unsigned)p->max_ejected_pct % 100);
    rc |= append(mb, "STAT on_rejoin %s\r\n", p->on_rejoin_quarantine ? "quarantine" : "flush");
    rc |= append(mb, "STAT quarantine_period %u\r\n", (unsigned)p->quarantine_ms);
    rc |= append(mb, "STAT server_tls %s\r\n", yes_no(p->server_tls));
    /* process-wide */
    rc |= append(mb, "STAT shutdown_timeout %u\r\n", (unsigned)cfg->shutdown_timeout_ms);
    rc |= append(mb, "STAT log_level %s\r\n", mr_log_level_name(mr_log_get_level()));
    rc |= append(mb, "END\r\n");
    return rc;
}

/* `stats servers`: every server of the listener's config, its state and
 * its traffic summed over the workers, into buf: bytes written, or -1. */
static int servers_stats(const mr_health *h, const mr_router *router, char *buf, size_t cap)
{
    size_t off = 0;
    int64_t now = mr_wall_ms();
#define APPEND(...)                                           \
    do {                                                      \
        int n_ = snprintf(buf + off, cap - off, __VA_ARGS__); \
        if (n_ < 0 || (size_t)n_ >= cap - off)                \
            return -1;                                        \
        off += (size_t)n_;                                    \
    } while (0)
    for (uint32_t i = 0; i < router->nservers; i++) {
        if (!router->servers[i].conf)
            continue;
        const mr_server_health *sh = mr_health_server(h, i);
        const char *name = router->servers[i].conf->spec;
        const char *pool = router->cfg->pools[router->servers[i].pool].name;
        uint32_t state = __atomic_load_n(&sh->state, __ATOMIC_ACQUIRE);
        int64_t down_at = __atomic_load_n(&sh->down_at_ms, __ATOMIC_RELAXED);
        int64_t next = __atomic_load_n(&sh->next_probe_ms, __ATOMIC_RELAXED);
        const char *err = mr_error_reply((mr_err)__atomic_load_n(&sh->last_error, __ATOMIC_RELAXED));
        mr_health_addr_info where;
        mr_health_addr_describe(h, i, &where);
        APPEND("STAT %s:%s:pool %s\r\n", pool, name, pool);
        APPEND("STAT %s:%s:address %s\r\n", pool, name, where.address);
        APPEND("STAT %s:%s:source %s\r\n", pool, name, where.source);
        if (where.host[0]) {
            APPEND("STAT %s:%s:host %s\r\n", pool, name, where.host);
            APPEND("STAT %s:%s:resolved_ms_ago %lld\r\n", pool, name,
                   where.resolved_ms ? (long long)(now - where.resolved_ms) : -1LL);
            APPEND("STAT %s:%s:resolve_error %s\r\n", pool, name, where.error[0] ? where.error : "none");
            APPEND("STAT %s:%s:lookups %llu\r\n", pool, name, (unsigned long long)where.lookups);
            APPEND("STAT %s:%s:lookup_failures %llu\r\n", pool, name,
                   (unsigned long long)where.lookup_failures);
        }
        APPEND("STAT %s:%s:state %s\r\n", pool, name, mr_health_state_name(state));
        APPEND("STAT %s:%s:ejected %u\r\n", pool, name, __atomic_load_n(&sh->ejected, __ATOMIC_RELAXED));
        APPEND("STAT %s:%s:failures %u\r\n", pool, name, __atomic_load_n(&sh->failures, __ATOMIC_RELAXED));
        APPEND("STAT %s:%s:last_error %.*s\r\n", pool, name, *err ? (int)strlen(err) - 2 : 4,
               *err ? err : "none");
        APPEND("STAT %s:%s:down_since_ms %lld\r\n", pool, name,
               state == MR_HEALTH_UP ? 0LL : (long long)down_at);
        APPEND("STAT %s:%s:next_probe_in_ms %lld\r\n", pool, name,
               state == MR_HEALTH_DOWN && next > now ? (long long)(next - now) : 0LL);
        APPEND("STAT %s:%s:quarantined %d\r\n", pool, name, mr_health_quarantined(h, i) ? 1 : 0);
        APPEND("STAT %s:%s:downs %llu\r\n", pool, name,
               (unsigned long long)__atomic_load_n(&sh->downs, __ATOMIC_RELAXED));
        APPEND("STAT %s:%s:probes %llu\r\n", pool, name,
               (unsigned long long)__atomic_load_n(&sh->probes, __ATOMIC_RELAXED));
        APPEND("STAT %s:%s:probe_failures %llu\r\n", pool, name,
               (unsigned long long)__atomic_load_n(&sh->probe_failures, __ATOMIC_RELAXED));
        APPEND("STAT %s:%s:rejoins %llu\r\n", pool, name,
               (unsigned long long)__atomic_load_n(&sh->rejoins, __ATOMIC_RELAXED));
        /* Traffic: every worker's requests to this server. */
        const mr_server_traffic *t = &sh->traffic;
        APPEND("STAT %s:%s:requests %llu\r\n", pool, name,
               (unsigned long long)__atomic_load_n(&t->requests, __ATOMIC_RELAXED));
        for (int e = MR_ERR_NONE + 1; e < MR_ERR_COUNT; e++)
            APPEND("STAT %s:%s:errors_%s %llu\r\n", pool, name, mr_error_class((mr_err)e),
                   (unsigned long long)__atomic_load_n(&t->errors[e], __ATOMIC_RELAXED));
        APPEND("STAT %s:%s:timeouts %llu\r\n", pool, name,
               (unsigned long long)__atomic_load_n(&t->timeouts, __ATOMIC_RELAXED));
        mr_latency_hist lat;
        mr_latency_snapshot(&t->latency, &lat);
        APPEND("STAT %s:%s:latency_p50_us %llu\r\n", pool, name,
               (unsigned long long)mr_latency_percentile_us(&lat, 0.50));
        APPEND("STAT %s:%s:latency_p99_us %llu\r\n", pool, name,
               (unsigned long long)mr_latency_percentile_us(&lat, 0.99));
    }
    APPEND("END\r\n");
#undef APPEND
    return (int)off;
}

/* `n` bytes were written into mb (or -1: they did not fit): make them the
 * reply. Takes the caller's reference to mb. */
static int reply_from(mr_mbuf *mb, int n, mr_slice *out)
{
    if (n >= 0) {
        mb->len = (uint32_t)n;
        *out = mr_slice_ref(mb, mb->data, mb->len);
    }
    mr_mbuf_unref(mb);
    return n < 0 ? -1 : 0;
}

/* Build the reply for `stats [arg]` into *out. */
int mr_stats_reply(mr_worker *w, uint32_t listen_pool, mr_slice *out, const char *arg, uint32_t arg_len,
                   const char *rest, uint32_t rest_len)
{
    if (arg_len == 5 && memcmp(arg, "route", 5) == 0) {
        while (rest_len > 0 && *rest == ' ') {
            rest++;
            rest_len--;
        }
        uint32_t klen = 0;
        while (klen < rest_len && rest[klen] != ' ')
            klen++;
        if (klen == 0 || klen > MR_KEY_MAX) {
            static const char usage[] = "CLIENT_ERROR usage: stats route <key>\r\n";
            *out = mr_slice_static(usage, sizeof(usage) - 1);
            return 0;
        }
        mr_mbuf *mb = mr_mbuf_get(&w->mbufs, 4096);
        if (!mb)
            return -1;
        if (route_explain(w, listen_pool, mb, rest, klen) < 0) {
            mr_mbuf_unref(mb);
            return -1;
        }
        *out = mr_slice_ref(mb, mb->data, mb->len);
        mr_mbuf_unref(mb);
        return 0;
    }
    static const char reset_reply[] = "RESET\r\n", end_reply[] = "END\r\n", error_reply[] = "ERROR\r\n";
    if (arg_len == 5 && memcmp(arg, "reset", 5) == 0) {
        pthread_mutex_lock(&baseline_lock);
        mr_stats_sum(&baseline);
        pthread_mutex_unlock(&baseline_lock);
        *out = mr_slice_static(reset_reply, sizeof(reset_reply) - 1);
        return 0;
    }
    if (arg_len == 6 && memcmp(arg, "config", 6) == 0 && w->shared->reload) {
        mr_mbuf *mb = mr_mbuf_get(&w->mbufs, 4096);
        return mb ? reply_from(mb, mr_reload_status_stats(w->shared->reload, mb->data, mb->cap), out) : -1;
    }
    if (arg_len == 7 && memcmp(arg, "servers", 7) == 0 && w->shared->health) {
        /* Up to 36 lines per server, each naming its pool and server; the
         * host name and lookup error take up to 350 bytes more. */
        const mr_router *r = w->gen->router;
        size_t cap = 1024;
        for (uint32_t i = 0; i < r->nservers; i++)
            if (r->servers[i].conf)
                cap += 40 * (strlen(r->servers[i].conf->spec) +
                             strlen(r->cfg->pools[r->servers[i].pool].name) + 64) +
                       512;
        mr_mbuf *mb = cap < UINT32_MAX ? mr_mbuf_get(&w->mbufs, (uint32_t)cap) : NULL;
        return mb ? reply_from(mb, servers_stats(w->shared->health, w->gen->router, mb->data, mb->cap), out)
                  : -1;
    }
    if (arg_len == 5 && memcmp(arg, "pools", 5) == 0) {
        mr_mbuf *mb = mr_mbuf_get(&w->mbufs, 64 * 1024);
        if (!mb)
            return -1;
        if (pool_stats(w, mb) < 0) {
            mr_mbuf_unref(mb);
            return -1;
        }
        *out = mr_slice_ref(mb, mb->data, mb->len);
        mr_mbuf_unref(mb);
        return 0;
    }
    if (arg_len == 8 && memcmp(arg, "settings", 8) == 0) {
        mr_mbuf *mb = mr_mbuf_get(&w->mbufs, 64 * 1024);
        if (!mb)
            return -1;
        if (settings_stats(w, listen_pool, mb) < 0) {
            mr_mbuf_unref(mb);
            return -1;
        }
        *out = mr_slice_ref(mb, mb->data, mb->len);
        mr_mbuf_unref(mb);
        return 0;
    }
    if (arg_len > 0) {
        /* memcached's per-slab and per-item views have no meaning for a proxy. */
        static const char *const empty_views[] = {"items", "slabs", "sizes", "conns"};
        for (size_t i = 0; i < sizeof(empty_views) / sizeof(empty_views[0]); i++) {
            if (strlen(empty_views[i]) == arg_len && memcmp(arg, empty_views[i], arg_len) == 0) {
                *out = mr_slice_static(end_reply, sizeof(end_reply) - 1);
                return 0;
            }
        }
        *out = mr_slice_static(error_reply, sizeof(error_reply) - 1);
        return 0;
    }
    mr_mbuf *mb = mr_mbuf_get(&w->mbufs, MR_MBUF_SIZE);
    if (!mb)
        return -1;
    if (full_stats(w, mb) < 0) {
        mr_mbuf_unref(mb);
        return -1;
    }
    *out = mr_slice_ref(mb, mb->data, mb->len);
    mr_mbuf_unref(mb);
    return 0;
}
