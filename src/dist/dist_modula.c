/* dist_modula.c: twemproxy's "modula". Server s fills `weight` consecutive
 * slots in config order and a key takes slot hash % total_weight. Slots are
 * kept as cumulative weights, so huge weights cost no memory. */
#include "memrelay/dist.h"

#include <stdlib.h>

typedef struct {
    uint32_t nservers; /* servers, in config order */
    uint64_t total;    /* sum of weights: the number of slots */
    uint64_t ends[];   /* ends[s]: slots owned by servers 0..s */
} modula_table;

static mr_dist *modula_build(const mr_dist_server *servers, size_t n)
{
    if (n == 0 || n > UINT32_MAX)
        return NULL;
    modula_table *t = malloc(sizeof(*t) + n * sizeof(t->ends[0]));
    if (t == NULL)
        return NULL;
    t->nservers = (uint32_t)n;
    t->total = 0;
    for (size_t s = 0; s < n; s++) {
        t->total += servers[s].weight;
        t->ends[s] = t->total;
    }
    if (t->total == 0) {
        free(t);
        return NULL;
    }
    return (mr_dist *)t;
}

static uint32_t modula_pick(const mr_dist *d, uint32_t hash)
{
    const modula_table *t = (const modula_table *)d;
    uint64_t slot = hash % t->total;
    /* First server whose range ends past the slot. */
    size_t lo = 0, hi = t->nservers - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->ends[mid] <= slot)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (uint32_t)lo;
}

/* The owner, then the servers after it in config order, wrapping. */
static size_t modula_successors(const mr_dist *d, uint32_t hash, uint32_t *out, size_t max)
{
    const modula_table *t = (const modula_table *)d;
    size_t want = max < t->nservers ? max : t->nservers;
    uint32_t s = modula_pick(d, hash);
    for (size_t i = 0; i < want; i++)
        out[i] = (uint32_t)((s + i) % t->nservers);
    return want;
}

static void modula_destroy(mr_dist *d)
{
    free(d);
}

const mr_dist_ops mr_dist_modula_ops = {
    .build = modula_build,
    .pick = modula_pick,
    .successors = modula_successors,
    .destroy = modula_destroy,
};
