/* test_ycsb_values.c: splitft-ycsb's self-describing values, versions and latency histograms:
 * a value parses back to its version only for its own key, field and length, and any
 * changed byte is caught; histogram percentiles are within 1% of the exact order statistics
 * of the recorded values (qsort). */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ycsb.h"

Test(values, versions_name_their_field)
{
    cr_assert_eq(ycsb_version_field(ycsb_version_make(123456, YCSB_VERSION_ALL)), YCSB_VERSION_ALL);
    for (int f = 0; f < YCSB_FIELDS_MAX; f++) {
        uint64_t v = ycsb_version_make(1700000000000000ULL, f);
        cr_assert_eq(ycsb_version_field(v), f);
        cr_assert_eq(v >> 8, 1700000000000000ULL);
    }
    /* Later sequence numbers order after earlier ones whatever the field. */
    cr_assert_gt(ycsb_version_make(2, 0), ycsb_version_make(1, 100));
}

Test(values, round_trip_and_every_changed_byte_is_caught)
{
    size_t lens[] = {64, 100, 1000};
    for (size_t li = 0; li < 3; li++) {
        size_t len = lens[li];
        char *v = malloc(len);
        const char *key = "user6284781860667377211";
        uint64_t ver = ycsb_version_make(1764851234567890ULL, 3), got = 0;
        ycsb_value_fill(v, len, key, 3, ver);
        char pre[64];
        snprintf(pre, sizeof pre, "%s:%llu:", key, (unsigned long long)ver);
        cr_assert_eq(memcmp(v, pre, strlen(pre)), 0, "the value starts with KEY:VERSION:");
        for (size_t i = 0; i < len; i++)
            cr_assert(v[i] > ' ' && v[i] < 127, "byte %zu not printable", i);
        cr_assert_eq(ycsb_value_parse(v, len, len, key, 3, &got), 0);
        cr_assert_eq(got, ver);
        cr_assert_eq(ycsb_value_parse(v, len, len, key, 4, &got), -EINVAL, "another field's");
        cr_assert_eq(ycsb_value_parse(v, len, len, "user1", 3, &got), -EINVAL, "another key's");
        cr_assert_eq(ycsb_value_parse(v, len, len + 1, key, 3, &got), -EINVAL, "too short");
        cr_assert_eq(ycsb_value_parse(v, len - 1, len, key, 3, &got), -EINVAL, "cut");
        for (size_t i = 0; i < len; i++) {
            char keep = v[i];
            v[i] = keep == 'A' ? 'B' : 'A';
            cr_assert_eq(ycsb_value_parse(v, len, len, key, 3, &got), -EINVAL, "byte %zu", i);
            v[i] = keep;
        }
        free(v);
    }
}

Test(values, versions_differ_in_the_body_too)
{
    char a[100], b[100];
    const char *key = "user42";
    ycsb_value_fill(a, 100, key, 0, ycsb_version_make(10, 0));
    ycsb_value_fill(b, 100, key, 0, ycsb_version_make(11, 0));
    size_t pa = strlen("user42:2561:"), pb = strlen("user42:2817:");
    cr_assert_eq(pa, pb);
    cr_assert_neq(memcmp(a + pa, b + pb, 100 - pa), 0);
    /* A version written with a leading zero is not canonical. */
    char bad[101];
    snprintf(bad, sizeof bad, "user42:0%.*s", 92, b + 7);
    uint64_t got;
    cr_assert_eq(ycsb_value_parse(b, 100, 100, key, 0, &got), 0);
    cr_assert_eq(ycsb_value_parse(bad, 100, 100, key, 0, &got), -EINVAL);
}

Test(values, field_names)
{
    cr_assert_eq(ycsb_field_index("field0", 6, 10), 0);
    cr_assert_eq(ycsb_field_index("FIELD9", 6, 10), 9);
    cr_assert_eq(ycsb_field_index("field10", 7, 10), -1);
    cr_assert_eq(ycsb_field_index("field10", 7, 11), 10);
    cr_assert_eq(ycsb_field_index("field01", 7, 10), -1);
    cr_assert_eq(ycsb_field_index("field", 5, 10), -1);
    cr_assert_eq(ycsb_field_index("fieldx", 6, 10), -1);
    cr_assert_eq(ycsb_field_index("_indices", 8, 10), -1);
}

Test(values, records_grow_and_clear)
{
    ycsb_rec r;
    ycsb_rec_init(&r, 3);
    cr_assert_eq(ycsb_rec_set(&r, 1, "abc", 3), 0);
    cr_assert_eq(ycsb_rec_set(&r, 1, "abcdefgh", 8), 0);
    cr_assert(r.f[1].present && !r.f[0].present);
    cr_assert_eq(memcmp(r.f[1].p, "abcdefgh", 8), 0);
    ycsb_rec_clear(&r);
    cr_assert(!r.f[1].present);
    ycsb_rec_free(&r);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

Test(hist, buckets_are_tight_and_monotone)
{
    unsigned prev = 0;
    for (uint64_t v = 1; v < (1ULL << 42); v = v * 3 / 2 + 1) {
        unsigned b = ycsb_hist_bucket(v);
        cr_assert_lt(b, YCSB_HIST_BUCKETS);
        cr_assert_geq(b, prev);
        prev = b;
        uint64_t up = ycsb_hist_bucket_upper(b);
        cr_assert_geq(up, v, "v=%llu", (unsigned long long)v);
        cr_assert_leq((double)(up - v), (double)v / 128.0, "v=%llu up=%llu", (unsigned long long)v,
                      (unsigned long long)up);
        if (b > 0)
            cr_assert_lt(ycsb_hist_bucket_upper(b - 1), v);
    }
    cr_assert_eq(ycsb_hist_bucket(UINT64_MAX), YCSB_HIST_BUCKETS - 1);
}

Test(hist, quantiles_within_one_percent_of_exact)
{
    const size_t n = 200000;
    uint64_t *v = malloc(n * sizeof *v);
    ycsb_hist *h = malloc(sizeof *h), *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    ycsb_hist_init(a);
    ycsb_hist_init(b);
    ycsb_rng r;
    ycsb_rng_seed(&r, 1, 0);
    for (size_t i = 0; i < n; i++) {
        /* Log-uniform from 1 us to 100 ms, plus a tail. */
        double e = ycsb_rng_double(&r) * 11.5;
        v[i] = (uint64_t)(1000.0 * exp(e)) + ycsb_rng_below(&r, 1000);
        ycsb_hist_record(i % 2 ? a : b, v[i]);
    }
    ycsb_hist_init(h);
    ycsb_hist_merge(h, a);
    ycsb_hist_merge(h, b);
    cr_assert_eq(h->count, n);
    qsort(v, n, sizeof *v, cmp_u64);
    cr_assert_eq(h->max, v[n - 1]);
    double qs[] = {0.0, 0.5, 0.95, 0.99, 0.999, 1.0};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        size_t rank = (size_t)ceil(qs[i] * (double)n);
        uint64_t exact = v[rank ? rank - 1 : 0], got = ycsb_hist_quantile(h, qs[i]);
        cr_assert_geq(got, exact, "q=%g", qs[i]);
        cr_assert_leq((double)(got - exact), (double)exact * 0.01, "q=%g: %llu vs %llu", qs[i],
                      (unsigned long long)got, (unsigned long long)exact);
    }
    ycsb_hist_init(a);
    cr_assert_eq(ycsb_hist_quantile(a, 0.5), 0);
    free(v);
    free(h);
    free(a);
    free(b);
}
