/* request.c: request lifetime: pooled allocation, message completion. */
#include "memrelay/request.h"

#include <stdlib.h>
#include <string.h>

#include "memrelay/health.h"
#include "memrelay/key_locks.h"
#include "memrelay/worker.h"

mr_req *mr_req_new(mr_worker *w)
{
    mr_req *req = w->free_reqs;
    if (req) {
        w->free_reqs = req->next;
        if (--w->nfree_reqs < w->low_free_reqs)
            w->low_free_reqs = w->nfree_reqs;
    } else {
        req = malloc(sizeof(*req));
        if (!req)
            return NULL;
    }
    /* Only the header needs clearing; the inline tables are set on use. */
    memset(req, 0, offsetof(mr_req, inline_msgs));
    req->worker = w;
    req->gen = w->gen;
    w->gen_reqs++;
    return req;
}

mr_req *mr_req_new_background(mr_worker *w, const mr_req_ops *ops)
{
    mr_req *req = mr_req_new(w);
    if (!req)
        return NULL;
    req->client = NULL;
    req->cls = MR_CLASS_KEYED;
    req->ops = ops;
    return req;
}

static void msg_release(mr_msg *msg)
{
    for (uint32_t i = 0; i < msg->nout; i++)
        mr_slice_release(&msg->out[i]);
    mr_slice_release(&msg->line);
    for (uint32_t i = 0; i < msg->nitems; i++)
        mr_slice_release(&msg->items[i]);
    if (msg->items != msg->inline_items)
        free(msg->items);
}

static void req_free(mr_req *req)
{
    /* Nobody holds it: its client is done and no message is on a queue. */
    MR_CHECK(req->client == NULL && req->in_flight == 0);
    mr_key_unlock(req);
    for (uint32_t i = 0; i < req->nmsgs; i++) {
        MR_CHECK(!req->msgs[i].queued);
        msg_release(&req->msgs[i]);
    }
    if (req->msgs != req->inline_msgs)
        free(req->msgs);
    if (req->keys != req->inline_keys)
        free(req->keys); /* key_msg shares its allocation */
    mr_slice_release(&req->line);
    mr_slice_release(&req->local);
    mr_worker *w = req->worker;
    mr_gen *gen = req->gen;
    if (w->nfree_reqs < MR_WORKER_MAX_FREE_REQS) {
        req->next = w->free_reqs;
        w->free_reqs = req;
        w->nfree_reqs++;
    } else {
        free(req);
        w->reqs_freed_bytes += sizeof(*req);
    }
    /* Each generation counts the requests started under it (mr_req_new):
     * the worker's current one here, an older one through the hook. */
    if (gen == w->gen)
        w->gen_reqs--;
    else
        w->hooks->req_freed(w, gen);
}

void mr_req_client_done(mr_req *req)
{
    req->client = NULL;
    if (req->in_flight == 0)
        req_free(req);
}

static void msg_init(mr_req *req, mr_msg *msg)
{
    memset(msg, 0, sizeof(*msg));
    msg->req = req;
    msg->items = msg->inline_items;
    msg->items_cap = sizeof(msg->inline_items) / sizeof(mr_slice);
}

int mr_req_alloc_msgs_cap(mr_req *req, uint32_t nmsgs, uint32_t cap)
{
    if (cap < nmsgs)
        cap = nmsgs;
    if (cap <= MR_REQ_INLINE_MSGS) {
        req->msgs = req->inline_msgs;
    } else if (!(req->msgs = malloc(cap * sizeof(mr_msg)))) {
        return -1;
    }
    req->msgs_cap = cap;
    req->nmsgs = nmsgs;
    for (uint32_t i = 0; i < nmsgs; i++)
        msg_init(req, &req->msgs[i]);
    req->pending = nmsgs + 1; /* the dispatch guard */
    return 0;
}

int mr_req_alloc_msgs(mr_req *req, uint32_t nmsgs)
{
    return mr_req_alloc_msgs_cap(req, nmsgs, nmsgs);
}

mr_msg *mr_req_add_msg(mr_req *req)
{
    if (req->nmsgs >= req->msgs_cap)
        return NULL;
    mr_msg *msg = &req->msgs[req->nmsgs++];
    msg_init(req, msg);
    req->pending++;
    return msg;
}

int mr_req_alloc_keys(mr_req *req, uint32_t nkeys)
{
    if (nkeys <= MR_REQ_INLINE_KEYS) {
        req->key_msg = req->inline_key_msg;
        req->keys = req->inline_keys;
    } else {
        /* One allocation for both tables; the key refs go first (aligned). */
        mr_key_ref *keys = malloc(nkeys * (sizeof(mr_key_ref) + sizeof(uint32_t)));
        if (!keys)
            return -1;
        req->keys = keys;
        req->key_msg = (uint32_t *)(keys + nkeys);
    }
    req->nkeys = nkeys;
    return 0;
}

