/* Socket input blocks: slices keep bytes alive, and a partial element moves once. */
#include <criterion/criterion.h>
#include <string.h>

#include "memrelay/inbuf.h"

static void fill(mr_inbuf *ib, const char *s)
{
    memcpy(ib->mb->data + ib->mb->len, s, strlen(s));
    ib->mb->len += (uint32_t)strlen(s);
}

Test(inbuf, empty_unshared_block_is_reused_after_consume)
{
    mr_mbuf_pool pool;
    mr_mbuf_pool_init(&pool, 4);
    mr_inbuf ib = {0};
    cr_assert_eq(mr_inbuf_reserve(&ib, &pool, 0, 1), 0);
    mr_mbuf *first = ib.mb;
    fill(&ib, "get a\r\n");
    mr_inbuf_consume(&ib, 7);
    cr_assert_eq(ib.mb, first);
    cr_assert_eq(ib.start, 0);
    cr_assert_eq(ib.mb->len, 0);
    mr_inbuf_release(&ib);
    mr_mbuf_pool_drain(&pool);
}

Test(inbuf, referenced_block_is_not_overwritten)
{
    mr_mbuf_pool pool;
    mr_mbuf_pool_init(&pool, 4);
    mr_inbuf ib = {0};
    mr_inbuf_reserve(&ib, &pool, 0, 1);
    fill(&ib, "get a\r\n");
    mr_mbuf *held = mr_mbuf_ref(ib.mb); /* a request's slice */
    mr_inbuf_consume(&ib, 7);
    cr_assert_eq(ib.start, 7, "bytes a slice refers to must stay put");
    cr_assert_eq(memcmp(held->data, "get a\r\n", 7), 0);
    mr_mbuf_unref(held);
    mr_inbuf_release(&ib);
    mr_mbuf_pool_drain(&pool);
}

Test(inbuf, partial_tail_moves_to_a_block_that_fits_the_whole_element)
{
    mr_mbuf_pool pool;
    mr_mbuf_pool_init(&pool, 4);
    mr_inbuf ib = {0};
    mr_inbuf_reserve(&ib, &pool, 0, 1);
    /* Fill the block so little room is left, ending in a partial request. */
    uint32_t cap = ib.mb->cap;
    memset(ib.mb->data, 'x', cap - 10);
    ib.mb->len = cap - 10;
    mr_inbuf_consume(&ib, cap - 20); /* 10 bytes of a partial request remain */
    mr_mbuf *held = mr_mbuf_ref(ib.mb);
    cr_assert_eq(mr_inbuf_reserve(&ib, &pool, 100000, 1), 0);
    cr_assert_neq(ib.mb, held);
    cr_assert_geq(ib.mb->cap, 100000);
    cr_assert_eq(mr_inbuf_len(&ib), 10);
    mr_mbuf_unref(held);
    mr_inbuf_release(&ib);
    mr_mbuf_pool_drain(&pool);
}

Test(mbuf, free_list_is_bounded)
{
    mr_mbuf_pool pool;
    mr_mbuf_pool_init(&pool, 2);
    mr_mbuf *b[5];
    for (int i = 0; i < 5; i++)
        b[i] = mr_mbuf_get(&pool, 100);
    for (int i = 0; i < 5; i++)
        mr_mbuf_unref(b[i]);
    cr_assert_eq(pool.nfree, 2);
    cr_assert_eq(pool.allocated, 0);
    mr_mbuf_pool_drain(&pool);
}

Test(inbuf, a_large_element_sizes_the_next_fresh_blocks_until_small_ones_follow)
{
    mr_mbuf_pool pool;
    mr_mbuf_pool_init(&pool, 4);
    mr_inbuf ib = {0};
    uint32_t big = 3 * MR_MBUF_SIZE;
    cr_assert_eq(mr_inbuf_reserve(&ib, &pool, 0, 1), 0);
    ib.mb->len = 100; /* the head of a large element: its size is now known */
    cr_assert_eq(mr_inbuf_reserve(&ib, &pool, big, 1), 0);
    cr_assert_geq(ib.mb->cap, big);
    ib.mb->len = big;
    mr_inbuf_consume(&ib, big);
    mr_inbuf_release(&ib);
    /* The next read goes straight into a block with room for two of them. */
    cr_assert_eq(mr_inbuf_reserve(&ib, &pool, 0, 2), 0);
    cr_assert_geq(mr_mbuf_room(ib.mb), 2 * big);
    /* A run of small elements forgets the large size. */
    for (int i = 0; i < 64; i++) {
        ib.mb->len += 10;
        mr_inbuf_consume(&ib, 10);
    }
    mr_inbuf_release(&ib);
    cr_assert_eq(mr_inbuf_reserve(&ib, &pool, 0, 2), 0);
    cr_assert_eq(ib.mb->cap, MR_MBUF_SIZE);
    mr_inbuf_release(&ib);
    mr_mbuf_pool_drain(&pool);
}

Test(mbuf, shrink_frees_blocks_unused_for_a_period_and_asks_for_a_trim_after_a_drop)
{
    mr_mbuf_pool pool;
    mr_mbuf_pool_init(&pool, 256);
    mr_mbuf *b[100];
    for (int i = 0; i < 100; i++)
        b[i] = mr_mbuf_get(&pool, 100);
    for (int i = 0; i < 100; i++)
        mr_mbuf_unref(b[i]);
    cr_assert_eq(pool.nfree, 100);
    /* Live use fell from 100 blocks to none, but only 100 * 16 KiB was freed
     * to malloc by the shrink below: the first shrink frees nothing (the
     * blocks were free for part of the period only). */
    cr_assert_not(mr_mbuf_pool_shrink(&pool, 0));
    cr_assert_eq(pool.nfree, 100);
    /* Ten are taken and given back: ninety went unused for a whole period. */
    for (int i = 0; i < 10; i++)
        b[i] = mr_mbuf_get(&pool, 100);
    for (int i = 0; i < 10; i++)
        mr_mbuf_unref(b[i]);
    cr_assert(mr_mbuf_pool_shrink(&pool, 0)); /* 90 * 16 KiB >= 1 MiB returned, nothing live */
    cr_assert_eq(pool.nfree, 10);
    /* Steady use near the peak: blocks in use are not a reason to trim. */
    for (int i = 0; i < 100; i++)
        b[i] = mr_mbuf_get(&pool, 100);
    cr_assert_not(mr_mbuf_pool_shrink(&pool, 0));
    for (int i = 0; i < 100; i++)
        mr_mbuf_unref(b[i]);
    mr_mbuf_pool_drain(&pool);
}

Test(mbuf, memory_the_caller_freed_counts_toward_a_trim)
{
    mr_mbuf_pool pool;
    mr_mbuf_pool_init(&pool, 256);
    /* No block was freed, but the worker gave 2 MiB of pooled requests back
     * to malloc: that heap is worth handing back to the system too. */
    cr_assert_not(mr_mbuf_pool_shrink(&pool, 512u * 1024u));
    cr_assert(mr_mbuf_pool_shrink(&pool, 2u * 1024u * 1024u));
    /* The count starts again after a trim. */
    cr_assert_not(mr_mbuf_pool_shrink(&pool, 0));
    mr_mbuf_pool_drain(&pool);
}
