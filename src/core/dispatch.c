/* dispatch.c: a parsed request becomes a local reply or backend messages.
 *
 * One handler per command class (a table, not a switch scattered around):
 * keyed commands go to the key's server; retrievals are split into one
 * batched message per server; flush_all goes to every server; version to one.
 */
#include "memrelay/dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memrelay/forward.h"
#include "memrelay/log.h"
#include "memrelay/replicate.h"
#include "memrelay/rng.h"
#include "memrelay/warmup.h"
#include "memrelay/worker.h"

/* The client's requests to one server share a connection (conn_hint is
 * its id), so they reach the server in order. */
static void send_msg(mr_req *req, mr_msg *msg)
{
    mr_forward_send(req->worker, req->conn_hint, msg);
}

/* Send the client's (possibly rewritten) line alone as message `msg`. */
static void send_line_only(mr_req *req, mr_msg *msg)
{
    if (mr_forward_slice(&req->worker->mbufs, req, &msg->out[0]) < 0) {
        mr_msg_finish(msg, MR_ERR_NOMEM);
        return;
    }
    msg->nout = 1;
    send_msg(req, msg);
}

static void fail_nomem(mr_req *req)
{
    mr_req_fail_local(req, MR_ERR_NOMEM);
}

/* A pool that finds its servers in DNS has none until DNS names some. */
static bool no_servers(mr_req *req, const mr_pool *pool)
{
    if (__builtin_expect(pool->nservers != 0, 1))
        return false;
    mr_req_fail_local(req, MR_ERR_NO_SERVERS);
    return true;
}

static const char *line_of(const mr_req *req)
{
    return req->line.p;
}

/* A binary request is counted as memcached counts it (by its opcode), not
 * as the meta command it was translated to: dashboards built on cmd_get and
 * cmd_set read the same with memrelay in front. Its hits and misses are
 * counted by emit.c. */
static void count_binary(mr_worker *w, const mr_bin_plan *plan)
{
    switch (plan->kind) {
    case MR_BIN_KIND_GET: {
        MR_STAT_INC(&w->stats, cmd_get);
        uint8_t op = mr_bin_base_opcode(plan->opcode);
        if (op == MR_BIN_OP_GAT || op == MR_BIN_OP_GATK)
            MR_STAT_INC(&w->stats, cmd_touch);
        break;
    }
    case MR_BIN_KIND_TOUCH:
        MR_STAT_INC(&w->stats, cmd_touch);
        break;
    case MR_BIN_KIND_STORE:
    case MR_BIN_KIND_CONCAT:
        MR_STAT_INC(&w->stats, cmd_set);
        break;
    default:
        break; /* delete, incr/decr: no counter of their own, as in text */
    }
}

static void count_command(mr_worker *w, const mr_req *req)
{
    if (req->bin) {
        count_binary(w, req->bin);
        return;
    }
    switch (req->cls) {
    case MR_CLASS_STORAGE:
        MR_STAT_INC(&w->stats, cmd_set);
        break;
    case MR_CLASS_META_KEYED:
        MR_STAT_INC(&w->stats, cmd_meta);
        break;
    default:
        if (req->cmd == MR_CMD_TOUCH)
            MR_STAT_INC(&w->stats, cmd_touch);
        break;
    }
}

/* delete incr decr touch, storage commands, and meta commands. */
static void keyed_dispatched(mr_req *req, bool hold)
{
    if (__builtin_expect(hold, 0))
        mr_warm_dispatched(req);
    else
        mr_req_dispatched(req);
}

