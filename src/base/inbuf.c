/* inbuf.c: growing a socket's input without moving consumed bytes. */
#include "memrelay/inbuf.h"

#include <string.h>

/* Below this much free space a read would be too small to be worth a syscall. */
#define MIN_READ_ROOM 2048u
/* Room made for recent large elements is bounded: the hint must not turn
 * a few huge values into huge blocks (an element itself always fits). */
#define MAX_AHEAD_ROOM (1024u * 1024u)
/* After this many smaller elements in a row the large size is forgotten. */
#define FORGET_AFTER 64u

/* Bytes a fresh block should have room for beyond what it takes over. */
static uint32_t fresh_room(const mr_inbuf *ib, uint32_t ahead)
{
    if (!ib->big)
        return MIN_READ_ROOM;
    uint64_t room = (uint64_t)ib->big * (ahead ? ahead : 1);
    if (room > MAX_AHEAD_ROOM)
        room = MAX_AHEAD_ROOM;
    return (uint32_t)room + MIN_READ_ROOM;
}

int mr_inbuf_reserve(mr_inbuf *ib, mr_mbuf_pool *pool, uint32_t need_total, uint32_t ahead)
{
    uint32_t have = mr_inbuf_len(ib);
    if (need_total > MR_MBUF_SIZE - MIN_READ_ROOM) {
        ib->big = need_total;
        ib->small_run = 0;
    }
    uint32_t want = have + fresh_room(ib, ahead);
    if (need_total + MIN_READ_ROOM > want)
        want = need_total + MIN_READ_ROOM; /* the element, and the start of what follows */
    if (ib->mb) {
        uint32_t room = mr_mbuf_room(ib->mb);
        int fits = need_total == 0 || ib->start + need_total <= ib->mb->cap;
        /* An empty block too small for the large elements coming is
         * swapped while that costs no copy. */
        int too_small = have == 0 && ib->big && ib->mb->cap < want;
        if (room >= MIN_READ_ROOM && fits && !too_small)
            return 0;
        if (need_total > 0 && need_total <= have + room && room > 0)
            return 0; /* the element fits in what is left: finish it here */
    }
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
    if (ib->big && n < ib->big / 2 && ++ib->small_run >= FORGET_AFTER)
        ib->big = 0;
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
