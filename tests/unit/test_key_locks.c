/* test_key_locks.c: one replicated write per key stripe across workers
 * (key_locks.h), with two fake workers sharing one table: a write waits
 * while the other worker's write to the key is in flight on any replica,
 * repairs included, and starts when it is over, in order. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "memrelay/hash.h"
#include "memrelay/key_locks.h"
#include "memrelay/replicate.h"
#include "support/fake_backend.h"

#define POOL 0u

static const char yaml[] = "rep:\n"
                           "  listen: 127.0.0.1:22500\n"
                           "  hash: md5\n"
                           "  distribution: ketama\n"
                           "  replicas: 3\n"
                           "  servers:\n"
                           "    - 127.0.0.1:22501:1 r1\n"
                           "    - 127.0.0.1:22502:1 r2\n"
                           "    - 127.0.0.1:22503:1 r3\n";

typedef struct {
    fb *a, *b; /* workers 0 and 1 */
    mr_key_locks *kl;
} pair;

static void join(fb *f, mr_key_locks *kl, uint32_t index)
{
    mr_worker *w = &f->w;
    w->index = index;
    f->shared.nworkers = 2;
    f->shared.key_locks = kl;
    ev_async_init(&w->key_wake, NULL);
    ev_async_start(w->loop, &w->key_wake);
    mr_key_locks_register(kl, index, w->loop, &w->key_wake);
}

static pair two_workers(void)
{
    pair p = {fb_new(yaml), fb_new(yaml), mr_key_locks_new(2)};
    cr_assert_not_null(p.kl);
    join(p.a, p.kl, 0);
    join(p.b, p.kl, 1);
    return p;
}

static void pair_free(pair *p)
{
    fb_free(p->a);
    fb_free(p->b);
    mr_key_locks_free(p->kl);
}

/* Was the worker woken since the last look? (The async is cleared.) */
static bool woken(fb *f)
{
    bool pending = ev_async_pending(&f->w.key_wake);
    if (pending)
        ev_clear_pending(f->w.loop, &f->w.key_wake);
    return pending;
}

/* Answer every unfinished send of `f` with `reply`. */
static void reply_all(fb *f, const char *reply)
{
    for (uint32_t i = 0; i < fb_nsent(f); i++)
        if (!fb_sent_at(f, i)->finished)
            fb_reply(f, fb_sent_at(f, i), reply);
}

static uint32_t stripe(const char *key)
{
    return mr_key_stripe(mr_hash(MR_HASH_FNV1A_32, key, strlen(key)));
}

Test(key_locks, a_write_waits_while_another_worker_writes_the_key)
{
    pair p = two_workers();
    fb_request(p.a, "set k 0 0 1\r\n1\r\n");
    cr_assert_eq(fb_nsent(p.a), 3);
    fb_request(p.b, "set k 0 0 1\r\n2\r\n");
    cr_assert_eq(fb_nsent(p.b), 0, "parked: worker 0 has a write to k in flight");
    /* Answered (write_ack one) is not over: two replicas still owe a reply. */
    fb_reply(p.a, fb_sent_at(p.a, 0), "STORED\r\n");
    cr_assert_str_eq(fb_output(p.a), "STORED\r\n");
    cr_assert_not(woken(p.b));
    fb_reply(p.a, fb_sent_at(p.a, 1), "STORED\r\n");
    cr_assert_not(woken(p.b));
    fb_reply(p.a, fb_sent_at(p.a, 2), "STORED\r\n");
    cr_assert(woken(p.b), "the last replica answered: the waiting worker is woken");
    mr_replicate_resume(&p.b->w);
    cr_assert_eq(fb_nsent(p.b), 3);
    cr_assert_str_eq(fb_sent_at(p.b, 0)->bytes, "set k 0 0 1\r\n2\r\n");
    /* Now worker 0 waits for worker 1. */
    fb_request(p.a, "set k 0 0 1\r\n3\r\n");
    cr_assert_eq(fb_nsent(p.a), 3);
    reply_all(p.b, "STORED\r\n");
    cr_assert(woken(p.a));
    mr_replicate_resume(&p.a->w);
    cr_assert_eq(fb_nsent(p.a), 6);
    reply_all(p.a, "STORED\r\n");
    cr_assert_str_eq(fb_output(p.b), "STORED\r\n");
    cr_assert_str_eq(fb_output(p.a), "STORED\r\n");
    pair_free(&p);
}

Test(key_locks, writes_of_one_worker_to_a_key_do_not_wait_for_each_other)
{
    pair p = two_workers();
    fb_request(p.a, "set k 0 0 1\r\n1\r\n");
    fb_request(p.a, "set k 0 0 1\r\n2\r\n");
    cr_assert_eq(fb_nsent(p.a), 6, "same connections, same order: no wait");
    reply_all(p.a, "STORED\r\n");
    fb_request(p.b, "set k 0 0 1\r\n3\r\n");
    cr_assert_eq(fb_nsent(p.b), 3, "both of worker 0's writes are over: the stripe is free");
    reply_all(p.b, "STORED\r\n");
    pair_free(&p);
}

