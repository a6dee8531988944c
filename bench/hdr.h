/*
 * hdr.h: a log-linear histogram for latencies, in the spirit of HdrHistogram.
 *
 * Values below 256 are counted exactly; every power-of-two range above that is cut into 128 equal
 * buckets. A bucket is thus never wider than 1/128 of the values it holds, and a quantile read back is
 * within 0.8% of the true one. Recording costs one count-leading-zeros and one increment; the
 * histogram has a fixed size (about 58 KiB) and never allocates. The unit is the caller's (loadgen
 * records nanoseconds). Not thread-safe: give each thread its own and merge them at the end.
 */
#ifndef MEMRELAY_BENCH_HDR_H
#define MEMRELAY_BENCH_HDR_H

#include <stdint.h>

/* log2 of the number of exactly counted values; each octave above has half as many buckets. */
#define HDR_SUB_BITS 8
#define HDR_HALF (1u << (HDR_SUB_BITS - 1))
#define HDR_BUCKETS ((66u - HDR_SUB_BITS) * HDR_HALF)

struct hdr {
    uint64_t count;                /* values recorded */
    uint64_t min;                  /* smallest value recorded (UINT64_MAX while empty) */
    uint64_t max;                  /* largest value recorded (0 while empty) */
    double sum;                    /* sum of the values, for the mean */
    uint64_t buckets[HDR_BUCKETS]; /* counts per bucket, see hdr_bucket_of() */
};

/* Empties h. */
void hdr_init(struct hdr *h);

/* Counts one value. */
void hdr_record(struct hdr *h, uint64_t value);

/* Adds every count of from to into. */
void hdr_merge(struct hdr *into, const struct hdr *from);

/* The value at quantile q (0..1): the highest value of the bucket holding the ceil(q * count)-th
 * smallest value, clamped to [min, max]. 0 for an empty histogram. */
uint64_t hdr_quantile(const struct hdr *h, double q);

/* The mean of the values recorded (exact, not bucketed); 0 for an empty histogram. */
double hdr_mean(const struct hdr *h);

/* The bucket index of a value, and the lowest and highest value of a bucket (exposed for tests). */
uint32_t hdr_bucket_of(uint64_t value);
uint64_t hdr_bucket_low(uint32_t bucket);
uint64_t hdr_bucket_high(uint32_t bucket);

#endif
