/* Layer: dist (src/dist/; may use base). */
/* dist.h: key distributions (ketama, modula, random) behind one small table.
 *
 * A distribution is built once from a server list (immutable afterwards,
 * so every worker thread can share it without locks) and answers
 * "which server index owns this 32-bit key hash".
 */
#ifndef MEMRELAY_DIST_H
#define MEMRELAY_DIST_H

#include <stddef.h>
#include <stdint.h>

#define MR_DISTS(X)                         \
    X(KETAMA, "ketama", mr_dist_ketama_ops) \
    X(MODULA, "modula", mr_dist_modula_ops) \
    X(RANDOM, "random", mr_dist_random_ops)

typedef enum {
#define MR_DIST_ENUM(e, name, ops) MR_DIST_##e,
    MR_DISTS(MR_DIST_ENUM)
#undef MR_DIST_ENUM
        MR_DIST_COUNT
} mr_dist_kind;

/* One server as a distribution sees it. */
typedef struct {
    const char *ident; /* ketama identity: explicit name, else host (port 11211), else host:port */
    uint32_t weight;   /* >= 1 */
} mr_dist_server;

typedef struct mr_dist mr_dist;

typedef struct {
    /* Build over servers[0..n-1] (n >= 1). Returns NULL on allocation failure. */
    mr_dist *(*build)(const mr_dist_server *servers, size_t n);
    /* Server index owning `hash`. For random, `hash` is a random number. */
    uint32_t (*pick)(const mr_dist *d, uint32_t hash);
    /* Up to `max` distinct server indices in preference order starting at
     * pick(hash) (ketama: the next distinct servers clockwise; modula: the
     * following servers in config order). Returns how many were written. */
    size_t (*successors)(const mr_dist *d, uint32_t hash, uint32_t *out, size_t max);
    void (*destroy)(mr_dist *d);
} mr_dist_ops;

#define MR_DIST_DECL(e, name, ops) extern const mr_dist_ops ops;
MR_DISTS(MR_DIST_DECL)
#undef MR_DIST_DECL

const mr_dist_ops *mr_dist_ops_for(mr_dist_kind kind);
int mr_dist_from_name(const char *name, mr_dist_kind *out);
const char *mr_dist_name(mr_dist_kind kind);

/* Ketama internals exposed for tests: number of points the ring holds. */
size_t mr_ketama_point_count(const mr_dist *d);

/* Ring points a server of `weight` gets in a pool of `n` servers whose
 * weights sum to `total_weight`: a multiple of 4, computed in float32 as
 * libmemcached and twemproxy do (0 when total_weight is 0). */
uint32_t mr_ketama_points_per_server(uint32_t weight, uint64_t total_weight, size_t n);

/* The four ring points of `ident`'s digest number `i`: the little-endian
 * quarters of MD5(ident "-" decimal(i)). */
void mr_ketama_digest_points(const char *ident, uint32_t i, uint32_t out[4]);

#endif
