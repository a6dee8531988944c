/* fake_backend.c: a worker without sockets (fake_backend.h). */
#include "fake_backend.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memrelay/ascii.h"
#include "memrelay/backend.h"
#include "memrelay/config.h"
#include "memrelay/dispatch.h"
#include "memrelay/emit.h"
#include "memrelay/generation.h"
#include "memrelay/health.h"
#include "memrelay/log.h"
#include "memrelay/reply.h"
#include "memrelay/router.h"

/* Criterion records a test's result before its process exits, so a leak
 * LeakSanitizer reports at exit fails nothing: fb_free asks it at once. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define FB_LEAKS() __lsan_do_recoverable_leak_check()
#else
#define FB_LEAKS() 0
#endif

/* backend.c's bounds on a reply element (REPLY_MIN_MAX_VALUE, REPLY_MAX_LINE). */
#define FB_MIN_MAX_VALUE (2u * 1024u * 1024u)
#define FB_MAX_LINE 8192u

fb *fb_of(mr_worker *w)
{
    return (fb *)w; /* w is fb's first member */
}

struct mr_client *fb_client(fb *f)
{
    return (struct mr_client *)&f->client_tag;
}

void fb_log(fb *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(f->log + f->loglen, sizeof(f->log) - f->loglen, fmt, ap);
    va_end(ap);
    cr_assert(n >= 0 && (size_t)n + 1 < sizeof(f->log) - f->loglen, "fake backend: event log full");
    f->loglen += (size_t)n;
    f->log[f->loglen++] = ';';
    f->log[f->loglen] = '\0';
}

/* ---- the hooks ---- */

static void hook_reply_ready(struct mr_client *c, mr_req *req)
{
    fb *f = fb_of(req->worker);
    cr_assert_eq(c, fb_client(f), "reply_ready for a client that is not the fake one");
    cr_assert(req->done, "reply_ready for a request that is not done");
    f->nready++;
    fb_log(f, "reply_ready");
}

static void hook_req_freed(mr_worker *w, mr_gen *gen)
{
    fb *f = fb_of(w);
    f->nfreed++;
    f->freed_gen = gen;
    fb_log(f, "req_freed");
}

static int hook_stats_reply(mr_worker *w, uint32_t listen_pool, mr_slice *out, const char *arg,
                            uint32_t arg_len, const char *rest, uint32_t rest_len)
{
    fb *f = fb_of(w);
    f->nstats++;
    mr_mbuf *mb = mr_mbuf_get(&w->mbufs, 256);
    if (!mb)
        return -1;
    int n =
        snprintf(mb->data, mb->cap, "STAT fb %.*s|%.*s\r\nEND\r\n", (int)arg_len, arg, (int)rest_len, rest);
    mb->len = (uint32_t)n;
    *out = mr_slice_ref(mb, mb->data, mb->len);
    mr_mbuf_unref(mb);
    return 0;
}

/* What mr_backend_send does with a message it keeps: it is queued (the
 * request counts it in flight) and its clock starts. */
static void hook_send(mr_worker *w, uint32_t conn_hint, mr_msg *msg)
{
    fb *f = fb_of(w);
    if (f->real[msg->server]) {
        mr_backend_send(w->backends[msg->server], conn_hint, msg);
        return;
    }
    cr_assert_lt(f->nsent, FB_MAX_SENT, "fake backend: too many sends");
    fb_sent *s = &f->sent[f->nsent++];
    memset(s, 0, sizeof(*s));
    s->msg = msg;
    s->server = msg->server;
    s->conn_hint = conn_hint;
    for (uint32_t i = 0; i < msg->nout; i++)
        s->len += msg->out[i].len;
    s->bytes = malloc(s->len + 1);
    cr_assert_not_null(s->bytes);
    uint32_t at = 0;
    for (uint32_t i = 0; i < msg->nout; i++) {
        memcpy(s->bytes + at, msg->out[i].p, msg->out[i].len);
        at += msg->out[i].len;
    }
    s->bytes[s->len] = '\0';
    msg->queued_at = ev_now(w->loop);
    if (f->down[msg->server] != MR_ERR_NONE) {
        /* Held down: answered inside the send, as mr_backend_send does. */
        s->finished = true;
        s->msg = NULL;
        mr_msg_finish(msg, f->down[msg->server]);
        return;
    }
    cr_assert(!msg->queued, "a message was sent while on a queue");
    msg->deadline = msg->queued_at + w->backends[msg->server]->timeout;
    msg->queued = true;
    msg->req->in_flight++;
}

