/* repl_write.c: replicated writes. Fan-out writes go to every replica at
 * once and answer by write_ack; writes that are not idempotent go to the
 * primary alone and, once it succeeds, the others are repaired in the
 * background (a copy, a read-back, a delete). A write a replica missed goes
 * to its backend's replay queue; one it refused makes it drop the key.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memrelay/log.h"
#include "repl_internal.h"

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

static void background_write(const mr_req *parent, uint32_t pool, const uint32_t *servers, uint32_t n,
                             const mr_slice *line, const mr_slice *data);
static int make_line(mr_worker *w, mr_slice *out, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The delete of the key a write line names ("<cmd> <key> ..."): `delete
 * <key>`, or `md <key>` (with b for a base64 key) for a meta line. */
static int delete_line_for(mr_worker *w, const mr_slice *line, mr_slice *del)
{
    const char *p = memchr(line->p, ' ', line->len), *end = line->p + line->len;
    if (!p)
        return -1;
    const char *key = p + 1, *k_end = key;
    while (k_end < end && *k_end != ' ' && *k_end != '\r' && *k_end != '\n')
        k_end++;
    bool meta = line->len > 2 && line->p[0] == 'm' && line->p[2] == ' ';
    bool b64 = meta && memmem(k_end, (size_t)(end - k_end), " b", 2) != NULL;
    const char *fmt = meta ? "md %.*s%s\r\n" : "delete %.*s\r\n";
    return make_line(w, del, fmt, (int)(k_end - key), key, b64 ? " b" : "");
}

/* A live replica refused a write (SERVER_ERROR, e.g. out of memory): it
 * may still hold an older value, so it is told to drop the key rather than
 * serve that. Replaying the write later could land it over newer ones. */
static void drop_stale_copy(const mr_req *req, const mr_msg *msg)
{
    mr_slice del;
    if (delete_line_for(req->worker, &msg->out[0], &del) < 0)
        return;
    uint32_t server = msg->server;
    background_write(req, pool_of_server(req->worker, server), &server, 1, &del, NULL);
    mr_slice_release(&del);
}

/* A write (or a repair) to `server` got no reply: whether it ran is
 * unknown. The server is told to drop the key when it is back, not given
 * the write again: replays from several workers (or several replays) of
 * one key may reach it in any order, and deletes give the same result in
 * any order (the key comes back empty, never stale). */
static void replay_delete(mr_worker *w, uint32_t server, const mr_slice *line)
{
    mr_slice del;
    if (delete_line_for(w, line, &del) < 0) {
        mr_backend_replay_later(w->backends[server], NULL, 0); /* lost: it overflows */
        return;
    }
    mr_backend_replay_later(w->backends[server], &del, 1);
    mr_slice_release(&del);
}

static void write_finished(mr_req *req, mr_msg *msg, int err)
{
    bool refused = err == MR_ERR_NONE && msg->line.len && line_is(&msg->line, "SERVER_ERROR");
    if (err == MR_ERR_NONE && !refused)
        return;
    POOL_STAT_INC(req->worker, pool_of_server(req->worker, msg->server), repl_write_failures);
    if (refused)
        drop_stale_copy(req, msg);
    else
        replay_delete(req->worker, msg->server, &msg->out[0]);
}

/* Background writes: counted while pending, and failures kept for replay. */
static void repair_finished(mr_req *req, mr_msg *msg, int err)
{
    POOL_STAT_ADD(req->worker, pool_of_server(req->worker, req->replicas[0]), repl_background_pending,
                  (uint64_t)-1);
    write_finished(req, msg, err);
}

const mr_req_ops mr_repl_fanout_ops = {
    .answered = fanout_answered, .ready = fanout_ready, .finished = write_finished};

/* Background writes (repairs): only failures matter, for replay. */
static const mr_req_ops repair_ops = {.finished = repair_finished};

/* Send `line` (+ data) to servers[0..n) as one background request for
 * `parent`'s key: on its connections, holding its key stripe. */
static void background_write(const mr_req *parent, uint32_t pool, const uint32_t *servers, uint32_t n,
                             const mr_slice *line, const mr_slice *data)
{
    mr_worker *w = parent->worker;
    if (n == 0)
        return;
    mr_req *req = mr_req_new_background(w, &repair_ops);
    if (!req)
        return;
    req->replicas[0] = servers[0];
    req->nreplicas = 1;
    req->conn_hint = parent->conn_hint; /* the key's connection, keeping its writes in order */
    mr_key_lock_inherit(req, parent);
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
    if (make_line(req->worker, &line, "set %.*s %lu %ld %lu\r\n", (int)h->key_len, req->line.p + h->key_off,
                  flags, exptime, bytes) < 0)
        return;
    data = mr_slice_ref(req->line.mb, req->line.p + h->line_len, h->data_len);
    background_write(req, key_pool(req), req->replicas + 1, req->nreplicas - 1u, &line, &data);
    mr_slice_release(&line);
    mr_slice_release(&data);
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
    if (*gen_slot(w, rb) != rb->write_gen) {
        /* Still overtaken after every retry: what was read may be older
         * than what the others hold now. They drop the key instead. */
        POOL_STAT_INC(w, key_pool(rb), repl_write_failures);
        if (make_line(w, &line, "md %.*s%s\r\n", klen, key, b64 ? " b" : "") < 0)
            return;
    } else if (msg->error == MR_ERR_NONE && line_is(reply, "VA ")) {
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
        if (!eol || make_line(w, &line, "ms %.*s %lu F%lu T%ld%s\r\n", klen, key, len, flags,
                              ttl < 0 ? 0 : ttl, b64 ? " b" : "") < 0)
            return;
        uint32_t head_len = (uint32_t)(eol - reply->p) + 2;
        data = mr_slice_ref(reply->mb, reply->p + head_len, reply->len - head_len);
    } else if (msg->error == MR_ERR_NONE && line_is(reply, "EN")) {
        /* Gone from the owner since: the others must not keep it either. */
        if (make_line(w, &line, "md %.*s%s\r\n", klen, key, b64 ? " b" : "") < 0)
            return;
    } else {
        /* The owner did not answer: nothing trustworthy to copy, and the
         * others may hold an older value. They drop the key. */
        POOL_STAT_INC(w, key_pool(rb), repl_write_failures);
        if (make_line(w, &line, "md %.*s%s\r\n", klen, key, b64 ? " b" : "") < 0)
            return;
    }
    background_write(rb, key_pool(rb), rb->replicas + 1, rb->nreplicas - 1u, &line, data.len ? &data : NULL);
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
    mr_key_lock_inherit(rb, from);
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
    background_write(req, key_pool(req), req->replicas + 1, req->nreplicas - 1u, &line, NULL);
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
    switch (mr_repl_classify(req)) {
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

/* The primary's message is off its queue. Without a reply (the
 * connection failed or was declared stalled) the write may still have run
 * there, or not: the other replicas drop the key, and so does the primary
 * when it is back (its replay queue). A reply that came after the client
 * was answered `timeout` was not seen by primary_answered: the others get
 * whatever the primary holds now. */
static void primary_finished(mr_req *req, mr_msg *msg, int err)
{
    if (req->nreplicas < 2)
        return;
    if (err == MR_ERR_NONE) {
        if (msg->error == MR_ERR_TIMEOUT)
            repair_read_back(req);
        return;
    }
    POOL_STAT_INC(req->worker, key_pool(req), repl_write_failures);
    replay_delete(req->worker, msg->server, &msg->out[0]);
    repair_delete_others(req);
}

const mr_req_ops mr_repl_primary_ops = {.answered = primary_answered, .finished = primary_finished};
