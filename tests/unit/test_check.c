/* MR_CHECK (check.h): aborts on a broken invariant in builds with
 * MEMRELAY_CHECKS, costs nothing (is not even evaluated) without. */
#include <criterion/criterion.h>
#include <signal.h>

#include "memrelay/check.h"
#include "memrelay/mbuf.h"

#ifdef MEMRELAY_CHECKS

Test(check, a_false_condition_aborts, .signal = SIGABRT)
{
    int refs = 0;
    MR_CHECK(refs > 0);
}

Test(check, a_true_condition_goes_on)
{
    int refs = 1;
    MR_CHECK(refs > 0);
    cr_assert_eq(refs, 1);
}

Test(check, dropping_a_block_reference_twice_aborts, .signal = SIGABRT)
{
    mr_mbuf_pool pool;
    mr_mbuf_pool_init(&pool, 4);
    mr_mbuf *mb = mr_mbuf_get(&pool, 16);
    cr_assert_not_null(mb);
    mr_mbuf_unref(mb); /* the last reference: back to the pool's free list */
    mr_mbuf_unref(mb); /* one too many */
}

Test(check, referencing_a_released_block_aborts, .signal = SIGABRT)
{
    mr_mbuf_pool pool;
    mr_mbuf_pool_init(&pool, 4);
    mr_mbuf *mb = mr_mbuf_get(&pool, 16);
    cr_assert_not_null(mb);
    mr_mbuf_unref(mb);
    mr_slice s = mr_slice_ref(mb, mb->data, 0);
    (void)s;
}

#else

Test(check, without_MEMRELAY_CHECKS_the_condition_is_not_evaluated)
{
    int evaluated = 0;
    MR_CHECK(++evaluated == 42);
    cr_assert_eq(evaluated, 0);
}

#endif
