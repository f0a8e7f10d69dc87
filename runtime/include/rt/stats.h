/* rt/stats.h: monotonic clock, latency histograms and the JSON statistics writer.
 *
 * A histogram records nanosecond values into log-linear buckets (16 per power of two,
 * so a percentile is off by at most 1/16 of its value) with relaxed atomic increments:
 * recording never locks or allocates and is safe from any thread. The JSON writer builds
 * one object in a caller-provided buffer and writes it to <SYSTEM>_STATS atomically.
 */
#ifndef RT_STATS_H
#define RT_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt/err.h"

uint64_t rt_now_ns(void); /* CLOCK_MONOTONIC */

#define RT_HIST_SUB_BITS 4
#define RT_HIST_BUCKETS  ((64 - RT_HIST_SUB_BITS + 1) << RT_HIST_SUB_BITS)

typedef struct rt_hist {
    uint64_t count, sum, max; /* atomics */
    uint64_t min;             /* atomic; UINT64_MAX when empty */
    uint64_t bucket[RT_HIST_BUCKETS];
} rt_hist;

void rt_hist_init(rt_hist *h);
void rt_hist_record(rt_hist *h, uint64_t v);
/* The value at quantile q in [0,1]: the upper bound of the bucket holding it, clamped to
 * the recorded maximum; 0 when empty. */
uint64_t rt_hist_quantile(const rt_hist *h, double q);
/* Add src's counts into dst (both may be recorded into meanwhile). */
void rt_hist_merge(rt_hist *dst, const rt_hist *src);
/* The bucket index of v and the largest value that bucket holds (exposed for tests). */
unsigned rt_hist_bucket(uint64_t v);
uint64_t rt_hist_bucket_upper(unsigned b);

/* JSON writer over a fixed buffer. Keys and strings are escaped; nesting up to 16. */
typedef struct rt_json {
    char *buf;
    size_t cap, len;
    int depth;
    bool first[16];
    bool overflow;
} rt_json;

void rt_json_init(rt_json *j, char *buf, size_t cap);
void rt_json_begin(rt_json *j, const char *key); /* key NULL at top level / in arrays */
void rt_json_end(rt_json *j);
void rt_json_begin_array(rt_json *j, const char *key);
void rt_json_end_array(rt_json *j);
void rt_json_u64(rt_json *j, const char *key, uint64_t v);
void rt_json_i64(rt_json *j, const char *key, int64_t v);
void rt_json_double(rt_json *j, const char *key, double v); /* NaN/inf become null */
void rt_json_bool(rt_json *j, const char *key, bool v);
void rt_json_str(rt_json *j, const char *key, const char *v);
/* {"count":..,"min_ns":..,"p50_ns":..,"p99_ns":..,"p999_ns":..,"max_ns":..,"mean_ns":..} */
void rt_json_hist(rt_json *j, const char *key, const rt_hist *h);
/* NUL-terminated text, or NULL when it did not fit (or nesting is unbalanced). */
const char *rt_json_text(rt_json *j);

/* Write text to path atomically (a temporary file beside it, then rename). */
int rt_stats_write_file(const char *path, const char *text, rt_err *err);

#endif
