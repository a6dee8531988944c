/* warmup.c: misses on a moved key's new owner read from its previous owner,
 * and writes to a moved key delete it there (warmup.h has the contract).
 *
 * A warmed retrieval carries three kinds of messages:
 * - its batches, one per new owner (msg->retrieval), as dispatch made them;
 * - per missed key that moved, `mg <key> v f t` to its previous owner;
 * - per hit there, `ms <key> <len> F<flags> T<ttl> ME c` with the value to
 *   the new owner. When that stores it, the message's reply line is turned
 *   into the VALUE item the client gets (gets: with the CAS the new owner
 *   gave), and the key takes its reply from that message (key_msg), so
 *   emit.c's merge keeps the client's key order.
 * Warm messages whose keys keep their batch answer nothing (emit.c skips a
 * message no key uses), so a previous owner that fails costs only a miss.
 * The read of the previous owner and the stale deletes there use one
 * connection per key (its hash picks it), so a delete sent after a write is
 * read by every later warm lookup of that key on this worker.
 *
 * A meta get (`mg`, and the binary GET family, which arrives as one) that
 * answers EN on its new owner is warmed the same way, and once the copy is
 * sent the client's own line is sent again right behind it, on the same
 * connection: its reply, whatever flags were asked (v f t k s c h l O T
 * q b...), is memcached's for the hit, with the new owner's CAS.
 *
 * Races with writes (key_locks.h, mr_key_writes): every write to a moved
 * key counts on its key stripe, shared by the workers, as started when its
 * delete on the previous owner is sent and finished when that delete is
 * over. A lookup reads the previous owner only when no such delete is in
 * flight (then the previous owner already lost every value a write
 * replaced), and gives its copy up when a write started since. A write
 * that starts after the copy was sent may still reach the new owner first
 * (it travels on the client's connection, the copy on another): when the
 * copy's answer shows a write started since, the copy is undone with
 * `md <key> C<its cas>` (a later write has another CAS and stays), and
 * the client that asked gets the miss. Copies are counted on the stripe
 * while out (and their undo): a write that finds some holds its reply
 * until they are over (mr_warm_dispatched), so no copy lands after a
 * write's reply.
 *
 * Replicated pools (the last sections): a get that misses on the new replica
 * set reads a member of the previous set that is not in the new one; the
 * copy is an `add` handed to replication (mr_replicate_keyed), which orders
 * it with the key's writes by its stripe; it is dropped when it starts
 * after a write of the key started since its lookup. An mg, and the
 * primary-only reads gets/gat/gats (per key of a batch) and mg with T or E,
 * then send the client's command for the key again to the new primary on
 * the key's connection, behind the copy's add: its answer (the new
 * primary's CAS, the touch applied) is the client's. A gat/gats or mg T
 * copy carries the touch's exptime, so the whole new set has it.
 */
#include "memrelay/warmup.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memrelay/forward.h"
#include "memrelay/hash.h"
#include "memrelay/replicate.h"
#include "memrelay/reply.h"
#include "memrelay/rng.h"

#define NO_SERVER UINT32_MAX

static void pool_stat(mr_worker *w, uint32_t slot, size_t off)
{
    uint64_t *c = (uint64_t *)((char *)&w->pool_stats[slot] + off);
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}
#define WARM_STAT(w, slot, field) pool_stat(w, slot, offsetof(mr_pool_stats, field))

/* ---- writes to moved keys, per key stripe (key_locks.h, mr_key_writes) ---- */

static mr_key_writes *writes_of(mr_worker *w, uint32_t hint)
{
    return w->shared ? &w->shared->warm_writes[mr_key_stripe(hint)] : NULL;
}

/* May a lookup of the key read its previous owner now: no write's delete
 * there is in flight, and none was lost lately? *seq: the writes started. */
static bool writes_settled(mr_worker *w, const mr_gen *gen, uint32_t hint, uint32_t *seq)
{
    mr_key_writes *kw = writes_of(w, hint);
    *seq = 0;
    if (!kw)
        return true;
    uint32_t lost = __atomic_load_n(&kw->lost_seq, __ATOMIC_ACQUIRE);
    if (lost && lost + 1 >= (uint32_t)gen->seq)
        return false; /* lost in this generation or the one before, whose window may still be read */
    *seq = __atomic_load_n(&kw->started, __ATOMIC_ACQUIRE);
    return __atomic_load_n(&kw->finished, __ATOMIC_ACQUIRE) == *seq;
}

/* Did a write of the key's stripe start since `seq` was read? */
static bool write_raced(mr_worker *w, uint32_t hint, uint32_t seq)
{
    mr_key_writes *kw = writes_of(w, hint);
    return kw && __atomic_load_n(&kw->started, __ATOMIC_ACQUIRE) != seq;
}

static void writes_lost(mr_worker *w, const mr_gen *gen, uint32_t hint)
{
    mr_key_writes *kw = writes_of(w, hint);
    if (kw)
        __atomic_store_n(&kw->lost_seq, (uint32_t)gen->seq, __ATOMIC_RELEASE);
}

/* A copy is about to be sent: count it, unless a write started since the
 * lookup began (then it is given up). Sequentially consistent with the
 * write's count and look (mr_warm_keyed): either the write sees this copy
 * and holds its reply for it, or this sees the write. */
static bool copy_begin(mr_worker *w, mr_msg *copy, uint32_t hint)
{
    mr_key_writes *kw = writes_of(w, hint);
    if (!kw)
        return true;
    __atomic_add_fetch(&kw->copies, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&kw->started, __ATOMIC_SEQ_CST) != copy->warm_seq) {
        __atomic_sub_fetch(&kw->copies, 1, __ATOMIC_SEQ_CST);
        return false;
    }
    copy->warm_counted = true;
    return true;
}

static void held_release(mr_worker *w, bool all);

/* A counted copy is over (answered, and undone if it raced). */
static void copy_end(mr_worker *w, uint32_t hint)
{
    mr_key_writes *kw = writes_of(w, hint);
    if (kw)
        __atomic_sub_fetch(&kw->copies, 1, __ATOMIC_SEQ_CST);
    if (w->warm_held)
        held_release(w, false); /* this worker's own writes need no tick */
}

/* The key's owner in the previous generation when it is another server
 * this worker has a backend for (readable or not). */
static uint32_t moved_from(mr_worker *w, const mr_gen *gen, const mr_pool *pool, const char *key, size_t len,
                           uint32_t owner)
{
    if (!gen->warm || pool->index >= gen->cfg->npools)
        return NO_SERVER;
    const mr_gen_warm *wm = &gen->warm[pool->index];
    if (!wm->prev || wm->until <= ev_now(w->loop))
        return NO_SERVER;
    const mr_server_conf *is = gen->router->servers[owner].conf;
    const mr_pool *ring = wm->prev;
    uint32_t s = mr_router_server_for_key(ring, key, len, 0);
    if ((s == owner || (is && mr_gen_same_server(ring->router->servers[s].conf, is))) && wm->older.prev &&
        wm->older.until > ev_now(w->loop)) {
        /* Not moved by the last reload: maybe by the one before. */
        ring = wm->older.prev;
        s = mr_router_server_for_key(ring, key, len, 0);
    }
    if (s == owner || s >= w->nbackends || !w->backends[s])
        return NO_SERVER;
    const mr_server_conf *was = ring->router->servers[s].conf;
    if (was && is && mr_gen_same_server(was, is))
        return NO_SERVER; /* the same memcached under a new id (its connection count changed) */
    return s;
}

