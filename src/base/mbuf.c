/* mbuf.c: reference-counted blocks with a bounded per-worker free list. */
#include "memrelay/mbuf.h"

#include <stdlib.h>

void mr_mbuf_pool_init(mr_mbuf_pool *pool, uint32_t max_free)
{
    pool->free = NULL;
    pool->nfree = 0;
    pool->max_free = max_free;
    pool->low_free = 0;
    pool->allocated = 0;
    pool->live_bytes = pool->peak_bytes = pool->returned = 0;
}

void mr_mbuf_pool_drain(mr_mbuf_pool *pool)
{
    while (pool->free) {
        mr_mbuf *mb = pool->free;
        pool->free = mb->next;
        free(mb);
    }
    pool->nfree = 0;
}

mr_mbuf *mr_mbuf_get(mr_mbuf_pool *pool, uint32_t min_cap)
{
    mr_mbuf *mb;
    if (min_cap <= MR_MBUF_SIZE && pool->free) {
        mb = pool->free;
        pool->free = mb->next;
        if (--pool->nfree < pool->low_free)
            pool->low_free = pool->nfree;
    } else {
        uint32_t cap = min_cap <= MR_MBUF_SIZE ? MR_MBUF_SIZE : min_cap;
        mb = malloc(sizeof(*mb) + cap);
        if (!mb)
            return NULL;
        mb->cap = cap;
        mb->pool = pool;
    }
    pool->allocated++;
    pool->live_bytes += mb->cap;
    if (pool->live_bytes > pool->peak_bytes)
        pool->peak_bytes = pool->live_bytes;
    mb->refs = 1;
    mb->len = 0;
    mb->next = NULL;
    return mb;
}

void mr_mbuf_unref(mr_mbuf *mb)
{
    if (!mb)
        return;
    MR_CHECK(mb->refs > 0);
    if (--mb->refs > 0)
        return;
    mr_mbuf_pool *pool = mb->pool;
    pool->allocated--;
    pool->live_bytes -= mb->cap;
    /* Only standard blocks are kept; big ones (large values) go back to the
     * system at once so one large request does not pin memory. */
    if (mb->cap == MR_MBUF_SIZE && pool->nfree < pool->max_free) {
        mb->next = pool->free;
        pool->free = mb;
        pool->nfree++;
        return;
    }
    pool->returned += mb->cap;
    free(mb);
}

/* Below this much freed since the last trim, trimming is not worth a walk of the heap. */
#define TRIM_MIN_BYTES (1024u * 1024u)

bool mr_mbuf_pool_shrink(mr_mbuf_pool *pool, uint64_t also_freed)
{
    pool->returned += also_freed;
    for (uint32_t n = pool->low_free; n > 0 && pool->free; n--) {
        mr_mbuf *mb = pool->free;
        pool->free = mb->next;
        pool->nfree--;
        pool->returned += mb->cap;
        free(mb);
    }
    pool->low_free = pool->nfree;
    /* Under steady load (live near its peak) freed memory is about to be
     * reused: handing it back would only cost page faults. */
    bool trim = pool->returned >= TRIM_MIN_BYTES && pool->live_bytes * 2 <= pool->peak_bytes;
    if (trim)
        pool->returned = 0;
    pool->peak_bytes = pool->live_bytes;
    return trim;
}
