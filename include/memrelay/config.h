/* Layer: config (src/config/; may use base, dist). */
/* config.h: the YAML configuration, loaded once into an immutable object.
 *
 * The file is a twemproxy nutcracker.yml superset: a map of pool name ->
 * pool settings. The top-level key `memrelay` is reserved for process-wide
 * settings. After mr_config_load() succeeds nothing in the object changes;
 * worker threads share it read-only.
 */
#ifndef MEMRELAY_CONFIG_H
#define MEMRELAY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

struct mr_auth_table;

#include "memrelay/dist.h"
#include "memrelay/hash.h"

/* Where a server or listener lives. */
typedef struct {
    bool is_unix;  /* unix socket path instead of TCP */
    char *host;    /* TCP: host text as written (brackets removed for IPv6); unix: the path */
    uint16_t port; /* TCP port; 0 for unix */
    mode_t mode;   /* unix listeners: file mode (0 = leave the umask's) */
} mr_addr_conf;

/* Where a pool's server list comes from. */
typedef enum {
    MR_SERVERS_STATIC, /* `servers:` lines in the file */
    MR_SERVERS_SRV,    /* `servers_srv:` one server per SRV target, named by the target host */
    MR_SERVERS_DNS,    /* `servers_dns:` one server per A/AAAA address, named by the address */
} mr_servers_source;

typedef struct {
    char *spec;               /* the server line as written, for messages */
    mr_addr_conf addr;        /* where it is */
    uint32_t weight;          /* >= 1 */
    char *name;               /* explicit name after the space, or NULL */
    char *ident;              /* ketama identity: name, else host (port 11211), else host:port, else path */
    int line, column;         /* position of the server line in the file (1-based; discovered: the key's) */
    mr_servers_source source; /* static, or found in DNS for its pool */
} mr_server_conf;

typedef enum { MR_MULTIGET_ERRORS_MISS, MR_MULTIGET_ERRORS_FAIL } mr_multiget_errors;

/* How many replicas must acknowledge a replicated write before the client
 * gets its reply. */
typedef enum { MR_WRITE_ACK_ONE, MR_WRITE_ACK_QUORUM, MR_WRITE_ACK_ALL } mr_write_ack;

/* A key-prefix route: keys starting with `prefix` go to pool `pool_index`. */
typedef struct {
    char *prefix;
    size_t prefix_len;
    char *pool_name;
    size_t pool_index; /* resolved index into mr_config.pools */
} mr_route_conf;