static void dispatch_keyed(mr_req *req)
{
    mr_worker *w = req->worker;
    const mr_request_head *h = &req->head;
    const char *key = line_of(req) + h->key_off;
    size_t key_len = h->key_len;
    char decoded[MR_KEY_MAX * 2]; /* a base64 key of MR_KEY_MAX decodes to fewer bytes */
    if (h->meta_base64) {
        long n = mr_base64_decode(key, key_len, decoded, sizeof(decoded));
        if (n >= 0) {
            key = decoded;
            key_len = (size_t)n;
        }
    }
    req->quiet = req->cls == MR_CLASS_META_KEYED && h->noreply;
    count_command(w, req);
    const mr_pool *pool = mr_router_pool_for_key(w->gen->router, req->listen_pool, key, key_len);
    if (no_servers(req, pool))
        return;
    if (mr_pool_replicated(pool)) {
        mr_replicate_keyed(req, pool, key, key_len);
        return;
    }
    uint32_t server = mr_router_server_for_key(pool, key, key_len, mr_rng_next(&w->rng));
    /* Warm-up: a write's previous owner forgets the key (and its reply may
     * wait for warm copies in flight); an mg may need more messages. */
    bool hold = false;
    uint32_t warm =
        __builtin_expect(mr_warm_open(w), 0) ? mr_warm_keyed(req, pool, key, key_len, server, &hold) : 0;
    if (mr_req_alloc_msgs_cap(req, 1, 1 + warm) < 0) {
        fail_nomem(req);
        return;
    }
    mr_msg *msg = &req->msgs[0];
    msg->server = server;
    if (h->quiet_by_server) {
        if (mr_forward_fenced(&w->mbufs, req, msg) < 0) {
            mr_msg_finish(msg, MR_ERR_NOMEM);
            keyed_dispatched(req, hold);
            return;
        }
        send_msg(req, msg);
        keyed_dispatched(req, hold);
        return;
    }
    if (mr_forward_slice(&w->mbufs, req, &msg->out[0]) < 0) {
        mr_msg_finish(msg, MR_ERR_NOMEM);
        keyed_dispatched(req, hold);
        return;
    }
    msg->nout = 1;
    if (h->data_len)
        msg->out[msg->nout++] = mr_slice_ref(req->line.mb, line_of(req) + h->line_len, h->data_len);
    send_msg(req, msg);
    keyed_dispatched(req, hold);
}

/* get gets gat gats: one message per server holding that server's keys in
 * the client's order; emit.c merges the replies back into key order. */
static void dispatch_retrieval(mr_req *req)
{
    mr_worker *w = req->worker;
    const mr_request_head *h = &req->head;
    const char *line = line_of(req);
    const mr_router *router = w->gen->router;
    MR_STAT_ADD(&w->stats, cmd_get, h->nkeys);
    if (req->cmd == MR_CMD_GAT || req->cmd == MR_CMD_GATS)
        MR_STAT_INC(&w->stats, cmd_touch);
    req->fail_multiget = router->cfg->pools[req->listen_pool].multiget_errors == MR_MULTIGET_ERRORS_FAIL;
    if (h->nkeys == 1 && req->cmd == MR_CMD_GET) {
        /* One key in a replicated pool: a read that fails over. */
        const mr_pool *pool = mr_router_pool_for_key(router, req->listen_pool, line + h->key_off, h->key_len);
        if (no_servers(req, pool))
            return;
        if (mr_pool_replicated(pool)) {
            mr_replicate_keyed(req, pool, line + h->key_off, h->key_len);
            return;
        }
    }
    if (mr_req_alloc_keys(req, h->nkeys) < 0) {
        fail_nomem(req);
        return;
    }
    /* Pass 1: the server of every key, and how many distinct servers. */
    uint32_t pos = h->keys_off, koff, klen, k = 0, nservers = 0;
    uint32_t first_server = UINT32_MAX;
    bool one_server = true;
    uint32_t max_replicas = 1;
    while (mr_next_key(line, h, &pos, &koff, &klen) && k < req->nkeys) {
        const mr_pool *pool = mr_router_pool_for_key(router, req->listen_pool, line + koff, klen);
        if (pool->nservers == 0) { /* a key in a pool with no servers yet: the whole request fails */
            for (uint32_t i = 0; i < k; i++)
                w->server_slot[req->key_msg[i]] = UINT32_MAX;
            no_servers(req, pool);
            return;
        }
        uint32_t s = mr_router_server_for_key(pool, line + koff, klen, mr_rng_next(&w->rng));
        uint32_t copies = pool->conf->replicas + (uint32_t)pool->conf->nreplicate_to;
        if (copies > max_replicas)
            max_replicas = copies;
        req->keys[k].off = koff;
        req->keys[k].len = klen;
        req->key_msg[k++] = s;
        if (first_server == UINT32_MAX)
            first_server = s;
        else if (s != first_server)
            one_server = false;
        if (w->server_slot[s] == UINT32_MAX)
            w->server_slot[s] = nservers++;
    }
    req->nkeys = k;
    bool replicated = max_replicas > 1;
    uint32_t extra = replicated ? mr_replicate_retrieval_slots(req, router->nservers, max_replicas) : 0;
    uint32_t warm = 0;
    if (__builtin_expect(mr_warm_open(w), 0))
        warm = !replicated ? mr_warm_retrieval_slots(req) : mr_warm_repl_retrieval_slots(req);
    extra += warm;
    if (mr_req_alloc_msgs_cap(req, nservers, nservers + extra) < 0) {
        for (uint32_t i = 0; i < k; i++)
            w->server_slot[req->key_msg[i]] = UINT32_MAX;
        fail_nomem(req);
        return;
    }
    /* Pass 2: map keys to message slots. */
    for (uint32_t i = 0; i < k; i++) {
        uint32_t s = req->key_msg[i];
        uint32_t slot = w->server_slot[s];
        req->msgs[slot].server = s;
        req->msgs[slot].retrieval = true;
        req->key_msg[i] = slot;
    }
    for (uint32_t i = 0; i < nservers; i++)
        w->server_slot[req->msgs[i].server] = UINT32_MAX;
    /* gets/gat/gats stay on the owner (a CAS is one server's); a binary
     * GETQ/GETKQ run is sent as gets for its CAS, but fails over as a
     * single binary GET does. */
    if (replicated && (req->cmd == MR_CMD_GET || req->bin_run))
        mr_replicate_retrieval_arm(req);
    else if (warm && !replicated)
        mr_warm_retrieval_arm(req); /* misses of moved keys try their previous owner */
    else if (warm)
        mr_warm_repl_retrieval_arm(req); /* gets gat gats: their previous set, then the new primary again */

    if (one_server) {
        /* The common case: forward the client's line untouched. */
        send_line_only(req, &req->msgs[0]);
        mr_req_dispatched(req);
        return;
    }
    if (mr_build_split_lines(&w->mbufs, req, 0, nservers) < 0) {
        mr_req_fail_unsent(req, MR_ERR_NOMEM);
        return;
    }
    for (uint32_t i = 0; i < nservers; i++)
        send_msg(req, &req->msgs[i]);
    mr_req_dispatched(req);
}

