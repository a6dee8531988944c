/* Layer: core (src/core/; may use base, dist, config, protocol, net, cluster). */
/* warmup.h: resizing a pool without a miss storm (warmup.c).
 *
 * After a reload (or a DNS membership change) changes a pool's ring, its
 * generation carries a warm-up window (generation.h, mr_gen_warm) with the
 * previous generation's pool. While it is open:
 * - a get/gets/gat/gats key that misses on its new owner is read from its
 *   previous owner (`mg k v f t`); a hit is copied to the new owner (`ms k F
 *   T ME c`: only if the new owner still has nothing, so a write made since
 *   wins; gat/gats: with the touch's exptime) and, once stored there,
 *   returned to the client (gets/gats: with the new owner's CAS). A previous owner that is down, ejected, gone, slow or
 *   failing answers as the miss it was.
 * - an mg (and a binary GET, which arrives as one) of a moved key that
 *   answers EN is warmed the same way; the client's line is then sent
 *   again behind the copy, and its answer (memcached's own, with every flag
 *   asked and the new owner's CAS) is the reply.
 * - every write, delete, touch and arithmetic command to a moved key is
 *   followed by a delete of the key on its previous owner, so a value
 *   changed after the reload never comes back from there. A warm lookup
 *   waits for no such delete: it gives up (a miss) while one is in flight
 *   or when one started since it began, and a copy stored after such a
 *   write started is deleted again (warmup.c, "Races with writes").
 * Outside a window, the cost is one compare of the generation's
 * warm_until with the loop's clock per request.
 */
#ifndef MEMRELAY_WARMUP_H
#define MEMRELAY_WARMUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memrelay/request.h"
#include "memrelay/worker.h"

/* Is a warm-up window open on the worker's current generation? */
static inline bool mr_warm_open(const mr_worker *w)
{
    double until = mr_gen_warm_until(w->gen);
    return until > 0 && until > ev_now(w->loop); /* a generation without a window: no clock read */
}

/* Replicated pools: a get, gets, gat, gats or mg that misses on a key's
 * new replica set is read from its previous set's members not in the new
 * one, and the copy is an `add` through replication (mr_warm_repl_*,
 * below); gets/gat/gats and mg then send the client's command again to the
 * new primary, whose reply the client gets. */

/* Dispatch of a get/gets/gat/gats over servers not replicated, window open, after
 * pass 1 (key_msg[k] holds each key's owner id): how many more message
 * slots warm-up may use (two per key that moved: the read and the copy).
 * 0 when no key moved or the command is not warmed. */
uint32_t mr_warm_retrieval_slots(const mr_req *req);
/* The messages are allocated with those slots: misses will be warmed. */
void mr_warm_retrieval_arm(mr_req *req);

/* A keyed command for `key`, whose owner in `pool` is `owner`, with a
 * window open, before its message is allocated. A write (storage, delete,
 * incr/decr, touch, ms/md/ma): if the key's previous owner is another
 * server, the key is deleted there too (in the background); returns 0.
 * An mg: returns how many more message slots its warm-up may use (0: not
 * warmed) and arms it, so a miss (EN) is read from the previous owner,
 * copied, and the client's line sent again behind the copy. */
uint32_t mr_warm_keyed(mr_req *req, const mr_pool *pool, const char *key, size_t key_len, uint32_t owner,
                       bool *hold);
/* Dispatch of a write that mr_warm_keyed asked to *hold is over: as
 * mr_req_dispatched, but while warm copies of its key's stripe (any
 * worker's) are still out, its reply waits for them (polled every 0.2 ms,
 * at most 2 s): a copy sent before the write may land after it on the new
 * owner, and is then undone before the client hears the write is done. */
void mr_warm_dispatched(mr_req *req);
/* Shutdown: every held write goes (before the worker's clients close). */
void mr_warm_release_all(mr_worker *w);

/* Replicated pools (replicate.c, repl_read.c), window open. A key's
 * previous replica set is its set in the previous generation's ring; the
 * members of it that are not in the new set are the ones warm-up reads
 * and cleans. */
/* A replicated write of `key` (new set in req->replicas), before it takes
 * its key stripe: the key is deleted on the previous set's members that
 * are not in the new one (background, counted on the key's stripe). */
void mr_warm_repl_write(mr_req *req, const mr_pool *pool, const char *key, size_t key_len);
/* How many more message slots a replicated single-key read may use for
 * its warm-up: get 1 (the lookup), mg 2 (the lookup, and its line sent
 * again to the new primary behind the copy); 0 for the others. */
uint32_t mr_warm_repl_read_slots(const mr_req *req);
/* A replicated single-key get's or mg's last answer (msg) was a miss:
 * read the key from a live member of its previous set. */
void mr_warm_repl_missed(mr_req *req, mr_msg *msg);
/* A replicated multi-key get's batch (msg) answered, after its failover:
 * each key still on it that missed is read from a live member of its
 * previous set (the request reserved a slot per key at dispatch). */
void mr_warm_repl_batch_missed(mr_req *req, mr_msg *msg);
/* Was msg such a lookup (single- or multi-key get; gets gat gats; mg) or
 * an mg's line sent again? Then it is handled: on a hit the value is
 * copied to the new set (an `add` through replication, so the key stripe
 * and the per-key order hold) and is the client's reply for the key (get),
 * or the client's command for it is sent again behind the copy. */
bool mr_warm_repl_answered(mr_req *req, mr_msg *msg);
/* Dispatch of a multi-key read (get gets gat gats, any number of keys)
 * over a replicated pool, window open, after pass 1: how many more message
 * slots its warm-up may use. get: one per key (the lookup); gets/gat/gats:
 * two per key whose previous set has a member not in its new one (the
 * lookup, and the key's line sent again to the new primary behind the
 * copy); 0 for a binary GETQ/GETKQ run. */
uint32_t mr_warm_repl_retrieval_slots(const mr_req *req);
/* A replicated gets/gat/gats with those slots (get is armed by
 * replication, mr_replicate_retrieval_arm): a key that misses on its new
 * primary and moved is read from its previous set, copied (an `add`
 * through replication, with the exptime gat/gats sets), and its line is
 * sent again to the new primary, whose answer (its CAS; the touch applied)
 * is the client's for the key. */
void mr_warm_repl_retrieval_arm(mr_req *req);
/* A replicated primary read (replicate.c, OP_READ_PRIMARY), window open,
 * before its messages are allocated: how many more slots it may use. An
 * mg with T or E and without N is warmed as a replicated mg is (2, and
 * armed: the copy takes T's exptime, and the line sent again applies the
 * touch on the new primary); 0 for the rest (N creates the item). */
uint32_t mr_warm_repl_primary_slots(mr_req *req);
/* A warm copy (req->warm_copy) is about to start, holding its key stripe:
 * false when a write to the key started since its lookup began (the copy
 * is then dropped: that write wins). */
bool mr_warm_repl_copy_may_start(mr_req *req);

#endif
