/* Layer: core (src/core/; may use base, dist, config, protocol, net, cluster). */
/* key_locks.h: one replicated write per key in flight across workers.
 *
 * Each worker has its own connections to every server, so two workers
 * writing one key could reach two replicas in different orders. A striped
 * table shared by all workers (MR_KEY_STRIPES stripes by key hash, the
 * replicated request's conn_hint) makes a replicated write per stripe the
 * business of one worker at a time:
 *
 * - A worker starts a replicated write on a stripe that is free (one
 *   compare-and-swap takes it) or that it holds already (its writes to the
 *   stripe share connections, so they stay in order; a count per worker).
 * - A stripe held by another worker: the request is parked, in order, on
 *   this worker's wait list, and the worker is woken (ev_async) when the
 *   holder lets go. A request of a stripe that has parked requests parks
 *   behind them, so one client's writes keep their order.
 * - A stripe is held until the whole replicated operation has finished on
 *   every replica: the request's messages are all off their backend queues,
 *   and so are those of the repairs it started (copies, read-backs,
 *   deletes), which inherit the hold (mr_key_lock_inherit).
 *
 * Uncontended cost: a compare-and-swap to take, a store and a load to let
 * go. Reads take no lock. docs/replication.md has the reasoning.
 */
#ifndef MEMRELAY_KEY_LOCKS_H
#define MEMRELAY_KEY_LOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "memrelay/hash.h"

struct mr_req;
struct mr_worker;

#define MR_KEY_STRIPES 4096u

/* Writes to keys a warm-up window moved, per key stripe (warmup.c), shared
 * by every worker (mr_shared.warm_writes; atomics). `started` counts the
 * writes whose delete on the key's previous owner went out, `finished`
 * those whose delete is over. A warm lookup of a key reads the previous
 * owner only while the two are equal (no such delete is in flight from any
 * worker), and its copy is given up (or undone) when `started` moved
 * since: a write raced it. `lost_seq` is the generation (mr_gen.seq) in
 * which such a delete could not be made or got no answer: the previous
 * owner may still hold an old value, so the stripe is not warmed in that
 * generation and the next. A write that finds `copies` non-zero right after
 * counting itself holds its reply until they are all answered (and undone
 * where they raced it): a copy sent before the write may reach the new
 * owner after it, on another connection. */
typedef struct {
    uint32_t started, finished;
    uint32_t lost_seq;
    uint32_t copies; /* warm copies sent and not yet answered (nor their undo): writes wait for them */
} mr_key_writes;

/* The table the workers share (mr_shared.key_locks). */
typedef struct mr_key_locks mr_key_locks;

/* A worker's side: how often it holds each stripe, how many of its
 * requests wait for each, and those requests in arrival order. Owned and
 * touched by its worker alone (embedded in mr_worker). */
typedef struct {
    uint32_t held[MR_KEY_STRIPES];   /* this worker's operations holding the stripe */
    uint32_t parked[MR_KEY_STRIPES]; /* this worker's requests waiting for it */
    struct mr_req *head, *tail;      /* the waiting requests, oldest first (mr_req.park_next) */
    uint32_t nparked;
} mr_key_waits;

/* A table for `nworkers` workers (NULL out of memory); free once every
 * worker is gone. */
mr_key_locks *mr_key_locks_new(uint32_t nworkers);
void mr_key_locks_free(mr_key_locks *kl);
/* Worker `index` is woken through `wake` on `loop` when a stripe it waits
 * for is let go; NULL unregisters it (before its loop is destroyed). */
void mr_key_locks_register(mr_key_locks *kl, uint32_t index, struct ev_loop *loop, ev_async *wake);

/* A key's hash for its connection, stripe and write slots: the same for
 * every pool and worker, so all of a key's writes meet on one connection
 * per server and one stripe. */
static inline uint32_t mr_key_hint(const char *key, size_t len)
{
    return mr_hash(MR_HASH_FNV1A_32, key, len);
}

static inline uint32_t mr_key_stripe(uint32_t key_hash)
{
    return key_hash % MR_KEY_STRIPES;
}

/* Take `req`'s stripe (from req->conn_hint) for it: true when it may start
 * now (it holds the stripe until mr_key_unlock); false when it was parked:
 * it comes back from mr_key_locks_take_ready. A parked request is kept
 * alive (one in_flight count) until then. */
bool mr_key_lock(struct mr_req *req);
/* A repair of `parent`'s key holds `parent`'s stripe too (parent holds it). */
void mr_key_lock_inherit(struct mr_req *child, const struct mr_req *parent);
/* The request's operation is over: let its stripe go (no-op without one).
 * The last hold of the worker on the stripe frees it and wakes the workers
 * waiting for it. */
void mr_key_unlock(struct mr_req *req);
/* The parked requests that may start now, oldest first, linked through
 * park_next; each holds its stripe and no longer counts in_flight. */
struct mr_req *mr_key_locks_take_ready(struct mr_worker *w);
/* Shutdown: the parked requests, unparked without a stripe (the caller
 * fails them), linked through park_next. */
struct mr_req *mr_key_locks_take_all(struct mr_worker *w);

#endif
