/*
 * hdr_selftest.c: checks the histogram of hdr.h (run by ctest as bench.hdr).
 *
 * The buckets must tile the 64-bit range without gaps or overlaps, each at most 1/128 of its values
 * wide, and quantiles of known data must come back within that error.
 */
#include "hdr.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

static int failures;

static void expect(int ok, const char *what, uint64_t got, uint64_t want)
{
    if (!ok) {
        fprintf(stderr, "hdr_selftest: %s: got %" PRIu64 ", want %" PRIu64 "\n", what, got, want);
        failures++;
    }
}

/* Bucket i + 1 starts right after bucket i ends, and every value maps back to its bucket. */
static void test_buckets_tile_the_range(void)
{
    expect(hdr_bucket_low(0) == 0, "first bucket starts at 0", hdr_bucket_low(0), 0);
    for (uint32_t i = 0; i + 1 < HDR_BUCKETS; i++) {
        uint64_t lo = hdr_bucket_low(i), hi = hdr_bucket_high(i);
        expect(hdr_bucket_low(i + 1) == hi + 1, "buckets are contiguous", hdr_bucket_low(i + 1), hi + 1);
        expect(hdr_bucket_of(lo) == i, "low maps back", hdr_bucket_of(lo), i);
        expect(hdr_bucket_of(hi) == i, "high maps back", hdr_bucket_of(hi), i);
        expect((hi - lo) * 128 <= lo || lo < 256, "width at most 1/128 of the value", hi - lo, lo / 128);
    }
    expect(hdr_bucket_high(HDR_BUCKETS - 1) == UINT64_MAX, "last bucket ends at UINT64_MAX",
           hdr_bucket_high(HDR_BUCKETS - 1), UINT64_MAX);
    expect(hdr_bucket_of(UINT64_MAX) == HDR_BUCKETS - 1, "UINT64_MAX in the last bucket",
           hdr_bucket_of(UINT64_MAX), HDR_BUCKETS - 1);
}

/* 1..100000 recorded once each: quantile q is q * 100000 within 0.8%. */
static void test_quantiles_of_a_uniform_range(void)
{
    static struct hdr h;
    hdr_init(&h);
    for (uint64_t v = 1; v <= 100000; v++) {
        hdr_record(&h, v);
    }
    const double qs[] = {0.5, 0.9, 0.99, 0.999};
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        uint64_t want = (uint64_t)(qs[i] * 100000);
        uint64_t got = hdr_quantile(&h, qs[i]);
        expect(got >= want && got <= want + want / 128 + 1, "uniform quantile", got, want);
    }
    expect(hdr_quantile(&h, 1.0) == 100000, "q = 1 is the max", hdr_quantile(&h, 1.0), 100000);
    expect(hdr_quantile(&h, 0.0) == 1, "q = 0 is the min", hdr_quantile(&h, 0.0), 1);
    expect((uint64_t)hdr_mean(&h) == 50000, "mean", (uint64_t)hdr_mean(&h), 50000);
}

/* Merging two halves gives the histogram of the whole. */
static void test_merge_adds_counts(void)
{
    static struct hdr a, b;
    hdr_init(&a);
    hdr_init(&b);
    for (uint64_t v = 1000; v < 2000; v++) {
        hdr_record(v % 2 ? &a : &b, v);
    }
    hdr_merge(&a, &b);
    expect(a.count == 1000, "merged count", a.count, 1000);
    expect(a.min == 1000 && a.max == 1999, "merged min", a.min, 1000);
    uint64_t p50 = hdr_quantile(&a, 0.5);
    expect(p50 >= 1499 && p50 <= 1499 + 1499 / 128 + 1, "merged median", p50, 1499);
}

int main(void)
{
    test_buckets_tile_the_range();
    test_quantiles_of_a_uniform_range();
    test_merge_adds_counts();
    if (failures) {
        fprintf(stderr, "hdr_selftest: %d failures\n", failures);
        return 1;
    }
    printf("hdr_selftest: ok\n");
    return 0;
}
