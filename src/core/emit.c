/* emit.c: a finished request's reply, appended to its client's output queue.
 *
 * Nothing is copied: runs of the backends' reply blocks are queued by
 * reference. Multi-server retrievals are merged here back into the
 * client's key order, misses and duplicate keys included.
 */
#include "memrelay/emit.h"

#include <string.h>

#include "memrelay/ascii.h"
#include "memrelay/log.h"
#include "memrelay/reply.h"

static const char end_line[] = "END\r\n";
static const char ok_line[] = "OK\r\n";

static int push_slice(mr_outq *out, const mr_slice *s)
{
    return mr_outq_push(out, s->mb, s->p, s->len);
}

static int push_text(mr_outq *out, const char *text)
{
    return mr_outq_push(out, NULL, text, (uint32_t)strlen(text));
}

/* A message that failed (transport error, or an error line from memcached). */
static int push_failure(mr_outq *out, const mr_msg *msg)
{
    /* A get for a server the health checker holds down is a miss, answered
     * at once: the cache is simply smaller for a while (docs/health.md, "What a client sees").
     * With multiget_errors: fail it is the error instead. */
    if (msg->error == MR_ERR_DOWN && msg->retrieval && !msg->req->fail_multiget)
        return push_text(out, end_line);
    if (msg->error != MR_ERR_NONE)
        return push_text(out, mr_error_reply(msg->error));
    return push_slice(out, &msg->line);
}

static bool msg_failed(const mr_msg *msg)
{
    return msg->error != MR_ERR_NONE || msg->line.len > 0;
}

/* Does any key still take its reply from message i (after failover)? */
static bool msg_has_keys(const mr_req *req, uint32_t i)
{
    for (uint32_t k = 0; k < req->nkeys; k++)
        if (req->key_msg[k] == i)
            return true;
    return false;
}

/* Retrievals. A single-key get reports a failure as the error it is. A
 * multi-key get treats a failed server's keys as misses (counted), unless
 * the pool says `multiget_errors: fail`; an error line memcached itself sent
 * for a one-server batch is passed through, as memcached would answer. */
static int emit_retrieval(mr_outq *out, mr_req *req, mr_stats *stats)
{
    if (req->ops && !req->key_msg) {
        /* A replicated single-key read: the last replica tried answers. */
        const mr_msg *msg = &req->msgs[req->reply_msg];
        if (msg_failed(msg))
            return push_failure(out, msg);
        for (uint32_t i = 0; i < msg->nitems; i++)
            if (push_slice(out, &msg->items[i]) < 0)
                return -1;
        MR_STAT_ADD(stats, get_hits, msg->nitems);
        MR_STAT_ADD(stats, get_misses, msg->nitems ? 0 : 1);
        return push_text(out, end_line);
    }
    bool errors_fail = req->fail_multiget || req->head.nkeys <= 1;
    uint32_t failed = 0;
    for (uint32_t i = 0; i < req->nmsgs; i++) {
        const mr_msg *msg = &req->msgs[i];
        if (!msg_failed(msg) || (req->ops && !msg_has_keys(req, i)))
            continue; /* fine, or failed over to other replicas */
        failed++;
        if (errors_fail || (req->nmsgs == 1 && msg->error == MR_ERR_NONE))
            return push_failure(out, msg);
    }
    if (failed) {
        MR_STAT_ADD(stats, multiget_server_failures, failed);
        mr_log_warn("multi-get: %u of %u servers failed; their keys answered as misses", failed, req->nmsgs);
    }
    if (req->nmsgs == 1) {
        /* One server: its items are already in the client's order. */
        const mr_msg *msg = &req->msgs[0];
        uint32_t hits = failed ? 0 : msg->nitems;
        for (uint32_t i = 0; i < hits; i++)
            if (push_slice(out, &msg->items[i]) < 0)
                return -1;
        MR_STAT_ADD(stats, get_hits, hits);
        MR_STAT_ADD(stats, get_misses, req->head.nkeys - hits);
        return push_text(out, end_line);
    }
    uint32_t hits = 0;
    for (uint32_t k = 0; k < req->nkeys; k++) {
        mr_msg *msg = &req->msgs[req->key_msg[k]];
        if (msg_failed(msg) || msg->cursor >= msg->nitems)
            continue; /* a miss */
        const mr_slice *item = &msg->items[msg->cursor];
        if (!mr_reply_value_has_key(item->p, item->len, req->line.p + req->keys[k].off, req->keys[k].len))
            continue; /* a miss: the server's next item is a later key's */
        msg->cursor++;
        hits++;
        if (push_slice(out, item) < 0)
            return -1;
    }
    MR_STAT_ADD(stats, get_hits, hits);
    MR_STAT_ADD(stats, get_misses, req->nkeys - hits);
    return push_text(out, end_line);
}

/* flush_all: OK only when every server said OK; else the first failure
 * (the message that failed, or NULL when all said OK). */