typedef struct {
    char *name;
    int line, column; /* position of the pool's key */

    /* twemproxy keys */
    bool has_listen; /* a pool without `listen` only serves as a route target */
    mr_addr_conf listen;
    mr_hash_kind hash; /* default fnv1a_64 */
    bool has_hash_tag;
    char hash_tag[2];                 /* open and close characters */
    mr_dist_kind distribution;        /* default ketama */
    uint32_t timeout_ms;              /* per request; default 1000 (twemproxy: none) */
    int backlog;                      /* default 512 */
    bool preconnect;                  /* default false */
    uint32_t server_connections;      /* per worker per server; default 1 */
    bool auto_eject_hosts;            /* default false */
    uint32_t server_retry_timeout_ms; /* default 30000 */
    uint32_t server_failure_limit;    /* default 2 */
    bool tcpkeepalive;                /* default false */
    uint32_t client_connections;      /* 0 = unlimited (default) */
    mr_server_conf *servers;
    size_t nservers;
    /* memrelay: servers found in DNS instead (discovery.c). The file's text
     * is parsed again with each new membership (mr_config_load_members). */
    mr_servers_source discovery; /* MR_SERVERS_STATIC: the `servers` list */
    char *discovery_name;        /* the SRV name, or servers_dns's host */
    uint16_t discovery_port;     /* servers_dns: the port of every address */
    uint32_t dns_refresh_ms;     /* re-resolve host names and re-read discovery records; default 30000 */

    /* memrelay additions */
    mr_route_conf *routes; /* prefix routes, sorted longest prefix first */
    size_t nroutes;
    mr_multiget_errors multiget_errors; /* default miss */
    uint32_t item_size_max;             /* largest value accepted; default 1048576 */
    uint32_t replicas;                  /* copies of each key (1 = no replication); default 1 */
    mr_write_ack write_ack;             /* replicated writes: acks before replying; default one */
    bool read_miss_failover;            /* a miss on one replica tries the next; default false */
    uint32_t replay_queue;              /* failed writes remembered per server for replay; default 1024 */
    int replicas_line, replicas_column; /* where `replicas` was set, for validation messages */
    /* Health checking (health.c) */
    uint32_t probe_success;        /* consecutive good probes before a server returns; default 2 */
    uint32_t probe_interval_ms;    /* idle probe of live servers; default 5000 (0: off) */
    uint32_t probe_backoff_max_ms; /* cap of the probe backoff for down servers; default 30000 */
    uint32_t max_ejected_pct;      /* max_ejected_fraction as a percentage; default 50 */
    /* Limits (hardening) */
    uint32_t client_queue_limit;  /* requests a client may have waiting before reading pauses; default 4096 */
    uint32_t client_output_limit; /* reply bytes queued for a client before reading pauses; default 8 MiB */
    uint32_t client_input_limit;  /* request bytes awaiting replies before reading pauses; default 8 MiB */
    uint32_t server_queue_limit;  /* requests queued per backend connection; default 65536 */
    uint32_t client_idle_timeout_ms;   /* close a client idle this long; 0 (default): never */
    uint32_t client_output_timeout_ms; /* close a client blocked on output this long; default 60000 */
    uint32_t client_block_timeout_ms;  /* close a client stalled this long inside a reserved data block
                                          while others wait for memory_limit; default 30000 (0: never) */
    bool on_rejoin_quarantine;         /* on_rejoin: quarantine (else flush, the default) */
    uint32_t quarantine_ms;            /* quarantine_period; default 60000 */
    uint32_t
        warmup_window_ms; /* after a reload moves keys, misses try their previous owner this long; default 60000 (0: off) */
    char **replicate_to_names; /* pools that also keep a copy of every key (cross-pool replication) */
    size_t *replicate_to;      /* resolved pool indices */
    size_t nreplicate_to;
    int replicate_to_line, replicate_to_column;
    /* TLS towards clients (tls.c; docs/security.md). Paths are checked, and
     * the certificate matched with its key, when the file is loaded. */
    bool tls;            /* the `listen` socket itself speaks only TLS; default false */
    bool has_tls_listen; /* a second listener, TLS only, beside the plain `listen` */
    mr_addr_conf tls_listen;
    char *tls_cert;           /* PEM certificate chain of the listeners */
    char *tls_key;            /* PEM private key of tls_cert */
    char *tls_ca;             /* PEM CAs that sign client certificates (with tls_verify_client) */
    bool tls_verify_client;   /* mTLS: refuse clients without a certificate from tls_ca; default false */
    char *tls_ciphers;        /* TLS 1.2 cipher list, OpenSSL syntax; NULL: OpenSSL's default */
    char *tls_ciphersuites;   /* TLS 1.3 cipher suites; NULL: OpenSSL's default */
    uint32_t tls_min_version; /* 12 or 13: the oldest TLS a client may use; default 12 */
    /* TLS towards this pool's servers. */
    bool server_tls;        /* default false */
    char *server_tls_ca;    /* PEM CAs for server certificates; NULL: the system's store */
    bool server_tls_verify; /* check the certificate chain and name; default true */
    char *server_tls_name;  /* name to check and send as SNI; NULL: each server's host as written */
    char *server_tls_cert;  /* PEM client certificate for servers that require one, or NULL */
    char *server_tls_key;   /* its private key */
    /* Security */
    char *auth_file;            /* credentials file (memcached -Y format), or NULL: no authentication */
    struct mr_auth_table *auth; /* its credentials, loaded with the configuration (one reference) */
} mr_pool_conf;

/* Does any listener of the pool speak TLS? */
static inline bool mr_pool_tls_clients(const mr_pool_conf *p)
{
    return p->tls || p->has_tls_listen;
}

/* memrelay.memory_limit: its default and range (bytes). It must also be at
 * least twice every pool's item_size_max, so a whole largest block always
 * fits beside what the workers keep at hand (membudget.h). */
