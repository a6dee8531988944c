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
 *   CAS values and TTL updates stay meaningful.
 */
#include "memrelay/replicate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memrelay/backend.h"
#include "memrelay/forward.h"
#include "memrelay/health.h"
#include "memrelay/log.h"
#include "memrelay/rng.h"
#include "memrelay/reply.h"
#include "memrelay/worker.h"

/* Per-pool replication counters of the worker (see stats.h). */
/* `slot` is the pool's stable counter slot (mr_pool.slot). */
#define POOL_STAT_ADD(w, slot, field, n) MR_STAT_ADD(&(w)->pool_stats[slot], field, n)
#define POOL_STAT_INC(w, pool, field) POOL_STAT_ADD(w, pool, field, 1)

/* The counter slot of a server's pool. Its backend knows (server ids and
 * slots outlive reloads, so this holds for requests of any config). */
static uint32_t pool_of_server(const mr_worker *w, uint32_t server)
{
    return w->backends[server]->pool->slot;
}

static uint32_t key_pool(const mr_req *req)
{
    return pool_of_server(req->worker, req->replicas[0]);
}

typedef enum { OP_FANOUT, OP_COPY_SET, OP_READ_BACK, OP_DELETE_OTHERS, OP_READ, OP_READ_PRIMARY } repl_op;

/* ---- small helpers ---- */

static bool line_is(const mr_slice *line, const char *prefix)
{
    size_t n = strlen(prefix);
    return line->len >= n && memcmp(line->p, prefix, n) == 0;
}

/* A definitive answer from memcached (not an error of any kind). */
static bool msg_acked(const mr_msg *msg)
{
    return msg->error == MR_ERR_NONE && msg->line.len > 0 && !mr_reply_is_error(msg->line.p, msg->line.len);
}

static bool msg_failed(const mr_msg *msg)
{
    return msg->error != MR_ERR_NONE || (msg->line.len > 0 && mr_reply_is_error(msg->line.p, msg->line.len));
}

/* Does the meta command carry flag `f` (a token starting with it)? */
static bool meta_has_flag(const mr_req *req, char f)
{
    const mr_request_head *h = &req->head;
    const char *p = req->line.p + h->key_off + h->key_len;
    const char *end = req->line.p + h->line_len;
    bool first = true;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\r' || *p == '\n'))
            p++;
        if (p >= end)
            break;
        const char *tok = p;
        while (p < end && *p != ' ' && *p != '\r' && *p != '\n')
            p++;
        /* ms: the first token after the key is the data length */
        if (first && req->cmd == MR_CMD_MS) {
            first = false;
            continue;
        }
        first = false;
        if (*tok == f)
            return true;
        if (f == 'M' && *tok == 'M' && p - tok >= 2)
            return true;
    }
    return false;
}

/* ms mode flag: add (A/a), append (E/e), prepend (P/p) are not idempotent. */
static bool ms_mode_not_idempotent(const mr_req *req)
{
    const mr_request_head *h = &req->head;
    const char *p = req->line.p + h->key_off + h->key_len;
    const char *end = req->line.p + h->line_len;
    for (; p + 2 < end; p++)
        if (p[0] == ' ' && p[1] == 'M')
            return strchr("AaEePp", p[2]) != NULL;
    return false;
}

static repl_op classify(const mr_req *req)
{
    switch (req->cmd) {
    case MR_CMD_SET:
    case MR_CMD_REPLACE:
    case MR_CMD_APPEND:
    case MR_CMD_PREPEND:
    case MR_CMD_DELETE:
    case MR_CMD_TOUCH:
        return OP_FANOUT;
    case MR_CMD_ADD:
    case MR_CMD_CAS:
        return OP_COPY_SET;
    case MR_CMD_INCR:
    case MR_CMD_DECR:
    case MR_CMD_MA:
        return OP_READ_BACK;
    case MR_CMD_MS:
        if (meta_has_flag(req, 'C') || meta_has_flag(req, 'E') || meta_has_flag(req, 'I') ||
            ms_mode_not_idempotent(req))
            return OP_READ_BACK;
        return OP_FANOUT;
    case MR_CMD_MD:
        if (meta_has_flag(req, 'C') || meta_has_flag(req, 'E'))
            return OP_DELETE_OTHERS;
        return OP_FANOUT;
    case MR_CMD_GET:
        return OP_READ;
    case MR_CMD_MG:
        if (meta_has_flag(req, 'N') || meta_has_flag(req, 'T') || meta_has_flag(req, 'E'))
            return OP_READ_PRIMARY;
        return OP_READ;
    default:
        return OP_READ_PRIMARY;
    }
}

