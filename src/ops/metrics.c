/* metrics.c: the Prometheus text exposition (metrics.h).
 *
 * One table per kind of family: process counters (one row per `stats`
 * counter, checked complete at compile time), per-pool replication
 * counters (one row per `stats pools` counter), per-server counters and
 * gauges. Families with their own label sets (errors by class, health
 * state, latency histograms) have a function each. Every family is written
 * whole, HELP and TYPE first, as the format requires.
 */
#include "memrelay/metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "memrelay/discovery.h"
#include "memrelay/generation.h"
#include "memrelay/health.h"
#include "memrelay/latency.h"
#include "memrelay/membudget.h"
#include "memrelay/stats.h"

/* ---- a bounded growing text buffer ---- */

typedef struct {
    char *p;
    size_t len, cap;
    bool failed; /* out of memory or past MR_METRICS_MAX_BYTES: the rest is dropped */
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...)
{
    if (t->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2;
        while (cap - t->len <= (size_t)n)
            cap *= 2;
        char *p = cap <= MR_METRICS_MAX_BYTES ? realloc(t->p, cap) : NULL;
        if (!p) {
            t->failed = true;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
}

/* A label value, escaped as the format says (backslash, quote, newline). */
static void put_label(text *t, const char *name, const char *value)
{
    put(t, "%s=\"", name);
    for (const char *s = value; *s; s++) {
        if (*s == '\\' || *s == '"')
            put(t, "\\%c", *s);
        else if (*s == '\n')
            put(t, "\\n");
        else
            put(t, "%c", *s);
    }
    put(t, "\"");
}

static void put_family(text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

#define COUNTER "counter"
#define GAUGE "gauge"

/* ---- process-wide: the `stats` counters, summed over every worker ---- */

static const struct {
    size_t offset; /* in mr_stats */
    const char *name, *type, *help;
} process_rows[] = {
#define ROW(field, name, type, help)                \
    {                                               \
        offsetof(mr_stats, field), name, type, help \
    }
    ROW(curr_connections, "memrelay_curr_connections", GAUGE, "Client connections open now."),
    ROW(total_connections, "memrelay_connections_total", COUNTER, "Client connections accepted."),
    ROW(rejected_connections, "memrelay_rejected_connections_total", COUNTER,
        "Client connections refused by a pool's client_connections limit."),
    ROW(cmd_get, "memrelay_cmd_get_total", COUNTER, "Keys requested by retrieval commands."),
    ROW(cmd_set, "memrelay_cmd_set_total", COUNTER, "Storage commands."),
    ROW(cmd_flush, "memrelay_cmd_flush_total", COUNTER, "flush_all commands."),
    ROW(cmd_touch, "memrelay_cmd_touch_total", COUNTER, "touch, gat and gats commands."),
    ROW(cmd_meta, "memrelay_cmd_meta_total", COUNTER, "Meta commands."),
    ROW(get_hits, "memrelay_get_hits_total", COUNTER, "Keys found by retrieval commands."),
    ROW(get_misses, "memrelay_get_misses_total", COUNTER, "Keys not found by retrieval commands."),
    ROW(bytes_read, "memrelay_bytes_read_total", COUNTER, "Bytes read from clients."),
    ROW(bytes_written, "memrelay_bytes_written_total", COUNTER, "Bytes written to clients."),
    ROW(backend_requests, "memrelay_backend_requests_total", COUNTER, "Requests queued for servers."),
    ROW(backend_timeouts, "memrelay_backend_timeouts_total", COUNTER,
        "Requests that timed out waiting for a server."),
    ROW(backend_errors, "memrelay_backend_errors_total", COUNTER,
        "Server connections lost (reset, closed, invalid reply, stalled)."),
    ROW(backend_connects, "memrelay_backend_connects_total", COUNTER, "Server connections established."),
    ROW(backend_connect_failures, "memrelay_backend_connect_failures_total", COUNTER,
        "Server connects that failed."),
    ROW(multiget_server_failures, "memrelay_multiget_server_failures_total", COUNTER,
        "Parts of multi-key gets whose server failed (their keys answered as misses or an error)."),
    ROW(client_errors, "memrelay_client_errors_total", COUNTER, "Malformed or refused client commands."),
    ROW(client_backpressure, "memrelay_client_backpressure_total", COUNTER,
        "Times reading from a client paused because its queue or output was full."),
    ROW(client_idle_closed, "memrelay_client_idle_closed_total", COUNTER,
        "Client connections closed by client_idle_timeout."),
    ROW(client_output_closed, "memrelay_client_output_closed_total", COUNTER,
        "Client connections closed by client_output_timeout (undelivered output above client_output_limit "
        "for that long)."),
    ROW(client_block_closed, "memrelay_client_block_closed_total", COUNTER,
        "Client connections closed by client_block_timeout (stalled inside a reserved data block while "
        "others waited for memory_limit)."),
    ROW(memory_waits, "memrelay_memory_waits_total", COUNTER,
        "Times reading from a client paused because memory_limit was used up."),
    ROW(memory_refused, "memrelay_memory_refused_total", COUNTER,
        "Data blocks refused with SERVER_ERROR out of memory because they can never fit memory_limit."),
    ROW(backend_queue_full, "memrelay_backend_queue_full_total", COUNTER,
        "Requests refused because a server connection's queue was full."),
    ROW(tls_handshakes, "memrelay_tls_handshakes_total", COUNTER, "Client TLS handshakes completed."),
    ROW(tls_handshake_failures, "memrelay_tls_handshake_failures_total", COUNTER,
        "Client TLS handshakes that failed (bad certificate, plain text on a TLS port, timeout)."),
    ROW(backend_tls_handshakes, "memrelay_backend_tls_handshakes_total", COUNTER,
        "TLS handshakes with servers completed."),
    ROW(backend_tls_handshake_failures, "memrelay_backend_tls_handshake_failures_total", COUNTER,
        "TLS handshakes with servers that failed (certificate not verified, refused)."),
    ROW(auth_cmds, "memrelay_auth_cmds_total", COUNTER,
        "Client authentication attempts that reached the credential check (memcached's auth_cmds)."),
    ROW(auth_errors, "memrelay_auth_errors_total", COUNTER,
        "Client authentication attempts that failed (memcached's auth_errors)."),
    ROW(auth_delays, "memrelay_auth_delays_total", COUNTER,
        "Times a client connection was not read for a while after repeated authentication failures."),
    ROW(auth_failure_closes, "memrelay_auth_failure_closes_total", COUNTER,
        "Client connections closed after too many authentication failures."),
#undef ROW
};
_Static_assert(sizeof(process_rows) / sizeof(process_rows[0]) == sizeof(mr_stats) / sizeof(uint64_t),
               "every stats counter has a metric");

static void put_process(text *t, const mr_admin_view *v)
{
    mr_stats total;
    mr_stats_sum(&total);
    for (size_t i = 0; i < sizeof(process_rows) / sizeof(process_rows[0]); i++) {
        uint64_t value;
        memcpy(&value, (const char *)&total + process_rows[i].offset, sizeof(value));
        put_family(t, process_rows[i].name, process_rows[i].type, process_rows[i].help);
        put(t, "%s %llu\n", process_rows[i].name, (unsigned long long)value);
    }
    struct timeval now;
    gettimeofday(&now, NULL);
    double uptime = (double)now.tv_sec + now.tv_usec / 1e6 - v->started;
    put_family(t, "memrelay_uptime_seconds", GAUGE, "Seconds since memrelay started.");
    put(t, "memrelay_uptime_seconds %.3f\n", uptime > 0 ? uptime : 0.0);
    if (v->membudget) {
        mr_membudget_view m;
        mr_membudget_read(v->membudget, &m);
        put_family(t, "memrelay_memory_limit_bytes", GAUGE,
                   "memory_limit: bytes memrelay may buffer for clients.");
        put(t, "memrelay_memory_limit_bytes %llu\n", (unsigned long long)m.limit);
        put_family(
            t, "memrelay_memory_used_bytes", GAUGE,
            "Bytes of memory_limit in use: client input, queued requests, replies waiting for clients.");
        put(t, "memrelay_memory_used_bytes %llu\n", (unsigned long long)m.used);
        put_family(t, "memrelay_memory_peak_bytes", GAUGE,
                   "The most memory_used_bytes has been since start.");
        put(t, "memrelay_memory_peak_bytes %llu\n", (unsigned long long)m.peak);
    }
    put_family(t, "memrelay_build_info", GAUGE, "Always 1; the version is in the label.");
    put(t, "memrelay_build_info{");
    put_label(t, "version", MEMRELAY_VERSION);
    put(t, "} 1\n");
}

/* ---- configuration reload status ----
 *
 * From the reloader's status (mr_admin_view.reload), among them:
 *   memrelay_config_reloads_total                          counter
 *   memrelay_config_reload_failures_total                  counter
 *   memrelay_config_last_reload_success_timestamp_seconds  gauge
 */
static void put_reload(text *t, const mr_admin_view *v)
{
    if (!v->reload)
        return;
    mr_reload_status *st = v->reload;
    pthread_mutex_lock(&st->lock);
    uint64_t reloads = st->reloads, failures = st->failures, seq = st->seq;
    int64_t loaded_at = st->loaded_at_ms;
    bool failing = st->last_error[0] != '\0';
    pthread_mutex_unlock(&st->lock);
    put_family(t, "memrelay_config_reloads_total", COUNTER, "Configuration reloads that took effect.");
    put(t, "memrelay_config_reloads_total %llu\n", (unsigned long long)reloads);
    put_family(t, "memrelay_config_reload_failures_total", COUNTER,
               "Configuration reloads refused (invalid file, unbindable listener, ...); the old config kept "
               "serving.");
    put(t, "memrelay_config_reload_failures_total %llu\n", (unsigned long long)failures);
    put_family(t, "memrelay_config_last_reload_success_timestamp_seconds", GAUGE,
               "When the configuration in force was loaded (Unix time).");
    put(t, "memrelay_config_last_reload_success_timestamp_seconds %.3f\n", loaded_at / 1000.0);
    put_family(t, "memrelay_config_generation", GAUGE,
               "Generation of the configuration in force (1 at start).");
    put(t, "memrelay_config_generation %llu\n", (unsigned long long)seq);
    put_family(t, "memrelay_config_last_reload_failed", GAUGE,
               "1 if the last reload attempt was refused (stats config: last_reload_error), else 0.");
    put(t, "memrelay_config_last_reload_failed %d\n", failing ? 1 : 0);
}

/* ---- per pool: replication counters (`stats pools`) ---- */

static const struct {
    size_t offset; /* in mr_pool_stats */
    const char *name, *type, *help;
} pool_rows[] = {
/* Counters get the _total suffix the format asks for; gauges do not. */
#define C(field, help)                                                                  \
    {                                                                                   \
        offsetof(mr_pool_stats, field), "memrelay_pool_" #field "_total", COUNTER, help \
    }
#define G(field, help)                                                       \
    {                                                                        \
        offsetof(mr_pool_stats, field), "memrelay_pool_" #field, GAUGE, help \
    }
    C(repl_writes, "Replicated writes started."),
    C(repl_write_failures, "Copies of replicated writes that failed."),
    C(repl_acks_unmet, "Replicated writes answered with a failure because write_ack was not met."),
    C(repl_repairs, "Background copies after primary-only writes (add, cas, incr, ...)."),
    C(repl_read_failovers, "Reads sent on to the next replica."),
    G(repl_background_pending, "Background copies in flight now."),
    C(repl_queued, "Writes queued for replay to a down replica."),
    C(repl_replayed, "Queued writes replayed to a returning replica."),
    G(repl_queue_depth, "Writes waiting for replay now."),
    C(repl_queue_overflows, "Replay queues that overflowed."),
    C(warm_lookups, "Misses on a key's new owner retried on its previous owner (warm-up window)."),
    C(warm_hits, "Warm-up lookups the previous owner answered with a value."),
    C(warm_copies, "Values copied from the previous owner to the new one."),
    C(warm_stale_deletes, "Deletes sent to a moved key's previous owner after a write."),
    C(warm_races, "Warm-up lookups and copies given up or undone because a write to the key raced them."),
#undef C
#undef G
};
_Static_assert(sizeof(pool_rows) / sizeof(pool_rows[0]) == sizeof(mr_pool_stats) / sizeof(uint64_t),
               "every pool counter has a metric");

/* ---- per server: one snapshot of each server's atomics ---- */

typedef struct {
    uint64_t requests, timeouts, downs, probes, probe_failures, rejoins; /* counters */
    uint64_t lookups, lookup_failures;       /* counters: its name's DNS lookups */
    uint64_t failures, ejected, quarantined; /* gauges */
    uint64_t errors[MR_ERR_COUNT];
    uint32_t state;
    mr_latency_hist latency;
} server_snap;

static void snap_server(const mr_health *h, uint32_t id, server_snap *s)
{
    const mr_server_health *sh = mr_health_server(h, id);
    const mr_server_traffic *tr = &sh->traffic;
    s->requests = __atomic_load_n(&tr->requests, __ATOMIC_RELAXED);
    s->timeouts = __atomic_load_n(&tr->timeouts, __ATOMIC_RELAXED);
    for (int e = 0; e < MR_ERR_COUNT; e++)
        s->errors[e] = __atomic_load_n(&tr->errors[e], __ATOMIC_RELAXED);
    mr_latency_snapshot(&tr->latency, &s->latency);
    s->downs = __atomic_load_n(&sh->downs, __ATOMIC_RELAXED);
    s->probes = __atomic_load_n(&sh->probes, __ATOMIC_RELAXED);
    s->probe_failures = __atomic_load_n(&sh->probe_failures, __ATOMIC_RELAXED);
    s->rejoins = __atomic_load_n(&sh->rejoins, __ATOMIC_RELAXED);
    s->failures = __atomic_load_n(&sh->failures, __ATOMIC_RELAXED);
    s->ejected = __atomic_load_n(&sh->ejected, __ATOMIC_RELAXED);
    s->quarantined = mr_health_quarantined(h, id) ? 1 : 0;
    s->state = __atomic_load_n(&sh->state, __ATOMIC_ACQUIRE);
    s->lookups = __atomic_load_n(&sh->lookups, __ATOMIC_RELAXED);
    s->lookup_failures = __atomic_load_n(&sh->lookup_failures, __ATOMIC_RELAXED);
}

static const struct {
    size_t offset; /* in server_snap */
    const char *name, *type, *help;
} server_rows[] = {
#define ROW(field, name, type, help)                   \
    {                                                  \
        offsetof(server_snap, field), name, type, help \
    }
    ROW(requests, "memrelay_server_requests_total", COUNTER,
        "Requests to the server that finished: answered by it, or failed (errors by class below)."),
    ROW(timeouts, "memrelay_server_timeouts_total", COUNTER,
        "Requests answered SERVER_ERROR timeout, counted when their deadline passed."),
    ROW(downs, "memrelay_server_downs_total", COUNTER, "Times the server was marked down."),
    ROW(probes, "memrelay_server_probes_total", COUNTER, "Health probes sent to the server."),
    ROW(probe_failures, "memrelay_server_probe_failures_total", COUNTER, "Health probes that failed."),
    ROW(rejoins, "memrelay_server_rejoins_total", COUNTER, "Times the server came back into service."),
    ROW(lookups, "memrelay_server_dns_lookups_total", COUNTER,
        "DNS lookups of the server's host name (0 for a server given by address)."),
    ROW(lookup_failures, "memrelay_server_dns_lookup_failures_total", COUNTER,
        "DNS lookups of the server's host name that failed (its last good address was kept)."),
    ROW(failures, "memrelay_server_consecutive_failures", GAUGE,
        "Timeouts or invalid replies in a row now (server_failure_limit marks it down)."),
    ROW(ejected, "memrelay_server_ejected", GAUGE, "1 while the server is out of its pool's ring."),
    ROW(quarantined, "memrelay_server_quarantined", GAUGE,
        "1 while the server serves no reads (on_rejoin: quarantine)."),
#undef ROW
};

/* The labels of one server: pool and server (its line in the config). */
static void put_server_labels(text *t, const mr_admin_view *v, uint32_t id)
{
    const mr_server *s = &v->router->servers[id];
    put_label(t, "pool", v->cfg->pools[s->pool].name);
    put(t, ",");
    put_label(t, "server", s->conf->spec);
}

/* A histogram's samples: cumulative buckets at the exported bounds, +Inf,
 * sum and count. `labels` writes the series' own labels. */
static void put_histogram(text *t, const char *name, const mr_latency_hist *h,
                          void (*labels)(text *, const mr_admin_view *, uint32_t), const mr_admin_view *v,
                          uint32_t id)
{
    uint64_t cumulative = 0;
    for (uint32_t b = 0; b < MR_LATENCY_BUCKETS; b++) {
        cumulative += h->bucket[b];
        bool last = b == MR_LATENCY_BUCKETS - 1;
        if (!last && !mr_latency_bound_exported(b))
            continue;
        put(t, "%s_bucket{", name);
        labels(t, v, id);
        if (last)
            put(t, ",le=\"+Inf\"} %llu\n", (unsigned long long)cumulative);
        else
            put(t, ",le=\"%g\"} %llu\n", (double)mr_latency_bound_us(b) / 1e6,
                (unsigned long long)cumulative);
    }
    put(t, "%s_sum{", name);
    labels(t, v, id);
    put(t, "} %.6f\n", (double)h->sum_us / 1e6);
    put(t, "%s_count{", name);
    labels(t, v, id);
    put(t, "} %llu\n", (unsigned long long)cumulative);
}

static void put_pool_label(text *t, const mr_admin_view *v, uint32_t pool)
{
    put_label(t, "pool", v->cfg->pools[pool].name);
}

static void put_pools(text *t, const mr_admin_view *v, const server_snap *snaps)
{
    const mr_router *r = v->router;
    for (size_t i = 0; i < sizeof(pool_rows) / sizeof(pool_rows[0]); i++) {
        put_family(t, pool_rows[i].name, pool_rows[i].type, pool_rows[i].help);
        for (uint32_t p = 0; p < r->npools; p++) {
            mr_pool_stats ps;
            mr_pool_stats_sum(r->pools[p].slot, &ps);
            uint64_t value;
            memcpy(&value, (const char *)&ps + pool_rows[i].offset, sizeof(value));
            put(t, "%s{", pool_rows[i].name);
            put_pool_label(t, v, p);
            put(t, "} %llu\n", (unsigned long long)value);
        }
    }
    put_family(t, "memrelay_pool_warmup_window_left_seconds", GAUGE,
               "Time left of the pool's warm-up window after a reload moved keys (0: none open).");
    for (uint32_t p = 0; p < r->npools; p++) {
        put(t, "memrelay_pool_warmup_window_left_seconds{");
        put_pool_label(t, v, p);
        put(t, "} %.3f\n", v->gen ? mr_gen_warm_left(v->gen, p, ev_time()) : 0.0);
    }
    put_family(t, "memrelay_pool_servers", GAUGE, "Servers configured in the pool.");
    for (uint32_t p = 0; p < r->npools; p++) {
        put(t, "memrelay_pool_servers{");
        put_pool_label(t, v, p);
        put(t, "} %u\n", r->pools[p].nservers);
    }
    put_family(t, "memrelay_pool_servers_up", GAUGE, "Servers of the pool whose health state is up.");
    for (uint32_t p = 0; p < r->npools; p++) {
        uint32_t up = 0;
        for (uint32_t s = 0; s < r->pools[p].nservers; s++)
            up += snaps[r->pools[p].server_ids[s]].state == MR_HEALTH_UP;
        put(t, "memrelay_pool_servers_up{");
        put_pool_label(t, v, p);
        put(t, "} %u\n", up);
    }
    put_family(
        t, "memrelay_pool_latency_seconds", "histogram",
        "Time from queueing a request for a server of the pool to its complete reply (all its servers).");
    for (uint32_t p = 0; p < r->npools; p++) {
        mr_latency_hist sum;
        memset(&sum, 0, sizeof(sum));
        for (uint32_t s = 0; s < r->pools[p].nservers; s++)
            mr_latency_merge(&sum, &snaps[r->pools[p].server_ids[s]].latency);
        put_histogram(t, "memrelay_pool_latency_seconds", &sum, put_pool_label, v, p);
    }
}

static void put_servers(text *t, const mr_admin_view *v, const server_snap *snaps)
{
    uint32_t n = v->router->nservers;
    for (size_t i = 0; i < sizeof(server_rows) / sizeof(server_rows[0]); i++) {
        put_family(t, server_rows[i].name, server_rows[i].type, server_rows[i].help);
        for (uint32_t s = 0; s < n; s++) {
            if (!v->router->servers[s].conf)
                continue;
            uint64_t value;
            memcpy(&value, (const char *)&snaps[s] + server_rows[i].offset, sizeof(value));
            put(t, "%s{", server_rows[i].name);
            put_server_labels(t, v, s);
            put(t, "} %llu\n", (unsigned long long)value);
        }
    }
    put_family(t, "memrelay_server_errors_total", COUNTER,
               "Requests to the server that failed, by class (the reason their client was given).");
    for (uint32_t s = 0; s < n; s++) {
        if (!v->router->servers[s].conf)
            continue;
        for (int e = MR_ERR_NONE + 1; e < MR_ERR_COUNT; e++) {
            put(t, "memrelay_server_errors_total{");
            put_server_labels(t, v, s);
            put(t, ",");
            put_label(t, "class", mr_error_class((mr_err)e));
            put(t, "} %llu\n", (unsigned long long)snaps[s].errors[e]);
        }
    }
    /* One series per state, 1 for the current one: alerts can match on
     * state="down" without knowing a numeric code. */
    static const uint32_t states[] = {MR_HEALTH_UP, MR_HEALTH_DOWN, MR_HEALTH_REJOINING};
    put_family(t, "memrelay_server_state", GAUGE,
               "1 for the server's current health state, 0 for the others.");
    for (uint32_t s = 0; s < n; s++) {
        if (!v->router->servers[s].conf)
            continue;
        for (size_t k = 0; k < sizeof(states) / sizeof(states[0]); k++) {
            put(t, "memrelay_server_state{");
            put_server_labels(t, v, s);
            put(t, ",");
            put_label(t, "state", mr_health_state_name(states[k]));
            put(t, "} %d\n", snaps[s].state == states[k] ? 1 : 0);
        }
    }
    put_family(t, "memrelay_server_latency_seconds", "histogram",
               "Time from queueing a request for the server to its complete reply (late replies included).");
    for (uint32_t s = 0; s < n; s++)
        if (v->router->servers[s].conf)
            put_histogram(t, "memrelay_server_latency_seconds", &snaps[s].latency, put_server_labels, v, s);
}

/* Where each server is now, and each discovering pool's DNS counters. */
static void put_dns(text *t, const mr_admin_view *v)
{
    put_family(
        t, "memrelay_server_info", GAUGE,
        "1 per server, labelled with its current address, its host name (\"\" for an address) and where its "
        "line came from (static, srv, dns).");
    for (uint32_t s = 0; s < v->router->nservers; s++) {
        if (!v->router->servers[s].conf)
            continue;
        mr_health_addr_info a;
        mr_health_addr_describe(v->health, s, &a);
        put(t, "memrelay_server_info{");
        put_server_labels(t, v, s);
        put(t, ",");
        put_label(t, "address", a.address);
        put(t, ",");
        put_label(t, "host", a.host);
        put(t, ",");
        put_label(t, "source", a.source);
        put(t, "} 1\n");
    }
    put_family(
        t, "memrelay_server_dns_resolved_timestamp_seconds", GAUGE,
        "When the server's host name last resolved (0: never; servers given by address are left out).");
    for (uint32_t s = 0; s < v->router->nservers; s++) {
        if (!v->router->servers[s].conf)
            continue;
        mr_health_addr_info a;
        mr_health_addr_describe(v->health, s, &a);
        if (!a.host[0])
            continue;
        put(t, "memrelay_server_dns_resolved_timestamp_seconds{");
        put_server_labels(t, v, s);
        put(t, "} %.3f\n", a.resolved_ms / 1000.0);
    }
    mr_discovery_pool_stats d[16];
    size_t n = v->discovery ? mr_discovery_stats(v->discovery, d, 16) : 0;
    static const struct {
        const char *name, *type, *help;
        size_t offset;
    } rows[] = {
        {"memrelay_pool_dns_lookups_total", COUNTER, "Lookups of the pool's servers_srv or servers_dns name.",
         offsetof(mr_discovery_pool_stats, lookups)},
        {"memrelay_pool_dns_lookup_failures_total", COUNTER,
         "Of those, failed or empty answers (the last good membership was kept).",
         offsetof(mr_discovery_pool_stats, failures)},
        {"memrelay_pool_dns_membership_changes_total", COUNTER,
         "Answers that changed the pool's servers (each switched like a reload).",
         offsetof(mr_discovery_pool_stats, changes)},
    };
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
        put_family(t, rows[r].name, rows[r].type, rows[r].help);
        for (size_t i = 0; i < n; i++) {
            uint64_t value;
            memcpy(&value, (const char *)&d[i] + rows[r].offset, sizeof(value));
            put(t, "%s{", rows[r].name);
            put_label(t, "pool", d[i].pool);
            put(t, "} %llu\n", (unsigned long long)value);
        }
    }
}

char *mr_metrics_render(const mr_admin_view *v, size_t *len)
{
    text t = {.cap = 16384};
    if (!(t.p = malloc(t.cap)))
        return NULL;
    t.p[0] = '\0';
    uint32_t n = v->router->nservers;
    server_snap *snaps = calloc(n ? n : 1, sizeof(*snaps));
    if (!snaps) {
        free(t.p);
        return NULL;
    }
    for (uint32_t s = 0; s < n; s++)
        if (v->router->servers[s].conf)
            snap_server(v->health, s, &snaps[s]);
    put_process(&t, v);
    put_reload(&t, v);
    put_pools(&t, v, snaps);
    put_servers(&t, v, snaps);
    put_dns(&t, v);
    free(snaps);
    if (t.failed) {
        free(t.p);
        return NULL;
    }
    *len = t.len;
    return t.p;
}