/* May a server be read from: not down, not ejected. */
static bool readable(const mr_worker *w, uint32_t s)
{
    const mr_health *h = w->shared ? w->shared->health : NULL;
    return !h || (mr_health_state_of(h, s) == MR_HEALTH_UP &&
                  !__atomic_load_n(&mr_health_server(h, s)->ejected, __ATOMIC_RELAXED));
}

/* The key's previous owner when it is another server this worker can reach
 * and may read from. */
static uint32_t prev_owner(mr_worker *w, const mr_gen *gen, const mr_pool *pool, const char *key, size_t len,
                           uint32_t owner)
{
    uint32_t s = moved_from(w, gen, pool, key, len, owner);
    return s != NO_SERVER && readable(w, s) ? s : NO_SERVER;
}

static int make_line(mr_worker *w, mr_slice *out, uint32_t extra, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A fresh block holding the formatted line and `extra` more bytes of room. */
static int make_line(mr_worker *w, mr_slice *out, uint32_t extra, const char *fmt, ...)
{
    mr_mbuf *mb = mr_mbuf_get(&w->mbufs, MR_KEY_MAX + 96 + extra);
    if (!mb)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(mb->data, mb->cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (uint32_t)n + extra >= mb->cap) {
        mr_mbuf_unref(mb);
        return -1;
    }
    mb->len = (uint32_t)n;
    *out = mr_slice_ref(mb, mb->data, (uint32_t)n);
    mr_mbuf_unref(mb);
    return 0;
}

/* ---- retrievals ---- */

uint32_t mr_warm_retrieval_slots(const mr_req *req)
{
    if (req->cmd != MR_CMD_GET && req->cmd != MR_CMD_GETS && req->cmd != MR_CMD_GAT &&
        req->cmd != MR_CMD_GATS)
        return 0;
    mr_worker *w = req->worker;
    const mr_router *router = w->gen->router;
    uint32_t moved = 0;
    for (uint32_t k = 0; k < req->nkeys; k++) {
        const char *key = req->line.p + req->keys[k].off;
        uint32_t len = req->keys[k].len;
        const mr_pool *pool = mr_router_pool_for_key(router, req->listen_pool, key, len);
        if (mr_pool_replicated(pool))
            return 0; /* replicated pools fail over along their replicas instead */
        if (prev_owner(w, w->gen, pool, key, len, req->key_msg[k]) != NO_SERVER)
            moved++;
    }
    return 2 * moved;
}

/* What send_lookup did. */
typedef enum { LOOKUP_SENT, LOOKUP_SKIPPED, LOOKUP_NOMEM } lookup_result;

/* Read `key` (spelled `spelled` on the wire, base64 when `b64`) from
 * `from`, its previous owner, as a new message of req: `mg <key> v f t`.
 * Skipped while a write's delete there is in flight (the miss stands,
 * counted as a race); LOOKUP_NOMEM when req has no message slot left. */
static lookup_result send_lookup(mr_req *req, const mr_pool *pool, uint32_t from, const char *key,
                                 uint32_t len, const char *spelled, uint32_t spelled_len, bool b64)
{
    mr_worker *w = req->worker;
    uint32_t seq;
    if (!writes_settled(w, req->gen, mr_key_hint(key, len), &seq)) {
        WARM_STAT(w, pool->slot, warm_races);
        return LOOKUP_SKIPPED;
    }
    mr_msg *m = mr_req_add_msg(req);
    if (!m)
        return LOOKUP_NOMEM;
    m->server = from;
    m->warm_seq = seq;
    WARM_STAT(w, pool->slot, warm_lookups);
    if (make_line(w, &m->out[0], 0, "mg %.*s v f t%s\r\n", (int)spelled_len, spelled, b64 ? " b" : "") < 0) {
        mr_msg_finish(m, MR_ERR_NOMEM);
        return LOOKUP_SKIPPED;
    }
    m->nout = 1;
    mr_forward_send(w, mr_key_hint(key, len), m); /* the key's connection, as its writes */
    return LOOKUP_SENT;
}

static const mr_req_ops warm_ops;

void mr_warm_retrieval_arm(mr_req *req)
{
    req->ops = &warm_ops;
}

/* The key a warm message's own line names ("mg <key> ..." / "ms <key> ..."). */
static bool warm_key(const mr_msg *msg, const char **key, uint32_t *len)
{
    const mr_slice *l = &msg->out[0];
    if (l->len < 4)
        return false;
    const char *k = l->p + 3, *end = memchr(k, ' ', l->len - 3);
    if (!end)
        return false;
    *key = k;
    *len = (uint32_t)(end - k);
    return true;
}

static bool key_is(const mr_req *req, uint32_t k, const char *key, uint32_t len)
{
    return req->keys[k].len == len && memcmp(req->line.p + req->keys[k].off, key, len) == 0;
}

/* A batch from a new owner answered: read each key it missed that moved
 * from the key's previous owner. */
static void batch_answered(mr_req *req, mr_msg *msg)
{
    mr_worker *w = req->worker;
    /* Only the worker's current generation's window may be read: an older
     * one's previous generation may be gone (generation.h). */
    if (req->gen != w->gen || !mr_warm_open(w))
        return;
    if (msg->error != MR_ERR_NONE || msg->line.len > 0)
        return; /* the new owner failed: that error stands */
    uint32_t idx = (uint32_t)(msg - req->msgs), cursor = 0;
    const mr_router *router = req->gen->router;
    for (uint32_t k = 0; k < req->nkeys; k++) {
        if (req->key_msg[k] != idx)
            continue;
        const char *key = req->line.p + req->keys[k].off;
        uint32_t len = req->keys[k].len;
        /* Walk the items as emit.c will: a hit stays with its batch. */
        if (cursor < msg->nitems &&
            mr_reply_value_has_key(msg->items[cursor].p, msg->items[cursor].len, key, len)) {
            cursor++;
            continue;
        }
        bool repeated = false;
        for (uint32_t j = 0; j < k && !repeated; j++)
            repeated = req->key_msg[j] == idx && key_is(req, j, key, len);
        if (repeated)
            continue; /* one lookup answers every copy of the key */
        const mr_pool *pool = mr_router_pool_for_key(router, req->listen_pool, key, len);
        uint32_t from = prev_owner(w, req->gen, pool, key, len, msg->server);
        if (from != NO_SERVER && send_lookup(req, pool, from, key, len, key, len, false) == LOOKUP_NOMEM)
            return;
    }
}

static uint32_t pool_slot_of(const mr_worker *w, uint32_t server)
{
    return w->backends[server]->pool->slot;
}

/* The previous owner answered `mg k v f t`: on a hit, copy the value to the
 * new owner (the server of the key's batch). */
static void lookup_answered(mr_req *req, mr_msg *msg)
{
    mr_worker *w = req->worker;
    const char *key;
    uint32_t len;
    const mr_slice *va = &msg->line;
    if (msg->error != MR_ERR_NONE || va->len < 5 || memcmp(va->p, "VA ", 3) != 0 ||
        !warm_key(msg, &key, &len))
        return; /* a miss there too, or a failure: the miss stands */
    uint32_t batch = NO_SERVER;
    for (uint32_t k = 0; k < req->nkeys && batch == NO_SERVER; k++)
        if (key_is(req, k, key, len) && req->msgs[req->key_msg[k]].retrieval)
            batch = req->key_msg[k];
    const char *eol = memchr(va->p, '\r', va->len);
    if (batch == NO_SERVER || !eol)
        return;
    WARM_STAT(w, pool_slot_of(w, req->msgs[batch].server), warm_hits);
    if (write_raced(w, mr_key_hint(key, len), msg->warm_seq)) {
        WARM_STAT(w, pool_slot_of(w, req->msgs[batch].server), warm_races); /* what was read may be gone */
        return;
    }
    unsigned long bytes = strtoul(va->p + 3, NULL, 10), flags = 0;
    long ttl = -1;
    for (const char *p = va->p + 3; p < eol; p++) {
        if (p[0] != ' ' || p + 1 >= eol)
            continue;
        if (p[1] == 'f')
            flags = strtoul(p + 2, NULL, 10);
        else if (p[1] == 't')
            ttl = strtol(p + 2, NULL, 10);
    }
    /* t: seconds left, -1 for never. ms T0 is never; a value about to
     * expire keeps one second. */
    long t = ttl < 0 ? 0 : ttl == 0 ? 1 : ttl;
    uint32_t head = (uint32_t)(eol - va->p) + 2;
    if (head + bytes + 2 != va->len)
        return;
    mr_msg *m = mr_req_add_msg(req);
    if (!m)
        return;
    m->server = req->msgs[batch].server;
    m->warm_seq = msg->warm_seq;
    int rc;
    if (req->cmd == MR_CMD_GAT || req->cmd == MR_CMD_GATS) /* the copy takes the touch's exptime */
        rc = make_line(w, &m->out[0], 0, "ms %.*s %lu F%lu T%.*s ME c\r\n", (int)len, key, bytes, flags,
                       (int)req->head.arg_len, req->line.p + req->head.arg_off);
    else
        rc = make_line(w, &m->out[0], 0, "ms %.*s %lu F%lu T%ld ME c\r\n", (int)len, key, bytes, flags, t);
    if (rc < 0) {
        mr_msg_finish(m, MR_ERR_NOMEM);
        return;
    }
    m->out[1] = mr_slice_ref(va->mb, va->p + head, va->len - head);
    m->nout = 2;
    if (!copy_begin(w, m, mr_key_hint(key, len))) {
        WARM_STAT(w, pool_slot_of(w, m->server), warm_races);
        m->warm_raced = true;
        mr_msg_finish(m, MR_ERR_UNAVAILABLE);
        return;
    }
    mr_forward_send(w, mr_key_hint(key, len), m);
}

/* The undo of a raced copy is over: so is the copy. */
static void undo_finished(mr_req *req, mr_msg *msg, int err)
{
    (void)msg;
    (void)err;
    copy_end(req->worker, req->conn_hint);
}

static const mr_req_ops undo_ops = {.finished = undo_finished};

/* The copy was stored (HD c<cas>) but a write of the key started after
 * its lookup: that write may have reached the new owner before the copy
 * (it went on another connection), so the copy is undone there, and only
 * if it is still the copy (`md <key> C<cas>`: a later write has another
 * CAS). The client that asked gets the miss. */
static bool copy_raced_raw(mr_worker *w, mr_msg *copy, const char *key, uint32_t len, const char *raw,
                           uint32_t raw_len, bool b64, unsigned long long cas)
{
    uint32_t hint = mr_key_hint(key, len);
    if (!write_raced(w, hint, copy->warm_seq))
        return false;
    copy->warm_raced = true;
    WARM_STAT(w, pool_slot_of(w, copy->server), warm_races);
    mr_req *undo = mr_req_new_background(w, &undo_ops);
    if (!undo)
        return true;
    if (mr_req_alloc_msgs(undo, 1) < 0) {
        mr_req_client_done(undo);
        return true;
    }
    copy->warm_counted = false; /* the undo's end ends the copy's count */
    mr_msg *m = &undo->msgs[0];
    m->server = copy->server;
    undo->conn_hint = hint;
    if (make_line(w, &m->out[0], 0, "md %.*s C%llu%s\r\n", (int)raw_len, raw, cas, b64 ? " b" : "") < 0) {
        mr_msg_finish(m, MR_ERR_NOMEM);
    } else {
        m->nout = 1;
        mr_forward_send(w, hint, m); /* behind the copy, on its connection */
    }
    mr_req_dispatched(undo);
    return true;
}

/* The lookup of a key (its `mg` message), found by the key its line names. */
static const mr_msg *lookup_of(const mr_req *req, const char *key, uint32_t len)
{
    for (uint32_t i = 0; i < req->nmsgs; i++) {
        const mr_msg *m = &req->msgs[i];
        const char *k;
        uint32_t klen;
        if (!m->retrieval && m->out[0].len > 3 && memcmp(m->out[0].p, "mg ", 3) == 0 &&
            warm_key(m, &k, &klen) && klen == len && memcmp(k, key, len) == 0)
            return m;
    }
    return NULL;
}

/* The new owner stored the copy (HD c<cas>): the client gets the value from
 * this message, as a VALUE item. NS (the key was written there since) or a
 * failure leaves the miss. */
static void copy_answered(mr_req *req, mr_msg *msg)
{
    mr_worker *w = req->worker;
    const char *key;
    uint32_t len;
    if (msg->error != MR_ERR_NONE || msg->line.len < 4 || memcmp(msg->line.p, "HD", 2) != 0 ||
        !warm_key(msg, &key, &len))
        return;
    const mr_msg *lookup = lookup_of(req, key, len);
    if (!lookup)
        return;
    const mr_slice *va = &lookup->line;
    const char *eol = memchr(va->p, '\r', va->len);
    unsigned long long cas = 0;
    const char *c = memmem(msg->line.p, msg->line.len, " c", 2);
    if (c)
        cas = strtoull(c + 2, NULL, 10);
    if (copy_raced_raw(w, msg, key, len, key, len, false, cas))
        return;
    unsigned long bytes = strtoul(va->p + 3, NULL, 10), flags = 0;
    for (const char *p = va->p + 3; p < eol; p++)
        if (p[0] == ' ' && p + 1 < eol && p[1] == 'f')
            flags = strtoul(p + 2, NULL, 10);
    uint32_t head = (uint32_t)(eol - va->p) + 2;
    uint32_t data_len = va->len - head; /* value and its \r\n */
    uint32_t slot = pool_slot_of(w, msg->server);
    WARM_STAT(w, slot, warm_copies);
    mr_slice item;
    if (req->cmd == MR_CMD_GETS || req->cmd == MR_CMD_GATS) {
        if (make_line(w, &item, data_len, "VALUE %.*s %lu %lu %llu\r\n", (int)len, key, flags, bytes, cas) <
            0)
            return;
    } else if (make_line(w, &item, data_len, "VALUE %.*s %lu %lu\r\n", (int)len, key, flags, bytes) < 0) {
        return;
    }
    memcpy(item.mb->data + item.len, va->p + head, data_len);
    item.mb->len += data_len;
    uint32_t at = (uint32_t)(msg - req->msgs);
    for (uint32_t k = 0; k < req->nkeys; k++) {
        if (!key_is(req, k, key, len) || !req->msgs[req->key_msg[k]].retrieval)
            continue;
        if (mr_msg_add_item(msg, item.mb, item.p, item.len + data_len) < 0)
            break; /* out of memory: the keys left miss */
        req->key_msg[k] = at;
    }
    mr_slice_release(&item);
    /* The line was ours (HD), not the client's: what is left is the items. */
    mr_slice_release(&msg->line);
    msg->line = (mr_slice){0};
}

/* A copy answered: `answered` looks at it, then its count ends (unless its
 * undo now carries it). */
static void copy_over(mr_req *req, mr_msg *msg, void (*answered)(mr_req *, mr_msg *))
{
    answered(req, msg);
    const char *key;
    uint32_t len;
    if (msg->warm_counted && warm_key(msg, &key, &len)) {
        msg->warm_counted = false;
        copy_end(req->worker, mr_key_hint(key, len));
    }
}

static void warm_answered(mr_req *req, mr_msg *msg)
{
    if (msg->retrieval)
        batch_answered(req, msg);
    else if (msg->out[0].len > 3 && memcmp(msg->out[0].p, "mg ", 3) == 0)
        lookup_answered(req, msg);
    else if (msg->out[0].len > 3 && memcmp(msg->out[0].p, "ms ", 3) == 0)
        copy_over(req, msg, copy_answered);
}

static const mr_req_ops warm_ops = {.answered = warm_answered};

/* ---- meta gets ---- */

/* A warmed mg's messages, in the order they are added: the client's line
 * to the new owner, the lookup, then the copy and the client's line again. */
enum { MG_FIRST, MG_LOOKUP, MG_COPY, MG_AGAIN, MG_SLOTS };

/* The key of the request's line, decoded when it is base64 (into buf). */
static bool request_key(const mr_req *req, char *buf, size_t cap, const char **key, uint32_t *len)
{
    const mr_request_head *h = &req->head;
    *key = req->line.p + h->key_off;
    *len = h->key_len;
    if (!h->meta_base64)
        return true;
    long n = mr_base64_decode(*key, *len, buf, cap);
    if (n < 0)
        return false;
    *key = buf;
    *len = (uint32_t)n;
    return true;
}

/* Does the client's mg line carry the flag `f` (a token after the key)? */
static bool mg_has_flag(const mr_req *req, char f)
{
    const mr_request_head *h = &req->head;
    const char *p = req->line.p + h->key_off + h->key_len, *end = req->line.p + h->end_off;
    for (; p + 1 < end; p++)
        if (p[0] == ' ' && p[1] == f)
            return true;
    return false;
}

static bool code_is(const mr_slice *l, const char *code)
{
    return l->len >= 2 && l->p[0] == code[0] && l->p[1] == code[1] &&
           (l->len == 2 || l->p[2] == ' ' || l->p[2] == '\r');
}

/* The client's mg missed on the key's new owner: read the previous one. */
static void mg_missed(mr_req *req, mr_msg *msg)
{
    mr_worker *w = req->worker;
    if (req->gen != w->gen || !mr_warm_open(w) || msg->error != MR_ERR_NONE || !code_is(&msg->line, "EN"))
        return;
    char buf[MR_KEY_MAX * 2];
    const char *key;
    uint32_t len;
    if (!request_key(req, buf, sizeof(buf), &key, &len))
        return;
    const mr_pool *pool = mr_router_pool_for_key(req->gen->router, req->listen_pool, key, len);
    uint32_t from = prev_owner(w, req->gen, pool, key, len, msg->server);
    const mr_request_head *h = &req->head;
    if (from != NO_SERVER)
        send_lookup(req, pool, from, key, len, req->line.p + h->key_off, h->key_len, h->meta_base64);
}

/* The previous owner answered: on a hit, send the copy (`ms ... ME c`) and
 * the client's line again behind it to the new owner, on one connection. */
static void mg_lookup_answered(mr_req *req, mr_msg *msg)
{
    mr_worker *w = req->worker;
    const mr_slice *va = &msg->line;
    if (msg->error != MR_ERR_NONE || va->len < 5 || memcmp(va->p, "VA ", 3) != 0)
        return;
    const char *eol = memchr(va->p, '\r', va->len);
    if (!eol)
        return;
    char buf[MR_KEY_MAX * 2];
    const char *key;
    uint32_t len;
    if (!request_key(req, buf, sizeof(buf), &key, &len))
        return;
    const mr_msg *first = &req->msgs[MG_FIRST];
    uint32_t slot = pool_slot_of(w, first->server), hint = mr_key_hint(key, len);
    WARM_STAT(w, slot, warm_hits);
    if (write_raced(w, hint, msg->warm_seq)) {
        WARM_STAT(w, slot, warm_races);
        return;
    }
    unsigned long bytes = strtoul(va->p + 3, NULL, 10), flags = 0;
    long ttl = -1;
    for (const char *p = va->p + 3; p < eol; p++) {
        if (p[0] != ' ' || p + 1 >= eol)
            continue;
        if (p[1] == 'f')
            flags = strtoul(p + 2, NULL, 10);
        else if (p[1] == 't')
            ttl = strtol(p + 2, NULL, 10);
    }
    uint32_t head = (uint32_t)(eol - va->p) + 2;
    if (head + bytes + 2 != va->len)
        return;
    mr_msg *copy = mr_req_add_msg(req);
    if (!copy)
        return;
    copy->server = first->server;
    copy->warm_seq = msg->warm_seq;
    const mr_request_head *h = &req->head;
    if (make_line(w, &copy->out[0], 0, "ms %.*s %lu F%lu T%ld ME c%s\r\n", (int)h->key_len,
                  req->line.p + h->key_off, bytes, flags,
                  ttl < 0    ? 0
                  : ttl == 0 ? 1
                             : ttl,
                  h->meta_base64 ? " b" : "") < 0) {
        mr_msg_finish(copy, MR_ERR_NOMEM);
        return;
    }
    copy->out[1] = mr_slice_ref(va->mb, va->p + head, va->len - head);
    copy->nout = 2;
    mr_msg *again = mr_req_add_msg(req);
    if (!again) {
        mr_msg_finish(copy, MR_ERR_NOMEM);
        return;
    }
    again->server = first->server;
    again->out[0] = mr_slice_ref(first->out[0].mb, first->out[0].p, first->out[0].len);
    again->nout = 1;
    if (!copy_begin(w, copy, hint)) {
        WARM_STAT(w, slot, warm_races);
        copy->warm_raced = true;
        mr_msg_finish(copy, MR_ERR_UNAVAILABLE);
        mr_msg_finish(again, MR_ERR_UNAVAILABLE);
        return;
    }
    mr_forward_send(w, hint, copy);
    mr_forward_send(w, hint, again);
}

static void mg_copy_answered(mr_req *req, mr_msg *msg)
{
    mr_worker *w = req->worker;
    if (msg->error != MR_ERR_NONE || !code_is(&msg->line, "HD"))
        return; /* NS: the key was written there since; the line sent again reads that */
    const char *c = memmem(msg->line.p, msg->line.len, " c", 2);
    unsigned long long cas = c ? strtoull(c + 2, NULL, 10) : 0;
    const mr_request_head *h = &req->head;
    char buf[MR_KEY_MAX * 2];
    const char *key;
    uint32_t len;
    if (!request_key(req, buf, sizeof(buf), &key, &len))
        return;
    if (!c || copy_raced_raw(w, msg, key, len, req->line.p + h->key_off, h->key_len, h->meta_base64, cas))
        return;
    WARM_STAT(w, pool_slot_of(w, msg->server), warm_copies);
}

/* The client's line again, right behind the copy: unless the copy was
 * undone, its answer (a hit) is the client's reply. */
static void mg_again_answered(mr_req *req, mr_msg *msg)
{
    if (req->msgs[MG_COPY].warm_raced || msg->error != MR_ERR_NONE || msg->line.len == 0 ||
        code_is(&msg->line, "EN") || mr_reply_is_error(msg->line.p, msg->line.len))
        return;
    req->reply_msg = MG_AGAIN;
}

static void mg_answered(mr_req *req, mr_msg *msg)
{
    switch (msg - req->msgs) {
    case MG_FIRST:
        mg_missed(req, msg);
        break;
    case MG_LOOKUP:
        mg_lookup_answered(req, msg);
        break;
    case MG_COPY:
        copy_over(req, msg, mg_copy_answered);
        break;
    default:
        mg_again_answered(req, msg);
        break;
    }
}

static const mr_req_ops warm_mg_ops = {.answered = mg_answered};

/* An mg of a moved key: warmed when it misses, unless it has N (a miss
 * there creates the item: nothing to warm) or memcached applies its q. */
static uint32_t mg_slots(mr_req *req, const mr_pool *pool, const char *key, size_t key_len, uint32_t owner)
{
    if (req->head.quiet_by_server || mg_has_flag(req, 'N') ||
        prev_owner(req->worker, req->worker->gen, pool, key, key_len, owner) == NO_SERVER)
        return 0;
    req->ops = &warm_mg_ops;
    return MG_SLOTS - 1;
}

/* ---- writes ---- */

/* A write's delete on the previous owner is over: answered, or lost. */
static void stale_delete_finished(mr_req *req, mr_msg *msg, int err)
{
    mr_worker *w = req->worker;
    if (err != MR_ERR_NONE || msg->error != MR_ERR_NONE || msg->line.len == 0 ||
        mr_reply_is_error(msg->line.p, msg->line.len))
        writes_lost(w, req->gen, req->conn_hint); /* it may still hold the old value */
    mr_key_writes *kw = writes_of(w, req->conn_hint);
    if (kw)
        __atomic_add_fetch(&kw->finished, 1, __ATOMIC_ACQ_REL);
}

static const mr_req_ops stale_delete_ops = {.finished = stale_delete_finished};

/* One delete of a written key on a server of its previous generation,
 * counted as started on the stripe `kw` by the caller: sent, or (the
 * server is down or ejected now and may be read again later, or memory
 * ran out) counted as finished at once with the stripe marked lost. */
static void stale_delete_to(mr_req *req, const mr_pool *pool, uint32_t hint, uint32_t from, mr_key_writes *kw)
{
    mr_worker *w = req->worker;
    mr_req *del = NULL;
    if (!readable(w, from) || !(del = mr_req_new_background(w, &stale_delete_ops)) ||
        mr_req_alloc_msgs(del, 1) < 0) {
        writes_lost(w, w->gen, hint);
        if (kw)
            __atomic_add_fetch(&kw->finished, 1, __ATOMIC_SEQ_CST);
        if (del)
            mr_req_client_done(del);
        return;
    }
    const mr_request_head *h = &req->head;
    /* The key as the client wrote it (base64 for meta b). */
    const char *raw = req->line.p + h->key_off;
    bool b64 = req->cls == MR_CLASS_META_KEYED && h->meta_base64;
    del->conn_hint = hint;
    mr_msg *m = &del->msgs[0];
    m->server = from;
    WARM_STAT(w, pool->slot, warm_stale_deletes);
    if (make_line(w, &m->out[0], 0, b64 ? "md %.*s b\r\n" : "delete %.*s\r\n", (int)h->key_len, raw) < 0) {
        mr_msg_finish(m, MR_ERR_NOMEM);
    } else {
        m->nout = 1;
        mr_forward_send(w, del->conn_hint, m);
    }
    mr_req_dispatched(del);
}

/* A write of a moved key: counted on its stripe, and its delete sent to
 * the previous owner. Returns true when warm copies of the stripe were in
 * flight as it counted itself: its reply waits for them (mr_warm_dispatched). */
static bool stale_delete(mr_req *req, const mr_pool *pool, const char *key, size_t key_len, uint32_t owner)
{
    mr_worker *w = req->worker;
    uint32_t from = moved_from(w, w->gen, pool, key, key_len, owner), hint = mr_key_hint(key, key_len);
    if (from == NO_SERVER)
        return false;
    mr_key_writes *kw = writes_of(w, hint);
    bool hold = false;
    if (kw) { /* counted before the delete is sent: a lookup from now on waits for it */
        __atomic_add_fetch(&kw->started, 1, __ATOMIC_SEQ_CST);
        hold = __atomic_load_n(&kw->copies, __ATOMIC_SEQ_CST) != 0;
    }
    stale_delete_to(req, pool, hint, from, kw);
    return hold;
}

/* ---- writes holding their reply for warm copies ---- */

/* A held write is let go at the latest after this long (seconds): copies
 * end by their server's timeout well before. */
#define HOLD_MAX 2.0
/* How often a held write looks at its stripe again (seconds): copies of
 * another worker end there. */
#define HOLD_POLL 0.0002

static bool copies_out(mr_worker *w, uint32_t hint)
{
    mr_key_writes *kw = writes_of(w, hint);
    return kw && __atomic_load_n(&kw->copies, __ATOMIC_SEQ_CST) != 0;
}

/* Let the held writes whose stripe has no copy left go (all: every one). */
static void held_release(mr_worker *w, bool all)
{
    mr_req **p = &w->warm_held, *go = NULL, **tail = &go;
    ev_tstamp now = ev_now(w->loop);
    while (*p) {
        mr_req *req = *p;
        if (all || !copies_out(w, req->warm_hint) || now - req->warm_held_at > HOLD_MAX) {
            *p = req->park_next;
            req->park_next = NULL;
            *tail = req; /* released after the walk: a release may end more copies */
            tail = &req->park_next;
        } else {
            p = &req->park_next;
        }
    }
    if (!w->warm_held)
        ev_timer_stop(w->loop, &w->warm_poll);
    while (go) {
        mr_req *next = go->park_next;
        go->park_next = NULL;
        mr_req_dispatched(go);
        go = next;
    }
}

static void warm_poll_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    held_release(t->data, false);
}

