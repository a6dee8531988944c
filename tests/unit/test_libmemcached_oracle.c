/* test_libmemcached_oracle.c: libmemcached (Debian's libmemcached-dev) as an
 * oracle. Our key hashes must equal memcached_generate_hash_value(), and our
 * ketama owner must equal memcached_generate_hash() under KETAMA_WEIGHTED,
 * for thousands of keys including bytes >= 0x80. No server needs to run:
 * libmemcached builds its ring from the server list alone. */
#include <criterion/criterion.h>
#include <libmemcached-1.0/memcached.h>
#include <stdio.h>
#include <string.h>

#include "memrelay/dist.h"
#include "memrelay/hash.h"

#define NKEYS 4000

typedef struct {
    char bytes[256];
    size_t len;
} key;

static key keys[NKEYS];

/* Deterministic keys of three shapes: ASCII ("user:N"), UTF-8 text, and
 * raw bytes of any value and length 1..250. */
static void make_keys(void)
{
    uint32_t x = 2463534242u;
    for (int i = 0; i < NKEYS; i++) {
        key *k = &keys[i];
        if (i % 3 == 0) {
            k->len = (size_t)snprintf(k->bytes, sizeof(k->bytes), "user:%d", i);
        } else if (i % 3 == 1) {
            k->len = (size_t)snprintf(k->bytes, sizeof(k->bytes), "caf\xc3\xa9:\xe2\x82\xac%d", i);
        } else {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            k->len = 1 + x % 250;
            for (size_t j = 0; j < k->len; j++) {
                x ^= x << 13, x ^= x >> 17, x ^= x << 5;
                k->bytes[j] = (char)(x >> 24);
            }
        }
    }
}

TestSuite(oracle, .init = make_keys);

/* Hsieh is absent: Debian builds libhashkit without it (it answers 1 for
 * every key); our hsieh is pinned by vectors in test_hash.c instead. */
Test(oracle, key_hashes_match_libhashkit)
{
    static const struct {
        mr_hash_kind ours;
        memcached_hash_t theirs;
    } pairs[] = {
        {MR_HASH_ONE_AT_A_TIME, MEMCACHED_HASH_DEFAULT},
        {MR_HASH_MD5, MEMCACHED_HASH_MD5},
        {MR_HASH_CRC32, MEMCACHED_HASH_CRC},
        {MR_HASH_FNV1_64, MEMCACHED_HASH_FNV1_64},
        {MR_HASH_FNV1A_64, MEMCACHED_HASH_FNV1A_64},
        {MR_HASH_FNV1_32, MEMCACHED_HASH_FNV1_32},
        {MR_HASH_FNV1A_32, MEMCACHED_HASH_FNV1A_32},
        {MR_HASH_MURMUR, MEMCACHED_HASH_MURMUR},
        {MR_HASH_JENKINS, MEMCACHED_HASH_JENKINS},
    };
    for (size_t p = 0; p < sizeof(pairs) / sizeof(pairs[0]); p++) {
        int mismatches = 0;
        for (int i = 0; i < NKEYS; i++) {
            const key *k = &keys[i];
            if (mr_hash(pairs[p].ours, k->bytes, k->len) !=
                memcached_generate_hash_value(k->bytes, k->len, pairs[p].theirs))
                mismatches++;
        }
        cr_expect_eq(mismatches, 0, "%s: %d of %d keys differ", mr_hash_name(pairs[p].ours), mismatches,
                     NKEYS);
    }
}

typedef struct {
    const char *host; /* what libmemcached is given */
    in_port_t port;
    uint32_t weight;
} server;

/* Compare owners over all keys for one server list and one key hash. The
 * ident is what the config module would compute: host alone on port 11211,
 * else host:port. */
static void compare(const server *list, size_t n, memcached_hash_t theirs, mr_hash_kind ours)
{
    memcached_st *mc = memcached_create(NULL);
    cr_assert_not_null(mc);
    /* KETAMA_WEIGHTED resets the key hash to MD5, so it must come first. */
    cr_assert_eq(memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1), MEMCACHED_SUCCESS);
    cr_assert_eq(memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_HASH, theirs), MEMCACHED_SUCCESS);

    static char idents[64][128];
    mr_dist_server servers[64];
    cr_assert_leq(n, 64);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(memcached_server_add_with_weight(mc, list[i].host, list[i].port, list[i].weight),
                     MEMCACHED_SUCCESS, "add %s", list[i].host);
        if (list[i].port == 11211)
            snprintf(idents[i], sizeof(idents[i]), "%s", list[i].host);
        else
            snprintf(idents[i], sizeof(idents[i]), "%s:%u", list[i].host, (unsigned)list[i].port);
        servers[i] = (mr_dist_server){idents[i], list[i].weight};
    }

    const mr_dist_ops *ops = mr_dist_ops_for(MR_DIST_KETAMA);
    mr_dist *d = ops->build(servers, n);
    cr_assert_not_null(d);
    int mismatches = 0;
    for (int i = 0; i < NKEYS; i++) {
        const key *k = &keys[i];
        if (ops->pick(d, mr_hash(ours, k->bytes, k->len)) != memcached_generate_hash(mc, k->bytes, k->len))
            mismatches++;
    }
    cr_expect_eq(mismatches, 0, "%zu servers, %s: %d of %d keys misrouted", n, mr_hash_name(ours), mismatches,
                 NKEYS);
    ops->destroy(d);
    memcached_free(mc);
}

static void compare_both_hashes(const server *list, size_t n)
{
    compare(list, n, MEMCACHED_HASH_FNV1A_64, MR_HASH_FNV1A_64);
    compare(list, n, MEMCACHED_HASH_MD5, MR_HASH_MD5);
}

Test(oracle, equal_weights)
{
    static const server s[] = {
        {"127.0.0.1", 21211, 1}, {"127.0.0.1", 21212, 1}, {"127.0.0.1", 21213, 1}, {"127.0.0.1", 21214, 1}};
    compare_both_hashes(s, 4);
}

Test(oracle, mixed_weights)
{
    static const server s[] = {{"127.0.0.1", 21211, 1},
                               {"127.0.0.1", 21212, 2},
                               {"127.0.0.1", 21213, 3},
                               {"127.0.0.1", 21214, 5},
                               {"10.1.2.3", 11300, 17}};
    compare_both_hashes(s, 5);
}

Test(oracle, default_port_servers_are_named_by_host)
{
    static const server s[] = {{"127.0.0.2", 11211, 1}, {"127.0.0.3", 11211, 1}, {"127.0.0.1", 21214, 1}};
    compare_both_hashes(s, 3);
}

/* 25 servers is where float32 points-per-server (156, not 160) matters. */
Test(oracle, twenty_five_servers)
{
    static char hosts[25][16];
    server s[25];
    for (int i = 0; i < 25; i++) {
        snprintf(hosts[i], sizeof(hosts[i]), "10.0.0.%d", i + 1);
        s[i] = (server){hosts[i], (in_port_t)(i % 2 ? 11211 : 11212), 1};
    }
    compare_both_hashes(s, 25);
}

/* libmemcached has no server names of its own, but a name given as the
 * host on port 11211 yields the same ident ("name") as a named server. */
Test(oracle, named_servers)
{
    static const server s[] = {{"cache-a", 11211, 1},
                               {"cache-b", 11211, 2},
                               {"cache-c", 11211, 1},
                               {"cache-d.example.com", 11211, 3}};
    compare_both_hashes(s, 4);
}

Test(oracle, one_server)
{
    static const server s[] = {{"127.0.0.1", 21211, 3}};
    compare_both_hashes(s, 1);
}