static void send_to(mr_worker *w, mr_req *req, mr_msg *msg)
{
    mr_forward_send(w, req->conn_hint, msg);
}

static void copy_out(mr_msg *to, const mr_msg *from)
{
    for (uint32_t i = 0; i < from->nout; i++)
        to->out[i] = mr_slice_ref(from->out[i].mb, from->out[i].p, from->out[i].len);
    to->nout = from->nout;
}

/* ---- fan-out writes ---- */

static void pick_reply(mr_req *req)
{
    /* Acknowledged: the reply of the first replica (in replica order) that
     * acknowledged; not acknowledged: the first failure. */
    bool acked = req->acks >= req->acks_needed;
    for (uint32_t i = 0; i < req->nmsgs; i++) {
        const mr_msg *m = &req->msgs[i];
        if (!m->replied)
            continue;
        if (acked ? msg_acked(m) : msg_failed(m)) {
            req->reply_msg = i;
            return;
        }
    }
}

static void fanout_answered(mr_req *req, mr_msg *msg)
{
    if (msg_acked(msg))
        req->acks++;
    else
        req->fails++;
    if (req->done)
        return;
    if (req->acks >= req->acks_needed) {
        pick_reply(req);
    } else if (req->fails > req->nmsgs - req->acks_needed) {
        pick_reply(req);
        POOL_STAT_INC(req->worker, key_pool(req), repl_acks_unmet);
    }
}

static bool fanout_ready(const mr_req *req)
{
    return req->acks >= req->acks_needed || req->fails > req->nmsgs - req->acks_needed;
}

static void background_write(mr_worker *w, uint32_t pool, uint32_t conn_hint, const uint32_t *servers, uint32_t n,
                             const mr_slice *line, const mr_slice *data);