void mr_warm_dispatched(mr_req *req)
{
    mr_worker *w = req->worker;
    if (!copies_out(w, req->warm_hint)) {
        mr_req_dispatched(req);
        return;
    }
    req->warm_held_at = ev_now(w->loop);
    req->park_next = w->warm_held;
    w->warm_held = req;
    if (!ev_is_active(&w->warm_poll)) {
        ev_timer_init(&w->warm_poll, warm_poll_cb, HOLD_POLL, HOLD_POLL);
        w->warm_poll.data = w;
        ev_timer_start(w->loop, &w->warm_poll);
    }
}

void mr_warm_release_all(mr_worker *w)
{
    if (w->warm_held)
        held_release(w, true);
}

uint32_t mr_warm_keyed(mr_req *req, const mr_pool *pool, const char *key, size_t key_len, uint32_t owner,
                       bool *hold)
{
    switch (req->cmd) {
    case MR_CMD_MG:
        return mg_slots(req, pool, key, key_len, owner);
    case MR_CMD_ME:
        return 0; /* a read */
    default:
        *hold = stale_delete(req, pool, key, key_len, owner);
        req->warm_hint = mr_key_hint(key, key_len);
        return 0;
    }
}

/* ---- replicated pools ---- */

/* The members of the key's replica set in the previous generation (or,
 * when that set has none, in the one before, while its window is open)
 * that are not in `set` (the new set) and that this worker has a backend
 * for, into out; how many. */
