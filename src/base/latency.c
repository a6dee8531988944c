/* latency.c: the log-linear latency histogram (latency.h). */
#include "memrelay/latency.h"

#include <string.h>

/* Upper bounds in microseconds, and whether Prometheus sees them. Six steps
 * per decade (five in the first: samples are whole microseconds) keep
 * neighbouring bounds within a factor 1.67; the 1-2-5 subset is what a
 * dashboard wants to see. */
static const struct {
    uint64_t us;
    bool exported;
} bounds[] = {
#define Y true
#define N false
    {1, Y},       {2, Y},       {3, N},       {5, Y},       {7, N},                    /* us */
    {10, Y},      {15, N},      {20, Y},      {30, N},      {50, Y},      {70, N},     /* 10 us */
    {100, Y},     {150, N},     {200, Y},     {300, N},     {500, Y},     {700, N},    /* 100 us */
    {1000, Y},    {1500, N},    {2000, Y},    {3000, N},    {5000, Y},    {7000, N},   /* ms */
    {10000, Y},   {15000, N},   {20000, Y},   {30000, N},   {50000, Y},   {70000, N},  /* 10 ms */
    {100000, Y},  {150000, N},  {200000, Y},  {300000, N},  {500000, Y},  {700000, N}, /* 100 ms */
    {1000000, Y}, {1500000, N}, {2000000, Y}, {3000000, N}, {5000000, Y}, {7000000, N}, {10000000, Y}, /* s */
#undef Y
#undef N
};
_Static_assert(sizeof(bounds) / sizeof(bounds[0]) == MR_LATENCY_BUCKETS - 1, "one bound per finite bucket");

uint32_t mr_latency_bucket_of(uint64_t us)
{
    /* Binary search for the first bound >= us. */
    uint32_t lo = 0, hi = MR_LATENCY_BUCKETS - 1;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (bounds[mid].us >= us)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

uint64_t mr_latency_bound_us(uint32_t i)
{
    return i < MR_LATENCY_BUCKETS - 1 ? bounds[i].us : UINT64_MAX;
}

bool mr_latency_bound_exported(uint32_t i)
{
    return i < MR_LATENCY_BUCKETS - 1 && bounds[i].exported;
}

void mr_latency_record(mr_latency_hist *h, uint64_t us)
{
    __atomic_fetch_add(&h->bucket[mr_latency_bucket_of(us)], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->sum_us, us, __ATOMIC_RELAXED);
}

void mr_latency_snapshot(const mr_latency_hist *h, mr_latency_hist *out)
{
    for (uint32_t i = 0; i < MR_LATENCY_BUCKETS; i++)
        out->bucket[i] = __atomic_load_n(&h->bucket[i], __ATOMIC_RELAXED);
    out->sum_us = __atomic_load_n(&h->sum_us, __ATOMIC_RELAXED);
}

void mr_latency_merge(mr_latency_hist *into, const mr_latency_hist *from)
{
    for (uint32_t i = 0; i < MR_LATENCY_BUCKETS; i++)
        into->bucket[i] += from->bucket[i];
    into->sum_us += from->sum_us;
}

uint64_t mr_latency_count(const mr_latency_hist *h)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < MR_LATENCY_BUCKETS; i++)
        n += h->bucket[i];
    return n;
}

uint64_t mr_latency_percentile_us(const mr_latency_hist *h, double q)
{
    uint64_t total = mr_latency_count(h);
    if (total == 0)
        return 0;
    if (q > 1)
        q = 1;
    /* The rank of the wanted sample, 1-based: ceil(q * total), at least 1. */
    double rank = q * (double)total;
    uint64_t want = (uint64_t)rank;
    if ((double)want < rank)
        want++;
    if (want == 0)
        want = 1;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < MR_LATENCY_BUCKETS; i++) {
        if (h->bucket[i] == 0 || seen + h->bucket[i] < want) {
            seen += h->bucket[i];
            continue;
        }
        if (i == MR_LATENCY_BUCKETS - 1)
            return bounds[MR_LATENCY_BUCKETS - 2].us;
        /* Spread the bucket's samples evenly over (lower, upper]. */
        double lower = i ? (double)bounds[i - 1].us : 0.0, upper = (double)bounds[i].us;
        double frac = (double)(want - seen) / (double)h->bucket[i];
        return (uint64_t)(lower + (upper - lower) * frac + 0.5);
    }
    return bounds[MR_LATENCY_BUCKETS - 2].us; /* not reached */
}
