/* test_ketama.c: the ketama ring, against the vectors of REFERENCE section 1
 * and against a plain model of the ring rebuilt here from digest points. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memrelay/dist.h"
#include "memrelay/hash.h"

static const mr_dist_ops *ops;

static void setup(void)
{
    ops = mr_dist_ops_for(MR_DIST_KETAMA);
}

TestSuite(ketama, .init = setup);

static uint32_t owner(const mr_dist *d, const char *key)
{
    return ops->pick(d, mr_hash(MR_HASH_FNV1A_64, key, strlen(key)));
}

Test(ketama, points_per_server_uses_float32)
{
    /* 25 equal servers: 156 each in float32 (160 in double). */
    cr_expect_eq(mr_ketama_points_per_server(1, 25, 25), 156);
    cr_expect_eq(mr_ketama_points_per_server(1, 2, 2), 160);
    cr_expect_eq(mr_ketama_points_per_server(1, 3, 3), 160);
}

Test(ketama, points_per_server_follow_weight)
{
    cr_expect_eq(mr_ketama_points_per_server(1, 11, 4), 56);
    cr_expect_eq(mr_ketama_points_per_server(2, 11, 4), 116);
    cr_expect_eq(mr_ketama_points_per_server(3, 11, 4), 172);
    cr_expect_eq(mr_ketama_points_per_server(5, 11, 4), 288);
    cr_expect_eq(mr_ketama_points_per_server(1, 0, 4), 0);
}

Test(ketama, digest_points_are_little_endian_md5_quarters)
{
    uint32_t p[4];
    mr_ketama_digest_points("server1", 8, p);
    cr_expect_eq(p[0], 3853726576u);
    cr_expect_eq(p[3], 2667054752u);
}

Test(ketama, two_equal_servers)
{
    mr_dist_server s[] = {{"127.0.0.1:21211", 1}, {"127.0.0.1:21212", 1}};
    mr_dist *d = ops->build(s, 2);
    cr_assert_not_null(d);
    cr_expect_eq(mr_ketama_point_count(d), 320);
    cr_expect_eq(owner(d, "foo"), 0);
    cr_expect_eq(owner(d, "bar"), 1);
    cr_expect_eq(owner(d, "user:1"), 1);
    cr_expect_eq(owner(d, "key:42"), 1);
    cr_expect_eq(owner(d, "session:abc"), 0);
    ops->destroy(d);
}

Test(ketama, four_weighted_servers)
{
    mr_dist_server s[] = {
        {"127.0.0.1:21211", 1}, {"127.0.0.1:21212", 2}, {"127.0.0.1:21213", 3}, {"127.0.0.1:21214", 5}};
    mr_dist *d = ops->build(s, 4);
    cr_assert_not_null(d);
    cr_expect_eq(mr_ketama_point_count(d), 632, "56 + 116 + 172 + 288");
    cr_expect_eq(owner(d, "foo"), 3);
    cr_expect_eq(owner(d, "bar"), 2);
    cr_expect_eq(owner(d, "user:1"), 1);
    ops->destroy(d);
}

/* Port 11211 servers are named by host alone (the config module computes
 * the ident; this pins the ring for those idents). */
Test(ketama, default_port_idents)
{
    mr_dist_server s[] = {{"127.0.0.2", 1}, {"127.0.0.3", 1}, {"127.0.0.1:21214", 1}};
    mr_dist *d = ops->build(s, 3);
    cr_assert_not_null(d);
    cr_expect_eq(mr_ketama_point_count(d), 480);
    cr_expect_eq(owner(d, "foo"), 0);
    cr_expect_eq(owner(d, "bar"), 2);
    ops->destroy(d);
}

Test(ketama, twenty_five_servers_get_156_points_each)
{
    static char names[25][16];
    mr_dist_server s[25];
    for (int i = 0; i < 25; i++) {
        snprintf(names[i], sizeof(names[i]), "10.0.0.%d", i + 1);
        s[i] = (mr_dist_server){names[i], 1};
    }
    mr_dist *d = ops->build(s, 25);
    cr_assert_not_null(d);
    cr_expect_eq(mr_ketama_point_count(d), 25 * 156);
    ops->destroy(d);
}

