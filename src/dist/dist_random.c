/* dist_random.c: twemproxy's "random". The caller hashes nothing and passes
 * a random number instead; weights are ignored, as in twemproxy. */
#include "memrelay/dist.h"

#include <stdlib.h>

typedef struct {
    uint32_t nservers; /* servers, in config order */
} random_pool;

static mr_dist *random_build(const mr_dist_server *servers, size_t n)
{
    if (n == 0 || n > UINT32_MAX)
        return NULL;
    random_pool *p = malloc(sizeof(*p));
    if (p == NULL)
        return NULL;
    p->nservers = (uint32_t)n;
    return (mr_dist *)p;
}

static uint32_t random_pick(const mr_dist *d, uint32_t hash)
{
    return hash % ((const random_pool *)d)->nservers;
}

/* The pick, then the servers after it in config order, wrapping. */
static size_t random_successors(const mr_dist *d, uint32_t hash, uint32_t *out, size_t max)
{
    uint32_t n = ((const random_pool *)d)->nservers;
    size_t want = max < n ? max : n;
    uint32_t s = hash % n;
    for (size_t i = 0; i < want; i++)
        out[i] = (uint32_t)((s + i) % n);
    return want;
}

static void random_destroy(mr_dist *d)
{
    free(d);
}

const mr_dist_ops mr_dist_random_ops = {
    .build = random_build,
    .pick = random_pick,
    .successors = random_successors,
    .destroy = random_destroy,
};
