/* inbuf.c: growing a socket's input without moving consumed bytes. */
#include "memrelay/inbuf.h"

#include <string.h>

/* Below this much free space a read would be too small to be worth a syscall. */
#define MIN_READ_ROOM 2048u

int mr_inbuf_reserve(mr_inbuf *ib, mr_mbuf_pool *pool, uint32_t need_total)
{
    uint32_t have = mr_inbuf_len(ib);
    if (ib->mb) {
        uint32_t room = mr_mbuf_room(ib->mb);
        int fits = need_total == 0 || ib->start + need_total <= ib->mb->cap;
        if (room >= MIN_READ_ROOM && fits)
            return 0;
        if (need_total > 0 && need_total <= have + room && room > 0)
            return 0; /* the element fits in what is left: finish it here */
    }
    uint32_t want = have + MIN_READ_ROOM;
    if (need_total > want)
        want = need_total;
    mr_mbuf *mb = mr_mbuf_get(pool, want);
    if (!mb)
        return -1;
    if (have)
        memcpy(mb->data, ib->mb->data + ib->start, have);
    mb->len = have;
    mr_mbuf_unref(ib->mb);
    ib->mb = mb;
    ib->start = 0;
    return 0;
}

void mr_inbuf_consume(mr_inbuf *ib, uint32_t n)
{
    ib->start += n;
    if (ib->start == ib->mb->len && ib->mb->refs == 1) {
        /* Nothing refers into it any more: reuse from the start. */
        ib->mb->len = 0;
        ib->start = 0;
    }
}

void mr_inbuf_release(mr_inbuf *ib)
{
    mr_mbuf_unref(ib->mb);
    ib->mb = NULL;
    ib->start = 0;
}
