/* test_latency.c: the latency histogram behind `stats servers` and /metrics. */
#include <criterion/criterion.h>
#include <string.h>

#include "memrelay/latency.h"

#define LAST (MR_LATENCY_BUCKETS - 1)

Test(latency, bounds_rise_from_one_microsecond_to_ten_seconds)
{
    cr_assert_eq(mr_latency_bound_us(0), 1);
    cr_assert_eq(mr_latency_bound_us(LAST - 1), 10000000);
    cr_assert_eq(mr_latency_bound_us(LAST), UINT64_MAX, "the overflow bucket has no bound");
    for (uint32_t i = 1; i < LAST; i++) {
        uint64_t lo = mr_latency_bound_us(i - 1), hi = mr_latency_bound_us(i);
        cr_expect_gt(hi, lo, "bound %u", i);
        /* Below 10 us the steps are whole microseconds (1, 2, 3, 5, 7). */
        if (lo >= 7)
            cr_expect_leq(hi * 3, lo * 5, "bounds %u and %u at most 5/3 apart", i - 1, i);
    }
}

Test(latency, a_sample_lands_in_the_first_bucket_whose_bound_holds_it)
{
    cr_expect_eq(mr_latency_bucket_of(0), 0);
    cr_expect_eq(mr_latency_bucket_of(1), 0);
    cr_expect_eq(mr_latency_bucket_of(2), 1);
    for (uint32_t i = 0; i < LAST; i++) {
        uint64_t b = mr_latency_bound_us(i);
        cr_expect_eq(mr_latency_bucket_of(b), i, "a sample equal to bound %u (%lu us)", i, (unsigned long)b);
        cr_expect_eq(mr_latency_bucket_of(b + 1), i + 1, "just above bound %u", i);
    }
    cr_expect_eq(mr_latency_bucket_of(10000001), LAST);
    cr_expect_eq(mr_latency_bucket_of(UINT64_MAX), LAST);
}

Test(latency, exported_bounds_are_the_one_two_five_series)
{
    static const uint64_t want[] = {1,      2,      5,       10,      20,      50,      100,   200,
                                    500,    1000,   2000,    5000,    10000,   20000,   50000, 100000,
                                    200000, 500000, 1000000, 2000000, 5000000, 10000000};
    size_t n = 0;
    for (uint32_t i = 0; i < MR_LATENCY_BUCKETS; i++) {
        if (!mr_latency_bound_exported(i))
            continue;
        cr_assert_lt(n, sizeof(want) / sizeof(want[0]));
        cr_expect_eq(mr_latency_bound_us(i), want[n], "exported bound %zu", n);
        n++;
    }
    cr_expect_eq(n, sizeof(want) / sizeof(want[0]));
    cr_expect_not(mr_latency_bound_exported(LAST), "+Inf is written separately");
}

Test(latency, record_counts_the_bucket_and_the_sum)
{
    mr_latency_hist h;
    memset(&h, 0, sizeof(h));
    mr_latency_record(&h, 40);
    mr_latency_record(&h, 45);
    mr_latency_record(&h, 20000000);
    cr_expect_eq(h.bucket[mr_latency_bucket_of(40)], 2);
    cr_expect_eq(h.bucket[LAST], 1);
    cr_expect_eq(h.sum_us, 20000085);
    mr_latency_hist snap;
    mr_latency_snapshot(&h, &snap);
    cr_expect_eq(memcmp(&snap, &h, sizeof(h)), 0);
    cr_expect_eq(mr_latency_count(&snap), 3);
}

Test(latency, empty_histogram_has_zero_percentiles)
{
    mr_latency_hist h;
    memset(&h, 0, sizeof(h));
    cr_expect_eq(mr_latency_count(&h), 0);
    cr_expect_eq(mr_latency_percentile_us(&h, 0.5), 0);
    cr_expect_eq(mr_latency_percentile_us(&h, 0.99), 0);
}

/* The estimate always lies inside the bucket holding the true percentile. */
Test(latency, percentiles_fall_in_the_bucket_of_the_true_value)
{
    mr_latency_hist h;
    memset(&h, 0, sizeof(h));
    /* 1..1000 us, one sample each: p50 is 500, p99 is 990. */
    for (uint64_t us = 1; us <= 1000; us++)
        mr_latency_record(&h, us);
    uint64_t p50 = mr_latency_percentile_us(&h, 0.5), p99 = mr_latency_percentile_us(&h, 0.99);
    cr_expect_eq(mr_latency_bucket_of(p50), mr_latency_bucket_of(500), "p50 estimate %lu",
                 (unsigned long)p50);
    cr_expect_eq(mr_latency_bucket_of(p99), mr_latency_bucket_of(990), "p99 estimate %lu",
                 (unsigned long)p99);
    cr_expect_leq(p50, p99);
    cr_expect_eq(mr_latency_percentile_us(&h, 1.0), 1000, "the maximum is the top of its bucket");
}

Test(latency, percentile_interpolates_inside_one_bucket)
{
    mr_latency_hist h;
    memset(&h, 0, sizeof(h));
    uint32_t b = mr_latency_bucket_of(120); /* (100, 150] */
    h.bucket[b] = 10;
    cr_expect_eq(mr_latency_percentile_us(&h, 0.5), 125);
    cr_expect_eq(mr_latency_percentile_us(&h, 0.1), 105);
    cr_expect_eq(mr_latency_percentile_us(&h, 1.0), 150);
}

Test(latency, skewed_samples_put_p99_in_the_slow_tail)
{
    mr_latency_hist h;
    memset(&h, 0, sizeof(h));
    for (int i = 0; i < 980; i++)
        mr_latency_record(&h, 50);
    for (int i = 0; i < 20; i++)
        mr_latency_record(&h, 250000);
    cr_expect_leq(mr_latency_percentile_us(&h, 0.5), 50);
    cr_expect_gt(mr_latency_percentile_us(&h, 0.5), 30);
    uint64_t p99 = mr_latency_percentile_us(&h, 0.99);
    cr_expect_eq(mr_latency_bucket_of(p99), mr_latency_bucket_of(250000), "p99 %lu", (unsigned long)p99);
}

Test(latency, samples_past_ten_seconds_report_the_last_bound)
{
    mr_latency_hist h;
    memset(&h, 0, sizeof(h));
    mr_latency_record(&h, 60000000);
    cr_expect_eq(mr_latency_percentile_us(&h, 0.5), 10000000);
}

Test(latency, merge_adds_buckets_and_sums)
{
    mr_latency_hist a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    mr_latency_record(&a, 10);
    mr_latency_record(&b, 10);
    mr_latency_record(&b, 3000);
    mr_latency_merge(&a, &b);
    cr_expect_eq(mr_latency_count(&a), 3);
    cr_expect_eq(a.bucket[mr_latency_bucket_of(10)], 2);
    cr_expect_eq(a.sum_us, 3020);
}
