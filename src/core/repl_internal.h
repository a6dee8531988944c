/* repl_internal.h: what the files of replication share (replicate.c, the
 * entry point; repl_policy.c; repl_write.c; repl_read.c). Nothing outside
 * them uses it.
 */
#ifndef MEMRELAY_REPL_INTERNAL_H
#define MEMRELAY_REPL_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "memrelay/backend.h"
#include "memrelay/forward.h"
#include "memrelay/replicate.h"
#include "memrelay/reply.h"
#include "memrelay/worker.h"

/* Per-pool replication counters of the worker (see stats.h). */
/* `slot` is the pool's stable counter slot (mr_pool.slot). */
#define POOL_STAT_ADD(w, slot, field, n) MR_STAT_ADD(&(w)->pool_stats[slot], field, n)
#define POOL_STAT_INC(w, pool, field) POOL_STAT_ADD(w, pool, field, 1)

/* The counter slot of a server's pool. Its backend knows (server ids and
 * slots outlive reloads, so this holds for requests of any config). */
static inline uint32_t pool_of_server(const mr_worker *w, uint32_t server)
{
    return w->backends[server]->pool->slot;
}

static inline uint32_t key_pool(const mr_req *req)
{
    return pool_of_server(req->worker, req->replicas[0]);
}

/* Which path a command takes (repl_policy.c, classify: replicate.c's
 * header comment lists them). */
typedef enum { OP_FANOUT, OP_COPY_SET, OP_READ_BACK, OP_DELETE_OTHERS, OP_READ, OP_READ_PRIMARY } repl_op;

repl_op mr_repl_classify(const mr_req *req);
/* How many replicas must acknowledge a fan-out write to `n` of them (the
 * pool's write_ack). */
uint8_t mr_repl_acks_needed(const mr_pool_conf *pc, uint32_t n);

/* repl_write.c: fan-out writes, and primary-only writes with their repair. */
extern const mr_req_ops mr_repl_fanout_ops;
extern const mr_req_ops mr_repl_primary_ops;
/* repl_read.c: single-key read failover, multi-get failover per batch. */
extern const mr_req_ops mr_repl_read_ops;
extern const mr_req_ops mr_repl_mget_ops;
/* repl_read.c: put quarantined replicas last in req->replicas. */
void mr_repl_reads_avoid_quarantine(mr_worker *w, mr_req *req);

static inline bool line_is(const mr_slice *line, const char *prefix)
{
    size_t n = strlen(prefix);
    return line->len >= n && memcmp(line->p, prefix, n) == 0;
}

/* A definitive answer from memcached (not an error of any kind). */
static inline bool msg_acked(const mr_msg *msg)
{
    return msg->error == MR_ERR_NONE && msg->line.len > 0 && !mr_reply_is_error(msg->line.p, msg->line.len);
}

static inline bool msg_failed(const mr_msg *msg)
{
    return msg->error != MR_ERR_NONE || (msg->line.len > 0 && mr_reply_is_error(msg->line.p, msg->line.len));
}

static inline void send_to(mr_worker *w, mr_req *req, mr_msg *msg)
{
    mr_forward_send(w, req->conn_hint, msg);
}

static inline uint32_t *gen_slot(mr_worker *w, const mr_req *req)
{
    return &w->write_gen[req->conn_hint % MR_WRITE_GEN_SLOTS];
}

#endif
