/* config_internal.h: what the config loader's files share (not installed).
 *
 * Loading is three steps over one context: config_parse.c turns the YAML
 * document into an mr_config and records where each value was written;
 * config_validate.c checks what needs the whole file (routes, reachability,
 * duplicate listeners) and sorts routes; config.c owns the entry points,
 * error formatting and freeing.
 */
#ifndef MEMRELAY_CONFIG_INTERNAL_H
#define MEMRELAY_CONFIG_INTERNAL_H

#include "memrelay/config.h"
#include "memrelay/limits.h"

/* A 1-based position in the file; {0, 0} when not tied to one. */
typedef struct {
    int line, column;
} mr_conf_pos;

/* Room for every row of the pool key table (config_parse.c checks it). */
#define MR_CONF_MAX_POOL_KEYS 64

/* Positions the validator needs after parsing, one set per pool. */
typedef struct {
    mr_conf_pos key_at[MR_CONF_MAX_POOL_KEYS]; /* each key's value, by key table row ({0,0}: not set) */
    mr_conf_pos listen;                        /* the `listen` value */
    mr_conf_pos routes;                        /* the `routes` key */
    mr_conf_pos *route_prefix;                 /* per route, in file order (before sorting) */
    mr_conf_pos *route_pool;                   /* per route, the `pool` value */
} mr_conf_marks;

typedef struct {
    const char *name;               /* file name used in messages */
    mr_config_error *err;           /* filled by the first failure */
    mr_config *cfg;                 /* being built; freed by the caller on failure */
    mr_conf_marks *marks;           /* cfg->npools entries (capacity: pool keys in the file) */
    mr_conf_pos root;               /* position of the top-level node */
    mr_conf_pos admin_listen;       /* the memrelay.admin_listen value */
    mr_conf_pos memory_limit;       /* the memrelay.memory_limit value (0: not given) */
    const mr_pool_members *members; /* servers found in DNS, by pool (mr_config_load_members) */
    size_t nmembers;
} mr_conf_ctx;

/* Record "name:line:col: message" in ctx->err. Always returns -1 so callers
 * can `return mr_conf_fail(...)`. */
int mr_conf_fail(mr_conf_ctx *ctx, mr_conf_pos pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Parse `len` bytes of YAML into ctx->cfg (allocated here). 0 or -1. */
int mr_conf_parse(mr_conf_ctx *ctx, const char *yaml, size_t len);

/* Where pool key `key` was given in a pool (its value), {0, 0} when it was
 * not: the validator points its messages there. */
mr_conf_pos mr_conf_key_pos(const mr_conf_marks *m, const char *key);

/* Whole-file checks, route resolution and sorting. 0 or -1. */
int mr_conf_validate(mr_conf_ctx *ctx);

/* Do two addresses name the same socket? IP literals compare by value,
 * host names case-insensitively, unix paths byte for byte. */
bool mr_conf_addr_equal(const mr_addr_conf *a, const mr_addr_conf *b);

/* Write an address as it would be written in the file (IPv6 in brackets,
 * unix listeners with their mode). Returns `buf`. */
const char *mr_conf_addr_format(const mr_addr_conf *a, char *buf, size_t size);

#endif
