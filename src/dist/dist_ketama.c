/* dist_ketama.c: the ketama consistent-hash ring, bit-exact with
 * libmemcached's KETAMA_WEIGHTED and twemproxy's "ketama".
 *
 * Each server gets points_per_server() points on a 32-bit circle, four per
 * MD5 digest of "ident-i". A key belongs to the first point at or after its
 * hash, wrapping to the first point. The ring is immutable once built.
 */
#include "memrelay/dist.h"
#include "memrelay/md5.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KETAMA_POINTS_PER_SERVER 160 /* average; the reference value */
#define KETAMA_POINTS_PER_DIGEST 4

typedef struct {
    uint32_t value;  /* position on the circle */
    uint32_t server; /* index into the server list */
} ketama_point;

/* A lookup of a key's point is on the request path once per key (ten times
 * for a 10-key get), so the binary search over every point is narrowed
 * first: the circle is cut into 2^bits equal buckets (about one point per
 * bucket) and bucket[b] is the first point at or after bucket b's start.
 * The point a hash wants then lies in bucket[b] .. bucket[b + 1]. */
typedef struct {
    uint32_t nservers;     /* servers the ring was built over */
    size_t npoints;        /* points[] length; 0 for a one-server pool */
    uint32_t shift;        /* 32 - bits: hash >> shift is the bucket */
    uint32_t *bucket;      /* 2^bits + 1 entries, stored after points[] */
    ketama_point points[]; /* sorted by (value, server) */
} ketama_ring;

#define KETAMA_MAX_BUCKET_BITS 16

/* Bits of the bucket index: 2^bits is the power of two at or above the
 * point count (at least 2 buckets, at most 2^16). */
static uint32_t bucket_bits(size_t npoints)
{
    uint32_t bits = 1;
    while (bits < KETAMA_MAX_BUCKET_BITS && ((size_t)1 << bits) < npoints)
        bits++;
    return bits;
}

static void build_buckets(ketama_ring *r)
{
    size_t nbuckets = (size_t)1 << (32 - r->shift);
    size_t at = 0;
    for (size_t b = 0; b < nbuckets; b++) {
        uint64_t start = (uint64_t)b << r->shift;
        while (at < r->npoints && r->points[at].value < start)
            at++;
        r->bucket[b] = (uint32_t)at;
    }
    r->bucket[nbuckets] = (uint32_t)r->npoints;
}

/* Every step is rounded to float32 (assignment to a float drops any excess
 * precision): libmemcached evaluates (float)w/(float)T * 160 / 4 * (float)n
 * in float, and doing it in double changes the count for e.g. 25 servers.
 * The + 1e-10 is theirs too and only matters for an exact integer. */
uint32_t mr_ketama_points_per_server(uint32_t weight, uint64_t total_weight, size_t n)
{
    if (total_weight == 0)
        return 0;
    float pct = (float)weight / (float)total_weight;
    float f = pct * (float)KETAMA_POINTS_PER_SERVER;
    f = f / (float)KETAMA_POINTS_PER_DIGEST;
    f = f * (float)n;
    double digests = floor((double)f + 0.0000000001);
    return (uint32_t)digests * KETAMA_POINTS_PER_DIGEST;
}

void mr_ketama_digest_points(const char *ident, uint32_t i, uint32_t out[4])
{
    /* "-" then i in decimal, without printf. */
    char suffix[12];
    size_t pos = sizeof(suffix);
    do {
        suffix[--pos] = (char)('0' + i % 10);
        i /= 10;
    } while (i > 0);
    suffix[--pos] = '-';

    uint8_t d[16];
    mr_md5_ctx ctx;
    mr_md5_init(&ctx);
    mr_md5_update(&ctx, ident, strlen(ident));
    mr_md5_update(&ctx, suffix + pos, sizeof(suffix) - pos);
    mr_md5_final(&ctx, d);

    for (int k = 0; k < 4; k++)
        out[k] = (uint32_t)d[4 * k] | (uint32_t)d[4 * k + 1] << 8 | (uint32_t)d[4 * k + 2] << 16 |
                 (uint32_t)d[4 * k + 3] << 24;
}

