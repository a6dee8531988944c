/* repl_read.c: reads that fail over along a key's replica set: a single
 * key moves to the next replica at once on an error (and on a miss with
 * read_miss_failover); a multi-get regroups a failed server's keys onto
 * their next replicas. Quarantined replicas are read last.
 */
#include "memrelay/health.h"
#include "memrelay/rng.h"
#include "memrelay/warmup.h"
#include "repl_internal.h"

static void copy_out(mr_msg *to, const mr_msg *from)
{
    for (uint32_t i = 0; i < from->nout; i++)
        to->out[i] = mr_slice_ref(from->out[i].mb, from->out[i].p, from->out[i].len);
    to->nout = from->nout;
}

/* ---- reads with failover ---- */

static bool read_missed(const mr_req *req, const mr_msg *msg)
{
    if (req->cmd == MR_CMD_MG)
        return line_is(&msg->line, "EN");
    return msg->nitems == 0 && msg->line.len == 0;
}

static void read_answered(mr_req *req, mr_msg *msg)
{
    /* A slot beyond the replicas: a warm-up window was open at dispatch. */
    bool warm = req->msgs_cap > req->nreplicas;
    if (__builtin_expect(warm, 0) && mr_warm_repl_answered(req, msg))
        return;
    uint32_t idx = (uint32_t)(msg - req->msgs);
    /* The key's own pool (its primary's) decides, also for cross-pool copies. */
    const mr_pool_conf *pc = &req->gen->cfg->pools[req->gen->router->servers[req->replicas[0]].pool];
    bool retry =
        idx + 1 < req->nreplicas && (msg_failed(msg) || (pc->read_miss_failover && read_missed(req, msg)));
    if (!retry) {
        if (__builtin_expect(warm, 0) && !msg_failed(msg) && read_missed(req, msg))
            mr_warm_repl_missed(req, msg); /* the new set missed: try the previous one */
        return;
    }
    mr_msg *next = mr_req_add_msg(req);
    if (!next)
        return;
    next->server = req->replicas[idx + 1];
    next->retrieval = msg->retrieval;
    copy_out(next, msg);
    req->reply_msg = idx + 1;
    POOL_STAT_INC(req->worker, key_pool(req), repl_read_failovers);
    send_to(req->worker, req, next);
}

const mr_req_ops mr_repl_read_ops = {.answered = read_answered};

/* ---- multi-get failover, per server batch ---- */

static void mget_failover(mr_req *req, mr_msg *msg)
{
    mr_worker *w = req->worker;
    const mr_router *router = req->gen->router;
    uint32_t idx = (uint32_t)(msg - req->msgs);
    bool failed = msg_failed(msg);
    const mr_pool_conf *pc = &router->cfg->pools[router->servers[msg->server].pool];
    if (!failed && !pc->read_miss_failover)
        return;
    const char *line = req->line.p;
    uint32_t first_new = req->nmsgs, cursor = 0;
    for (uint32_t i = 0; i < req->nkeys; i++) {
        if (req->key_msg[i] != idx)
            continue;
        uint32_t koff = req->keys[i].off, klen = req->keys[i].len;
        if (!failed) {
            /* Walk the items as emit.c will: a hit stays with this batch. */
            if (cursor < msg->nitems &&
                mr_reply_value_has_key(msg->items[cursor].p, msg->items[cursor].len, line + koff, klen)) {
                cursor++;
                continue;
            }
        }
        const mr_pool *pool = mr_router_pool_for_key(router, req->listen_pool, line + koff, klen);
        uint32_t reps[MR_MAX_REPLICAS];
        uint32_t n =
            mr_router_replicas_for_key(pool, line + koff, klen, mr_rng_next(&w->rng), reps, MR_MAX_REPLICAS);
        uint32_t at = 0;
        while (at < n && reps[at] != msg->server)
            at++;
        if (at + 1 >= n)
            continue; /* no replica left: a miss */
        uint32_t next = reps[at + 1], slot = first_new;
        while (slot < req->nmsgs && req->msgs[slot].server != next)
            slot++;
        if (slot == req->nmsgs) {
            mr_msg *m = mr_req_add_msg(req);
            if (!m)
                continue;
            m->server = next;
            m->retrieval = true;
        }
        req->key_msg[i] = slot;
    }
    uint32_t added = req->nmsgs - first_new;
    if (added == 0)
        return;
    POOL_STAT_ADD(w, pool_of_server(w, msg->server), repl_read_failovers, added);
    if (mr_build_split_lines(&w->mbufs, req, first_new, added) < 0) {
        for (uint32_t s = first_new; s < first_new + added; s++)
            mr_msg_finish(&req->msgs[s], MR_ERR_NOMEM);
        return;
    }
    for (uint32_t s = first_new; s < first_new + added; s++)
        send_to(w, req, &req->msgs[s]);
}

/* Warm-up (a window open on the request's generation, which reserved a
 * lookup slot per key at dispatch): a lookup's answer is warm-up's; a
 * batch's keys that still miss after failover try their previous set. */
static void mget_answered(mr_req *req, mr_msg *msg)
{
    mr_worker *w = req->worker;
    bool warm = __builtin_expect(req->gen == w->gen && mr_warm_open(w), 0);
    if (warm && mr_warm_repl_answered(req, msg))
        return;
    mget_failover(req, msg);
    if (warm && msg->retrieval && !msg_failed(msg))
        mr_warm_repl_batch_missed(req, msg);
}

const mr_req_ops mr_repl_mget_ops = {.answered = mget_answered};

/* ---- replica order ---- */

/* A quarantined replica is read last: it may hold values overwritten while
 * it was away. Writes still go to it. */
void mr_repl_reads_avoid_quarantine(mr_worker *w, mr_req *req)
{
    mr_health *h = w->shared->health;
    if (!h)
        return;
    uint32_t first = 0;
    while (first < req->nreplicas && !mr_health_quarantined(h, req->replicas[first]))
        first++;
    if (first == req->nreplicas)
        return; /* the usual case: nobody quarantined, the order stands */
    uint32_t order[MR_MAX_REPLICAS], n = 0;
    for (uint32_t pass = 0; pass < 2; pass++)
        for (uint32_t i = 0; i < req->nreplicas; i++)
            if (mr_health_quarantined(h, req->replicas[i]) == (pass == 1))
                order[n++] = req->replicas[i];
    memcpy(req->replicas, order, n * sizeof(uint32_t));
}