/* flush_all: every server of every pool this listener reaches. */
static void dispatch_broadcast(mr_req *req)
{
    mr_worker *w = req->worker;
    const mr_router *router = w->gen->router;
    const mr_pool_conf *lp = &router->cfg->pools[req->listen_pool];
    MR_STAT_INC(&w->stats, cmd_flush);
    /* Reachable pools: the listener's own and its route targets, once each. */
    uint32_t npools = 0;
    uint32_t pools[64];
    pools[npools++] = req->listen_pool;
    for (size_t r = 0; r < lp->nroutes && npools < 64; r++) {
        uint32_t p = (uint32_t)lp->routes[r].pool_index;
        bool seen = false;
        for (uint32_t i = 0; i < npools; i++)
            seen |= pools[i] == p;
        if (!seen)
            pools[npools++] = p;
    }
    uint32_t nmsgs = 0;
    for (uint32_t i = 0; i < npools; i++)
        nmsgs += router->pools[pools[i]].nservers;
    if (nmsgs == 0 && no_servers(req, &router->pools[req->listen_pool]))
        return;
    if (mr_req_alloc_msgs(req, nmsgs) < 0) {
        fail_nomem(req);
        return;
    }
    mr_slice line;
    if (mr_forward_slice(&w->mbufs, req, &line) < 0) {
        mr_req_fail_unsent(req, MR_ERR_NOMEM);
        return;
    }
    uint32_t m = 0;
    for (uint32_t i = 0; i < npools; i++) {
        const mr_pool *pool = &router->pools[pools[i]];
        for (uint32_t s = 0; s < pool->nservers; s++) {
            mr_msg *msg = &req->msgs[m++];
            msg->server = pool->server_ids[s];
            msg->out[0] = mr_slice_ref(line.mb, line.p, line.len);
            msg->nout = 1;
        }
    }
    mr_slice_release(&line);
    for (uint32_t i = 0; i < nmsgs; i++)
        send_msg(req, &req->msgs[i]);
    mr_req_dispatched(req);
}

/* version: answered by the first server of the listener's default pool, so
 * clients that look at the version see the real memcached's. */
static void dispatch_any_server(mr_req *req)
{
    mr_worker *w = req->worker;
    const mr_pool *pool = mr_router_default_pool(w->gen->router, req->listen_pool);
    if (no_servers(req, pool))
        return;
    if (mr_req_alloc_msgs(req, 1) < 0) {
        fail_nomem(req);
        return;
    }
    req->msgs[0].server = pool->server_ids[0];
    send_line_only(req, &req->msgs[0]);
    mr_req_dispatched(req);
}