static uint32_t prev_only(mr_worker *w, const mr_gen *gen, const mr_pool *pool, const char *key, size_t len,
                          const uint32_t *set, uint32_t n, uint32_t *out)
{
    if (!gen->warm || pool->index >= gen->cfg->npools)
        return 0;
    const mr_gen_warm *wm = &gen->warm[pool->index];
    ev_tstamp now = ev_now(w->loop);
    if (!wm->prev || wm->until <= now)
        return 0;
    const mr_pool *rings[2] = {wm->prev, wm->older.prev && wm->older.until > now ? wm->older.prev : NULL};
    for (uint32_t r = 0; r < 2 && rings[r]; r++) {
        uint32_t was[MR_MAX_REPLICAS], nwas, k = 0;
        nwas = mr_router_replicas_for_key(rings[r], key, len, 0, was, MR_MAX_REPLICAS);
        for (uint32_t i = 0; i < nwas; i++) {
            uint32_t s = was[i];
            const mr_server_conf *sc = rings[r]->router->servers[s].conf;
            bool kept = s >= w->nbackends || !w->backends[s];
            for (uint32_t j = 0; j < n && !kept; j++) {
                const mr_server_conf *is = gen->router->servers[set[j]].conf;
                kept = set[j] == s || (sc && is && mr_gen_same_server(sc, is));
            }
            if (!kept)
                out[k++] = s;
        }
        if (k)
            return k;
    }
    return 0;
}

