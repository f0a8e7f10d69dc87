/* test_ycsb_workload.c: the core workloads' operation mixes, scan lengths and key choice, drawn
 * without a backend: proportions within five standard deviations of YCSB's property files
 * over 10^5 draws, operations a workload does not have never drawn, scan lengths uniform
 * over 1..100, keys never past the acknowledged inserts, and a thread's choices fixed by
 * (seed, thread index). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "ycsb.h"

/* The specification, written out again from YCSB's workloads/workload[a-f]:
 * read, update, insert, scan, read-modify-write. */
static const struct {
    double p[YCSB_NOPS];
    ycsb_dist dist;
    char letter;
} spec[] = {
    {{0.50, 0.50, 0, 0, 0}, YCSB_DIST_ZIPFIAN, 'a'},
    {{0.95, 0.05, 0, 0, 0}, YCSB_DIST_ZIPFIAN, 'b'},
    {{1, 0, 0, 0, 0}, YCSB_DIST_ZIPFIAN, 'c'},
    {{0.95, 0, 0.05, 0, 0}, YCSB_DIST_LATEST, 'd'},
    {{0, 0, 0.05, 0.95, 0}, YCSB_DIST_ZIPFIAN, 'e'},
    {{0.50, 0, 0, 0, 0.50}, YCSB_DIST_ZIPFIAN, 'f'},
};

Test(workload, operation_proportions_match_the_spec)
{
    const int n = 100000;
    for (size_t w = 0; w < sizeof spec / sizeof spec[0]; w++) {
        const ycsb_workload *wl = ycsb_workload_get(spec[w].letter);
        cr_assert_not_null(wl, "workload %c", spec[w].letter);
        cr_assert_eq(wl->dist, spec[w].dist, "workload %c's request distribution", spec[w].letter);
        ycsb_rng r;
        ycsb_rng_seed(&r, 1234, w);
        uint64_t c[YCSB_NOPS] = {0};
        for (int i = 0; i < n; i++) {
            ycsb_op op = ycsb_choose_op(wl, &r);
            cr_assert_lt((int)op, YCSB_NOPS);
            c[op]++;
        }
        for (int op = 0; op < YCSB_NOPS; op++) {
            double p = spec[w].p[op], f = (double)c[op] / n;
            if (p == 0) {
                cr_assert_eq(c[op], 0, "workload %c drew %s", spec[w].letter, ycsb_op_names[op]);
                continue;
            }
            double sd = sqrt(p * (1 - p) / n);
            cr_assert_leq(fabs(f - p), 5 * sd + 1e-12, "workload %c: %s %.4f, spec %.2f",
                          spec[w].letter, ycsb_op_names[op], f, p);
        }
    }
}

Test(workload, letters_and_names)
{
    cr_assert_eq(ycsb_workload_get('A'), ycsb_workload_get('a'));
    cr_assert_null(ycsb_workload_get('g'));
    cr_assert_null(ycsb_workload_get('0'));
    cr_assert_str_eq(ycsb_op_names[YCSB_RMW], "rmw");
    cr_assert_str_eq(ycsb_op_names[YCSB_INSERT], "insert");
}

Test(workload, scan_lengths_uniform_in_1_to_100)
{
    const ycsb_workload *e = ycsb_workload_get('e');
    cr_assert_eq(e->max_scan_length, 100);
    ycsb_rng r;
    ycsb_rng_seed(&r, 77, 0);
    uint64_t c[101] = {0};
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        unsigned len = ycsb_scan_length(e, &r);
        cr_assert(len >= 1 && len <= 100, "scan length %u", len);
        c[len]++;
    }
    double chi = 0, want = n / 100.0;
    for (int i = 1; i <= 100; i++) {
        cr_assert_gt(c[i], 0, "length %d never drawn", i);
        chi += ((double)c[i] - want) * ((double)c[i] - want) / want;
    }
    /* 99 degrees of freedom, p = 0.001. */
    cr_assert_lt(chi, 148.2, "chi-square %.1f", chi);
}

Test(chooser, keys_never_pass_the_acknowledged_inserts)
{
    for (int wi = 'a'; wi <= 'f'; wi++) {
        char w = (char)wi;
        ycsb_chooser ch;
        ycsb_chooser_init(&ch, ycsb_workload_get(w), 1000, 100000);
        ycsb_rng r;
        ycsb_rng_seed(&r, 5, (uint64_t)w);
        uint64_t top = 0;
        for (int i = 0; i < 20000; i++) {
            int64_t last = 999 + i / 100;
            uint64_t k = ycsb_chooser_key(&ch, last, &r);
            cr_assert_leq((int64_t)k, last, "workload %c drew %llu past %lld", w,
                          (unsigned long long)k, (long long)last);
            if (k > top)
                top = k;
        }
        if (w == 'd' || w == 'e') /* new keys are reachable once acknowledged */
            cr_assert_gt(top, 999, "workload %c never drew an inserted key", w);
    }
}

Test(chooser, zipfian_key_space_includes_expected_inserts)
{
    /* CoreWorkload: items = records + 2 x ops x insert proportion, + 1 (inclusive bound). */
    ycsb_chooser ch;
    ycsb_chooser_init(&ch, ycsb_workload_get('e'), 1000, 10000);
    cr_assert_eq(ch.zs.items, 1000 + 1000 + 1);
    ycsb_chooser_init(&ch, ycsb_workload_get('a'), 1000, 10000);
    cr_assert_eq(ch.zs.items, 1001);
}

Test(chooser, a_thread_choice_sequence_depends_on_seed_and_index)
{
    const ycsb_workload *w = ycsb_workload_get('a');
    uint64_t seq[3][200];
    for (int t = 0; t < 3; t++) {
        ycsb_chooser ch;
        ycsb_chooser_init(&ch, w, 1000, 1000);
        ycsb_rng r;
        ycsb_rng_seed(&r, 99, t < 2 ? 0 : 1); /* runs 0 and 1: the same thread */
        for (int i = 0; i < 200; i++)
            seq[t][i] = (uint64_t)ycsb_choose_op(w, &r) << 32 | ycsb_chooser_key(&ch, 999, &r);
    }
    cr_assert_arr_eq(seq[0], seq[1], sizeof seq[0]);
    cr_assert_neq(memcmp(seq[0], seq[2], sizeof seq[0]), 0);
}
