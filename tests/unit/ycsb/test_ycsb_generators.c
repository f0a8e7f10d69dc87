/* test_ycsb_generators.c: splitft-ycsb's random numbers and key generators against exact
 * distributions: the zipfian's rank frequencies pass a chi-square test against the zipfian
 * probabilities (computed here in double precision) where Gray's approximation, the
 * generator YCSB itself uses, fails the same test; the scrambled zipfian is the zipfian's
 * rank mapped through fnv64; the latest generator is the zipfian counted back from the
 * newest key; the acknowledged counter exposes only acknowledged prefixes. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ycsb.h"

/* The chi-square statistic of counts against probabilities p (n bins, draws in all). */
static double chi_square(const uint64_t *counts, const double *p, size_t n, uint64_t draws)
{
    double chi = 0;
    for (size_t i = 0; i < n; i++) {
        double e = p[i] * (double)draws;
        double d = (double)counts[i] - e;
        chi += d * d / e;
    }
    return chi;
}

/* The chi-square quantile with k degrees of freedom at the upper tail z (Wilson-Hilferty;
 * z = 3.09 is p = 0.001). */
static double chi_limit(double k, double z)
{
    double a = 2.0 / (9.0 * k);
    return k * pow(1.0 - a + z * sqrt(a), 3);
}

/* Zipfian probabilities of ranks 0..n-1, from the definition. */
static double *zipf_probs(size_t n, double theta)
{
    double *p = malloc(n * sizeof *p), z = 0;
    for (size_t i = 0; i < n; i++)
        z += p[i] = pow((double)(i + 1), -theta);
    for (size_t i = 0; i < n; i++)
        p[i] /= z;
    return p;
}

/* YCSB's ZipfianGenerator (Gray et al., "Quickly generating billion-record synthetic
 * databases"): the negative control. */
static uint64_t gray_next(ycsb_rng *r, uint64_t n, double theta, double zetan)
{
    double alpha = 1.0 / (1.0 - theta), zeta2 = 1.0 + pow(0.5, theta);
    double eta = (1.0 - pow(2.0 / (double)n, 1.0 - theta)) / (1.0 - zeta2 / zetan);
    double u = ycsb_rng_double(r), uz = u * zetan;
    if (uz < 1.0)
        return 0;
    if (uz < 1.0 + pow(0.5, theta))
        return 1;
    return (uint64_t)((double)n * pow(eta * u - eta + 1.0, alpha));
}

#define N_ITEMS 1000
#define DRAWS   1000000

Test(zipfian, exact_rank_frequencies_pass_chi_square)
{
    ycsb_zipf z;
    ycsb_zipf_init(&z, N_ITEMS, YCSB_ZIPF_THETA);
    ycsb_rng r;
    ycsb_rng_seed(&r, 42, 0);
    uint64_t *c = calloc(N_ITEMS, sizeof *c);
    for (int i = 0; i < DRAWS; i++) {
        uint64_t k = ycsb_zipf_next(&z, &r);
        cr_assert_lt(k, N_ITEMS);
        c[k]++;
    }
    double *p = zipf_probs(N_ITEMS, YCSB_ZIPF_THETA);
    double chi = chi_square(c, p, N_ITEMS, DRAWS), lim = chi_limit(N_ITEMS - 1, 3.09);
    cr_assert_lt(chi, lim, "chi-square %.1f over %d bins, limit %.1f", chi, N_ITEMS, lim);
    /* And the head, where a benchmark's hot keys are, within 5 standard deviations. */
    for (int k = 0; k < 5; k++) {
        double f = (double)c[k] / DRAWS, sd = sqrt(p[k] * (1 - p[k]) / DRAWS);
        cr_assert_leq(fabs(f - p[k]), 5 * sd, "rank %d: %.5f vs %.5f", k, f, p[k]);
    }
    free(p);
    free(c);
}

Test(zipfian, negative_control_gray_approximation_fails_chi_square)
{
    double *p = zipf_probs(N_ITEMS, YCSB_ZIPF_THETA), zetan = 0;
    for (int i = 0; i < N_ITEMS; i++)
        zetan += pow(i + 1.0, -YCSB_ZIPF_THETA);
    ycsb_rng r;
    ycsb_rng_seed(&r, 42, 0);
    uint64_t *c = calloc(N_ITEMS, sizeof *c);
    for (int i = 0; i < DRAWS; i++) {
        uint64_t k = gray_next(&r, N_ITEMS, YCSB_ZIPF_THETA, zetan);
        c[k < N_ITEMS ? k : N_ITEMS - 1]++;
    }
    double chi = chi_square(c, p, N_ITEMS, DRAWS), lim = chi_limit(N_ITEMS - 1, 3.09);
    cr_assert_gt(chi, lim, "the approximation passed (%.1f < %.1f): the test has no power", chi,
                 lim);
    free(p);
    free(c);
}

