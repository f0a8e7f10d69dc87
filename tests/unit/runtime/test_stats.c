/* test_stats.c: clock, histogram buckets and percentiles, JSON writer, stats file. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt/stats.h"

Test(stats, clock_is_monotonic_and_nanoseconds)
{
    uint64_t a = rt_now_ns();
    usleep(2000);
    uint64_t b = rt_now_ns();
    cr_assert_gt(b, a);
    cr_assert_geq(b - a, 2000000ULL);
    cr_assert_lt(b - a, 2000000000ULL);
}

Test(stats, buckets_cover_values_tightly)
{
    uint64_t probes[] = {
        0, 1, 15, 16, 17, 31, 32, 100, 1000, 123456, 1ULL << 40, UINT64_MAX - 1, UINT64_MAX};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        uint64_t v = probes[i];
        unsigned b = rt_hist_bucket(v);
        cr_assert_lt(b, RT_HIST_BUCKETS);
        uint64_t up = rt_hist_bucket_upper(b);
        cr_assert_geq(up, v, "v=%llu up=%llu", (unsigned long long)v, (unsigned long long)up);
        /* relative width at most 1/16 */
        cr_assert_leq((double)(up - v), (double)v / 16.0 + 1, "v=%llu", (unsigned long long)v);
        if (b > 0)
            cr_assert_lt(rt_hist_bucket_upper(b - 1), v);
    }
    /* Buckets are monotone over a sweep. */
    unsigned prev = 0;
    for (uint64_t v = 0; v < 100000; v += 7) {
        unsigned b = rt_hist_bucket(v);
        cr_assert_geq(b, prev);
        prev = b;
    }
}

Test(stats, percentiles_of_known_distribution)
{
    rt_hist *h = malloc(sizeof *h);
    rt_hist_init(h);
    cr_assert_eq(rt_hist_quantile(h, 0.5), 0);
    /* 1..10000 us: p50 = 5000us, p99 = 9900us, p999 = 9990us. */
    for (uint64_t i = 1; i <= 10000; i++)
        rt_hist_record(h, i * 1000);
    cr_assert_eq(h->count, 10000);
    cr_assert_eq(h->max, 10000000);
    cr_assert_eq(h->min, 1000);
    struct {
        double q;
        double want;
    } c[] = {{0.5, 5e6}, {0.99, 9.9e6}, {0.999, 9.99e6}, {1.0, 1e7}, {0.0, 1e3}};
    for (size_t i = 0; i < 5; i++) {
        double got = (double)rt_hist_quantile(h, c[i].q);
        cr_assert_geq(got, c[i].want, "q=%g got %g", c[i].q, got);
        cr_assert_leq(got, c[i].want * (1 + 1.0 / 16), "q=%g got %g", c[i].q, got);
    }
    free(h);
}

static rt_hist shared_hist;

static void *recorder(void *arg)
{
    uint64_t base = (uint64_t)(uintptr_t)arg;
    for (int i = 0; i < 100000; i++)
        rt_hist_record(&shared_hist, base + (uint64_t)i % 100);
    return NULL;
}

Test(stats, concurrent_recording_loses_nothing)
{
    rt_hist_init(&shared_hist);
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, recorder, (void *)(i * 1000 + 1));
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(shared_hist.count, 400000);
    uint64_t total = 0;
    for (unsigned b = 0; b < RT_HIST_BUCKETS; b++)
        total += shared_hist.bucket[b];
    cr_assert_eq(total, 400000);
    cr_assert_eq(shared_hist.min, 1);
    cr_assert_eq(shared_hist.max, 3100);
}

Test(stats, merge_adds)
{
    rt_hist *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    rt_hist_init(a);
    rt_hist_init(b);
    rt_hist_record(a, 10);
    rt_hist_record(b, 1000000);
    rt_hist_record(b, 5);
    rt_hist_merge(a, b);
    cr_assert_eq(a->count, 3);
    cr_assert_eq(a->min, 5);
    cr_assert_eq(a->max, 1000000);
    cr_assert_eq(rt_hist_quantile(a, 1.0), 1000000);
    free(a);
    free(b);
}

Test(stats, json_writer)
{
    char buf[2048];
    rt_json j;
    rt_json_init(&j, buf, sizeof buf);
    rt_json_begin(&j, NULL);
    rt_json_str(&j, "system", "split\"ft\\\n");
    rt_json_u64(&j, "commits", 12);
    rt_json_i64(&j, "delta", -3);
    rt_json_double(&j, "ratio", 0.5);
    rt_json_double(&j, "nan", 0.0 / 0.0);
    rt_json_bool(&j, "ok", true);
    rt_json_begin_array(&j, "list");
    rt_json_u64(&j, NULL, 1);
    rt_json_u64(&j, NULL, 2);
    rt_json_end_array(&j);
    rt_json_begin(&j, "empty");
    rt_json_end(&j);
    rt_json_end(&j);
    const char *t = rt_json_text(&j);
    cr_assert_not_null(t);
    cr_assert_str_eq(t, "{\"system\":\"split\\\"ft\\\\\\u000a\",\"commits\":12,\"delta\":-3,"
                        "\"ratio\":0.5,\"nan\":null,\"ok\":true,\"list\":[1,2],\"empty\":{}}");
}

Test(stats, json_overflow_and_imbalance_detected)
{
    char small[16];
    rt_json j;
    rt_json_init(&j, small, sizeof small);
    rt_json_begin(&j, NULL);
    rt_json_str(&j, "a-long-key", "a-long-value");
    rt_json_end(&j);
    cr_assert_null(rt_json_text(&j));
    char buf[64];
    rt_json_init(&j, buf, sizeof buf);
    rt_json_begin(&j, NULL);
    cr_assert_null(rt_json_text(&j));
}

Test(stats, json_hist_and_file)
{
    rt_hist *h = malloc(sizeof *h);
    rt_hist_init(h);
    for (int i = 0; i < 100; i++)
        rt_hist_record(h, 1000);
    char buf[1024];
    rt_json j;
    rt_json_init(&j, buf, sizeof buf);
    rt_json_begin(&j, NULL);
    rt_json_hist(&j, "lat", h);
    rt_json_end(&j);
    const char *t = rt_json_text(&j);
    cr_assert_str_eq(t, "{\"lat\":{\"count\":100,\"min_ns\":1000,\"p50_ns\":1000,\"p99_ns\":1000,"
                        "\"p999_ns\":1000,\"max_ns\":1000,\"mean_ns\":1000}}");
    char dir[] = "/tmp/rt-stats-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/stats.json", dir);
    rt_err e;
    cr_assert_eq(rt_stats_write_file(path, t, &e), 0, "%s", e.msg);
    FILE *f = fopen(path, "r");
    char back[1024] = "";
    cr_assert(fgets(back, sizeof back, f));
    fclose(f);
    cr_assert_eq(strncmp(back, t, strlen(t)), 0);
    unlink(path);
    rmdir(dir);
    snprintf(path, sizeof path, "%s/gone/stats.json", dir);
    cr_assert_lt(rt_stats_write_file(path, t, &e), 0);
    cr_assert(strstr(e.msg, "cannot create"), "%s", e.msg);
    free(h);
}