/* ---- set-up and tear-down ---- */

fb *fb_new(const char *yaml)
{
    fb *f = calloc(1, sizeof(*f));
    cr_assert_not_null(f);
    /* The warnings a test provokes on purpose (failed servers, replays)
     * would only clutter its output. */
    mr_log_set_level(MR_LOG_ERROR);
    mr_config_error err;
    f->cfg = mr_config_load_string(yaml, strlen(yaml), "fb.yml", &err);
    cr_assert_not_null(f->cfg, "fake backend config: %s", err.message);
    f->health = mr_health_create();
    cr_assert_not_null(f->health);
    f->gen = calloc(1, sizeof(*f->gen));
    cr_assert_not_null(f->gen);
    f->gen->seq = 1;
    f->gen->cfg = f->cfg;
    f->gen->refs = 1;
    /* Server ids from the health registry, as main.c builds them. */
    f->gen->router = mr_router_build_ids(f->cfg, mr_health_server_id, f->health);
    cr_assert_not_null(f->gen->router, "router build failed");
    const mr_router *r = f->gen->router;

    f->hooks.reply_ready = hook_reply_ready;
    f->hooks.req_freed = hook_req_freed;
    f->hooks.stats_reply = hook_stats_reply;
    f->hooks.send = hook_send;
    f->shared.nworkers = 1;
    f->shared.health = f->health;
    f->shared.hooks = &f->hooks;

    mr_worker *w = &f->w;
    w->shared = &f->shared;
    w->hooks = &f->hooks;
    w->gen = f->gen;
    w->rng = 1;
    w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    cr_assert_not_null(w->loop);
    mr_mbuf_pool_init(&w->mbufs, MR_WORKER_MAX_FREE_MBUFS);
    uint32_t n = r->nservers ? r->nservers : 1;
    w->nbackends = r->nservers;
    w->backends = calloc(n, sizeof(mr_backend *));
    w->server_slot = malloc(n * sizeof(uint32_t));
    f->down = calloc(n, sizeof(mr_err));
    f->real = calloc(n, sizeof(bool));
    cr_assert(w->backends && w->server_slot && f->down && f->real);
    for (uint32_t s = 0; s < r->nservers; s++) {
        w->server_slot[s] = UINT32_MAX;
        const mr_server *srv = &r->servers[s];
        if (!srv->conf)
            continue;
        w->backends[s] = malloc(sizeof(mr_backend));
        cr_assert_not_null(w->backends[s]);
        cr_assert_eq(mr_backend_init(w->backends[s], w, srv, &r->pools[srv->pool]), 0);
    }
    f->client_id = 7;
    return f;
}

static void fail_all_sent(fb *f)
{
    for (uint32_t i = 0; i < f->nsent; i++)
        if (!f->sent[i].finished)
            fb_fail(f, &f->sent[i], MR_ERR_UNAVAILABLE);
}

void fb_client_gone(fb *f)
{
    while (f->q_head) {
        mr_req *req = f->q_head;
        f->q_head = req->next;
        mr_req_client_done(req);
    }
    f->q_tail = NULL;
}

void fb_free(fb *f)
{
    mr_worker *w = &f->w;
    /* The client goes: its requests become orphans. */
    fb_client_gone(f);
    mr_outq_release(&f->out);
    /* Every message still out fails. What that sends (a read failing
     * over) comes to the fake too, and the loops see it. */
    memset(f->real, 0, w->nbackends * sizeof(bool));
    fail_all_sent(f);
    /* All backends close before any is freed: a message failing on one
     * may look at another (replicate.c's pool_of_server). */
    for (uint32_t s = 0; s < w->nbackends; s++)
        if (w->backends[s])
            mr_backend_close(w->backends[s]);
    fail_all_sent(f);
    for (uint32_t s = 0; s < w->nbackends; s++)
        if (w->backends[s]) {
            mr_replay_clear(&w->backends[s]->replay); /* what failed after its close */
            free(w->backends[s]);
        }
    cr_expect_eq(w->gen_reqs, 0, "%u request(s) never freed", w->gen_reqs);
    while (w->free_reqs) {
        mr_req *r = w->free_reqs;
        w->free_reqs = r->next;
        free(r);
    }
    cr_expect_eq(w->mbufs.allocated, 0, "%llu mbuf(s) still referenced",
                 (unsigned long long)w->mbufs.allocated);
    mr_mbuf_pool_drain(&w->mbufs);
    free(w->backends);
    free(w->server_slot);
    ev_loop_destroy(w->loop);
    mr_gen_release(f->gen);
    mr_health_free(f->health);
    for (uint32_t i = 0; i < f->nsent; i++)
        free(f->sent[i].bytes);
    free(f->down);
    free(f->real);
    free(f->output);
    free(f);
    cr_expect_eq(FB_LEAKS(), 0, "LeakSanitizer found leaks (reported above)");
}

