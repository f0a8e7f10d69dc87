/* test_sort_par.c: mn_sort with every step on threads (the coordinate ranges, the keys, the
 * radix passes, the duplicate check, the sorted rows) gives the same rows, permutation and
 * errors whatever the thread count: against qsort on shuffled clouds of 19- to 53-bit keys
 * (all but the widest take the packed sort, 2-3 passes; the widest the (key, index) sort
 * with its gather) and 128-bit keys, with and without perm; a duplicate placed where the
 * check's thread ranges meet, inside a range, and two duplicates in different ranges (the
 * first in sorted order is the one named; these clouds take the packed sort); all rows
 * equal; and a failing sort leaves the rows as they were. (test_sort_packed.c covers the
 * packed sort's path boundaries.) */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MN_TEST_SEED 0x853c49e6748fea9bULL
#include "mn_test.h"

static void shuffle(int32_t *c, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = rnd() % i;
        int32_t t[4];
        memcpy(t, c + 4 * (i - 1), 16);
        memcpy(c + 4 * (i - 1), c + 4 * j, 16);
        memcpy(c + 4 * j, t, 16);
    }
}

/* Distinct rows: x is the row number (spread by `xs`), y and z random in [-span/2, span/2),
 * batch 0..2, shuffled. */
static int32_t *rows(size_t n, int span, int xs)
{
    int32_t *c = malloc(n * 16);
    for (size_t i = 0; i < n; i++) {
        c[4 * i] = (int32_t)(rnd() % 3);
        c[4 * i + 1] = (int32_t)i * xs - 50000;
        c[4 * i + 2] = (int32_t)(rnd() % (uint32_t)span) - span / 2;
        c[4 * i + 3] = (int32_t)(rnd() % (uint32_t)span) - span / 2;
    }
    shuffle(c, n);
    return c;
}

Test(sort_par, matches_qsort_for_any_thread_count)
{
    static const struct {
        size_t n;
        int span, xs;
    } cases[] = {/* keys of 19, 32, 39, 45 and 53 bits: 3 to 7 passes, odd and even */
                 {70000, 1, 1},
                 {200000, 64, 1},
                 {150001, 300, 3},
                 {300000, 4096, 1},
                 {300000, 1 << 16, 1},
                 /* 78 bits: the comparison sort */
                 {100000, 1 << 28, 7}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t n = cases[c].n;
        int32_t *orig = rows(n, cases[c].span, cases[c].xs), *want = malloc(n * 16);
        memcpy(want, orig, n * 16);
        qsort(want, n, 16, cmp4);
        for (int th = 1; th <= 4; th++)
            for (int wp = 0; wp < 2; wp++) {
                mn_coords co = {malloc(n * 16), n};
                memcpy(co.c, orig, n * 16);
                uint32_t *perm = wp ? malloc(n * sizeof *perm) : NULL;
                cr_assert_eq(mn_sort_threads(&co, perm, th), MN_OK, "%s", mn_last_error());
                cr_assert_eq(memcmp(co.c, want, n * 16), 0, "case %zu, %d threads", c, th);
                for (size_t i = 0; perm && i < n; i++)
                    cr_assert_eq(memcmp(co.c + 4 * i, orig + 4 * (size_t)perm[i], 16), 0,
                                 "case %zu, %d threads: perm[%zu]", c, th, i);
                free(perm);
                free(co.c);
            }
        free(orig);
        free(want);
    }
}

/* n rows (0, x, 1, 2) with x = 0..n-1 except that each sorted position in dups repeats the
 * row before it; shuffled. The error must name the first such position, the same message
 * for every thread count, and leave the rows untouched. */
static void dup_case(size_t n, const size_t *dups, int nd)
{
    int32_t *c = malloc(n * 16);
    for (size_t i = 0; i < n; i++) {
        int32_t x = (int32_t)i;
        for (int d = 0; d < nd; d++)
            if (i == dups[d])
                x = (int32_t)i - 1;
        int32_t r[4] = {0, x, 1, 2};
        memcpy(c + 4 * i, r, 16);
    }
    shuffle(c, n);
    size_t first = dups[0];
    for (int d = 1; d < nd; d++)
        first = dups[d] < first ? dups[d] : first;
    char want[160];
    snprintf(want, sizeof want, "duplicate coordinate (0, %d, 1, 2) at rows", (int)first - 1);
    char msg1[512] = "";
    for (int th = 1; th <= 4; th++)
        for (int wp = 0; wp < 2; wp++) {
            mn_coords co = {malloc(n * 16), n};
            memcpy(co.c, c, n * 16);
            uint32_t *perm = wp ? malloc(n * sizeof *perm) : NULL;
            cr_assert_eq(mn_sort_threads(&co, perm, th), MN_EDUP, "n %zu, dup at %zu", n, first);
            const char *msg = mn_last_error();
            cr_assert(strstr(msg, want), "%d threads: %s (want %s)", th, msg, want);
            if (th == 1 && !wp)
                snprintf(msg1, sizeof msg1, "%s", msg);
            cr_assert_str_eq(msg, msg1, "%d threads", th);
            cr_assert_eq(memcmp(co.c, c, n * 16), 0, "a failed sort changed the rows");
            free(perm);
            free(co.c);
        }
    free(c);
}

Test(sort_par, duplicates_at_and_between_thread_ranges)
{
    size_t n = 200000;
    /* The ranges of 2, 3 and 4 threads start at n/2, n/3, 2n/3, n/4, 3n/4. */
    size_t at[] = {n / 2, n / 3, 2 * n / 3, n / 4, 3 * n / 4, 1, n - 1, 12345, n / 2 + 1};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++)
        dup_case(n, &at[i], 1);
    size_t two[] = {3 * n / 4 + 10, n / 4 - 10}; /* in the last and the first range */
    dup_case(n, two, 2);
    size_t two2[] = {n / 2, n / 2 + 50000};
    dup_case(n, two2, 2);
}

Test(sort_par, all_rows_equal)
{
    size_t n = 100000;
    for (int th = 1; th <= 2; th++) {
        mn_coords co = {malloc(n * 16), n};
        for (size_t i = 0; i < n; i++) {
            int32_t r[4] = {1, -5, 7, 9};
            memcpy(co.c + 4 * i, r, 16);
        }
        cr_assert_eq(mn_sort_threads(&co, NULL, th), MN_EDUP);
        cr_assert(strstr(mn_last_error(), "(1, -5, 7, 9) at rows 0 and 1"), "%s", mn_last_error());
        free(co.c);
    }
}