int mr_msg_add_item(mr_msg *msg, mr_mbuf *mb, const char *p, uint32_t len)
{
    if (msg->nitems == msg->items_cap) {
        uint32_t cap = msg->items_cap * 2;
        mr_slice *items = malloc(cap * sizeof(mr_slice));
        if (!items)
            return -1;
        memcpy(items, msg->items, msg->nitems * sizeof(mr_slice));
        if (msg->items != msg->inline_items)
            free(msg->items);
        msg->items = items;
        msg->items_cap = cap;
    }
    msg->items[msg->nitems++] = mr_slice_ref(mb, p, len);
    return 0;
}

static void req_pending_dec(mr_req *req)
{
    MR_CHECK(req->pending > 0);
    --req->pending;
    if (req->done)
        return;
    if (req->pending == 0 || (req->ops && req->ops->ready && req->ops->ready(req))) {
        req->done = true;
        if (req->client)
            req->worker->hooks->reply_ready(req->client, req);
    }
}

/* The server's traffic counters, or NULL for a message that never reached
 * a backend (queued_at is set by mr_backend_send and mr_bconn_push_front). */
static mr_server_traffic *traffic_of(const mr_msg *msg)
{
    if (msg->queued_at == 0)
        return NULL;
    mr_health *h = msg->req->worker->shared->health;
    return h ? &mr_health_server(h, msg->server)->traffic : NULL;
}

/* A message to a server is done (it passes here once): count it, its error
 * class, and how long its reply took. A timed-out message whose reply came
 * late counts as a timeout, and its late reply still gives a latency sample:
 * the histogram shows how slow the server really was. */
static void count_finished(mr_msg *msg, mr_err err)
{
    mr_server_traffic *t = traffic_of(msg);
    if (!t)
        return;
    __atomic_fetch_add(&t->requests, 1, __ATOMIC_RELAXED);
    mr_err outcome = msg->replied ? msg->error : err;
    if (outcome != MR_ERR_NONE && outcome < MR_ERR_COUNT)
        __atomic_fetch_add(&t->errors[outcome], 1, __ATOMIC_RELAXED);
    if (err == MR_ERR_NONE) {
        double took = ev_now(msg->req->worker->loop) - msg->queued_at;
        mr_latency_record(&t->latency, took > 0 ? (uint64_t)(took * 1e6 + 0.5) : 0);
    }
}

void mr_msg_answer(mr_msg *msg, mr_err err)
{
    if (msg->replied)
        return;
    if (err == MR_ERR_TIMEOUT) {
        mr_server_traffic *t = traffic_of(msg);
        if (t)
            __atomic_fetch_add(&t->timeouts, 1, __ATOMIC_RELAXED);
    }
    msg->replied = true;
    msg->error = err;
    mr_req *req = msg->req;
    if (req->ops && req->ops->answered)
        req->ops->answered(req, msg);
    req_pending_dec(req);
}

/* Every message is answered and off its queue: a replicated write's
 * operation is over on every replica (its repairs hold the stripe on their
 * own), so its key stripe goes. */
static void settle(mr_req *req)
{
    if (req->key_lock && req->in_flight == 0 && req->pending == 0)
        mr_key_unlock(req);
}

void mr_req_fail_unsent(mr_req *req, mr_err err)
{
    for (uint32_t i = 0; i < req->nmsgs; i++)
        mr_msg_finish(&req->msgs[i], err);
    mr_req_dispatched(req);
}

void mr_req_fail_local(mr_req *req, mr_err err)
{
    mr_slice_release(&req->local);
    req->ops = NULL;
    req->local = mr_slice_static(mr_error_reply(err), (uint32_t)strlen(mr_error_reply(err)));
    mr_req_done_local(req);
}

void mr_req_done_local(mr_req *req)
{
    req->done = true;
    settle(req);
    if (req->client)
        req->worker->hooks->reply_ready(req->client, req);
    else
        mr_req_client_done(req);
}

void mr_req_dispatched(mr_req *req)
{
    req_pending_dec(req);
    settle(req);
    if (!req->client && req->in_flight == 0 && req->pending == 0)
        req_free(req);
}

void mr_msg_finish(mr_msg *msg, mr_err err)
{
    mr_req *req = msg->req;
    if (msg->queued) {
        MR_CHECK(req->in_flight > 0);
        msg->queued = false;
        req->in_flight--;
    }
    count_finished(msg, err);
    if (req->ops && req->ops->finished)
        req->ops->finished(req, msg, (int)err);
    mr_msg_answer(msg, err);
    settle(req);
    if (!req->client && req->in_flight == 0 && req->pending == 0)
        req_free(req);
}
