/* Layer: core (src/core/; may use base, dist, config, protocol, net, cluster). */
/* membudget.h: memory_limit, the process-wide bound on what memrelay
 * buffers for clients (membudget.c; docs/reliability.md, "memory_limit").
 *
 * One budget in bytes is shared by every worker (mr_shared.membudget). A
 * worker never asks it for single requests: it takes credit in chunks
 * (MR_MEMBUDGET_CHUNK at most) and charges its clients' bytes against that
 * credit with plain arithmetic (mr_memcredit, the worker's own), so the
 * small-request hot path touches no shared cache line. Credit goes back
 * when more than two chunks of it are unused, so a worker keeps at most
 * two chunks idle.
 *
 * Two ways to charge:
 *   - mr_memcredit_take: only if it fits under the limit (a large data block
 *     before it is buffered; whole, so every admitted block can complete);
 *   - mr_memcredit_force: always (bytes already in memory: a reply read
 *     from a server, a small request read), so the used figure is true even
 *     above the limit, and mr_memcredit_exhausted says to push back.
 * Workers with clients waiting for budget are woken through their ev_async
 * (mr_membudget_register) when another worker gives credit back.
 */
#ifndef MEMRELAY_MEMBUDGET_H
#define MEMRELAY_MEMBUDGET_H

#include <stdbool.h>
#include <stdint.h>

#include <ev.h>

/* The largest credit chunk a worker takes at once. */
#define MR_MEMBUDGET_CHUNK (256u * 1024u)

typedef struct mr_membudget mr_membudget;

/* A worker's share: bytes its clients hold, and the credit it has taken. */
typedef struct {
    uint64_t held;   /* charged by this worker's clients */
    uint64_t credit; /* taken from the budget (>= held) */
    uint64_t keep;   /* unused credit kept beyond this goes back (two chunks; mr_memcredit_init) */
} mr_memcredit;

/* A budget of `limit` bytes for `nworkers` workers; NULL when out of memory. */
mr_membudget *mr_membudget_new(uint64_t limit, uint32_t nworkers);
void mr_membudget_free(mr_membudget *b);
/* Worker `index`'s loop and wake-up watcher (NULL, NULL: it is gone). */
void mr_membudget_register(mr_membudget *b, uint32_t index, struct ev_loop *loop, ev_async *wake);
/* A reload's new memory_limit (any thread). A lower limit than what is held
 * takes effect as the clients' bytes are freed. */
void mr_membudget_set_limit(mr_membudget *b, uint64_t limit);

/* A worker's credit, empty, for budget b. */
void mr_memcredit_init(const mr_membudget *b, mr_memcredit *cr);

/* Charge n bytes if the budget has them: true, or false (nothing charged). */
bool mr_memcredit_take(mr_membudget *b, mr_memcredit *cr, uint64_t n);
/* Charge n bytes whatever the budget has left. */
void mr_memcredit_force(mr_membudget *b, mr_memcredit *cr, uint64_t n);
/* Give n charged bytes back; unused credit beyond two chunks returns to the
 * budget, and workers waiting for budget are woken (not `me`). */
void mr_memcredit_give(mr_membudget *b, mr_memcredit *cr, uint64_t n, uint32_t me);
/* Worker `me` has clients waiting for budget (or none any more). */
void mr_membudget_waiting(mr_membudget *b, uint32_t me, bool waiting);

/* The hot path of force and give: plain arithmetic on the worker's own
 * credit, the shared budget only when a chunk moves. */
static inline void mr_memcredit_add(mr_membudget *b, mr_memcredit *cr, uint64_t n)
{
    if (__builtin_expect(cr->held + n <= cr->credit, 1))
        cr->held += n;
    else
        mr_memcredit_force(b, cr, n);
}

static inline void mr_memcredit_sub(mr_membudget *b, mr_memcredit *cr, uint64_t n, uint32_t me)
{
    if (__builtin_expect(n <= cr->held && cr->credit - (cr->held - n) <= cr->keep, 1))
        cr->held -= n;
    else
        mr_memcredit_give(b, cr, n, me);
}

/* Has any worker clients waiting for budget? (client_block_timeout only
 * closes a stalled block while somebody waits for its bytes.) */
bool mr_membudget_has_waiters(const mr_membudget *b);
/* Would the budget be used up (taken up to the limit) were `extra` more
 * bytes charged to cr, beyond its unused credit? Relaxed loads. */
bool mr_memcredit_exhausted(const mr_membudget *b, const mr_memcredit *cr, uint64_t extra);

/* For `stats` and /metrics. */
typedef struct {
    uint64_t limit; /* memory_limit */
    uint64_t used;  /* credit taken by the workers (what their clients hold, plus up to two chunks each) */
    uint64_t peak;  /* the most `used` has been */
} mr_membudget_view;
void mr_membudget_read(const mr_membudget *b, mr_membudget_view *out);

#endif
