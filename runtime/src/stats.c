/* stats.c: monotonic clock, log-linear latency histograms, JSON statistics. */
#include "rt/stats.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t rt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- histogram -------------------------------------------------------------------- */

/* Values below 2^SUB land in bucket v exactly. Above, the bucket is (exponent, top SUB
 * bits after the leading one): bucket = (e - SUB + 1) << SUB | mantissa, where e is the
 * index of the leading bit. */
unsigned rt_hist_bucket(uint64_t v)
{
    if (v < (1ULL << RT_HIST_SUB_BITS))
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    unsigned mant = (unsigned)(v >> (e - RT_HIST_SUB_BITS)) & ((1u << RT_HIST_SUB_BITS) - 1);
    return ((e - RT_HIST_SUB_BITS + 1) << RT_HIST_SUB_BITS) | mant;
}

uint64_t rt_hist_bucket_upper(unsigned b)
{
    if (b < (1u << RT_HIST_SUB_BITS))
        return b;
    unsigned e = (b >> RT_HIST_SUB_BITS) + RT_HIST_SUB_BITS - 1;
    uint64_t mant = b & ((1u << RT_HIST_SUB_BITS) - 1);
    uint64_t lo = (1ULL << e) | (mant << (e - RT_HIST_SUB_BITS));
    uint64_t width = 1ULL << (e - RT_HIST_SUB_BITS);
    return lo + (width - 1);
}