/* ---- the client ---- */

mr_req *fb_new_req(fb *f, uint32_t listen_pool, const char *text)
{
    mr_worker *w = &f->w;
    size_t len = strlen(text);
    /* The client's input block: the request's bytes are a slice of it. */
    mr_mbuf *mb = mr_mbuf_get(&w->mbufs, (uint32_t)len + 1);
    cr_assert_not_null(mb);
    memcpy(mb->data, text, len);
    mb->len = (uint32_t)len;
    mr_request_head h;
    mr_parse_status st = mr_parse_request(mb->data, len, w->gen->cfg->pools[listen_pool].item_size_max,
                                          MR_ASCII_DEFAULT_MAX_LINE, &h);
    cr_assert_eq(st, MR_PARSE_OK, "'%s' does not parse (%s)", text, h.error_reply ? h.error_reply : "-");
    cr_assert_eq(h.line_len + h.data_len, len, "'%s' is not exactly one request", text);
    mr_req *req = mr_req_new(w);
    cr_assert_not_null(req);
    req->cmd = h.cmd;
    req->cls = mr_cmd_class_of(h.cmd);
    req->listen_pool = listen_pool;
    req->conn_hint = f->client_id;
    req->head = h;
    req->line = mr_slice_ref(mb, mb->data, (uint32_t)len);
    mr_mbuf_unref(mb);
    /* client.c: a noreply request runs as an orphan. */
    if (h.noreply && req->cls != MR_CLASS_META_KEYED) {
        req->client = NULL;
    } else {
        req->client = fb_client(f);
        req->next = NULL;
        if (f->q_tail)
            f->q_tail->next = req;
        else
            f->q_head = req;
        f->q_tail = req;
    }
    return req;
}

mr_req *fb_request_on(fb *f, uint32_t listen_pool, const char *text)
{
    mr_req *req = fb_new_req(f, listen_pool, text);
    mr_dispatch(req);
    return req;
}

mr_req *fb_request(fb *f, const char *text)
{
    return fb_request_on(f, 0, text);
}

const char *fb_output(fb *f)
{
    /* client.c's emit_ready: the done requests at the head, in order. */
    while (f->q_head && f->q_head->done) {
        mr_req *req = f->q_head;
        f->q_head = req->next;
        if (!f->q_head)
            f->q_tail = NULL;
        cr_assert_eq(mr_emit(&f->out, req, &f->w.stats), 0, "mr_emit failed");
        mr_req_client_done(req);
    }
    free(f->output);
    f->output = malloc(f->out.bytes + 1);
    cr_assert_not_null(f->output);
    size_t at = 0;
    while (f->out.count) {
        struct iovec iov[64];
        int n = mr_outq_iov(&f->out, iov, 64);
        size_t got = 0;
        for (int i = 0; i < n; i++) {
            memcpy(f->output + at, iov[i].iov_base, iov[i].iov_len);
            at += iov[i].iov_len;
            got += iov[i].iov_len;
        }
        mr_outq_wrote(&f->out, got);
    }
    f->output[at] = '\0';
    f->output_len = at;
    return f->output;
}

/* ---- the servers ---- */

uint32_t fb_nsent(const fb *f)
{
    return f->nsent;
}

fb_sent *fb_sent_at(fb *f, uint32_t i)
{
    cr_assert_lt(i, f->nsent, "send %u was never made (%u so far)", i, f->nsent);
    return &f->sent[i];
}

uint32_t fb_pending_to(const fb *f, uint32_t server)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < f->nsent; i++)
        n += !f->sent[i].finished && f->sent[i].server == server;
    return n;
}

fb_sent *fb_to(fb *f, uint32_t server)
{
    fb_sent *found = NULL;
    for (uint32_t i = 0; i < f->nsent; i++) {
        if (f->sent[i].finished || f->sent[i].server != server)
            continue;
        cr_assert_null(found, "more than one message waits on server %u", server);
        found = &f->sent[i];
    }
    cr_assert_not_null(found, "no message waits on server %u", server);
    return found;
}

