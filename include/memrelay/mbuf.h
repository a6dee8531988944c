/* Layer: base (src/base/; may use no other layer). */
/* mbuf.h: reference-counted byte blocks, the unit of zero-copy forwarding.
 *
 * Bytes are read from a socket into an mbuf once. Requests and replies then
 * hold slices (mbuf + offset + length) of it, each slice owning one reference,
 * and go out through writev straight from there. A block is freed (or returned
 * to its worker's bounded free list) when its last reference goes.
 *
 * Blocks are per worker thread: counts are plain integers, never shared.
 */
#ifndef MEMRELAY_MBUF_H
#define MEMRELAY_MBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memrelay/check.h"

/* Standard block size: big enough for many small requests per read. */
#define MR_MBUF_SIZE (16u * 1024u)

typedef struct mr_mbuf_pool mr_mbuf_pool;

typedef struct mr_mbuf {
    uint32_t refs;        /* slices and owners holding it */
    uint32_t cap;         /* bytes in data[] */
    uint32_t len;         /* bytes filled so far */
    mr_mbuf_pool *pool;   /* where a standard-size block returns to */
    struct mr_mbuf *next; /* free-list link */
    char data[];
} mr_mbuf;

/* A per-worker free list of standard blocks, bounded so memory returns to
 * the system after a spike; blocks it kept unused for a whole period of
 * mr_mbuf_pool_shrink() are freed too. */
struct mr_mbuf_pool {
    mr_mbuf *free;       /* free standard blocks */
    uint32_t nfree;      /* how many */
    uint32_t max_free;   /* bound on nfree */
    uint32_t low_free;   /* fewest free since the last shrink: that many went unused */
    uint64_t allocated;  /* blocks alive (stats) */
    uint64_t live_bytes; /* bytes of the blocks alive */
    uint64_t peak_bytes; /* most live_bytes since the last shrink */
    uint64_t returned;   /* bytes handed back to malloc since the last trim */
};

void mr_mbuf_pool_init(mr_mbuf_pool *pool, uint32_t max_free);
void mr_mbuf_pool_drain(mr_mbuf_pool *pool);
/* Called periodically: frees the free blocks no one took since the last
 * call, and says whether memory use has fallen enough since its peak that
 * freed heap memory is worth handing back to the system (malloc_trim).
 * `also_freed` is what the caller gave back to malloc since the last call
 * besides blocks (its own pooled objects, such as requests): it counts
 * toward the trim like freed blocks, or a spike's requests would stay in
 * the heap whenever no block happened to be freed in the same period. */
bool mr_mbuf_pool_shrink(mr_mbuf_pool *pool, uint64_t also_freed);

/* A block with room for at least `min_cap` bytes, refs = 1, len = 0.
 * Returns NULL when memory is exhausted. */
mr_mbuf *mr_mbuf_get(mr_mbuf_pool *pool, uint32_t min_cap);

static inline mr_mbuf *mr_mbuf_ref(mr_mbuf *mb)
{
    MR_CHECK(mb->refs > 0); /* a reference is taken from a live one */
    mb->refs++;
    return mb;
}

/* Drop one reference; the last one frees the block. NULL is ignored. */
void mr_mbuf_unref(mr_mbuf *mb);

static inline uint32_t mr_mbuf_room(const mr_mbuf *mb)
{
    return mb->cap - mb->len;
}

/* A run of bytes inside a block: requests, replies and output queues hold
 * these. A slice owns one reference on `mb`; `mb` NULL means static storage
 * (a literal reply text). */
typedef struct {
    mr_mbuf *mb;
    const char *p;
    uint32_t len;
} mr_slice;

static inline mr_slice mr_slice_static(const char *s, uint32_t len)
{
    mr_slice sl = {NULL, s, len};
    return sl;
}

static inline mr_slice mr_slice_ref(mr_mbuf *mb, const char *p, uint32_t len)
{
    mr_slice sl = {mb ? mr_mbuf_ref(mb) : NULL, p, len};
    return sl;
}

static inline void mr_slice_release(mr_slice *sl)
{
    mr_mbuf_unref(sl->mb);
    sl->mb = NULL;
    sl->p = NULL;
    sl->len = 0;
}

#endif