static const mr_msg *broadcast_failure(const mr_req *req)
{
    for (uint32_t i = 0; i < req->nmsgs; i++) {
        const mr_msg *msg = &req->msgs[i];
        if (msg->error != MR_ERR_NONE)
            return msg;
        if (msg->line.len != sizeof(ok_line) - 1 || memcmp(msg->line.p, ok_line, msg->line.len) != 0)
            return msg;
    }
    return NULL;
}

static int emit_broadcast(mr_outq *out, mr_req *req)
{
    const mr_msg *msg = broadcast_failure(req);
    if (!msg)
        return push_text(out, ok_line);
    return msg->error != MR_ERR_NONE ? push_failure(out, msg) : push_slice(out, &msg->line);
}

static uint64_t dec(const char **pp, const char *end)
{
    uint64_t v = 0;
    const char *p = *pp;
    while (p < end && *p >= '0' && *p <= '9')
        v = v * 10 + (uint64_t)(*p++ - '0');
    while (p < end && *p == ' ')
        p++;
    *pp = p;
    return v;
}

/* A hit of a GETQ/GETKQ run: the VALUE item ("VALUE <key> <flags> <bytes>
 * <cas>\r\n" data "\r\n", as the backend checked it) as the binary response
 * head memcached sends (flags as extras, the key for GETKQ, the CAS); the
 * value follows it by reference. Returns the head's length, 0 if malformed. */
static size_t run_hit_head(const mr_bin_plan *plan, const mr_slice *item, char *out, size_t cap,
                           const char **data, uint32_t *data_len)
{
    const char *nl = memchr(item->p, '\n', item->len);
    const char *p = item->p + 6 + plan->key_len + 1, *end = nl ? nl - 1 : NULL;
    if (!nl || p >= end)
        return 0;
    uint32_t flags = (uint32_t)dec(&p, end);
    dec(&p, end); /* bytes: known from the item's length */
    uint64_t cas = dec(&p, end);
    unsigned char ext[4] = {(unsigned char)(flags >> 24), (unsigned char)(flags >> 16),
                            (unsigned char)(flags >> 8), (unsigned char)flags};
    *data = nl + 1;
    *data_len = (uint32_t)(item->p + item->len - (nl + 1)) - 2;
    mr_bin_response b = {.opcode = plan->opcode,
                         .opaque = plan->opaque,
                         .cas = cas,
                         .extras = ext,
                         .extlen = 4,
                         .key = plan->wants_key ? plan->key : NULL,
                         .keylen = plan->wants_key ? plan->key_len : 0};
    size_t n = mr_bin_build(&b, out, cap);
    if (n) { /* the body length counts the value sent after the head */
        uint32_t body = 4u + b.keylen + *data_len;
        unsigned char *h = (unsigned char *)out;
        h[8] = (unsigned char)(body >> 24);
        h[9] = (unsigned char)(body >> 16);
        h[10] = (unsigned char)(body >> 8);
        h[11] = (unsigned char)body;
    }
    return n;
}

/* A binary GETQ/GETKQ run sent as one `gets` per server: each key's hit
 * becomes its own response (in the client's order), misses stay silent, and
 * a failed server's keys each get the failure (quiet errors are sent). */
static int emit_binary_run(mr_outq *out, mr_req *req, mr_stats *stats)
{
    mr_bin_plan plan;
    memset(&plan, 0, sizeof(plan));
    plan.kind = MR_BIN_KIND_GET;
    plan.quiet = true;
    for (uint32_t k = 0; k < req->bin_run_len; k++) {
        const mr_bin_run_key *rk = &req->bin_run[k];
        plan.opcode = rk->opcode;
        plan.wants_key = rk->opcode == MR_BIN_OP_GETKQ;
        plan.opaque = rk->opaque;
        plan.key_len = rk->key_len;
        memcpy(plan.key, req->line.p + rk->key_off, rk->key_len);
        char *head = req->bin_out + (size_t)k * MR_BIN_REPLY_HEAD_MAX;
        mr_bin_reply r;
        const char *text = NULL;
        uint32_t text_len = 0;
        const mr_msg *msg = NULL;
        if (req->local.len) {
            text = req->local.p;
            text_len = req->local.len;
        } else if (k < req->nkeys && req->nmsgs) {
            msg = &req->msgs[req->key_msg[k]];
            if (msg->error == MR_ERR_DOWN && !req->fail_multiget) {
                msg = NULL; /* a server held down: its keys are misses, as for text */
            } else if (msg->error != MR_ERR_NONE) {
                text = mr_error_reply(msg->error);
                text_len = (uint32_t)strlen(text);
            } else if (msg->line.len) {
                text = msg->line.p;
                text_len = msg->line.len;
            }
        }
        if (text) {
            mr_bin_translate_reply(&plan, text, text_len, NULL, 0, head, MR_BIN_REPLY_HEAD_MAX, &r);
            if (!r.suppressed && mr_outq_push(out, req->line.mb, head, (uint32_t)r.head_len) < 0)
                return -1;
            continue;
        }
        mr_msg *m = msg ? &req->msgs[req->key_msg[k]] : NULL;
        const mr_slice *item = m && m->cursor < m->nitems ? &m->items[m->cursor] : NULL;
        if (!item || !mr_reply_value_has_key(item->p, item->len, plan.key, plan.key_len)) {
            MR_STAT_INC(stats, get_misses);
            continue; /* a quiet miss */
        }
        m->cursor++;
        const char *data = NULL;
        uint32_t data_len = 0;
        size_t hl = run_hit_head(&plan, item, head, MR_BIN_REPLY_HEAD_MAX, &data, &data_len);
        if (hl == 0) {
            hl = mr_bin_status_reply(&plan, MR_BIN_EINTERNAL, "invalid reply", head, MR_BIN_REPLY_HEAD_MAX);
            data_len = 0;
        }
        MR_STAT_INC(stats, get_hits);
        if (mr_outq_push(out, req->line.mb, head, (uint32_t)hl) < 0)
            return -1;
        if (data_len && mr_outq_push(out, item->mb, data, data_len) < 0)
            return -1;
    }
    return 0;
}