Test(zipfian, small_and_resized_item_counts)
{
    ycsb_zipf z;
    ycsb_zipf_init(&z, 1, YCSB_ZIPF_THETA);
    ycsb_rng r;
    ycsb_rng_seed(&r, 7, 0);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(ycsb_zipf_next(&z, &r), 0);
    ycsb_zipf_resize(&z, 10);
    uint64_t c[10] = {0};
    for (int i = 0; i < 100000; i++) {
        uint64_t k = ycsb_zipf_next(&z, &r);
        cr_assert_lt(k, 10);
        c[k]++;
    }
    double *p = zipf_probs(10, YCSB_ZIPF_THETA);
    double chi = chi_square(c, p, 10, 100000), lim = chi_limit(9, 3.09);
    cr_assert_lt(chi, lim, "chi-square %.1f, limit %.1f", chi, lim);
    free(p);
}

Test(zipfian, ten_billion_items_head_probability)
{
    /* The scrambled generator's 10^10 items: zeta(10^10, 0.99) = 26.46902820178302 (the
     * constant YCSB hard-codes), so rank 0 comes with probability 1/26.469. */
    ycsb_zipf z;
    ycsb_zipf_init(&z, YCSB_SCRAMBLE_ITEMS, YCSB_ZIPF_THETA);
    ycsb_rng r;
    ycsb_rng_seed(&r, 11, 0);
    uint64_t c0 = 0, c1 = 0;
    const int n = 400000;
    for (int i = 0; i < n; i++) {
        uint64_t k = ycsb_zipf_next(&z, &r);
        cr_assert_lt(k, YCSB_SCRAMBLE_ITEMS);
        c0 += k == 0;
        c1 += k == 1;
    }
    double p0 = 1.0 / 26.46902820178302, p1 = p0 * pow(2.0, -YCSB_ZIPF_THETA);
    cr_assert_leq(fabs((double)c0 / n - p0), 5 * sqrt(p0 * (1 - p0) / n), "rank 0: %f",
                  (double)c0 / n);
    cr_assert_leq(fabs((double)c1 / n - p1), 5 * sqrt(p1 * (1 - p1) / n), "rank 1: %f",
                  (double)c1 / n);
}

Test(scrambled, is_the_zipfian_rank_through_fnv64)
{
    ycsb_scrambled s;
    ycsb_scrambled_init(&s, 5, 1000, YCSB_ZIPF_THETA);
    ycsb_rng a, b;
    ycsb_rng_seed(&a, 3, 1);
    ycsb_rng_seed(&b, 3, 1);
    uint64_t *c = calloc(1005, sizeof *c);
    for (int i = 0; i < 200000; i++) {
        uint64_t k = ycsb_scrambled_next(&s, &a);
        uint64_t rank = ycsb_zipf_next(&s.z, &b);
        cr_assert_eq(k, ycsb_scrambled_map(&s, rank));
        cr_assert_eq(k, 5 + (uint64_t)ycsb_fnv64((int64_t)rank) % 1000);
        cr_assert(k >= 5 && k < 1005);
        c[k]++;
    }
    /* The most popular key is where rank 0 lands, not key 5. */
    uint64_t best = 0;
    for (uint64_t k = 0; k < 1005; k++)
        if (c[k] > c[best])
            best = k;
    cr_assert_eq(best, ycsb_scrambled_map(&s, 0));
    cr_assert_neq(best, 5);
    free(c);
}

