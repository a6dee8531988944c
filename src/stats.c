/* stats.c: summing the per-worker counters. */
#include "memrelay/stats.h"

#include <string.h>

#define MAX_WORKERS 256

static mr_stats *registered[MAX_WORKERS];
static int nregistered;

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