/* A binary client's request: its one reply line (or memrelay's own error
 * text) translated into the binary response, whose head goes into the
 * request's own block (req->bin_out) and whose value, if any, stays a
 * reference into the server's reply. A quiet request's silent outcome
 * takes no place at all. */
static int emit_binary(mr_outq *out, mr_req *req, mr_stats *stats)
{
    if (req->local.len && req->local_framed)
        return push_slice(out, &req->local);
    mr_bin_reply r;
    const mr_slice *ref = NULL; /* the block the value points into */
    const char *text = NULL;    /* a text line to translate, when not a server's element */
    uint32_t text_len = 0;
    if (req->local.len) {
        text = req->local.p;
        text_len = req->local.len;
    } else if (req->nmsgs == 0) {
        return 0;
    } else {
        const mr_msg *msg =
            req->cls == MR_CLASS_BROADCAST ? broadcast_failure(req) : &req->msgs[req->reply_msg];
        if (!msg) {
            text = ok_line;
            text_len = sizeof(ok_line) - 1;
        } else if (msg->error != MR_ERR_NONE) {
            text = mr_error_reply(msg->error);
            text_len = (uint32_t)strlen(text);
        } else {
            mr_reply_elem e;
            if (mr_reply_next(msg->line.p, msg->line.len, msg->line.len, msg->line.len, &e) ==
                MR_REPLY_NEED_MORE)
                e.kind = MR_REPLY_BAD;
            mr_bin_translate_elem(req->bin, msg->line.p, &e, req->bin_out, MR_BIN_REPLY_HEAD_MAX, &r);
            ref = &msg->line;
        }
    }
    if (text)
        mr_bin_translate_reply(req->bin, text, text_len, NULL, 0, req->bin_out, MR_BIN_REPLY_HEAD_MAX, &r);
    if (req->bin->kind == MR_BIN_KIND_GET) {
        if (r.status == MR_BIN_SUCCESS)
            MR_STAT_INC(stats, get_hits);
        else if (r.status == MR_BIN_KEY_ENOENT)
            MR_STAT_INC(stats, get_misses);
    }
    if (r.suppressed || r.head_len == 0)
        return 0;
    if (mr_outq_push(out, req->line.mb, req->bin_out, (uint32_t)r.head_len) < 0)
        return -1;
    if (r.value_len && ref)
        return mr_outq_push(out, ref->mb, r.value, r.value_len);
    return 0;
}

static int emit_single(mr_outq *out, mr_req *req)
{
    const mr_msg *msg = &req->msgs[req->reply_msg];
    if (msg->error != MR_ERR_NONE)
        return push_text(out, mr_error_reply(msg->error));
    if (msg->fenced) /* the server applied q: nothing, or the reply it let through */
        return msg->line.len ? push_slice(out, &msg->line) : 0;
    if (req->quiet && mr_meta_quiet_suppresses(req->cmd, msg->line.p, msg->line.len))
        return 0;
    return push_slice(out, &msg->line);
}

int mr_emit(mr_outq *out, mr_req *req, mr_stats *stats)
{
    if (__builtin_expect(req->bin != NULL, 0))
        return emit_binary(out, req, stats);
    if (__builtin_expect(req->bin_run != NULL, 0))
        return emit_binary_run(out, req, stats);
    if (req->local.len)
        return push_slice(out, &req->local);
    if (req->nmsgs == 0)
        return 0;
    switch (req->cls) {
    case MR_CLASS_RETRIEVAL:
        return emit_retrieval(out, req, stats);
    case MR_CLASS_BROADCAST:
        return emit_broadcast(out, req);
    default:
        return emit_single(out, req);
    }
}
