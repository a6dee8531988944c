/* replicate.c: writes to every replica, repairs after primary-only writes,
 * and read failover. A write a replica missed goes to its backend's replay
 * queue (mr_backend_replay_later), replayed when the server is back.
 *
 * Which path a command takes (a table, see classify()):
 * - fan-out: set replace append prepend delete touch, ms/md without C/E/mode
 *   flags: sent to all replicas at once; the client's reply follows
 *   `write_ack`.
 * - primary, then copy: add cas: sent to the owner; on STORED the others get
 *   a `set` of the same data, flags and exptime.
 * - primary, then read back: incr decr ma, ms with C/E or an add/append
 *   mode: sent to the owner; on success the value is read back with
 *   `mg k v f t` and written to the others with `ms`, keeping flags and TTL.
 * - primary, then delete: md with C/E: on success the others get `md`.
 * - read: get mg: first replica, failing over to the next at once on an
 *   error (and on a miss with read_miss_failover).
 * - primary read: gets gat gats me, mg with N/T/E: the owner alone, so
 *   CAS values and TTL updates stay meaningful (in a warm-up window, gets
 *   gat gats and mg without N that miss there are warmed: warmup.h).
 */
#include "memrelay/replicate.h"

#include "memrelay/rng.h"
#include "memrelay/warmup.h"
#include "repl_internal.h"

/* ---- multi-get failover ---- */

uint32_t mr_replicate_retrieval_slots(const mr_req *req, uint32_t npool_servers, uint32_t max_replicas)
{
    /* A key fails over at most max_replicas - 1 times. In each round every
     * batch regroups its keys onto the other servers, each batch on new
     * messages of its own: round r has at most n * (n - 1)^r of them (n
     * batches first), and never more than there are keys. (Sizing a round
     * by n alone ran out when several batches failed over at once, e.g.
     * misses with read_miss_failover: the last keys were answered as
     * misses.) */
    uint64_t n = npool_servers, batches = n, total = 0;
    for (uint32_t r = 1; r < max_replicas; r++) {
        batches = n > 1 ? batches * (n - 1) : 1;
        if (batches > req->nkeys)
            batches = req->nkeys;
        total += batches;
    }
    return (uint32_t)total;
}

void mr_replicate_retrieval_arm(mr_req *req)
{
    req->ops = &mr_repl_mget_ops;
}

/* ---- entry point ---- */

static void start(mr_req *req, const mr_pool *pool, repl_op op);

void mr_replicate_keyed(mr_req *req, const mr_pool *pool, const char *key, size_t key_len)
{
    mr_worker *w = req->worker;
    req->nreplicas = (uint8_t)mr_router_replicas_for_key(pool, key, key_len, mr_rng_next(&w->rng),
                                                         req->replicas, MR_MAX_REPLICAS);
    repl_op op = mr_repl_classify(req);
    bool write = op != OP_READ && op != OP_READ_PRIMARY;
    /* One key always uses one connection per server, so writes to a key
     * from any client reach every replica in the same order (and a read
     * follows them). The hint also names the key's lock stripe and write
     * generation slot, which writes and warm-up use: a read on a pool with
     * one connection per server and no warm-up window skips the second hash
     * of the key (~90 instructions, 2.5% of a get). */
    bool warm = __builtin_expect(mr_warm_open(w), 0);
    req->conn_hint = write || warm || pool->conf->server_connections > 1 ? mr_key_hint(key, key_len) : 0;
    /* Warm-up: a write's previous replica set forgets the key (before the
     * write may park, so a warm copy that starts later sees it). */
    if (warm && write && !req->warm_copy)
        mr_warm_repl_write(req, pool, key, key_len);
    /* A write waits while another worker has one in flight on the key's
     * stripe (key_locks.h): the replicas then see every key's writes in one
     * order whatever the number of workers. */
    if (write && !mr_key_lock(req)) {
        req->park_pool = pool;
        return;
    }
    start(req, pool, op);
}