Test(ketama, one_server_owns_everything_without_a_ring)
{
    mr_dist_server s[] = {{"127.0.0.1:21211", 7}};
    mr_dist *d = ops->build(s, 1);
    cr_assert_not_null(d);
    cr_expect_eq(mr_ketama_point_count(d), 0);
    cr_expect_eq(ops->pick(d, 0), 0);
    cr_expect_eq(ops->pick(d, 0xffffffffu), 0);
    uint32_t out[3];
    cr_expect_eq(ops->successors(d, 12345, out, 3), 1);
    cr_expect_eq(out[0], 0);
    ops->destroy(d);
}

/* The model: every point of every server, sorted by (value, server). */
typedef struct {
    uint32_t value, server;
} point;

static int point_cmp(const void *pa, const void *pb)
{
    const point *a = pa, *b = pb;
    if (a->value != b->value)
        return a->value < b->value ? -1 : 1;
    return a->server < b->server ? -1 : a->server > b->server;
}

static size_t model_ring(const mr_dist_server *s, size_t n, point *out)
{
    uint64_t total = 0;
    size_t np = 0;
    for (size_t i = 0; i < n; i++)
        total += s[i].weight;
    for (size_t i = 0; i < n; i++) {
        uint32_t digests = mr_ketama_points_per_server(s[i].weight, total, n) / 4;
        for (uint32_t j = 0; j < digests; j++) {
            uint32_t v[4];
            mr_ketama_digest_points(s[i].ident, j, v);
            for (int k = 0; k < 4; k++)
                out[np++] = (point){v[k], (uint32_t)i};
        }
    }
    qsort(out, np, sizeof(*out), point_cmp);
    return np;
}

static const mr_dist_server three[] = {{"alpha", 1}, {"beta", 2}, {"gamma:11212", 1}};
static point ring3[1024];

Test(ketama, pick_is_first_point_at_or_after_hash)
{
    size_t np = model_ring(three, 3, ring3);
    mr_dist *d = ops->build(three, 3);
    cr_assert_eq(mr_ketama_point_count(d), np);
    cr_expect_eq(ops->pick(d, 0), ring3[0].server);
    for (size_t i = 0; i < np; i++) {
        /* A hash exactly on a point belongs to it... */
        cr_expect_eq(ops->pick(d, ring3[i].value), ring3[i].server, "on point %zu", i);
        /* ...and so does one just past the previous point. */
        if (i > 0 && ring3[i - 1].value != ring3[i].value)
            cr_expect_eq(ops->pick(d, ring3[i - 1].value + 1), ring3[i].server, "before point %zu", i);
    }
    ops->destroy(d);
}

Test(ketama, hash_past_the_last_point_wraps_to_the_first)
{
    size_t np = model_ring(three, 3, ring3);
    mr_dist *d = ops->build(three, 3);
    cr_assert_lt(ring3[np - 1].value, 0xffffffffu, "needs a gap after the last point");
    cr_expect_eq(ops->pick(d, ring3[np - 1].value + 1), ring3[0].server);
    cr_expect_eq(ops->pick(d, 0xffffffffu), ring3[0].server);
    ops->destroy(d);
}

/* The model's answer by a binary search over the whole ring: the first
 * point at or after hash, else the first point. */
static uint32_t model_pick(const point *ring, size_t np, uint32_t hash)
{
    size_t lo = 0, hi = np;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ring[mid].value < hash)
            lo = mid + 1;
        else
            hi = mid;
    }
    return ring[lo == np ? 0 : lo].server;
}

/* The lookup narrows the search with a bucket table over the circle's top
 * bits (about one point per bucket, at most 2^16 buckets). Check it against
 * a whole-ring search at every point, either side of it, at every bucket edge and
 * at random hashes, for rings smaller and larger than the table. */
