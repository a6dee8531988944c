/* membudget.c: the process-wide budget of client bytes (membudget.h).
 *
 * The shared state is three atomics (limit, used, peak) and, per worker, a
 * flag saying it has clients waiting. `used` moves in chunks, so it is
 * written about once per chunk's worth of traffic, not per request.
 *
 * No wake-up is lost: a worker announces that it waits (its flag, seq_cst)
 * before it retries its waiters, and a worker that gives credit back
 * subtracts it (seq_cst) before it looks at the flags, so at least one of
 * the two sees the other.
 */
#include "memrelay/membudget.h"

#include <stdlib.h>

#include "memrelay/check.h"

typedef struct {
    struct ev_loop *loop;
    ev_async *wake;
    uint32_t waiting; /* atomic: the worker has clients waiting for budget */
} waiter;

struct mr_membudget {
    uint64_t limit;    /* atomic */
    uint64_t used;     /* atomic: credit held by the workers */
    uint64_t peak;     /* atomic */
    uint64_t chunk;    /* credit taken at once; a worker keeps at most two idle */
    uint32_t nwaiting; /* atomic: workers with the flag set */
    uint32_t nworkers;
    waiter workers[];
};

/* Small budgets shared by many workers get smaller chunks, so the credit
 * the workers may keep idle (two chunks each) stays under an eighth of it. */
static uint64_t chunk_for(uint64_t limit, uint32_t nworkers)
{
    uint64_t c = limit / (16u * (uint64_t)(nworkers ? nworkers : 1));
    if (c > MR_MEMBUDGET_CHUNK)
        c = MR_MEMBUDGET_CHUNK;
    return c < 1024 ? 1024 : c;
}

mr_membudget *mr_membudget_new(uint64_t limit, uint32_t nworkers)
{
    mr_membudget *b = calloc(1, sizeof(*b) + nworkers * sizeof(waiter));
    if (!b)
        return NULL;
    b->limit = limit;
    b->nworkers = nworkers;
    b->chunk = chunk_for(limit, nworkers);
    return b;
}

void mr_membudget_free(mr_membudget *b)
{
    free(b);
}

void mr_membudget_register(mr_membudget *b, uint32_t index, struct ev_loop *loop, ev_async *wake)
{
    MR_CHECK(index < b->nworkers);
    __atomic_store_n(&b->workers[index].wake, NULL, __ATOMIC_SEQ_CST);
    __atomic_store_n(&b->workers[index].loop, loop, __ATOMIC_SEQ_CST);
    __atomic_store_n(&b->workers[index].wake, wake, __ATOMIC_SEQ_CST);
}

/* Wake every worker with clients waiting for budget, `me` aside. */
static void wake_waiters(mr_membudget *b, uint32_t me)
{
    for (uint32_t i = 0; i < b->nworkers; i++) {
        if (i == me || !__atomic_load_n(&b->workers[i].waiting, __ATOMIC_SEQ_CST))
            continue;
        ev_async *a = __atomic_load_n(&b->workers[i].wake, __ATOMIC_SEQ_CST);
        if (a)
            ev_async_send(__atomic_load_n(&b->workers[i].loop, __ATOMIC_SEQ_CST), a);
    }
}

void mr_membudget_set_limit(mr_membudget *b, uint64_t limit)
{
    __atomic_store_n(&b->limit, limit, __ATOMIC_SEQ_CST);
    wake_waiters(b, UINT32_MAX); /* a higher limit may admit waiting blocks at once */
}

static void note_peak(mr_membudget *b, uint64_t used)
{
    uint64_t p = __atomic_load_n(&b->peak, __ATOMIC_RELAXED);
    while (used > p &&
           !__atomic_compare_exchange_n(&b->peak, &p, used, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

/* Take `need` more credit (rounded up to a chunk when that fits): false if
 * even `need` would pass the limit and !force. */
static bool grant(mr_membudget *b, mr_memcredit *cr, uint64_t need, bool force)
{
    uint64_t round = (need + b->chunk - 1) / b->chunk * b->chunk;
    uint64_t limit = __atomic_load_n(&b->limit, __ATOMIC_RELAXED);
    uint64_t cur = __atomic_load_n(&b->used, __ATOMIC_RELAXED);
    for (;;) {
        uint64_t g = round;
        if (cur + g > limit) {
            if (!force && cur + need > limit)
                return false;
            g = need;
        }
        if (__atomic_compare_exchange_n(&b->used, &cur, cur + g, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
            cr->credit += g;
            note_peak(b, cur + g);
            return true;
        }
    }
}

void mr_memcredit_init(const mr_membudget *b, mr_memcredit *cr)
{
    cr->held = cr->credit = 0;
    cr->keep = 2 * b->chunk;
}

bool mr_memcredit_take(mr_membudget *b, mr_memcredit *cr, uint64_t n)
{
    if (cr->held + n > cr->credit && !grant(b, cr, cr->held + n - cr->credit, false))
        return false;
    cr->held += n;
    return true;
}

void mr_memcredit_force(mr_membudget *b, mr_memcredit *cr, uint64_t n)
{
    if (cr->held + n > cr->credit)
        grant(b, cr, cr->held + n - cr->credit, true);
    cr->held += n;
}

void mr_memcredit_give(mr_membudget *b, mr_memcredit *cr, uint64_t n, uint32_t me)
{
    cr->held -= n < cr->held ? n : cr->held;
    uint64_t spare = cr->credit - cr->held;
    if (spare <= 2 * b->chunk)
        return;
    uint64_t back = spare - b->chunk;
    cr->credit -= back;
    __atomic_sub_fetch(&b->used, back, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&b->nwaiting, __ATOMIC_SEQ_CST) != 0)
        wake_waiters(b, me);
}

bool mr_membudget_has_waiters(const mr_membudget *b)
{
    return __atomic_load_n(&b->nwaiting, __ATOMIC_RELAXED) != 0;
}

void mr_membudget_waiting(mr_membudget *b, uint32_t me, bool waiting)
{
    MR_CHECK(me < b->nworkers);
    uint32_t was = __atomic_exchange_n(&b->workers[me].waiting, waiting ? 1u : 0u, __ATOMIC_SEQ_CST);
    if (was != (waiting ? 1u : 0u)) {
        if (waiting)
            __atomic_add_fetch(&b->nwaiting, 1, __ATOMIC_SEQ_CST);
        else
            __atomic_sub_fetch(&b->nwaiting, 1, __ATOMIC_SEQ_CST);
    }
}

bool mr_memcredit_exhausted(const mr_membudget *b, const mr_memcredit *cr, uint64_t extra)
{
    uint64_t spare = cr->credit > cr->held ? cr->credit - cr->held : 0;
    uint64_t more = extra > spare ? extra - spare : 0;
    return __atomic_load_n(&b->used, __ATOMIC_RELAXED) + more >= __atomic_load_n(&b->limit, __ATOMIC_RELAXED);
}

void mr_membudget_read(const mr_membudget *b, mr_membudget_view *out)
{
    out->limit = __atomic_load_n(&b->limit, __ATOMIC_RELAXED);
    out->used = __atomic_load_n(&b->used, __ATOMIC_RELAXED);
    out->peak = __atomic_load_n(&b->peak, __ATOMIC_RELAXED);
}
