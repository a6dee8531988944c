/* stats.c: summing the per-worker counters. */
#include "memrelay/stats.h"

#include <string.h>

#define MAX_WORKERS 256

static mr_stats *registered[MAX_WORKERS];
static int nregistered;
static mr_pool_stats *registered_pools[MAX_WORKERS];
static int nregistered_pools;

void mr_stats_register_pools(mr_pool_stats *pools)
{
    if (nregistered_pools < MAX_WORKERS)
        registered_pools[nregistered_pools++] = pools;
}

void mr_pool_stats_sum(uint32_t pool, mr_pool_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < nregistered_pools; i++) {
#define MR_POOL_STAT_SUM(name) \
    out->name += __atomic_load_n(&registered_pools[i][pool].name, __ATOMIC_RELAXED);
        MR_POOL_STATS(MR_POOL_STAT_SUM)
#undef MR_POOL_STAT_SUM
    }
}

void mr_stats_register(mr_stats *stats)
{
    if (nregistered < MAX_WORKERS)
        registered[nregistered++] = stats;
}

void mr_stats_sum(mr_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < nregistered; i++) {
#define MR_STAT_SUM(name) out->name += __atomic_load_n(&registered[i]->name, __ATOMIC_RELAXED);
        MR_STATS(MR_STAT_SUM)
#undef MR_STAT_SUM
    }
}