/* Ties (the same value from two servers) go to the lower server index, so
 * the ring does not depend on qsort's order among equal elements. */
static int point_cmp(const void *pa, const void *pb)
{
    const ketama_point *a = pa, *b = pb;
    if (a->value != b->value)
        return a->value < b->value ? -1 : 1;
    if (a->server != b->server)
        return a->server < b->server ? -1 : 1;
    return 0;
}

static mr_dist *ketama_build(const mr_dist_server *servers, size_t n)
{
    if (n == 0 || n > UINT32_MAX)
        return NULL;

    uint64_t total = 0;
    size_t npoints = 0;
    for (size_t s = 0; s < n; s++)
        total += servers[s].weight;
    if (total == 0)
        return NULL;
    /* One server owns every key: no ring, and pick() skips the search. */
    if (n > 1)
        for (size_t s = 0; s < n; s++)
            npoints += mr_ketama_points_per_server(servers[s].weight, total, n);

    uint32_t bits = bucket_bits(npoints);
    size_t nbuckets = npoints ? ((size_t)1 << bits) + 1 : 0;
    ketama_ring *r = malloc(sizeof(*r) + npoints * sizeof(r->points[0]) + nbuckets * sizeof(uint32_t));
    if (r == NULL)
        return NULL;
    r->nservers = (uint32_t)n;
    r->npoints = npoints;
    r->shift = 32 - bits;
    r->bucket = (uint32_t *)(r->points + npoints);

    size_t at = 0;
    for (size_t s = 0; s < n && npoints > 0; s++) {
        uint32_t digests = mr_ketama_points_per_server(servers[s].weight, total, n) / 4;
        for (uint32_t i = 0; i < digests; i++) {
            uint32_t v[4];
            mr_ketama_digest_points(servers[s].ident, i, v);
            for (int k = 0; k < 4; k++)
                r->points[at++] = (ketama_point){.value = v[k], .server = (uint32_t)s};
        }
    }
    qsort(r->points, npoints, sizeof(r->points[0]), point_cmp);
    if (npoints)
        build_buckets(r);
    return (mr_dist *)r;
}

/* Index of the first point with value >= hash, wrapping to 0 past the end.
 * Points before bucket[b] lie below the bucket's start (so below hash) and
 * the point at bucket[b + 1], if any, lies at or past its end (so above
 * hash): the answer is in [bucket[b], bucket[b + 1]]. */
static size_t owner_point(const ketama_ring *r, uint32_t hash)
{
    uint32_t b = hash >> r->shift;
    size_t lo = r->bucket[b], hi = r->bucket[b + 1];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->points[mid].value < hash)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == r->npoints ? 0 : lo;
}

static uint32_t ketama_pick(const mr_dist *d, uint32_t hash)
{
    const ketama_ring *r = (const ketama_ring *)d;
    if (r->npoints == 0)
        return 0;
    return r->points[owner_point(r, hash)].server;
}

/* Walk clockwise from the owner's point, keeping each server the first
 * time it appears: the servers a key would move to as owners fail. */
static size_t ketama_successors(const mr_dist *d, uint32_t hash, uint32_t *out, size_t max)
{
    const ketama_ring *r = (const ketama_ring *)d;
    size_t want = max < r->nservers ? max : r->nservers;
    size_t got = 0;
    if (want == 0)
        return 0;
    if (r->npoints == 0) {
        out[0] = 0;
        return 1;
    }

    size_t start = owner_point(r, hash);
    for (size_t step = 0; step < r->npoints && got < want; step++) {
        uint32_t s = r->points[(start + step) % r->npoints].server;
        size_t j = 0;
        while (j < got && out[j] != s)
            j++;
        if (j == got)
            out[got++] = s;
    }
    return got;
}

static void ketama_destroy(mr_dist *d)
{
    free(d);
}

/* `d` must come from mr_dist_ketama_ops.build. */
size_t mr_ketama_point_count(const mr_dist *d)
{
    return ((const ketama_ring *)d)->npoints;
}

const mr_dist_ops mr_dist_ketama_ops = {
    .build = ketama_build,
    .pick = ketama_pick,
    .successors = ketama_successors,
    .destroy = ketama_destroy,
};
