/* dist.c: the distribution table built from MR_DISTS, and name lookup.
 * Each distribution lives in its own src/dist/dist_*.c behind an mr_dist_ops. */
#include "memrelay/dist.h"

#include <string.h>

static const struct {
    const char *name;
    const mr_dist_ops *ops;
} dists[MR_DIST_COUNT] = {
#define MR_DIST_ROW(e, name, ops) [MR_DIST_##e] = {name, &ops},
    MR_DISTS(MR_DIST_ROW)
#undef MR_DIST_ROW
};

const mr_dist_ops *mr_dist_ops_for(mr_dist_kind kind)
{
    if ((unsigned)kind >= MR_DIST_COUNT)
        return NULL;
    return dists[kind].ops;
}

int mr_dist_from_name(const char *name, mr_dist_kind *out)
{
    for (int i = 0; i < MR_DIST_COUNT; i++) {
        if (strcmp(dists[i].name, name) == 0) {
            *out = (mr_dist_kind)i;
            return 0;
        }
    }
    return -1;
}

const char *mr_dist_name(mr_dist_kind kind)
{
    if ((unsigned)kind >= MR_DIST_COUNT)
        return NULL;
    return dists[kind].name;
}