static void check_against_model(size_t nservers, uint32_t bucket_bits_expected)
{
    mr_dist_server *s = calloc(nservers, sizeof(*s));
    char(*names)[32] = calloc(nservers, sizeof(*names));
    cr_assert(s && names);
    for (size_t i = 0; i < nservers; i++) {
        snprintf(names[i], sizeof(names[i]), "10.0.%zu.%zu:11211", i / 250, i % 250);
        s[i] = (mr_dist_server){names[i], (uint32_t)(1 + i % 3)};
    }
    point *ring = calloc(nservers * 200, sizeof(*ring));
    cr_assert_not_null(ring);
    size_t np = model_ring(s, nservers, ring);
    mr_dist *d = ops->build(s, nservers);
    cr_assert_eq(mr_ketama_point_count(d), np);
    for (size_t i = 0; i < np; i++) {
        uint32_t v = ring[i].value;
        cr_assert_eq(ops->pick(d, v), model_pick(ring, np, v), "%zu servers, on point %zu", nservers, i);
        cr_assert_eq(ops->pick(d, v - 1), model_pick(ring, np, v - 1), "%zu servers, before point %zu",
                     nservers, i);
        cr_assert_eq(ops->pick(d, v + 1), model_pick(ring, np, v + 1), "%zu servers, after point %zu",
                     nservers, i);
    }
    uint32_t step = 1u << (32 - bucket_bits_expected);
    for (uint64_t edge = 0; edge <= 0xffffffffu; edge += step) {
        uint32_t e = (uint32_t)edge;
        cr_assert_eq(ops->pick(d, e), model_pick(ring, np, e), "%zu servers, bucket edge %u", nservers, e);
        cr_assert_eq(ops->pick(d, e - 1), model_pick(ring, np, e - 1), "%zu servers, below edge %u", nservers,
                     e);
    }
    cr_assert_eq(ops->pick(d, 0xffffffffu), model_pick(ring, np, 0xffffffffu));
    uint32_t x = 2463534242u;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        cr_assert_eq(ops->pick(d, x), model_pick(ring, np, x), "%zu servers, hash %u", nservers, x);
    }
    ops->destroy(d);
    free(ring);
    free(names);
    free(s);
}

Test(ketama, bucketed_lookup_matches_a_whole_ring_search)
{
    check_against_model(2, 9);    /* 320 points: 512 buckets */
    check_against_model(7, 11);   /* ~1,100 points */
    check_against_model(600, 16); /* ~96,000 points: several per bucket */
}

/* Identical idents give identical points: every tie must go to server 0. */
Test(ketama, equal_points_go_to_the_lower_server_index)
{
    mr_dist_server s[] = {{"twin", 1}, {"twin", 1}};
    mr_dist *d = ops->build(s, 2);
    for (uint32_t hsh = 0; hsh < 0xfff00000u; hsh += 0x00100001u)
        cr_expect_eq(ops->pick(d, hsh), 0, "hash %u", hsh);
    ops->destroy(d);
}

Test(ketama, successors_are_distinct_servers_clockwise_from_the_owner)
{
    size_t np = model_ring(three, 3, ring3);
    mr_dist *d = ops->build(three, 3);
    for (uint32_t i = 0; i < 500; i++) {
        uint32_t hsh = i * 8589931u;
        uint32_t out[8];
        size_t got = ops->successors(d, hsh, out, 8);
        cr_assert_eq(got, 3, "all three servers when max exceeds the pool");
        cr_expect_eq(out[0], ops->pick(d, hsh));
        /* Model: walk the sorted points from the owner's. */
        size_t p = 0;
        while (p < np && ring3[p].value < hsh)
            p++;
        uint32_t want[3];
        size_t n = 0;
        for (size_t step = 0; step < np && n < 3; step++) {
            uint32_t s = ring3[(p + step) % np].server;
            if (!(n > 0 && want[0] == s) && !(n > 1 && want[1] == s))
                want[n++] = s;
        }
        cr_expect_arr_eq(out, want, sizeof(want), "hash %u", hsh);
    }
    ops->destroy(d);
}

Test(ketama, successors_stop_at_max)
{
    mr_dist *d = ops->build(three, 3);
    uint32_t out[3] = {99, 99, 99};
    cr_expect_eq(ops->successors(d, 42, out, 2), 2);
    cr_expect_neq(out[0], out[1]);
    cr_expect_eq(out[2], 99, "nothing written past max");
    cr_expect_eq(ops->successors(d, 42, out, 0), 0);
    ops->destroy(d);
}

Test(ketama, build_refuses_a_pool_without_weight)
{
    mr_dist_server s[] = {{"a", 0}, {"b", 0}};
    cr_expect_null(ops->build(s, 2));
}