#define MR_MEMORY_LIMIT_DEFAULT (1024ull * 1024 * 1024)
#define MR_MEMORY_LIMIT_MIN (1024ull * 1024)
#define MR_MEMORY_LIMIT_MAX (1024ull * 1024 * 1024 * 1024)

typedef struct {
    char *path;                   /* file it came from */
    char hash[33];                /* md5 of the file's bytes, hex (`stats config`, reload change detection) */
    int threads;                  /* memrelay.threads; default 1 (the -t flag overrides) */
    uint32_t shutdown_timeout_ms; /* memrelay.shutdown_timeout: drain time on SIGTERM; default 10000 */
    char *log_file; /* memrelay.log_file: append lines here; NULL (default): stderr. --log-file overrides */
    int log_level;  /* memrelay.log_level as an mr_log_level; default MR_LOG_INFO. -v/-q override */
    char **dns_servers; /* memrelay.dns_servers: "host:port" to ask instead of /etc/resolv.conf's */
    size_t ndns_servers;
    uint32_t dns_timeout_ms; /* memrelay.dns_timeout: one lookup try; default 2000 (two tries) */
    char *text;              /* the file's bytes (parsed again for a new DNS membership) */
    size_t text_len;
    bool has_admin_listen;     /* memrelay.admin_listen given (the --admin flag overrides it) */
    mr_addr_conf admin_listen; /* the HTTP admin listener's address (TCP only) */
    uint64_t memory_limit;     /* memrelay.memory_limit: bytes buffered for all clients; default 1 GiB */
    mr_pool_conf *pools;
    size_t npools;
} mr_config;

/* A load error: where and what. */
typedef struct {
    int line, column; /* 1-based; 0 when not tied to a position */
    char message[512];
} mr_config_error;

/* Load and validate `path`. On failure returns NULL and fills `err`. */
mr_config *mr_config_load(const char *path, mr_config_error *err);

/* The same from a string (tests, fuzzing); `name` is used in messages. */
mr_config *mr_config_load_string(const char *yaml, size_t len, const char *name, mr_config_error *err);

/* The servers DNS gave one pool (servers_srv / servers_dns), as server
 * lines ("host:port:weight"). */
typedef struct {
    const char *pool;
    const char *const *servers;
    size_t nservers;
} mr_pool_members;

/* Load `yaml` with these members for the pools that discover their
 * servers (a pool not listed has none yet). */
mr_config *mr_config_load_members(const char *yaml, size_t len, const char *name,
                                  const mr_pool_members *members, size_t nmembers, mr_config_error *err);

/* mr_config_load with members. */
mr_config *mr_config_load_file_members(const char *path, const mr_pool_members *members, size_t nmembers,
                                       mr_config_error *err);

/* Does any pool find its servers in DNS? */
bool mr_config_discovers(const mr_config *cfg);

/* Human-readable resolved pools and routes (for --check-config). */
void mr_config_print(FILE *out, const mr_config *cfg);

/* Read an admin listener address: `host:port`, `[v6]:port`, or a bare port
 * meaning 127.0.0.1:port. On success fills *out (out->host allocated; free
 * it) and returns NULL; otherwise returns what is wrong. Used for
 * memrelay.admin_listen and the --admin flag alike. */
const char *mr_config_admin_addr(const char *text, mr_addr_conf *out);
/* Is this pool's listener safe to expose: a unix socket, a loopback
 * address (127.0.0.0/8, ::1, localhost), or guarded by client
 * authentication (auth_file) or TLS (tls: true)? Pools without a listener
 * count as protected. The one place that decides. */
bool mr_listener_is_protected(const mr_pool_conf *pool);

/* Log a warning for every listener that is not protected (see above).
 * Called at start-up and by --check-config; a reload should call it for the
 * new configuration. Returns how many it warned about. */
size_t mr_config_warn_unprotected(const mr_config *cfg);

/* A unix socket or a loopback address (127.0.0.0/8, ::1, localhost)? */
bool mr_addr_is_loopback(const mr_addr_conf *addr);

/* Pool index by name, or -1. */
long mr_config_pool_index(const mr_config *cfg, const char *name);

void mr_config_free(mr_config *cfg);

#endif