void rt_hist_init(rt_hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void rt_hist_record(rt_hist *h, uint64_t v)
{
    __atomic_fetch_add(&h->bucket[rt_hist_bucket(v)], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->count, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->sum, v, __ATOMIC_RELAXED);
    uint64_t m = __atomic_load_n(&h->max, __ATOMIC_RELAXED);
    while (v > m &&
           !__atomic_compare_exchange_n(&h->max, &m, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    m = __atomic_load_n(&h->min, __ATOMIC_RELAXED);
    while (v < m &&
           !__atomic_compare_exchange_n(&h->min, &m, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

uint64_t rt_hist_quantile(const rt_hist *h, double q)
{
    uint64_t total = 0;
    for (unsigned b = 0; b < RT_HIST_BUCKETS; b++)
        total += __atomic_load_n(&h->bucket[b], __ATOMIC_RELAXED);
    if (total == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    /* The rank of the q-quantile among 1..total (nearest-rank definition). */
    uint64_t rank = (uint64_t)ceil(q * (double)total);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    uint64_t max = __atomic_load_n(&h->max, __ATOMIC_RELAXED);
    for (unsigned b = 0; b < RT_HIST_BUCKETS; b++) {
        seen += __atomic_load_n(&h->bucket[b], __ATOMIC_RELAXED);
        if (seen >= rank) {
            uint64_t up = rt_hist_bucket_upper(b);
            return up < max ? up : max;
        }
    }
    return max;
}

void rt_hist_merge(rt_hist *dst, const rt_hist *src)
{
    for (unsigned b = 0; b < RT_HIST_BUCKETS; b++) {
        uint64_t c = __atomic_load_n(&src->bucket[b], __ATOMIC_RELAXED);
        if (c)
            __atomic_fetch_add(&dst->bucket[b], c, __ATOMIC_RELAXED);
    }
    __atomic_fetch_add(&dst->count, __atomic_load_n(&src->count, __ATOMIC_RELAXED),
                       __ATOMIC_RELAXED);
    __atomic_fetch_add(&dst->sum, __atomic_load_n(&src->sum, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
    uint64_t smax = __atomic_load_n(&src->max, __ATOMIC_RELAXED);
    uint64_t smin = __atomic_load_n(&src->min, __ATOMIC_RELAXED);
    uint64_t m = __atomic_load_n(&dst->max, __ATOMIC_RELAXED);
    while (smax > m && !__atomic_compare_exchange_n(&dst->max, &m, smax, true, __ATOMIC_RELAXED,
                                                    __ATOMIC_RELAXED)) {
    }
    m = __atomic_load_n(&dst->min, __ATOMIC_RELAXED);
    while (smin < m && !__atomic_compare_exchange_n(&dst->min, &m, smin, true, __ATOMIC_RELAXED,
                                                    __ATOMIC_RELAXED)) {
    }
}

/* ---- JSON ------------------------------------------------------------------------- */

static void jputn(rt_json *j, const char *s, size_t n)
{
    if (j->len + n >= j->cap) {
        j->overflow = true;
        return;
    }
    memcpy(j->buf + j->len, s, n);
    j->len += n;
    j->buf[j->len] = '\0';
}

static void jputs(rt_json *j, const char *s) { jputn(j, s, strlen(s)); }

static void jstring(rt_json *j, const char *s)
{
    jputn(j, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            jputn(j, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            jputs(j, esc);
        } else {
            jputn(j, (const char *)p, 1);
        }
    }
    jputn(j, "\"", 1);
}

static void jkey(rt_json *j, const char *key)
{
    if (j->depth > 0) {
        if (!j->first[j->depth - 1])
            jputn(j, ",", 1);
        j->first[j->depth - 1] = false;
    }
    if (key) {
        jstring(j, key);
        jputn(j, ":", 1);
    }
}

void rt_json_init(rt_json *j, char *buf, size_t cap)
{
    memset(j, 0, sizeof *j);
    j->buf = buf;
    j->cap = cap;
    if (cap)
        buf[0] = '\0';
}

static void open_scope(rt_json *j, const char *key, const char *tok)
{
    jkey(j, key);
    jputs(j, tok);
    if (j->depth >= 16) {
        j->overflow = true;
        return;
    }
    j->first[j->depth++] = true;
}

static void close_scope(rt_json *j, const char *tok)
{
    if (j->depth == 0) {
        j->overflow = true;
        return;
    }
    j->depth--;
    jputs(j, tok);
}

void rt_json_begin(rt_json *j, const char *key) { open_scope(j, key, "{"); }
void rt_json_end(rt_json *j) { close_scope(j, "}"); }
void rt_json_begin_array(rt_json *j, const char *key) { open_scope(j, key, "["); }
void rt_json_end_array(rt_json *j) { close_scope(j, "]"); }

void rt_json_u64(rt_json *j, const char *key, uint64_t v)
{
    char num[24];
    snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    jkey(j, key);
    jputs(j, num);
}

void rt_json_i64(rt_json *j, const char *key, int64_t v)
{
    char num[24];
    snprintf(num, sizeof num, "%lld", (long long)v);
    jkey(j, key);
    jputs(j, num);
}

void rt_json_double(rt_json *j, const char *key, double v)
{
    char num[40];
    if (isfinite(v))
        snprintf(num, sizeof num, "%.17g", v);
    else
        strcpy(num, "null");
    jkey(j, key);
    jputs(j, num);
}

void rt_json_bool(rt_json *j, const char *key, bool v)
{
    jkey(j, key);
    jputs(j, v ? "true" : "false");
}

void rt_json_str(rt_json *j, const char *key, const char *v)
{
    jkey(j, key);
    jstring(j, v ? v : "");
}

void rt_json_hist(rt_json *j, const char *key, const rt_hist *h)
{
    uint64_t n = __atomic_load_n(&h->count, __ATOMIC_RELAXED);
    uint64_t mn = __atomic_load_n(&h->min, __ATOMIC_RELAXED);
    rt_json_begin(j, key);
    rt_json_u64(j, "count", n);
    rt_json_u64(j, "min_ns", n ? mn : 0);
    rt_json_u64(j, "p50_ns", rt_hist_quantile(h, 0.50));
    rt_json_u64(j, "p99_ns", rt_hist_quantile(h, 0.99));
    rt_json_u64(j, "p999_ns", rt_hist_quantile(h, 0.999));
    rt_json_u64(j, "max_ns", __atomic_load_n(&h->max, __ATOMIC_RELAXED));
    rt_json_u64(j, "mean_ns", n ? __atomic_load_n(&h->sum, __ATOMIC_RELAXED) / n : 0);
    rt_json_end(j);
}

const char *rt_json_text(rt_json *j)
{
    if (j->overflow || j->depth != 0)
        return NULL;
    return j->buf;
}

int rt_stats_write_file(const char *path, const char *text, rt_err *err)
{
    char tmp[4096 + 32];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
        return rt_err_set(err, ENAMETOOLONG, "stats path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return rt_err_sys(err, "cannot create %s", tmp);
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int rc = rt_err_sys(err, "cannot write %s", tmp);
            close(fd);
            unlink(tmp);
            return rc;
        }
        off += (size_t)w;
    }
    if (write(fd, "\n", 1) != 1 || close(fd) != 0) {
        int rc = rt_err_sys(err, "cannot write %s", tmp);
        unlink(tmp);
        return rc;
    }
    if (rename(tmp, path) != 0) {
        int rc = rt_err_sys(err, "cannot rename %s to %s", tmp, path);
        unlink(tmp);
        return rc;
    }
    return 0;
}