static void dispatch_local(mr_req *req)
{
    static const char mn_reply[] = "MN\r\n", ok_reply[] = "OK\r\n";
    const mr_request_head *h = &req->head;
    switch (req->cmd) {
    case MR_CMD_MN:
        req->local = mr_slice_static(mn_reply, sizeof(mn_reply) - 1);
        break;
    case MR_CMD_VERBOSITY:
        req->local = mr_slice_static(ok_reply, sizeof(ok_reply) - 1);
        break;
    case MR_CMD_QUIT:
        req->close_after = true;
        break;
    case MR_CMD_STATS: {
        /* rest: what follows the first argument on the line (stats route <key>) */
        const char *rest = line_of(req) + h->arg_off + h->arg_len;
        const char *eol = line_of(req) + h->line_len;
        while (eol > rest && (eol[-1] == '\n' || eol[-1] == '\r'))
            eol--;
        if (h->arg_len == 0)
            rest = eol;
        mr_worker *w = req->worker;
        if (w->hooks->stats_reply(w, req->listen_pool, &req->local, line_of(req) + h->arg_off, h->arg_len,
                                  rest, (uint32_t)(eol - rest)) < 0) {
            fail_nomem(req);
            return;
        }
        break;
    }
    default:
        break;
    }
    mr_req_done_local(req);
}

void mr_dispatch_unlink(mr_worker *w, uint32_t listen_pool, uint32_t conn_hint, const char *key,
                        uint32_t key_len, bool base64)
{
    char decoded[MR_KEY_MAX * 2]; /* a base64 key of MR_KEY_MAX decodes to fewer bytes */
    const char *rkey = key;
    size_t rlen = key_len;
    if (base64) {
        long n = mr_base64_decode(key, key_len, decoded, sizeof(decoded));
        if (n < 0)
            return;
        rkey = decoded;
        rlen = (size_t)n;
    }
    const mr_pool *pool = mr_router_pool_for_key(w->gen->router, listen_pool, rkey, rlen);
    if (pool->nservers == 0)
        return; /* nothing holds it */
    uint32_t servers[MR_MAX_REPLICAS];
    uint32_t n = mr_router_replicas_for_key(pool, rkey, rlen, mr_rng_next(&w->rng), servers, MR_MAX_REPLICAS);
    mr_req *req = mr_req_new(w);
    if (!req)
        return;
    req->cls = MR_CLASS_KEYED;
    req->cmd = MR_CMD_DELETE;
    req->conn_hint =
        pool->conf->replicas > 1 || pool->conf->nreplicate_to ? mr_key_hint(rkey, rlen) : conn_hint;
    mr_mbuf *mb = mr_mbuf_get(&w->mbufs, key_len + 16);
    if (!mb || mr_req_alloc_msgs(req, n) < 0) {
        mr_mbuf_unref(mb);
        mr_req_client_done(req);
        return;
    }
    /* An orphan: nobody waits for the reply, which is dropped. */
    int len = snprintf(mb->data, mb->cap, base64 ? "md %.*s b\r\n" : "delete %.*s\r\n", (int)key_len, key);
    mb->len = (uint32_t)len;
    for (uint32_t i = 0; i < n; i++) {
        req->msgs[i].server = servers[i];
        req->msgs[i].out[0] = mr_slice_ref(mb, mb->data, mb->len);
        req->msgs[i].nout = 1;
    }
    mr_mbuf_unref(mb);
    for (uint32_t i = 0; i < n; i++)
        mr_forward_send(w, req->conn_hint, &req->msgs[i]);
    mr_req_dispatched(req);
}

typedef void (*dispatch_fn)(mr_req *req);

static const dispatch_fn handlers[] = {
    [MR_CLASS_RETRIEVAL] = dispatch_retrieval,   [MR_CLASS_STORAGE] = dispatch_keyed,
    [MR_CLASS_KEYED] = dispatch_keyed,           [MR_CLASS_META_KEYED] = dispatch_keyed,
    [MR_CLASS_LOCAL] = dispatch_local,           [MR_CLASS_BROADCAST] = dispatch_broadcast,
    [MR_CLASS_ANY_SERVER] = dispatch_any_server,
};

void mr_dispatch(mr_req *req)
{
    size_t cls = (size_t)req->cls;
    if (cls < sizeof(handlers) / sizeof(handlers[0]) && handlers[cls]) {
        handlers[cls](req);
        return;
    }
    /* A class without a handler is a bug, but never a crash for the client. */
    mr_log_error("no handler for command class %zu", cls);
    req->local = mr_slice_static("SERVER_ERROR unsupported command\r\n", 34);
    mr_req_done_local(req);
}