static int make_line(mr_worker *w, mr_slice *out, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A live replica refused a write (SERVER_ERROR, e.g. out of memory): it
 * may still hold an older value, so it is told to drop the key rather than
 * serve that. Replaying the write later could land it over newer ones. */
static void drop_stale_copy(mr_worker *w, const mr_msg *msg, uint32_t conn_hint)
{
    const mr_slice *line = &msg->out[0];
    const char *p = memchr(line->p, ' ', line->len), *end = line->p + line->len;
    if (!p)
        return;
    const char *key = p + 1, *k_end = key;
    while (k_end < end && *k_end != ' ' && *k_end != '\r' && *k_end != '\n')
        k_end++;
    bool meta = line->len > 2 && line->p[0] == 'm' && line->p[2] == ' ';
    bool b64 = meta && memmem(k_end, (size_t)(end - k_end), " b", 2) != NULL;
    mr_slice del;
    if (make_line(w, &del, meta ? "md %.*s%s\r\n" : "delete %.*s\r\n", (int)(k_end - key), key, b64 ? " b" : "") < 0)
        return;
    uint32_t server = msg->server;
    background_write(w, pool_of_server(w, server), conn_hint, &server, 1, &del, NULL);
    mr_slice_release(&del);
}

static void write_finished(mr_req *req, mr_msg *msg, int err)
{
    bool refused = err == MR_ERR_NONE && msg->line.len && line_is(&msg->line, "SERVER_ERROR");
    if (err == MR_ERR_NONE && !refused)
        return;
    POOL_STAT_INC(req->worker, pool_of_server(req->worker, msg->server), repl_write_failures);
    if (refused)
        drop_stale_copy(req->worker, msg, req->conn_hint);
    else
        mr_backend_replay_later(req->worker->backends[msg->server], msg);
}

/* Background writes: counted while pending, and failures kept for replay. */
static void repair_finished(mr_req *req, mr_msg *msg, int err)
{
    POOL_STAT_ADD(req->worker, pool_of_server(req->worker, req->replicas[0]), repl_background_pending,
                  (uint64_t)-1);
    write_finished(req, msg, err);
}

static const mr_req_ops fanout_ops = {
    .answered = fanout_answered, .ready = fanout_ready, .finished = write_finished};

/* Background writes (repairs): only failures matter, for replay. */
static const mr_req_ops repair_ops = {.finished = repair_finished};

static uint8_t acks_needed(const mr_pool_conf *pc, uint32_t n)
{
    switch (pc->write_ack) {
    case MR_WRITE_ACK_ALL:
        return (uint8_t)n;
    case MR_WRITE_ACK_QUORUM:
        return (uint8_t)(n / 2 + 1);
    default:
        return 1;
    }
}

/* Send `line` (+ data) to servers[0..n) as one background request. */
static void background_write(mr_worker *w, uint32_t pool, uint32_t conn_hint, const uint32_t *servers, uint32_t n,
                             const mr_slice *line, const mr_slice *data)
{
    if (n == 0)
        return;
    mr_req *req = mr_req_new_background(w, &repair_ops);
    if (!req)
        return;
    req->replicas[0] = servers[0];
    req->nreplicas = 1;
    req->conn_hint = conn_hint; /* the key's connection, keeping its writes in order */
    if (mr_req_alloc_msgs(req, n) < 0) {
        mr_req_dispatched(req);
        return;
    }
    POOL_STAT_INC(w, pool, repl_repairs);
    POOL_STAT_ADD(w, pool_of_server(w, servers[0]), repl_background_pending, n);
    for (uint32_t i = 0; i < n; i++) {
        mr_msg *msg = &req->msgs[i];
        msg->server = servers[i];
        msg->out[0] = mr_slice_ref(line->mb, line->p, line->len);
        msg->nout = 1;
        if (data && data->len)
            msg->out[msg->nout++] = mr_slice_ref(data->mb, data->p, data->len);
    }
    for (uint32_t i = 0; i < n; i++)
        send_to(w, req, &req->msgs[i]);
    mr_req_dispatched(req);
}

/* A line built into a fresh block. */
static int make_line(mr_worker *w, mr_slice *out, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#include <stdarg.h>
static int make_line(mr_worker *w, mr_slice *out, const char *fmt, ...)
{
    mr_mbuf *mb = mr_mbuf_get(&w->mbufs, 1024);
    if (!mb)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(mb->data, mb->cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (uint32_t)n >= mb->cap) {
        mr_mbuf_unref(mb);
        return -1;
    }
    mb->len = (uint32_t)n;
    *out = mr_slice_ref(mb, mb->data, (uint32_t)n);
    mr_mbuf_unref(mb);
    return 0;
}

/* ---- primary-only writes and their repairs ---- */

/* add/cas succeeded on the owner: give the others a set of the same item.
 * The classic line is "add|cas <key> <flags> <exptime> <bytes> [...]". */
static void repair_copy_set(mr_req *req)
{
    const mr_request_head *h = &req->head;
    const char *p = req->line.p + h->key_off + h->key_len;
    unsigned long flags = 0, bytes = 0;
    long exptime = 0;
    if (sscanf(p, " %lu %ld %lu", &flags, &exptime, &bytes) != 3)
        return;
    mr_slice line, data;
    if (make_line(req->worker, &line, "set %.*s %lu %ld %lu\r\n", (int)h->key_len, req->line.p + h->key_off, flags,
                  exptime, bytes) < 0)
        return;
    data = mr_slice_ref(req->line.mb, req->line.p + h->line_len, h->data_len);
    background_write(req->worker, key_pool(req), req->conn_hint, req->replicas + 1, req->nreplicas - 1u, &line, &data);
    mr_slice_release(&line);
    mr_slice_release(&data);
}

static uint32_t *gen_slot(mr_worker *w, const mr_req *req)
{
    return &w->write_gen[req->conn_hint % MR_WRITE_GEN_SLOTS];
}

static void start_read_back(const mr_req *from, const char *key, int klen, bool b64);

/* The read-back of a primary-only write arrived: copy it to the others. */
static void readback_answered(mr_req *rb, mr_msg *msg)
{
    mr_worker *w = rb->worker;
    const mr_slice *asked0 = &msg->out[0];
    if (*gen_slot(w, rb) != rb->write_gen && rb->readback_tries < 8 && asked0->len > 3) {
        /* A newer write to the key went out after this read-back: the
         * replicas may already hold it, so copying this older value could
         * undo it there. Read again: the new read-back follows that write
         * on the primary's connection and sees its effect. */
        const char *k = asked0->p + 3;
        const char *k_end = memchr(k, ' ', asked0->len - 3);
        if (k_end) {
            rb->readback_tries++;
            start_read_back(rb, k, (int)(k_end - k), rb->head.meta_base64);
        }
        return;
    }
    const mr_slice *reply = &msg->line;
    /* The key (as written, base64 or not) sits after "mg " in our own line. */
    const mr_slice *asked = &msg->out[0];
    const char *key = asked->p + 3;
    const char *key_end = memchr(key, ' ', asked->len - 3);
    if (!key_end)
        return;
    int klen = (int)(key_end - key);
    bool b64 = rb->head.meta_base64;
    mr_slice line = {0}, data = {0};
    if (msg->error == MR_ERR_NONE && line_is(reply, "VA ")) {
        unsigned long len = 0, flags = 0;
        long ttl = -1;
        const char *p = reply->p + 3;
        len = strtoul(p, NULL, 10);
        const char *f = strstr(p, " f"), *t = strstr(p, " t");
        const char *eol = memchr(reply->p, '\r', reply->len);
        if (f && f < eol)
            flags = strtoul(f + 2, NULL, 10);
        if (t && t < eol)
            ttl = strtol(t + 2, NULL, 10);
        if (!eol || make_line(w, &line, "ms %.*s %lu F%lu T%ld%s\r\n", klen, key, len, flags, ttl < 0 ? 0 : ttl,
                              b64 ? " b" : "") < 0)
            return;
        uint32_t head_len = (uint32_t)(eol - reply->p) + 2;
        data = mr_slice_ref(reply->mb, reply->p + head_len, reply->len - head_len);
    } else if (msg->error == MR_ERR_NONE && line_is(reply, "EN")) {
        /* Gone from the owner since: the others must not keep it either. */
        if (make_line(w, &line, "md %.*s%s\r\n", klen, key, b64 ? " b" : "") < 0)
            return;
    } else {
        /* The owner did not answer: nothing trustworthy to copy. */
        POOL_STAT_INC(w, key_pool(rb), repl_write_failures);
        return;
    }
    background_write(w, key_pool(rb), rb->conn_hint, rb->replicas + 1, rb->nreplicas - 1u, &line, data.len ? &data : NULL);
    mr_slice_release(&line);
    mr_slice_release(&data);
}

static const mr_req_ops readback_ops = {.answered = readback_answered};

/* Read `key` back from the primary (`mg k v f t`) and, when it answers,
 * write it to the other replicas (readback_answered). `from` carries the
 * replica set, connection and retry count. */
static void start_read_back(const mr_req *from, const char *key, int klen, bool b64)
{
    mr_worker *w = from->worker;
    mr_req *rb = mr_req_new_background(w, &readback_ops);
    if (!rb)
        return;
    rb->head.meta_base64 = b64;
    rb->nreplicas = from->nreplicas;
    memcpy(rb->replicas, from->replicas, sizeof(rb->replicas));
    rb->conn_hint = from->conn_hint;
    rb->write_gen = *gen_slot(w, from);
    rb->readback_tries = from->readback_tries;
    if (mr_req_alloc_msgs(rb, 1) < 0) {
        mr_req_dispatched(rb);
        return;
    }
    mr_msg *msg = &rb->msgs[0];
    msg->server = from->replicas[0];
    if (make_line(w, &msg->out[0], "mg %.*s v f t%s\r\n", klen, key, b64 ? " b" : "") < 0) {
        mr_msg_finish(msg, MR_ERR_NOMEM);
    } else {
        msg->nout = 1;
        send_to(w, rb, msg);
    }
    mr_req_dispatched(rb);
}

static void repair_read_back(mr_req *req)
{
    const mr_request_head *h = &req->head;
    bool b64 = h->meta_base64 && mr_cmd_class_of(req->cmd) == MR_CLASS_META_KEYED;
    start_read_back(req, req->line.p + h->key_off, (int)h->key_len, b64);
}

static void repair_delete_others(mr_req *req)
{
    const mr_request_head *h = &req->head;
    mr_slice line;
    if (make_line(req->worker, &line, "md %.*s%s\r\n", (int)h->key_len, req->line.p + h->key_off,
                  h->meta_base64 ? " b" : "") < 0)
        return;
    background_write(req->worker, key_pool(req), req->conn_hint, req->replicas + 1, req->nreplicas - 1u, &line, NULL);
    mr_slice_release(&line);
}

static bool primary_succeeded(const mr_req *req, const mr_msg *msg)
{
    if (msg->fenced && msg->error == MR_ERR_NONE && msg->line.len == 0)
        return true; /* q hid the HD/VA of an increment */
    if (!msg_acked(msg))
        return false;
    const mr_slice *l = &msg->line;
    switch (req->cmd) {
    case MR_CMD_ADD:
    case MR_CMD_CAS:
        return line_is(l, "STORED");
    case MR_CMD_INCR:
    case MR_CMD_DECR:
        return l->len > 0 && l->p[0] >= '0' && l->p[0] <= '9';
    default: /* meta: HD, or VA for ma with v */
        return line_is(l, "HD") || line_is(l, "VA") || line_is(l, "OK");
    }
}

static void primary_answered(mr_req *req, mr_msg *msg)
{
    if (req->nreplicas < 2 || !primary_succeeded(req, msg))
        return;
    if (*gen_slot(req->worker, req) != req->write_gen) {
        /* Another write to the key went out since: what this one did is
         * not the key's last state; copy whatever the primary holds now. */
        repair_read_back(req);
        return;
    }
    switch (classify(req)) {
    case OP_COPY_SET:
        if (req->cmd == MR_CMD_ADD || req->cmd == MR_CMD_CAS) {
            repair_copy_set(req);
            break;
        }
        repair_read_back(req);
        break;
    case OP_READ_BACK:
        repair_read_back(req);
        break;
    case OP_DELETE_OTHERS:
        repair_delete_others(req);
        break;
    default:
        break;
    }
}

static const mr_req_ops primary_ops = {.answered = primary_answered};

/* ---- reads with failover ---- */

static bool read_missed(const mr_req *req, const mr_msg *msg)
{
    if (req->cmd == MR_CMD_MG)
        return line_is(&msg->line, "EN");
    return msg->nitems == 0 && msg->line.len == 0;
}

static void read_answered(mr_req *req, mr_msg *msg)
{
    uint32_t idx = (uint32_t)(msg - req->msgs);
    if (idx + 1 >= req->nreplicas)
        return;
    /* The key's own pool (its primary's) decides, also for cross-pool copies. */
    const mr_pool_conf *pc = &req->gen->cfg->pools[req->gen->router->servers[req->replicas[0]].pool];
    bool retry = msg_failed(msg) || (pc->read_miss_failover && read_missed(req, msg));
    if (!retry)
        return;
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

static const mr_req_ops read_ops = {.answered = read_answered};

/* ---- multi-get failover, per server batch ---- */

uint32_t mr_replicate_retrieval_slots(const mr_req *req, uint32_t npool_servers, uint32_t max_replicas)
{
    /* Each failover round regroups a batch's keys onto at most this many
     * servers, and a key can fail over max_replicas - 1 times. */
    uint32_t per_round = req->nkeys < npool_servers ? req->nkeys : npool_servers;
    return per_round * (max_replicas - 1);
}

static void mget_answered(mr_req *req, mr_msg *msg)
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

static const mr_req_ops mget_ops = {.answered = mget_answered};

void mr_replicate_retrieval_arm(mr_req *req)
{
    req->ops = &mget_ops;
}

/* ---- entry point ---- */

/* A quarantined replica is read last: it may hold values overwritten while
 * it was away. Writes still go to it. */
static void reads_avoid_quarantine(mr_worker *w, mr_req *req)
{
    mr_health *h = w->shared->health;
    if (!h)
        return;
    uint32_t order[MR_MAX_REPLICAS], n = 0;
    for (uint32_t pass = 0; pass < 2; pass++)
        for (uint32_t i = 0; i < req->nreplicas; i++)
            if (mr_health_quarantined(h, req->replicas[i]) == (pass == 1))
                order[n++] = req->replicas[i];
    memcpy(req->replicas, order, n * sizeof(uint32_t));
}

void mr_replicate_keyed(mr_req *req, const mr_pool *pool, const char *key, size_t key_len)
{
    mr_worker *w = req->worker;
    const mr_request_head *h = &req->head;
    req->nreplicas = (uint8_t)mr_router_replicas_for_key(pool, key, key_len, mr_rng_next(&w->rng),
                                                         req->replicas, MR_MAX_REPLICAS);
    /* One key always uses one connection per server, so writes to a key
     * from any client reach every replica in the same order. */
    req->conn_hint = mr_hash(MR_HASH_FNV1A_32, key, key_len);
    repl_op op = classify(req);
    uint32_t nmsgs = 1, cap = 1;
    if (op != OP_READ && op != OP_READ_PRIMARY)
        req->write_gen = ++*gen_slot(w, req);
    if (op == OP_FANOUT) {
        nmsgs = cap = req->nreplicas;
        req->ops = &fanout_ops;
        req->acks_needed = acks_needed(pool->conf, nmsgs);
        POOL_STAT_INC(w, pool->slot, repl_writes);
    } else if (op == OP_READ) {
        cap = req->nreplicas;
        req->ops = &read_ops;
        reads_avoid_quarantine(w, req);
    } else if (op != OP_READ_PRIMARY) {
        req->ops = &primary_ops;
        POOL_STAT_INC(w, pool->slot, repl_writes);
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