void mr_replicate_resume(mr_worker *w)
{
    mr_req *req = mr_key_locks_take_ready(w);
    while (req) {
        mr_req *next = req->park_next;
        req->park_next = NULL;
        start(req, req->park_pool, mr_repl_classify(req));
        req = next;
    }
}

void mr_replicate_drop_parked(mr_worker *w)
{
    mr_req *req = mr_key_locks_take_all(w);
    while (req) {
        mr_req *next = req->park_next;
        req->park_next = NULL;
        mr_req_fail_local(req, MR_ERR_UNAVAILABLE);
        req = next;
    }
}

/* Send a replicated command whose replicas and connection are chosen (and
 * whose key stripe it holds, for a write). */
static void start(mr_req *req, const mr_pool *pool, repl_op op)
{
    mr_worker *w = req->worker;
    const mr_request_head *h = &req->head;
    uint32_t nmsgs = 1, cap = 1;
    if (__builtin_expect(req->warm_copy, 0) && !mr_warm_repl_copy_may_start(req)) {
        mr_req_fail_local(req, MR_ERR_UNAVAILABLE); /* a write raced it: that write wins */
        return;
    }
    if (op != OP_READ && op != OP_READ_PRIMARY)
        req->write_gen = ++*gen_slot(w, req);
    if (op == OP_FANOUT) {
        nmsgs = cap = req->nreplicas;
        req->ops = &mr_repl_fanout_ops;
        req->acks_needed = mr_repl_acks_needed(pool->conf, nmsgs);
        POOL_STAT_INC(w, pool->slot, repl_writes);
    } else if (op == OP_READ) {
        /* Warm-up: one more for a lookup on the previous replica set. */
        cap = req->nreplicas + (__builtin_expect(mr_warm_open(w), 0) ? mr_warm_repl_read_slots(req) : 0);
        req->ops = &mr_repl_read_ops;
        mr_repl_reads_avoid_quarantine(w, req);
    } else if (op != OP_READ_PRIMARY) {
        req->ops = &mr_repl_primary_ops;
        POOL_STAT_INC(w, pool->slot, repl_writes);
    } else if (__builtin_expect(mr_warm_open(w), 0)) {
        cap += mr_warm_repl_primary_slots(req); /* mg with T or E: a lookup, and its line again */
    }
    if (mr_req_alloc_msgs_cap(req, nmsgs, cap) < 0) {
        mr_req_fail_local(req, MR_ERR_NOMEM);
        return;
    }
    /* The forwarded line: the client's bytes, or a rewritten copy. */
    mr_slice line;
    if (mr_forward_slice(&w->mbufs, req, &line) < 0) {
        mr_req_fail_unsent(req, MR_ERR_NOMEM);
        return;
    }
    for (uint32_t i = 0; i < nmsgs; i++) {
        mr_msg *msg = &req->msgs[i];
        msg->server = req->replicas[i];
        msg->retrieval = req->cls == MR_CLASS_RETRIEVAL;
        msg->out[0] = mr_slice_ref(line.mb, line.p, line.len);
        msg->nout = 1;
        if (h->data_len)
            msg->out[msg->nout++] = mr_slice_ref(req->line.mb, req->line.p + h->line_len, h->data_len);
    }
    mr_slice_release(&line);
    /* ma with N and q: the primary alone (a read-back copies the result)
     * applies the q; see quiet_by_server. */
    if (h->quiet_by_server && nmsgs == 1) {
        mr_msg *msg = &req->msgs[0];
        for (uint32_t i = 0; i < msg->nout; i++)
            mr_slice_release(&msg->out[i]);
        if (mr_forward_fenced(&w->mbufs, req, msg) < 0) {
            mr_req_fail_unsent(req, MR_ERR_NOMEM);
            return;
        }
    }
    for (uint32_t i = 0; i < nmsgs; i++)
        send_to(w, req, &req->msgs[i]);
    mr_req_dispatched(req);
}
