/* Layer: base (src/base/; may use no other layer). */
/* latency.h: a fixed log-linear latency histogram shared by all workers.
 *
 * Buckets have fixed upper bounds in microseconds, six per decade (1, 1.5,
 * 2, 3, 5, 7 times a power of ten; the first decade without 1.5) from 1 us
 * to 10 s, plus one for
 * everything slower: at most 1.67 times apart, so a percentile read from a
 * bucket is off by less than that. Recording is one bucket search over a
 * constant table and two relaxed atomic adds (the bucket and the sum); no
 * lock, no allocation. Readers take a snapshot with relaxed loads, so a
 * snapshot may miss the samples being recorded at that moment.
 */
#ifndef MEMRELAY_LATENCY_H
#define MEMRELAY_LATENCY_H

#include <stdbool.h>
#include <stdint.h>

/* 42 finite bounds (1 us .. 10 s) and the overflow bucket. */
#define MR_LATENCY_BUCKETS 43

typedef struct {
    uint64_t bucket[MR_LATENCY_BUCKETS]; /* samples per bucket (not cumulative) */
    uint64_t sum_us;                     /* sum of every sample, microseconds */
} mr_latency_hist;

/* The bucket a sample of `us` microseconds falls in: the first whose upper
 * bound is >= us; MR_LATENCY_BUCKETS - 1 beyond the last bound. */
uint32_t mr_latency_bucket_of(uint64_t us);

/* Upper bound of bucket i in microseconds (inclusive); UINT64_MAX for the
 * overflow bucket. */
uint64_t mr_latency_bound_us(uint32_t i);

/* Is bucket i's bound one of the coarser 1-2-5 series exported as a
 * Prometheus `le` (1, 2, 5 us ... 10 s)? The cumulative count at any subset
 * of bounds is still a valid histogram. */
bool mr_latency_bound_exported(uint32_t i);

/* Record one sample (any thread; relaxed atomics). */
void mr_latency_record(mr_latency_hist *h, uint64_t us);

/* Copy h with relaxed loads. */
void mr_latency_snapshot(const mr_latency_hist *h, mr_latency_hist *out);

/* into += from (plain arithmetic: both are snapshots). */
void mr_latency_merge(mr_latency_hist *into, const mr_latency_hist *from);

/* Samples in a snapshot. */
uint64_t mr_latency_count(const mr_latency_hist *h);

/* The q-quantile (0 < q <= 1) of a snapshot in microseconds, interpolated
 * linearly inside its bucket; 0 when empty. Samples past the last bound
 * report that bound. */
uint64_t mr_latency_percentile_us(const mr_latency_hist *h, double q);

#endif