void mr_warm_repl_write(mr_req *req, const mr_pool *pool, const char *key, size_t key_len)
{
    mr_worker *w = req->worker;
    uint32_t from[MR_MAX_REPLICAS];
    uint32_t n = prev_only(w, w->gen, pool, key, key_len, req->replicas, req->nreplicas, from);
    uint32_t hint = mr_key_hint(key, key_len);
    mr_key_writes *kw = writes_of(w, hint);
    for (uint32_t i = 0; i < n; i++) {
        if (kw) /* before the delete goes out, and before the write may take its stripe */
            __atomic_add_fetch(&kw->started, 1, __ATOMIC_SEQ_CST);
        stale_delete_to(req, pool, hint, from[i], kw);
    }
}

/* Read `key`, which its new set (set, n) missed, from a live member of
 * its previous set that is not in the new one. */
static void repl_lookup(mr_req *req, const char *key, uint32_t len, const uint32_t *set, uint32_t n)
{
    mr_worker *w = req->worker;
    uint32_t from[MR_MAX_REPLICAS];
    const mr_pool *pool = mr_router_pool_for_key(req->gen->router, req->listen_pool, key, len);
    uint32_t nfrom = prev_only(w, req->gen, pool, key, len, set, n, from), pick = NO_SERVER;
    for (uint32_t i = 0; i < nfrom && pick == NO_SERVER; i++)
        if (readable(w, from[i]))
            pick = from[i]; /* any live member: one that is down or ejected answers as a miss */
    if (pick != NO_SERVER)
        send_lookup(req, pool, pick, key, len, key, len, false);
}

