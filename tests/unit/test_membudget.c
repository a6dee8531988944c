/* test_membudget.c: memory_limit's shared budget (membudget.h): charges
 * move credit in chunks, a take never passes the limit, a force always
 * succeeds, idle credit beyond two chunks goes back, and a worker that
 * waits is woken when another gives credit back. */
#include <criterion/criterion.h>

#include "memrelay/membudget.h"

#define MIB (1024u * 1024u)

Test(membudget, small_charges_take_one_chunk_and_stay_local)
{
    mr_membudget *b = mr_membudget_new(64 * MIB, 1);
    mr_memcredit cr;
    mr_memcredit_init(b, &cr);
    mr_membudget_view v;
    mr_memcredit_add(b, &cr, 100);
    mr_membudget_read(b, &v);
    cr_assert_eq(v.used, MR_MEMBUDGET_CHUNK);
    for (int i = 0; i < 1000; i++) {
        mr_memcredit_add(b, &cr, 100);
        mr_memcredit_sub(b, &cr, 100, 0);
    }
    mr_membudget_read(b, &v);
    cr_assert_eq(v.used, MR_MEMBUDGET_CHUNK, "a round trip moved shared credit");
    cr_assert_eq(cr.held, 100);
    mr_membudget_free(b);
}

Test(membudget, take_never_passes_the_limit_force_always_succeeds)
{
    mr_membudget *b = mr_membudget_new(4 * MIB, 1);
    mr_memcredit cr;
    mr_memcredit_init(b, &cr);
    cr_assert(mr_memcredit_take(b, &cr, 3 * MIB));
    cr_assert_not(mr_memcredit_take(b, &cr, 2 * MIB));
    cr_assert_eq(cr.held, 3 * MIB, "a refused take charged something");
    cr_assert(mr_memcredit_take(b, &cr, 1 * MIB), "exactly the rest fits");
    cr_assert(mr_memcredit_exhausted(b, &cr, 0), "the whole limit is held: push back");
    mr_memcredit_force(b, &cr, 1 * MIB);
    mr_membudget_view v;
    mr_membudget_read(b, &v);
    cr_assert_eq(v.used, 5 * MIB);
    cr_assert_eq(v.peak, 5 * MIB);
    mr_membudget_free(b);
}

Test(membudget, idle_credit_beyond_two_chunks_goes_back)
{
    mr_membudget *b = mr_membudget_new(64 * MIB, 1);
    mr_memcredit cr;
    mr_memcredit_init(b, &cr);
    cr_assert(mr_memcredit_take(b, &cr, 10 * MIB));
    mr_memcredit_sub(b, &cr, 10 * MIB, 0);
    mr_membudget_view v;
    mr_membudget_read(b, &v);
    cr_assert_leq(v.used, 2 * MR_MEMBUDGET_CHUNK);
    cr_assert_eq(cr.held, 0);
    cr_assert_eq(v.peak, 10 * MIB);
    mr_membudget_free(b);
}

Test(membudget, small_budgets_for_many_workers_get_small_chunks)
{
    mr_membudget *b = mr_membudget_new(2 * MIB, 64);
    mr_memcredit cr;
    mr_memcredit_init(b, &cr);
    mr_memcredit_add(b, &cr, 1);
    mr_membudget_view v;
    mr_membudget_read(b, &v);
    cr_assert_leq(v.used * 16 * 64, 2 * MIB, "a chunk of %llu bytes", (unsigned long long)v.used);
    mr_membudget_free(b);
}

static int woken;
static void on_wake(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)a;
    (void)revents;
    woken++;
    ev_break(loop, EVBREAK_ALL);
}

Test(membudget, a_waiting_worker_is_woken_when_another_gives_back)
{
    mr_membudget *b = mr_membudget_new(8 * MIB, 2);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    ev_async wake;
    ev_async_init(&wake, on_wake);
    ev_async_start(loop, &wake);
    mr_membudget_register(b, 1, loop, &wake);
    mr_memcredit a, c;
    mr_memcredit_init(b, &a);
    mr_memcredit_init(b, &c);
    cr_assert(mr_memcredit_take(b, &a, 7 * MIB));
    cr_assert_not(mr_memcredit_take(b, &c, 2 * MIB));
    mr_membudget_waiting(b, 1, true);
    mr_memcredit_sub(b, &a, 7 * MIB, 0);
    ev_run(loop, 0);
    cr_assert_eq(woken, 1);
    cr_assert(mr_memcredit_take(b, &c, 2 * MIB));
    mr_membudget_waiting(b, 1, false);
    mr_membudget_register(b, 1, NULL, NULL);
    ev_loop_destroy(loop);
    mr_membudget_free(b);
}