Test(latest, counts_back_from_the_newest_key)
{
    ycsb_latest l;
    ycsb_latest_init(&l, YCSB_ZIPF_THETA);
    ycsb_rng r;
    ycsb_rng_seed(&r, 5, 2);
    uint64_t *c = calloc(1000, sizeof *c);
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        uint64_t k = ycsb_latest_next(&l, 999, &r);
        cr_assert_leq(k, 999);
        c[999 - k]++;
    }
    double *p = zipf_probs(1000, YCSB_ZIPF_THETA);
    double chi = chi_square(c, p, 1000, n), lim = chi_limit(999, 3.09);
    cr_assert_lt(chi, lim, "chi-square %.1f, limit %.1f", chi, lim);
    uint64_t recent = 0;
    for (int i = 0; i < 100; i++)
        recent += c[i];
    cr_assert_gt((double)recent / n, 0.6, "newest 10%% of keys drew %.3f", (double)recent / n);
    /* The key space grows: new keys become the popular ones at once. */
    memset(c, 0, 1000 * sizeof *c);
    uint64_t top = 0;
    for (int i = 0; i < 20000; i++) {
        uint64_t k = ycsb_latest_next(&l, 1999, &r);
        cr_assert_leq(k, 1999);
        top += k == 1999;
    }
    cr_assert_gt(top, 20000 / 10, "key 1999 drawn %llu times", (unsigned long long)top);
    free(p);
    free(c);
}

Test(rng, fnv64_matches_ycsb_and_keys_are_hashed)
{
    /* Values of YCSB's Utils.fnvhash64, computed with Java long arithmetic. */
    cr_assert_eq(ycsb_fnv64(0), 6284781860667377211LL);
    cr_assert_eq(ycsb_fnv64(1), 8517097267634966620LL);
    cr_assert_eq(ycsb_fnv64(999), 2071219101098386137LL);
    cr_assert_eq(ycsb_fnv64(12345), 1792800413050876852LL);
    char k[YCSB_KEY_MAX];
    cr_assert_eq(ycsb_key_name(0, k), strlen("user6284781860667377211"));
    cr_assert_str_eq(k, "user6284781860667377211");
}

Test(rng, streams_are_deterministic_and_distinct)
{
    ycsb_rng a, b, c;
    ycsb_rng_seed(&a, 9, 0);
    ycsb_rng_seed(&b, 9, 0);
    ycsb_rng_seed(&c, 9, 1);
    int same = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = ycsb_rng_next(&a);
        cr_assert_eq(x, ycsb_rng_next(&b));
        same += x == ycsb_rng_next(&c);
    }
    cr_assert_eq(same, 0);
    uint64_t cnt[7] = {0};
    for (int i = 0; i < 70000; i++) {
        double d = ycsb_rng_double(&a);
        cr_assert(d >= 0.0 && d < 1.0);
        cnt[ycsb_rng_below(&a, 7)]++;
    }
    double p[7];
    for (int i = 0; i < 7; i++)
        p[i] = 1.0 / 7;
    cr_assert_lt(chi_square(cnt, p, 7, 70000), chi_limit(6, 3.09));
}

Test(counter, exposes_only_acknowledged_prefixes)
{
    ycsb_counter c;
    cr_assert_eq(ycsb_counter_init(&c, 100, NULL), 0);
    cr_assert_eq(ycsb_counter_last(&c), 99);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(ycsb_counter_next(&c), 100u + (unsigned)i);
    cr_assert_eq(ycsb_counter_ack(&c, 102), 0);
    cr_assert_eq(ycsb_counter_ack(&c, 101), 0);
    cr_assert_eq(ycsb_counter_last(&c), 99, "100 is not acknowledged yet");
    cr_assert_eq(ycsb_counter_ack(&c, 100), 0);
    cr_assert_eq(ycsb_counter_last(&c), 102);
    cr_assert_eq(ycsb_counter_ack(&c, 104), 0);
    cr_assert_eq(ycsb_counter_last(&c), 102);
    cr_assert_eq(ycsb_counter_ack(&c, 103), 0);
    cr_assert_eq(ycsb_counter_last(&c), 104);
    cr_assert_eq(ycsb_counter_ack(&c, 105 + YCSB_ACK_WINDOW), -EOVERFLOW);
    ycsb_counter_destroy(&c);
}

static ycsb_counter shared_counter;

static void *ack_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 50000; i++) {
        uint64_t v = ycsb_counter_next(&shared_counter);
        int64_t before = ycsb_counter_last(&shared_counter);
        cr_assert_lt(before, (int64_t)v, "a number was exposed before its acknowledgement");
        cr_assert_eq(ycsb_counter_ack(&shared_counter, v), 0);
    }
    return NULL;
}

Test(counter, threads_acknowledging_in_any_order)
{
    cr_assert_eq(ycsb_counter_init(&shared_counter, 0, NULL), 0);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, ack_thread, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(ycsb_counter_last(&shared_counter), 4 * 50000 - 1);
    ycsb_counter_destroy(&shared_counter);
}
