/* config_print.c: the resolved configuration as `memrelay --check-config`
 * shows it: every setting with its effective value, defaults included. */
#include "config_internal.h"
#include "memrelay/log.h"

#include "memrelay/auth.h"

#include <string.h>

static const char *yes_no(bool b)
{
    return b ? "true" : "false";
}

/* A prefix as a double-quoted string (prefixes have no quotes' escapes to
 * worry about except '"' and '\\', which we escape). */
static void print_quoted(FILE *out, const char *s, size_t len)
{
    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"' || s[i] == '\\')
            fputc('\\', out);
        fputc(s[i], out);
    }
    fputc('"', out);
}

static void row(FILE *out, const char *key, const char *value)
{
    fprintf(out, "  %-22s %s\n", key, value);
}

static void row_u(FILE *out, const char *key, unsigned value, const char *unit)
{
    fprintf(out, "  %-22s %u%s\n", key, value, unit);
}

static const char *or_none(const char *s, const char *none)
{
    return s ? s : none;
}

/* TLS rows only for the sides that use TLS, so plain pools print as before. */
static void print_tls(FILE *out, const mr_pool_conf *p)
{
    char buf[160];
    if (p->has_listen)
        row(out, "tls", yes_no(p->tls));
    if (p->has_tls_listen)
        row(out, "tls_listen", mr_conf_addr_format(&p->tls_listen, buf, sizeof(buf)));
    if (mr_pool_tls_clients(p)) {
        row(out, "tls_cert", p->tls_cert);
        row(out, "tls_key", p->tls_key);
        row(out, "tls_verify_client", yes_no(p->tls_verify_client));
        row(out, "tls_ca", or_none(p->tls_ca, "(none)"));
        row(out, "tls_ciphers", or_none(p->tls_ciphers, "(OpenSSL default)"));
        row(out, "tls_ciphersuites", or_none(p->tls_ciphersuites, "(OpenSSL default)"));
        row(out, "tls_min_version", p->tls_min_version == 13 ? "1.3" : "1.2");
    }
    row(out, "server_tls", yes_no(p->server_tls));
    if (p->server_tls) {
        row(out, "server_tls_verify", yes_no(p->server_tls_verify));
        if (p->server_tls_verify)
            row(out, "server_tls_ca", or_none(p->server_tls_ca, "(the system's CA store)"));
        row(out, "server_tls_name", or_none(p->server_tls_name, "(each server's host as written)"));
        row(out, "server_tls_cert", or_none(p->server_tls_cert, "(none)"));
        if (p->server_tls_cert)
            row(out, "server_tls_key", p->server_tls_key);
    }
}

