/* hist.c: splitft-ycsb's latency histograms: log-linear buckets with 0.8% resolution.
 *
 * The runtime's rt_hist is shared by threads through atomics and has 16 buckets per power
 * of two (6% resolution); a benchmark's percentiles and its CDF plot want finer buckets, and
 * each client thread here records into histograms of its own, merged at the end.
 */
#include <string.h>

#include "ycsb.h"

#define SUB (1u << YCSB_HIST_SUB_BITS)

void ycsb_hist_init(ycsb_hist *h) { memset(h, 0, sizeof *h); }

unsigned ycsb_hist_bucket(uint64_t ns)
{
    if (ns < SUB)
        return (unsigned)ns;
    unsigned e = 63u - (unsigned)__builtin_clzll(ns); /* >= YCSB_HIST_SUB_BITS */
    if (e > YCSB_HIST_TOP_BIT)
        return YCSB_HIST_BUCKETS - 1;
    unsigned shift = e - YCSB_HIST_SUB_BITS;
    unsigned sub = (unsigned)(ns >> shift) - SUB;
    return (e - YCSB_HIST_SUB_BITS + 1) * SUB + sub;
}

uint64_t ycsb_hist_bucket_upper(unsigned b)
{
    if (b < SUB)
        return b;
    unsigned shift = b / SUB - 1;
    uint64_t lower = (uint64_t)(SUB + b % SUB) << shift;
    return lower + (1ULL << shift) - 1;
}

void ycsb_hist_record(ycsb_hist *h, uint64_t ns)
{
    h->bucket[ycsb_hist_bucket(ns)]++;
    h->count++;
    if (ns > h->max)
        h->max = ns;
}

void ycsb_hist_merge(ycsb_hist *dst, const ycsb_hist *src)
{
    for (unsigned b = 0; b < YCSB_HIST_BUCKETS; b++)
        dst->bucket[b] += src->bucket[b];
    dst->count += src->count;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t ycsb_hist_quantile(const ycsb_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    double want = q * (double)h->count;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t cum = 0;
    for (unsigned b = 0; b < YCSB_HIST_BUCKETS; b++) {
        cum += h->bucket[b];
        if (cum >= rank) {
            uint64_t up = ycsb_hist_bucket_upper(b);
            return up < h->max ? up : h->max;
        }
    }
    return h->max;
}
