/* test_dist.c: the distribution table, modula and random. */
#include <criterion/criterion.h>

#include "memrelay/dist.h"

Test(dist_names, every_kind_round_trips_through_its_name)
{
    static const char *names[] = {"ketama", "modula", "random"};
    for (int k = 0; k < MR_DIST_COUNT; k++) {
        mr_dist_kind back;
        cr_expect_str_eq(mr_dist_name((mr_dist_kind)k), names[k]);
        cr_expect_eq(mr_dist_from_name(names[k], &back), 0);
        cr_expect_eq(back, (mr_dist_kind)k);
        const mr_dist_ops *ops = mr_dist_ops_for((mr_dist_kind)k);
        cr_assert_not_null(ops);
        cr_expect(ops->build && ops->pick && ops->successors && ops->destroy);
    }
}

Test(dist_names, unknown_names_are_rejected)
{
    mr_dist_kind kind = MR_DIST_MODULA;
    cr_expect_eq(mr_dist_from_name("vnode", &kind), -1);
    cr_expect_eq(mr_dist_from_name("Ketama", &kind), -1);
    cr_expect_eq(kind, MR_DIST_MODULA, "out is untouched on failure");
    cr_expect_null(mr_dist_name(MR_DIST_COUNT));
    cr_expect_null(mr_dist_ops_for(MR_DIST_COUNT));
}

static const mr_dist_server weighted[] = {{"a", 1}, {"b", 2}, {"c", 3}};

/* Slots in config order: a | b b | c c c, and hash % 6 picks one. */
Test(modula, server_repeated_weight_times_in_config_order)
{
    static const uint32_t slot_owner[6] = {0, 1, 1, 2, 2, 2};
    const mr_dist_ops *ops = mr_dist_ops_for(MR_DIST_MODULA);
    mr_dist *d = ops->build(weighted, 3);
    cr_assert_not_null(d);
    for (uint32_t hsh = 0; hsh < 60; hsh++)
        cr_expect_eq(ops->pick(d, hsh), slot_owner[hsh % 6], "hash %u", hsh);
    cr_expect_eq(ops->pick(d, 0xffffffffu), slot_owner[0xffffffffu % 6]);
    ops->destroy(d);
}

Test(modula, equal_weights_are_hash_mod_n)
{
    static const mr_dist_server s[] = {{"a", 1}, {"b", 1}, {"c", 1}, {"d", 1}, {"e", 1}};
    const mr_dist_ops *ops = mr_dist_ops_for(MR_DIST_MODULA);
    mr_dist *d = ops->build(s, 5);
    for (uint32_t i = 0; i < 1000; i++) {
        uint32_t hsh = i * 2654435761u;
        cr_expect_eq(ops->pick(d, hsh), hsh % 5);
    }
    ops->destroy(d);
}

/* Weights beyond any sensible slot table must not cost memory. */
Test(modula, huge_weights_use_cumulative_ranges)
{
    static const mr_dist_server s[] = {{"a", 4000000000u}, {"b", 4000000000u}};
    const mr_dist_ops *ops = mr_dist_ops_for(MR_DIST_MODULA);
    mr_dist *d = ops->build(s, 2);
    cr_assert_not_null(d);
    cr_expect_eq(ops->pick(d, 3999999999u), 0);
    cr_expect_eq(ops->pick(d, 4000000000u), 1);
    ops->destroy(d);
}

Test(modula, successors_follow_config_order_and_wrap)
{
    const mr_dist_ops *ops = mr_dist_ops_for(MR_DIST_MODULA);
    mr_dist *d = ops->build(weighted, 3);
    uint32_t out[4];
    cr_expect_eq(ops->successors(d, 4, out, 4), 3, "never more than the pool");
    cr_expect_eq(out[0], 2);
    cr_expect_eq(out[1], 0);
    cr_expect_eq(out[2], 1);
    cr_expect_eq(ops->successors(d, 1, out, 2), 2);
    cr_expect_eq(out[0], 1);
    cr_expect_eq(out[1], 2);
    cr_expect_eq(ops->successors(d, 1, out, 0), 0);
    ops->destroy(d);
}

Test(modula, build_refuses_a_pool_without_weight)
{
    static const mr_dist_server s[] = {{"a", 0}};
    cr_expect_null(mr_dist_ops_for(MR_DIST_MODULA)->build(s, 1));
}

/* random: the caller passes a random number; weights play no part. */
Test(random, pick_is_number_mod_n_ignoring_weight)
{
    const mr_dist_ops *ops = mr_dist_ops_for(MR_DIST_RANDOM);
    mr_dist *d = ops->build(weighted, 3);
    cr_assert_not_null(d);
    for (uint32_t r = 0; r < 30; r++)
        cr_expect_eq(ops->pick(d, r), r % 3);
    cr_expect_eq(ops->pick(d, 0xffffffffu), 0xffffffffu % 3);
    ops->destroy(d);
}

Test(random, successors_follow_config_order_and_wrap)
{
    const mr_dist_ops *ops = mr_dist_ops_for(MR_DIST_RANDOM);
    mr_dist *d = ops->build(weighted, 3);
    uint32_t out[3];
    cr_expect_eq(ops->successors(d, 5, out, 3), 3);
    cr_expect_eq(out[0], 2);
    cr_expect_eq(out[1], 0);
    cr_expect_eq(out[2], 1);
    ops->destroy(d);
}

Test(random, one_server_always_wins)
{
    static const mr_dist_server s[] = {{"only", 1}};
    const mr_dist_ops *ops = mr_dist_ops_for(MR_DIST_RANDOM);
    mr_dist *d = ops->build(s, 1);
    cr_expect_eq(ops->pick(d, 0xdeadbeefu), 0);
    ops->destroy(d);
}
