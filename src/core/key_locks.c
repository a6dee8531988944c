/* key_locks.c: one replicated write per key stripe in flight across
 * workers (key_locks.h). The shared table is two arrays of atomics; all
 * the rest (counts, the wait list) is the worker's own.
 *
 * No wake-up is lost: a worker that parks announces it (waiters[s], its
 * nparked) before it looks at the owner again, and a holder that lets go
 * clears the owner before it looks at the announcements; both are
 * sequentially consistent, so at least one of the two sees the other.
 */
#include "memrelay/key_locks.h"

#include <stdlib.h>

#include "memrelay/check.h"
#include "memrelay/request.h"
#include "memrelay/worker.h"

typedef struct {
    struct ev_loop *loop;
    ev_async *wake;
    uint32_t nparked; /* atomic: requests the worker has parked, any stripe */
} waiter;

struct mr_key_locks {
    uint32_t owner[MR_KEY_STRIPES];   /* atomic: holder's worker index + 1, 0 free */
    uint32_t waiters[MR_KEY_STRIPES]; /* atomic: workers with requests parked on the stripe */
    uint32_t nworkers;
    waiter workers[];
};

mr_key_locks *mr_key_locks_new(uint32_t nworkers)
{
    mr_key_locks *kl = calloc(1, sizeof(*kl) + nworkers * sizeof(waiter));
    if (kl)
        kl->nworkers = nworkers;
    return kl;
}

void mr_key_locks_free(mr_key_locks *kl)
{
    free(kl);
}

void mr_key_locks_register(mr_key_locks *kl, uint32_t index, struct ev_loop *loop, ev_async *wake)
{
    MR_CHECK(index < kl->nworkers);
    __atomic_store_n(&kl->workers[index].wake, NULL, __ATOMIC_SEQ_CST);
    __atomic_store_n(&kl->workers[index].loop, loop, __ATOMIC_SEQ_CST);
    __atomic_store_n(&kl->workers[index].wake, wake, __ATOMIC_SEQ_CST);
}

static uint32_t stripe_of(const mr_req *req)
{
    return mr_key_stripe(req->conn_hint);
}

static void wake(waiter *wt)
{
    ev_async *a = __atomic_load_n(&wt->wake, __ATOMIC_SEQ_CST);
    if (a)
        ev_async_send(__atomic_load_n(&wt->loop, __ATOMIC_SEQ_CST), a);
}

static bool try_take(mr_key_locks *kl, mr_key_waits *kw, uint32_t s, uint32_t me)
{
    if (kw->held[s] > 0)
        return true; /* ours already: our connections keep the order */
    uint32_t expect = 0;
    return __atomic_compare_exchange_n(&kl->owner[s], &expect, me, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
}

static void park(mr_key_locks *kl, mr_worker *w, mr_req *req, uint32_t s)
{
    mr_key_waits *kw = &w->key_waits;
    if (kw->parked[s]++ == 0)
        __atomic_add_fetch(&kl->waiters[s], 1, __ATOMIC_SEQ_CST);
    kw->nparked++;
    __atomic_add_fetch(&kl->workers[w->index].nparked, 1, __ATOMIC_SEQ_CST);
    req->park_next = NULL;
    if (kw->tail)
        kw->tail->park_next = req;
    else
        kw->head = req;
    kw->tail = req;
    req->in_flight++; /* alive while parked, even if its client goes */
    /* Let go of before we announced ourselves? Then nobody wakes us: we do. */
    if (__atomic_load_n(&kl->owner[s], __ATOMIC_SEQ_CST) == 0)
        wake(&kl->workers[w->index]);
}

bool mr_key_lock(mr_req *req)
{
    mr_worker *w = req->worker;
    mr_key_locks *kl = w->shared->key_locks;
    if (!kl)
        return true;
    mr_key_waits *kw = &w->key_waits;
    uint32_t s = stripe_of(req);
    if (kw->parked[s] == 0 && try_take(kl, kw, s, w->index + 1)) {
        kw->held[s]++;
        req->key_lock = s + 1;
        return true;
    }
    park(kl, w, req, s);
    return false;
}

void mr_key_lock_inherit(mr_req *child, const mr_req *parent)
{
    if (!parent->key_lock)
        return;
    child->key_lock = parent->key_lock;
    child->worker->key_waits.held[parent->key_lock - 1]++;
}

void mr_key_unlock(mr_req *req)
{
    if (!req->key_lock)
        return;
    uint32_t s = req->key_lock - 1;
    req->key_lock = 0;
    mr_worker *w = req->worker;
    mr_key_locks *kl = w->shared->key_locks;
    MR_CHECK(w->key_waits.held[s] > 0);
    if (--w->key_waits.held[s] > 0)
        return;
    __atomic_store_n(&kl->owner[s], 0, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&kl->waiters[s], __ATOMIC_SEQ_CST) == 0)
        return;
    for (uint32_t i = 0; i < kl->nworkers; i++)
        if (__atomic_load_n(&kl->workers[i].nparked, __ATOMIC_SEQ_CST) > 0)
            wake(&kl->workers[i]);
}

/* Take `req` (after `prev`, NULL: the head) off the wait list. */
static void unpark(mr_key_locks *kl, mr_worker *w, mr_req *prev, mr_req *req)
{
    mr_key_waits *kw = &w->key_waits;
    uint32_t s = stripe_of(req);
    if (prev)
        prev->park_next = req->park_next;
    else
        kw->head = req->park_next;
    if (kw->tail == req)
        kw->tail = prev;
    req->park_next = NULL;
    if (--kw->parked[s] == 0)
        __atomic_sub_fetch(&kl->waiters[s], 1, __ATOMIC_SEQ_CST);
    kw->nparked--;
    __atomic_sub_fetch(&kl->workers[w->index].nparked, 1, __ATOMIC_SEQ_CST);
    MR_CHECK(req->in_flight > 0);
    req->in_flight--;
}

mr_req *mr_key_locks_take_ready(mr_worker *w)
{
    mr_key_locks *kl = w->shared->key_locks;
    mr_key_waits *kw = &w->key_waits;
    if (!kl || !kw->head)
        return NULL;
    /* A stripe that stays taken keeps every later request of it parked, so
     * a client's writes to a key start in the order it sent them. */
    uint8_t blocked[MR_KEY_STRIPES / 8] = {0};
    mr_req *ready = NULL, *ready_tail = NULL, *prev = NULL;
    for (mr_req *r = kw->head, *next; r; r = next) {
        next = r->park_next;
        uint32_t s = stripe_of(r);
        bool ok = !(blocked[s / 8] & (1u << (s % 8))) && try_take(kl, kw, s, w->index + 1);
        if (!ok) {
            blocked[s / 8] |= (uint8_t)(1u << (s % 8));
            prev = r;
            continue;
        }
        unpark(kl, w, prev, r);
        kw->held[s]++;
        r->key_lock = s + 1;
        if (ready_tail)
            ready_tail->park_next = r;
        else
            ready = r;
        ready_tail = r;
    }
    return ready;
}

mr_req *mr_key_locks_take_all(mr_worker *w)
{
    mr_key_locks *kl = w->shared->key_locks;
    mr_key_waits *kw = &w->key_waits;
    mr_req *all = NULL, *tail = NULL;
    while (kl && kw->head) {
        mr_req *r = kw->head;
        unpark(kl, w, NULL, r);
        if (tail)
            tail->park_next = r;
        else
            all = r;
        tail = r;
    }
    return all;
}