uint32_t mr_warm_repl_read_slots(const mr_req *req)
{
    if (req->cmd == MR_CMD_GET)
        return 1;
    /* mg: not with a base64 key (the copy is a classic add) */
    return req->cmd == MR_CMD_MG && !req->head.meta_base64 && !req->head.quiet_by_server ? 2 : 0;
}

void mr_warm_repl_missed(mr_req *req, mr_msg *msg)
{
    mr_worker *w = req->worker;
    (void)msg;
    if (mr_warm_repl_read_slots(req) == 0 || req->gen != w->gen || !mr_warm_open(w))
        return;
    repl_lookup(req, req->line.p + req->head.key_off, req->head.key_len, req->replicas, req->nreplicas);
}

/* A batch of a replicated multi-key read answered: each key still on it
 * that missed is read from a live member of its previous set. */
static void repl_batch_lookups(mr_req *req, mr_msg *msg)
{
    mr_worker *w = req->worker;
    if (msg->line.len > 0)
        return;
    uint32_t idx = (uint32_t)(msg - req->msgs), cursor = 0;
    for (uint32_t k = 0; k < req->nkeys; k++) {
        if (req->key_msg[k] != idx)
            continue;
        const char *key = req->line.p + req->keys[k].off;
        uint32_t len = req->keys[k].len;
        if (cursor < msg->nitems &&
            mr_reply_value_has_key(msg->items[cursor].p, msg->items[cursor].len, key, len)) {
            cursor++; /* a hit stays with its batch */
            continue;
        }
        bool repeated = false;
        for (uint32_t j = 0; j < k && !repeated; j++)
            repeated = req->key_msg[j] == idx && key_is(req, j, key, len);
        if (repeated)
            continue;
        const mr_pool *pool = mr_router_pool_for_key(req->gen->router, req->listen_pool, key, len);
        if (req->cmd != MR_CMD_GET && !mr_pool_replicated(pool))
            continue; /* a key routed to a pool not replicated: its writes take no stripe to order a copy */
        uint32_t set[MR_MAX_REPLICAS];
        uint32_t n = mr_router_replicas_for_key(pool, key, len, mr_rng_next(&w->rng), set, MR_MAX_REPLICAS);
        repl_lookup(req, key, len, set, n);
    }
}

void mr_warm_repl_batch_missed(mr_req *req, mr_msg *msg)
{
    if (req->cmd == MR_CMD_GET)
        repl_batch_lookups(req, msg);
}

/* A hit on the previous set: the copy is an `add` of the value with its
 * flags and `exptime` (add's: 0 never), written to the new set through replication
 * (replicate.c: the primary, then a `set` to the others), in the key's
 * stripe like any write to it. */