Test(key_locks, other_keys_and_reads_do_not_wait)
{
    pair p = two_workers();
    cr_assert_neq(stripe("k"), stripe("j"));
    fb_request(p.a, "set k 0 0 1\r\n1\r\n");
    fb_request(p.b, "set j 0 0 1\r\n1\r\n");
    cr_assert_eq(fb_nsent(p.b), 3, "another stripe");
    fb_request(p.b, "get k\r\n");
    cr_assert_eq(fb_nsent(p.b), 4, "reads take no lock");
    fb_reply(p.b, fb_sent_at(p.b, 3), "END\r\n");
    reply_all(p.a, "STORED\r\n");
    reply_all(p.b, "STORED\r\n");
    pair_free(&p);
}

Test(key_locks, the_stripe_is_held_through_the_read_back_and_its_copies)
{
    pair p = two_workers();
    uint32_t r[3];
    cr_assert_eq(fb_replicas(p.a, POOL, "n", r), 3);
    fb_request(p.a, "incr n 1\r\n");
    fb_request(p.b, "set n 0 0 1\r\n7\r\n");
    cr_assert_eq(fb_nsent(p.b), 0);
    fb_reply(p.a, fb_sent_at(p.a, 0), "8\r\n");
    cr_assert_str_eq(fb_sent_at(p.a, 1)->bytes, "mg n v f t\r\n");
    cr_assert_not(woken(p.b), "the read-back is still out");
    fb_reply(p.a, fb_sent_at(p.a, 1), "VA 1 f0 t-1\r\n8\r\n");
    cr_assert_eq(fb_nsent(p.a), 4);
    fb_reply(p.a, fb_sent_at(p.a, 2), "HD\r\n");
    cr_assert_not(woken(p.b), "one copy is still out");
    fb_reply(p.a, fb_sent_at(p.a, 3), "HD\r\n");
    cr_assert(woken(p.b));
    mr_replicate_resume(&p.b->w);
    cr_assert_eq(fb_nsent(p.b), 3);
    reply_all(p.b, "STORED\r\n");
    pair_free(&p);
}

Test(key_locks, a_timed_out_write_holds_the_stripe_until_its_late_reply)
{
    pair p = two_workers();
    fb_request(p.a, "set k 0 0 1\r\n1\r\n");
    fb_reply(p.a, fb_sent_at(p.a, 0), "STORED\r\n");
    fb_reply(p.a, fb_sent_at(p.a, 1), "STORED\r\n");
    fb_timeout(p.a, fb_sent_at(p.a, 2));
    fb_request(p.b, "set k 0 0 1\r\n2\r\n");
    cr_assert_eq(fb_nsent(p.b), 0, "the timed-out write is still in its connection's stream");
    fb_reply(p.a, fb_sent_at(p.a, 2), "STORED\r\n");
    cr_assert(woken(p.b));
    mr_replicate_resume(&p.b->w);
    cr_assert_eq(fb_nsent(p.b), 3);
    reply_all(p.b, "STORED\r\n");
    pair_free(&p);
}

Test(key_locks, parked_writes_start_in_order_and_later_ones_queue_behind_them)
{
    pair p = two_workers();
    fb_request(p.a, "set k 0 0 1\r\n1\r\n");
    fb_request(p.b, "set k 0 0 1\r\n2\r\n");
    reply_all(p.a, "STORED\r\n");
    cr_assert(woken(p.b));
    /* Before worker 1 runs its wake-up, one more write to k arrives: the
     * stripe is free, yet it must not overtake the parked one. */
    fb_request(p.b, "set k 0 0 1\r\n3\r\n");
    cr_assert_eq(fb_nsent(p.b), 0);
    mr_replicate_resume(&p.b->w);
    cr_assert_eq(fb_nsent(p.b), 6);
    cr_assert_str_eq(fb_sent_at(p.b, 0)->bytes, "set k 0 0 1\r\n2\r\n");
    cr_assert_str_eq(fb_sent_at(p.b, 3)->bytes, "set k 0 0 1\r\n3\r\n");
    reply_all(p.b, "STORED\r\n");
    cr_assert_str_eq(fb_output(p.b), "STORED\r\nSTORED\r\n");
    pair_free(&p);
}

Test(key_locks, a_parked_write_whose_client_left_still_runs)
{
    pair p = two_workers();
    fb_request(p.a, "set k 0 0 1\r\n1\r\n");
    fb_request(p.b, "set k 0 0 1\r\n2\r\n");
    fb_client_gone(p.b);
    reply_all(p.a, "STORED\r\n");
    cr_assert(woken(p.b));
    mr_replicate_resume(&p.b->w);
    cr_assert_eq(fb_nsent(p.b), 3, "it was read: it runs, as an orphan");
    reply_all(p.b, "STORED\r\n");
    pair_free(&p); /* fb_free checks that it was freed */
}

Test(key_locks, a_write_parked_at_shutdown_is_answered_unavailable)
{
    pair p = two_workers();
    fb_request(p.a, "set k 0 0 1\r\n1\r\n");
    fb_request(p.b, "set k 0 0 1\r\n2\r\n");
    mr_replicate_drop_parked(&p.b->w);
    cr_assert_str_eq(fb_output(p.b), "SERVER_ERROR backend unavailable\r\n");
    reply_all(p.a, "STORED\r\n");
    pair_free(&p);
}
