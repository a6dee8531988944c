/* Layer: base (src/base/; may use no other layer). */
/* inbuf.h: a socket's input: one mbuf plus where the unconsumed bytes start.
 *
 * Requests and replies take slices (references) of the block, so consumed
 * bytes are never moved. When the block is full, the unconsumed tail (one
 * partial request or reply) moves to a fresh block sized to fit it whole:
 * that is the only copy an input byte ever sees.
 *
 * Large elements (values above the standard block) would make that copy the
 * rule rather than the exception, and cost a second read each. So the inbuf
 * remembers the size of the last large element it saw, and while they keep
 * coming every fresh block is sized for `ahead` of them: a 16 KiB value then
 * arrives in one read, straight into a block it fits, and is never moved.
 */
#ifndef MEMRELAY_INBUF_H
#define MEMRELAY_INBUF_H

#include <stdint.h>

#include "memrelay/mbuf.h"

typedef struct {
    mr_mbuf *mb;        /* current block, or NULL before the first read */
    uint32_t start;     /* first unconsumed byte in mb->data */
    uint32_t big;       /* size of the last element too large for a standard block, 0 none lately */
    uint32_t small_run; /* elements consumed since, each smaller than that; forgets `big` when long */
} mr_inbuf;

static inline const char *mr_inbuf_data(const mr_inbuf *ib)
{
    return ib->mb ? ib->mb->data + ib->start : "";
}

static inline uint32_t mr_inbuf_len(const mr_inbuf *ib)
{
    return ib->mb ? ib->mb->len - ib->start : 0;
}

/* Make room for a read. `need_total` is how many unconsumed bytes the
 * element being parsed needs in all (0 when unknown): the block is sized so
 * that element fits whole. A fresh block has room for `ahead` elements of
 * the recent large size (1 for a client answered one request at a time, more
 * for a backend streaming replies). Returns 0, or -1 when out of memory. */
int mr_inbuf_reserve(mr_inbuf *ib, mr_mbuf_pool *pool, uint32_t need_total, uint32_t ahead);

/* Mark n bytes consumed (one whole element, or part of a swallowed one);
 * resets an empty, unshared block for reuse. */
void mr_inbuf_consume(mr_inbuf *ib, uint32_t n);

void mr_inbuf_release(mr_inbuf *ib);

#endif
