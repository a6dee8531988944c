/* test_request.c: a request's lifetime (request.c), driven through the fake
 * backend: when it is freed, what holds it, what its hooks see and in which
 * order, and where it goes when freed.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "memrelay/request.h"
#include "memrelay/worker.h"
#include "support/fake_backend.h"

static const char three_servers[] = "alpha:\n"
                                    "  listen: 127.0.0.1:22100\n"
                                    "  hash: md5\n"
                                    "  distribution: ketama\n"
                                    "  servers:\n"
                                    "    - 127.0.0.1:22101:1 a1\n"
                                    "    - 127.0.0.1:22102:1 a2\n"
                                    "    - 127.0.0.1:22103:1 a3\n";

Test(request, an_orphan_is_freed_at_its_last_finish)
{
    fb *f = fb_new(three_servers);
    mr_req *req = fb_request(f, "flush_all noreply\r\n");
    cr_assert_null(req->client, "a noreply request has no client");
    cr_assert_eq(fb_nsent(f), 3);
    cr_assert_eq(f->w.gen_reqs, 1);
    fb_reply(f, fb_sent_at(f, 0), "OK\r\n");
    fb_reply(f, fb_sent_at(f, 1), "OK\r\n");
    cr_assert_eq(f->w.gen_reqs, 1, "freed before its last message finished");
    cr_assert_eq(f->w.nfree_reqs, 0);
    fb_reply(f, fb_sent_at(f, 2), "OK\r\n");
    cr_assert_eq(f->w.gen_reqs, 0, "not freed at its last finish");
    cr_assert_eq(f->w.nfree_reqs, 1, "a freed request goes to the free list");
    cr_assert_eq(f->nready, 0, "an orphan tells no client");
    fb_free(f);
}

Test(request, a_request_whose_client_left_is_freed_at_its_last_finish)
{
    fb *f = fb_new(three_servers);
    fb_request(f, "get k0 k1 k2 k3 k4 k5 k6 k7 k8 k9\r\n");
    uint32_t n = fb_nsent(f);
    cr_assert_geq(n, 2, "the keys should span several servers");
    fb_client_gone(f);
    cr_assert_eq(f->w.gen_reqs, 1, "freed while its messages are on backend queues");
    for (uint32_t i = 0; i + 1 < n; i++) {
        fb_reply(f, fb_sent_at(f, i), "END\r\n");
        cr_assert_eq(f->w.gen_reqs, 1, "freed after %u of %u replies", i + 1, n);
    }
    fb_reply(f, fb_sent_at(f, n - 1), "END\r\n");
    cr_assert_eq(f->w.gen_reqs, 0);
    cr_assert_eq(f->nready, 0, "a gone client is not told");
    fb_free(f);
}

Test(request, a_request_done_for_its_client_waits_for_the_client)
{
    fb *f = fb_new(three_servers);
    fb_request(f, "get k0\r\n");
    fb_reply(f, fb_sent_at(f, 0), "END\r\n");
    cr_assert_eq(f->nready, 1);
    cr_assert_eq(f->w.gen_reqs, 1, "freed before its client took the reply");
    cr_assert_str_eq(fb_output(f), "END\r\n");
    cr_assert_eq(f->w.gen_reqs, 0, "not freed once its client was done");
    fb_free(f);
}

Test(request, a_timed_out_message_keeps_its_request_until_its_late_reply)
{
    fb *f = fb_new(three_servers);
    fb_request(f, "get k0\r\n");
    fb_sent *s = fb_sent_at(f, 0);
    fb_timeout(f, s);
    cr_assert_str_eq(fb_output(f), "SERVER_ERROR timeout\r\n");
    cr_assert_eq(f->w.gen_reqs, 1, "freed while its message is still on the backend queue");
    fb_reply(f, s, "VALUE k0 0 1\r\nx\r\nEND\r\n");
    cr_assert_eq(f->w.gen_reqs, 0);
    cr_assert_str_eq(fb_output(f), "", "a late reply reaches nobody");
    fb_free(f);
}

Test(request, the_dispatch_guard_holds_an_orphan_until_dispatch_is_over)
{
    fb *f = fb_new(three_servers);
    mr_req *req = mr_req_new(&f->w);
    req->cls = MR_CLASS_KEYED;
    cr_assert_eq(mr_req_alloc_msgs(req, 2), 0);
    /* Both messages fail at once, as to a server held down. */
    mr_msg_finish(&req->msgs[0], MR_ERR_DOWN);
    mr_msg_finish(&req->msgs[1], MR_ERR_DOWN);
    cr_assert_eq(f->w.gen_reqs, 1, "freed under the dispatcher's feet");
    cr_assert_not(req->done);
    mr_req_dispatched(req);
    cr_assert_eq(f->w.gen_reqs, 0, "not freed once dispatch was over");
    fb_free(f);
}

Test(request, the_dispatch_guard_holds_the_reply_until_dispatch_is_over)
{
    fb *f = fb_new(three_servers);
    mr_req *req = fb_new_req(f, 0, "delete k0\r\n");
    cr_assert_eq(mr_req_alloc_msgs(req, 2), 0);
    mr_msg_finish(&req->msgs[0], MR_ERR_DOWN);
    mr_msg_finish(&req->msgs[1], MR_ERR_DOWN);
    cr_assert_not(req->done, "done before dispatch was over");
    cr_assert_eq(f->nready, 0);
    mr_req_dispatched(req);
    cr_assert(req->done);
    cr_assert_eq(f->nready, 1, "the client is told once");
    fb_free(f);
}

