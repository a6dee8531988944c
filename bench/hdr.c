/*
 * hdr.c: the log-linear histogram of hdr.h.
 *
 * Layout: values 0 .. 2^S - 1 (S = HDR_SUB_BITS) have buckets of their own. A value v >= 2^S with its
 * highest set bit at position m is shifted right by m - (S - 1), which leaves its top S bits, a number
 * in [2^(S-1), 2^S); the bucket is (m - S + 1) * 2^(S-1) plus that number. Consecutive octaves thus
 * follow each other without gaps, up to m = 63.
 */
#include "hdr.h"

#include <math.h>
#include <string.h>

void hdr_init(struct hdr *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

uint32_t hdr_bucket_of(uint64_t value)
{
    if (value < (1u << HDR_SUB_BITS)) {
        return (uint32_t)value;
    }
    unsigned msb = 63u - (unsigned)__builtin_clzll(value);
    unsigned shift = msb - (HDR_SUB_BITS - 1);
    return (msb - HDR_SUB_BITS + 1) * HDR_HALF + (uint32_t)(value >> shift);
}

uint64_t hdr_bucket_low(uint32_t bucket)
{
    if (bucket < (1u << HDR_SUB_BITS)) {
        return bucket;
    }
    unsigned shift = bucket / HDR_HALF - 1;
    uint64_t top = HDR_HALF + bucket % HDR_HALF;
    return top << shift;
}

uint64_t hdr_bucket_high(uint32_t bucket)
{
    if (bucket < (1u << HDR_SUB_BITS)) {
        return bucket;
    }
    unsigned shift = bucket / HDR_HALF - 1;
    return hdr_bucket_low(bucket) + ((UINT64_C(1) << shift) - 1);
}

void hdr_record(struct hdr *h, uint64_t value)
{
    h->buckets[hdr_bucket_of(value)]++;
    h->count++;
    h->sum += (double)value;
    if (value < h->min) {
        h->min = value;
    }
    if (value > h->max) {
        h->max = value;
    }
}

void hdr_merge(struct hdr *into, const struct hdr *from)
{
    for (uint32_t i = 0; i < HDR_BUCKETS; i++) {
        into->buckets[i] += from->buckets[i];
    }
    into->count += from->count;
    into->sum += from->sum;
    if (from->min < into->min) {
        into->min = from->min;
    }
    if (from->max > into->max) {
        into->max = from->max;
    }
}

uint64_t hdr_quantile(const struct hdr *h, double q)
{
    if (h->count == 0) {
        return 0;
    }
    if (q < 0) {
        q = 0;
    }
    if (q > 1) {
        q = 1;
    }
    uint64_t rank = (uint64_t)ceil(q * (double)h->count);
    if (rank == 0) {
        rank = 1;
    }
    uint64_t seen = 0;
    for (uint32_t i = 0; i < HDR_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t v = hdr_bucket_high(i);
            if (v > h->max) {
                v = h->max;
            }
            if (v < h->min) {
                v = h->min;
            }
            return v;
        }
    }
    return h->max;
}

double hdr_mean(const struct hdr *h)
{
    return h->count ? h->sum / (double)h->count : 0.0;
}