void fb_reply(fb *f, fb_sent *s, const char *reply)
{
    cr_assert(!s->finished, "'%s' was already answered", s->bytes);
    mr_msg *msg = s->msg;
    mr_worker *w = &f->w;
    size_t len = strlen(reply);
    /* The reply bytes arrive in one of the backend's input blocks. */
    mr_mbuf *mb = mr_mbuf_get(&w->mbufs, (uint32_t)len + 1);
    cr_assert_not_null(mb);
    memcpy(mb->data, reply, len);
    mb->len = (uint32_t)len;
    uint64_t max_value = 2ull * w->backends[s->server]->pool->conf->item_size_max;
    if (max_value < FB_MIN_MAX_VALUE)
        max_value = FB_MIN_MAX_VALUE;
    /* bconn_parse, for one message: VALUE items until END, or one element. */
    const char *p = mb->data;
    size_t left = len;
    bool complete = false;
    bool wanted = !msg->replied; /* a timed-out message drops its late reply */
    while (!complete) {
        mr_reply_elem e;
        mr_reply_kind kind = mr_reply_next(p, left, (uint32_t)max_value, FB_MAX_LINE, &e);
        cr_assert(kind != MR_REPLY_NEED_MORE && kind != MR_REPLY_BAD, "reply '%s' is incomplete or bad",
                  reply);
        cr_assert(!(msg->retrieval && kind == MR_REPLY_VA) &&
                      !(!msg->retrieval && (kind == MR_REPLY_VALUE || kind == MR_REPLY_END)),
                  "reply '%s' does not fit '%s'", reply, s->bytes);
        if (kind == MR_REPLY_VALUE) {
            if (wanted)
                cr_assert_eq(mr_msg_add_item(msg, mb, p, e.len), 0);
        } else {
            complete = true;
            if (wanted && kind != MR_REPLY_END)
                msg->line = mr_slice_ref(mb, p, e.len);
        }
        p += e.len;
        left -= e.len;
    }
    cr_assert_eq(left, 0, "bytes after the reply in '%s'", reply);
    mr_mbuf_unref(mb);
    s->finished = true;
    s->msg = NULL;
    mr_msg_finish(msg, MR_ERR_NONE);
}

void fb_fail(fb *f, fb_sent *s, mr_err err)
{
    cr_assert(!s->finished, "'%s' was already answered", s->bytes);
    mr_msg *msg = s->msg;
    s->finished = true;
    s->msg = NULL;
    mr_msg_finish(msg, err);
}

void fb_timeout(fb *f, fb_sent *s)
{
    cr_assert(!s->finished, "'%s' was already answered", s->bytes);
    mr_msg_answer(s->msg, MR_ERR_TIMEOUT);
}

void fb_set_down(fb *f, uint32_t server, mr_err err)
{
    cr_assert_lt(server, f->w.nbackends);
    f->down[server] = err;
}

void fb_use_backend(fb *f, uint32_t server)
{
    cr_assert_lt(server, f->w.nbackends);
    f->real[server] = true;
}

/* ---- placement ---- */

uint32_t fb_owner(const fb *f, uint32_t pool, const char *key)
{
    const mr_router *r = f->gen->router;
    const mr_pool *p = mr_router_pool_for_key(r, pool, key, strlen(key));
    return mr_router_server_for_key(p, key, strlen(key), 0);
}

uint32_t fb_replicas(const fb *f, uint32_t pool, const char *key, uint32_t *out)
{
    const mr_router *r = f->gen->router;
    const mr_pool *p = mr_router_pool_for_key(r, pool, key, strlen(key));
    return mr_router_replicas_for_key(p, key, strlen(key), 0, out, MR_MAX_REPLICAS);
}

uint32_t fb_server(const fb *f, uint32_t pool, uint32_t index)
{
    const mr_router *r = f->gen->router;
    cr_assert_lt(pool, r->npools);
    cr_assert_lt(index, r->pools[pool].nservers);
    return r->pools[pool].server_ids[index];
}

void fb_keys_on(const fb *f, uint32_t pool, uint32_t server, const char *prefix, char (*out)[32],
                uint32_t count)
{
    uint32_t found = 0;
    for (uint32_t n = 0; found < count && n < 100000; n++) {
        char key[32];
        snprintf(key, sizeof(key), "%s%u", prefix, n);
        if (fb_owner(f, pool, key) == server)
            memcpy(out[found++], key, sizeof(key));
    }
    cr_assert_eq(found, count, "only %u keys '%s...' on server %u", found, prefix, server);
}