Test(request, fail_unsent_answers_every_message_with_the_error)
{
    fb *f = fb_new(three_servers);
    mr_req *req = fb_new_req(f, 0, "flush_all\r\n");
    cr_assert_eq(mr_req_alloc_msgs(req, 3), 0);
    for (uint32_t i = 0; i < 3; i++)
        req->msgs[i].server = fb_server(f, 0, i);
    mr_req_fail_unsent(req, MR_ERR_NOMEM);
    for (uint32_t i = 0; i < 3; i++) {
        cr_assert(req->msgs[i].replied, "message %u unanswered", i);
        cr_assert_eq(req->msgs[i].error, MR_ERR_NOMEM, "message %u", i);
    }
    cr_assert_eq(f->nready, 1);
    cr_assert_eq(fb_nsent(f), 0, "nothing goes out");
    cr_assert_str_eq(fb_output(f), "SERVER_ERROR out of memory\r\n");
    fb_free(f);
}

Test(request, add_msg_past_the_cap_returns_null)
{
    fb *f = fb_new(three_servers);
    mr_req *req = fb_new_req(f, 0, "get k0\r\n");
    uint32_t cap = MR_REQ_INLINE_MSGS + 2; /* past the inline table */
    cr_assert_eq(mr_req_alloc_msgs_cap(req, 1, cap), 0);
    cr_assert_eq(req->pending, 2, "one message and the guard");
    for (uint32_t i = 1; i < cap; i++) {
        mr_msg *m = mr_req_add_msg(req);
        cr_assert_not_null(m, "slot %u of %u", i, cap);
        cr_assert_eq(m, &req->msgs[i]);
        cr_assert_eq(m->req, req);
        cr_assert_not(m->replied);
    }
    cr_assert_eq(req->pending, cap + 1, "each added message counts as pending");
    cr_assert_null(mr_req_add_msg(req));
    cr_assert_eq(req->nmsgs, cap);
    cr_assert_eq(req->pending, cap + 1);
    mr_req_fail_unsent(req, MR_ERR_NOMEM);
    fb_free(f);
}

/* Request hooks that log what they see. */
static void log_answered(mr_req *req, mr_msg *msg)
{
    fb_log(fb_of(req->worker), "answered m%u pending=%u", (unsigned)(msg - req->msgs), req->pending);
    req->acks++;
}

static bool log_ready(const mr_req *req)
{
    fb_log(fb_of(req->worker), "ready?");
    return req->acks >= 1;
}

static void log_finished(mr_req *req, mr_msg *msg, int err)
{
    fb_log(fb_of(req->worker), "finished m%u err=%d", (unsigned)(msg - req->msgs), err);
}

static const mr_req_ops logging_ops = {
    .answered = log_answered, .ready = log_ready, .finished = log_finished};

Test(request, finished_answered_and_ready_hooks_run_in_order)
{
    fb *f = fb_new(three_servers);
    mr_req *req = fb_new_req(f, 0, "delete k0\r\n");
    req->ops = &logging_ops;
    cr_assert_eq(mr_req_alloc_msgs(req, 2), 0);
    mr_req_dispatched(req);
    mr_msg_finish(&req->msgs[0], MR_ERR_NONE);
    mr_msg_finish(&req->msgs[1], MR_ERR_TIMEOUT);
    /* answered runs before its message stops counting as pending; ready is
     * asked after each answer until it says yes; then the client is told,
     * once; a later answer asks nothing more. */
    cr_assert_str_eq(f->log, "ready?;"
                             "finished m0 err=0;answered m0 pending=2;ready?;reply_ready;"
                             "finished m1 err=1;answered m1 pending=1;");
    fb_free(f);
}

Test(request, the_free_list_is_bounded)
{
    fb *f = fb_new(three_servers);
    uint32_t n = MR_WORKER_MAX_FREE_REQS + 5;
    mr_req **reqs = calloc(n, sizeof(*reqs));
    for (uint32_t i = 0; i < n; i++)
        cr_assert_not_null(reqs[i] = mr_req_new(&f->w));
    cr_assert_eq(f->w.gen_reqs, n);
    for (uint32_t i = 0; i < n; i++)
        mr_req_client_done(reqs[i]);
    cr_assert_eq(f->w.gen_reqs, 0);
    cr_assert_eq(f->w.nfree_reqs, MR_WORKER_MAX_FREE_REQS, "the free list keeps only its bound");
    cr_assert_eq(f->w.reqs_freed_bytes, 5 * sizeof(mr_req), "the rest go back to malloc, counted");
    /* The pool is reused: a new request comes off the free list. */
    mr_req *again = mr_req_new(&f->w);
    cr_assert_eq(f->w.nfree_reqs, MR_WORKER_MAX_FREE_REQS - 1);
    mr_req_client_done(again);
    free(reqs);
    fb_free(f);
}

Test(request, req_freed_gets_the_generation_a_request_started_under)
{
    fb *f = fb_new(three_servers);
    mr_worker *w = &f->w;
    mr_gen *first = w->gen;
    mr_req *old = mr_req_new(w);
    /* A reload: the worker serves a newer generation (worker.c's switch). */
    mr_gen newer = {.seq = 2, .cfg = first->cfg, .router = first->router};
    w->gen = &newer;
    w->gen_reqs = 0;
    mr_req *cur = mr_req_new(w);
    cr_assert_eq(cur->gen, &newer);
    mr_req_client_done(old);
    cr_assert_eq(f->nfreed, 1, "an old generation's request is reported");
    cr_assert_eq(f->freed_gen, first, "with the generation it started under");
    cr_assert_eq(w->gen_reqs, 1, "the current generation's count is untouched");
    mr_req_client_done(cur);
    cr_assert_eq(f->nfreed, 1, "a current request is counted without the hook");
    cr_assert_eq(w->gen_reqs, 0);
    w->gen = first;
    fb_free(f);
}
