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
 */
#include "memrelay/warmup.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memrelay/forward.h"
#include "memrelay/hash.h"
#include "memrelay/reply.h"

#define NO_SERVER UINT32_MAX

static void pool_stat(mr_worker *w, uint32_t slot, size_t off)
{
    uint64_t *c = (uint64_t *)((char *)&w->pool_stats[slot] + off);
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}
#define WARM_STAT(w, slot, field) pool_stat(w, slot, offsetof(mr_pool_stats, field))

static uint32_t key_hint(const char *key, size_t len)
{
    return mr_hash(MR_HASH_FNV1A_32, key, len);
}

/* The key's owner in the previous generation when it is another server this
 * worker can reach and may read from: not down, not ejected. */
static uint32_t prev_owner(mr_worker *w, const mr_gen *gen, const mr_pool *pool, const char *key, size_t len,
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
    const mr_health *h = w->shared ? w->shared->health : NULL;
    if (h && (mr_health_state_of(h, s) != MR_HEALTH_UP ||
              __atomic_load_n(&mr_health_server(h, s)->ejected, __ATOMIC_RELAXED)))
        return NO_SERVER;
    return s;
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
        if (from == NO_SERVER)
            continue;
        mr_msg *m = mr_req_add_msg(req);
        if (!m)
            return;
        m->server = from;
        WARM_STAT(w, pool->slot, warm_lookups);
        if (make_line(w, &m->out[0], 0, "mg %.*s v f t\r\n", (int)len, key) < 0) {
            mr_msg_finish(m, MR_ERR_NOMEM);
            continue;
        }
        m->nout = 1;
        mr_forward_send(w, key_hint(key, len), m);
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
    mr_forward_send(w, key_hint(key, len), m);
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

static void warm_answered(mr_req *req, mr_msg *msg)
{
    if (msg->retrieval)
        batch_answered(req, msg);
    else if (msg->out[0].len > 3 && memcmp(msg->out[0].p, "mg ", 3) == 0)
        lookup_answered(req, msg);
    else if (msg->out[0].len > 3 && memcmp(msg->out[0].p, "ms ", 3) == 0)
        copy_answered(req, msg);
}

static const mr_req_ops warm_ops = {.answered = warm_answered};

/* ---- writes ---- */

void mr_warm_write(mr_req *req, const mr_pool *pool, const char *key, size_t key_len, uint32_t owner)
{
    mr_worker *w = req->worker;
    switch (req->cmd) {
    case MR_CMD_MG:
    case MR_CMD_ME:
        return; /* reads */
    default:
        break;
    }
    uint32_t from = prev_owner(w, w->gen, pool, key, key_len, owner);
    if (from == NO_SERVER)
        return;
    const mr_request_head *h = &req->head;
    /* The key as the client wrote it (base64 for meta b). */
    const char *raw = req->line.p + h->key_off;
    bool b64 = req->cls == MR_CLASS_META_KEYED && h->meta_base64;
    mr_req *del = mr_req_new_background(w, NULL);
    if (!del)
        return;
    if (mr_req_alloc_msgs(del, 1) < 0) {
        mr_req_client_done(del);
        return;
    }
    mr_msg *m = &del->msgs[0];
    m->server = from;
    del->conn_hint = key_hint(key, key_len);
    WARM_STAT(w, pool->slot, warm_stale_deletes);
    if (make_line(w, &m->out[0], 0, b64 ? "md %.*s b\r\n" : "delete %.*s\r\n", (int)h->key_len, raw) < 0) {
        mr_msg_finish(m, MR_ERR_NOMEM);
    } else {
        m->nout = 1;
        mr_forward_send(w, del->conn_hint, m);
    }
    mr_req_dispatched(del);
}