static void repl_copy(mr_req *req, const mr_pool *pool, const char *key, uint32_t len, unsigned long flags,
                      long exptime, const char *data, uint32_t data_len, uint32_t seq)
{
    mr_worker *w = req->worker;
    mr_req *bg = mr_req_new_background(w, NULL);
    if (!bg)
        return;
    mr_mbuf *mb = mr_mbuf_get(&w->mbufs, len + 64 + data_len);
    int n = mb ? snprintf(mb->data, mb->cap, "add %.*s %lu %ld %u\r\n", (int)len, key, flags, exptime,
                          data_len - 2)
               : -1;
    if (n < 0 || (uint32_t)n + data_len > mb->cap) {
        mr_mbuf_unref(mb);
        mr_req_client_done(bg);
        return;
    }
    memcpy(mb->data + n, data, data_len);
    mb->len = (uint32_t)n + data_len;
    bg->line = mr_slice_ref(mb, mb->data, mb->len);
    mr_mbuf_unref(mb);
    bg->cls = MR_CLASS_STORAGE;
    bg->cmd = MR_CMD_ADD;
    bg->listen_pool = req->listen_pool;
    bg->head.key_off = 4;
    bg->head.key_len = len;
    bg->head.line_len = (uint32_t)n;
    bg->head.data_len = data_len;
    bg->warm_copy = true;
    bg->warm_copy_seq = seq;
    mr_replicate_keyed(bg, pool, key, len);
}

static bool in_set(const mr_req *req, uint32_t server)
{
    for (uint32_t i = 0; i < req->nreplicas; i++)
        if (req->replicas[i] == server)
            return true;
    return false;
}

/* A replicated mg hit on the previous set: the copy, then the client's own
 * line to the new primary on the key's connection, behind the copy's add
 * (when the copy had to wait for the key's stripe, the line comes first
 * and misses). Its answer, a hit, is memcached's reply for the flags asked. */
/* A message of req to the key's new primary, the copy's (NULL: none). */
static mr_msg *again_to_new_primary(mr_req *req, const mr_pool *pool, const char *key, uint32_t len)
{
    uint32_t set[MR_MAX_REPLICAS];
    if (mr_router_replicas_for_key(pool, key, len, mr_rng_next(&req->worker->rng), set, MR_MAX_REPLICAS) == 0)
        return NULL;
    mr_msg *again = mr_req_add_msg(req);
    if (again)
        again->server = set[0];
    return again;
}

static void repl_mg_again(mr_req *req, const mr_pool *pool, const char *key, uint32_t len)
{
    mr_worker *w = req->worker;
    mr_msg *again = again_to_new_primary(req, pool, key, len);
    if (!again)
        return;
    const mr_msg *first = &req->msgs[0];
    again->out[0] = mr_slice_ref(first->out[0].mb, first->out[0].p, first->out[0].len);
    again->nout = 1;
    req->warm_again = (uint8_t)(again - req->msgs + 1);
    mr_forward_send(w, req->conn_hint, again);
}

/* add's exptime for a value memcached's `mg t` said has `ttl` seconds left
 * (-1: never). One about to expire keeps one second. */
static long ttl_exptime(long ttl)
{
    return ttl < 0 ? 0 : ttl == 0 ? 1 : ttl;
}

/* The exptime the client's own command sets on a hit (gat/gats: its
 * exptime; mg: its T flag), when it sets one that is not negative. A
 * negative one has memcached answer and then expire the item: the copy
 * keeps the remaining TTL, and the line sent again applies the touch. */
static bool touch_exptime(const mr_req *req, long *exptime)
{
    const char *p = NULL, *end = NULL;
    if (req->cmd == MR_CMD_GAT || req->cmd == MR_CMD_GATS) {
        p = req->line.p + req->head.arg_off;
        end = p + req->head.arg_len;
    } else if (req->cmd == MR_CMD_MG) {
        const mr_request_head *h = &req->head;
        const char *q = req->line.p + h->key_off + h->key_len, *e = req->line.p + h->end_off;
        for (; q + 1 < e && !p; q++)
            if (q[0] == ' ' && q[1] == 'T')
                p = q + 2;
        for (end = p; end && end < e && *end >= '0' && *end <= '9'; end++)
            ;
    }
    if (!p || end == p || *p < '0' || *p > '9')
        return false;
    *exptime = strtol(p, NULL, 10);
    return true;
}

/* A replicated gets/gat/gats hit on the previous set, copied: the client's
 * command for this key alone (its own command word and, for gat/gats, its
 * exptime), sent to the new primary on the key's connection, behind the
 * copy's add. Its answer is memcached's: gets with the new primary's CAS,
 * gat/gats with the touch applied. (When the copy had to wait for the
 * key's stripe, this line comes first and misses: the key is a miss.) */
static void repl_key_again(mr_req *req, const mr_pool *pool, const char *key, uint32_t len)
{
    mr_worker *w = req->worker;
    mr_msg *again = again_to_new_primary(req, pool, key, len);
    if (!again)
        return;
    again->retrieval = true;
    if (make_line(w, &again->out[0], 0, "%.*s%.*s\r\n", (int)req->head.keys_off, req->line.p, (int)len, key) <
        0) {
        mr_msg_finish(again, MR_ERR_NOMEM);
        return;
    }
    again->nout = 1;
    mr_forward_send(w, mr_key_hint(key, len), again);
}