static void print_pool(FILE *out, const mr_config *cfg, const mr_pool_conf *p)
{
    char buf[160];

    fprintf(out, "pool %s (line %d)\n", p->name, p->line);
    row(out, "listen",
        p->has_listen ? mr_conf_addr_format(&p->listen, buf, sizeof(buf)) : "(none: route target only)");
    row(out, "hash", mr_hash_name(p->hash));
    if (p->has_hash_tag)
        fprintf(out, "  %-22s \"%c%c\"\n", "hash_tag", p->hash_tag[0], p->hash_tag[1]);
    else
        row(out, "hash_tag", "(none)");
    row(out, "distribution", mr_dist_name(p->distribution));
    row_u(out, "timeout", (unsigned)p->timeout_ms, " ms");
    row_u(out, "backlog", (unsigned)p->backlog, "");
    row(out, "preconnect", yes_no(p->preconnect));
    row_u(out, "server_connections", (unsigned)p->server_connections, "");
    row(out, "auto_eject_hosts", yes_no(p->auto_eject_hosts));
    row_u(out, "server_retry_timeout", (unsigned)p->server_retry_timeout_ms, " ms");
    row_u(out, "server_failure_limit", (unsigned)p->server_failure_limit, "");
    row(out, "tcpkeepalive", yes_no(p->tcpkeepalive));
    row_u(out, "client_connections", (unsigned)p->client_connections,
          p->client_connections == 0 ? " (unlimited)" : "");
    row(out, "multiget_errors", p->multiget_errors == MR_MULTIGET_ERRORS_FAIL ? "fail" : "miss");
    row_u(out, "item_size_max", (unsigned)p->item_size_max, " bytes");
    row_u(out, "replicas", (unsigned)p->replicas, "");
    row(out, "write_ack",
        p->write_ack == MR_WRITE_ACK_ALL      ? "all"
        : p->write_ack == MR_WRITE_ACK_QUORUM ? "quorum"
                                              : "one");
    row(out, "read_miss_failover", p->read_miss_failover ? "true" : "false");
    row_u(out, "replay_queue", (unsigned)p->replay_queue, " writes per server");
    row_u(out, "probe_success", (unsigned)p->probe_success, " probes");
    row_u(out, "probe_interval", (unsigned)p->probe_interval_ms, " ms");
    row_u(out, "probe_backoff_max", (unsigned)p->probe_backoff_max_ms, " ms");
    row_u(out, "max_ejected_fraction", (unsigned)p->max_ejected_pct, " %");
    row_u(out, "client_queue_limit", (unsigned)p->client_queue_limit, " requests");
    row_u(out, "client_output_limit", (unsigned)p->client_output_limit, " bytes");
    row_u(out, "client_input_limit", (unsigned)p->client_input_limit, " bytes");
    row_u(out, "server_queue_limit", (unsigned)p->server_queue_limit, " requests per connection");
    row_u(out, "client_idle_timeout", (unsigned)p->client_idle_timeout_ms, " ms (0: never)");
    row_u(out, "client_output_timeout", (unsigned)p->client_output_timeout_ms, " ms (0: never)");
    row_u(out, "client_block_timeout", (unsigned)p->client_block_timeout_ms, " ms (0: never)");
    row(out, "on_rejoin", p->on_rejoin_quarantine ? "quarantine" : "flush");
    row_u(out, "quarantine_period", (unsigned)p->quarantine_ms, " ms");
    row_u(out, "warmup_window", (unsigned)p->warmup_window_ms, " ms (0: off)");
    for (size_t i = 0; i < p->nreplicate_to; i++)
        row(out, "replicate_to", p->replicate_to_names[i]);
    print_tls(out, p);
    /* The file and how many credentials it holds; never names or passwords. */
    if (p->auth != NULL)
        fprintf(out, "  %-22s %s (%zu credential%s)\n", "auth_file", p->auth_file, mr_auth_count(p->auth),
                mr_auth_count(p->auth) == 1 ? "" : "s");
    else
        row(out, "auth_file", "(none: no authentication)");
    if (p->has_listen && !mr_listener_is_protected(p))
        row(out, "warning", "listens beyond loopback without authentication");

    if (p->nservers == 0)
        fputs("  servers: none (the catch-all route takes every key no other route takes)\n", out);
    else
        fprintf(out, "  servers (%zu):\n", p->nservers);
    for (size_t i = 0; i < p->nservers; i++) {
        const mr_server_conf *s = &p->servers[i];
        fprintf(out, "    %-32s weight %-5u ident %s\n", mr_conf_addr_format(&s->addr, buf, sizeof(buf)),
                (unsigned)s->weight, s->ident);
    }
    if (p->nroutes > 0) {
        fprintf(out, "  routes (%zu, longest prefix first):\n", p->nroutes);
        for (size_t i = 0; i < p->nroutes; i++) {
            const mr_route_conf *r = &p->routes[i];
            fputs("    ", out);
            print_quoted(out, r->prefix, r->prefix_len);
            fprintf(out, "%s -> pool %s\n", r->prefix_len == 0 ? " (catch-all)" : "",
                    cfg->pools[r->pool_index].name);
        }
    }
}

void mr_config_print(FILE *out, const mr_config *cfg)
{
    fprintf(out, "configuration %s: %zu pool%s, %d thread%s\n", cfg->path ? cfg->path : "(unnamed)",
            cfg->npools, cfg->npools == 1 ? "" : "s", cfg->threads, cfg->threads == 1 ? "" : "s");
    fprintf(out, "logging: level %s, to %s\n", mr_log_level_name((mr_log_level)cfg->log_level),
            cfg->log_file ? cfg->log_file : "stderr");
    fprintf(out, "memory_limit: %llu bytes buffered for clients\n", (unsigned long long)cfg->memory_limit);
    if (cfg->has_admin_listen) {
        char buf[160];
        fprintf(out, "admin HTTP listener (admin_listen): %s\n",
                mr_conf_addr_format(&cfg->admin_listen, buf, sizeof(buf)));
    }
    for (size_t i = 0; i < cfg->npools; i++) {
        fputc('\n', out);
        print_pool(out, cfg, &cfg->pools[i]);
    }
}