bool mr_warm_repl_answered(mr_req *req, mr_msg *msg)
{
    uint32_t idx = (uint32_t)(msg - req->msgs);
    if (req->warm_again && idx + 1 == req->warm_again) {
        if (msg->error == MR_ERR_NONE && msg->line.len > 0 && !code_is(&msg->line, "EN") &&
            !mr_reply_is_error(msg->line.p, msg->line.len))
            req->reply_msg = idx; /* the new primary's own reply for the hit */
        return true;
    }
    bool again = req->cmd == MR_CMD_GETS || req->cmd == MR_CMD_GAT || req->cmd == MR_CMD_GATS;
    if ((req->cmd != MR_CMD_GET && req->cmd != MR_CMD_MG && !again) || msg->out[0].len < 3 ||
        memcmp(msg->out[0].p, "mg ", 3) != 0 || (req->cmd == MR_CMD_MG && in_set(req, msg->server)))
        return false;
    mr_worker *w = req->worker;
    const mr_slice *va = &msg->line;
    const char *eol = va->len > 5 ? memchr(va->p, '\r', va->len) : NULL;
    if (msg->error != MR_ERR_NONE || !eol || memcmp(va->p, "VA ", 3) != 0)
        return true; /* a miss there too, or a failure: the miss stands */
    const char *key = req->line.p + req->head.key_off;
    uint32_t len = req->head.key_len;
    if (req->key_msg && !warm_key(msg, &key, &len))
        return true; /* a multi-key get: the key its line names */
    const mr_pool *pool = mr_router_pool_for_key(req->gen->router, req->listen_pool, key, len);
    WARM_STAT(w, pool->slot, warm_hits);
    if (write_raced(w, mr_key_hint(key, len), msg->warm_seq)) {
        WARM_STAT(w, pool->slot, warm_races);
        return true;
    }
    unsigned long bytes = strtoul(va->p + 3, NULL, 10), flags = 0;
    long ttl = -1;
    for (const char *p = va->p + 3; p < eol; p++) {
        if (p[0] != ' ' || p + 1 >= eol)
            continue;
        if (p[1] == 'f')
            flags = strtoul(p + 2, NULL, 10);
        else if (p[1] == 't')
            ttl = strtol(p + 2, NULL, 10);
    }
    uint32_t head = (uint32_t)(eol - va->p) + 2, data_len = va->len - head;
    if (bytes + 2 != data_len)
        return true;
    long exptime;
    if (!touch_exptime(req, &exptime)) /* gat/gats, mg T: the whole new set takes the touch's exptime */
        exptime = ttl_exptime(ttl);
    if (req->cmd == MR_CMD_MG || again) {
        repl_copy(req, pool, key, len, flags, exptime, va->p + head, data_len, msg->warm_seq);
        if (again)
            repl_key_again(req, pool, key, len);
        else
            repl_mg_again(req, pool, key, len);
        return true;
    }
    mr_slice item;
    if (make_line(w, &item, data_len, "VALUE %.*s %lu %lu\r\n", (int)len, key, flags, bytes) < 0)
        return true;
    memcpy(item.mb->data + item.len, va->p + head, data_len);
    item.mb->len += data_len;
    uint32_t at = (uint32_t)(msg - req->msgs);
    bool given = false;
    if (!req->key_msg) {
        given = mr_msg_add_item(msg, item.mb, item.p, item.len + data_len) == 0;
        req->reply_msg = at; /* the client's value */
    } else {
        /* Every copy of the key in the client's line takes its value from here. */
        for (uint32_t k = 0; k < req->nkeys; k++) {
            if (!key_is(req, k, key, len) || !req->msgs[req->key_msg[k]].retrieval)
                continue;
            if (mr_msg_add_item(msg, item.mb, item.p, item.len + data_len) < 0)
                break; /* out of memory: the keys left miss */
            req->key_msg[k] = at;
            given = true;
        }
    }
    if (given) {
        msg->retrieval = true;
        repl_copy(req, pool, key, len, flags, exptime, va->p + head, data_len, msg->warm_seq);
        /* The line was ours (VA), not the client's: what is left is the item. */
        mr_slice_release(&msg->line);
        msg->line = (mr_slice){0};
    }
    mr_slice_release(&item);
    return true;
}

/* ---- replicated primary reads: gets gat gats, mg with T or E ---- */

uint32_t mr_warm_repl_retrieval_slots(const mr_req *req)
{
    if (req->bin_run)
        return 0; /* a binary GETQ/GETKQ run fails over as get does, and is not warmed */
    if (req->cmd == MR_CMD_GET)
        return req->nkeys; /* a lookup per key at most */
    if (req->cmd != MR_CMD_GETS && req->cmd != MR_CMD_GAT && req->cmd != MR_CMD_GATS)
        return 0;
    mr_worker *w = req->worker;
    uint32_t moved = 0;
    for (uint32_t k = 0; k < req->nkeys; k++) {
        const char *key = req->line.p + req->keys[k].off;
        uint32_t len = req->keys[k].len, set[MR_MAX_REPLICAS], from[MR_MAX_REPLICAS];
        const mr_pool *pool = mr_router_pool_for_key(w->gen->router, req->listen_pool, key, len);
        if (!mr_pool_replicated(pool))
            continue; /* not warmed here (repl_batch_lookups) */
        uint32_t n = mr_router_replicas_for_key(pool, key, len, mr_rng_next(&w->rng), set, MR_MAX_REPLICAS);
        if (prev_only(w, w->gen, pool, key, len, set, n, from))
            moved++;
    }
    return 2 * moved; /* the lookup, and the key's line sent again */
}

/* A message of a warmed replicated gets/gat/gats: a lookup (mg), a batch
 * (some key takes its reply from it: its misses that moved are looked up),
 * or a key's line sent again after its copy (no key uses it yet: on a hit,
 * every copy of the key in the client's line takes its reply from it). */
static void repl_primary_get_answered(mr_req *req, mr_msg *msg)
{
    if (!msg->retrieval) {
        mr_warm_repl_answered(req, msg);
        return;
    }
    uint32_t at = (uint32_t)(msg - req->msgs);
    bool batch = false;
    for (uint32_t k = 0; k < req->nkeys && !batch; k++)
        batch = req->key_msg[k] == at;
    if (batch) {
        mr_worker *w = req->worker;
        if (req->gen == w->gen && mr_warm_open(w) && msg->error == MR_ERR_NONE)
            repl_batch_lookups(req, msg);
        return;
    }
    if (msg->error != MR_ERR_NONE || msg->line.len > 0 || msg->nitems != 1 ||
        msg->out[0].len < req->head.keys_off + 2)
        return; /* a miss (the copy lost to a write, or waited), or a failure: the miss stands */
    const char *key = msg->out[0].p + req->head.keys_off;
    uint32_t len = msg->out[0].len - req->head.keys_off - 2;
    mr_slice item = msg->items[0]; /* its block stays referenced by items[0] */
    uint32_t given = 0;
    for (uint32_t k = 0; k < req->nkeys; k++) {
        if (!key_is(req, k, key, len) || req->key_msg[k] == at)
            continue;
        if (given && mr_msg_add_item(msg, item.mb, item.p, item.len) < 0)
            break; /* out of memory: the copies left miss */
        req->key_msg[k] = at;
        given++;
    }
}

static const mr_req_ops warm_repl_primary_get_ops = {.answered = repl_primary_get_answered};

void mr_warm_repl_retrieval_arm(mr_req *req)
{
    req->ops = &warm_repl_primary_get_ops;
}

/* A warmed primary-read mg: the lookup and the line sent again are
 * warm-up's; a miss (EN) of the client's line reads the previous set. */
static void repl_primary_mg_answered(mr_req *req, mr_msg *msg)
{
    if (mr_warm_repl_answered(req, msg))
        return;
    if (msg == &req->msgs[0] && msg->error == MR_ERR_NONE && code_is(&msg->line, "EN"))
        mr_warm_repl_missed(req, msg);
}

static const mr_req_ops warm_repl_primary_mg_ops = {.answered = repl_primary_mg_answered};

uint32_t mr_warm_repl_primary_slots(mr_req *req)
{
    /* N: a miss creates the item on the new primary, nothing to warm. */
    if (req->cmd != MR_CMD_MG || mg_has_flag(req, 'N') || mr_warm_repl_read_slots(req) == 0)
        return 0;
    req->ops = &warm_repl_primary_mg_ops;
    return mr_warm_repl_read_slots(req);
}

bool mr_warm_repl_copy_may_start(mr_req *req)
{
    mr_worker *w = req->worker;
    req->warm_copy = false;
    if (write_raced(w, req->conn_hint, req->warm_copy_seq)) {
        WARM_STAT(w, pool_slot_of(w, req->replicas[0]), warm_races);
        return false;
    }
    WARM_STAT(w, pool_slot_of(w, req->replicas[0]), warm_copies);
    return true;
}
