/* test_sort_packed.c: the packed radix sort (words key << ib | row, used while the key's
 * bits kb and the row bits ib = bits_for(n - 1) fit in 64) against qsort, on both sides of
 * its boundary: kb + ib = 63, 64 (packed), 65 (the (key, index) radix sort), kb = 64 and 66
 * (128-bit keys: the comparison sort); n just below, at and above powers of two (where ib
 * changes), from 2 rows up, with 1 to 4 threads. mn_sort_threads must give qsort's rows and
 * the permutation of a stable sort, with and without perm; mn_sort_index must keep equal
 * rows in row order; duplicates must be refused with the same message (the first duplicate
 * in sorted order, its first two rows) on every path and thread count, the rows untouched. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "mn_test.h"

/* A row and where it was, for the expected (stable) order. */
typedef struct pos_row {
    int32_t r[4];
    uint32_t at;
} pos_row;

static int cmp_pos_row(const void *a, const void *b)
{
    const pos_row *x = a, *y = b;
    for (int f = 0; f < 4; f++)
        if (x->r[f] != y->r[f])
            return x->r[f] < y->r[f] ? -1 : 1;
    return (x->at > y->at) - (x->at < y->at);
}

static int bits_of(size_t v)
{
    int b = 0;
    while (b < 64 && (v >> b) != 0)
        b++;
    return b;
}

/* n rows whose fields span exactly bits[f] bits (field f in [-2^(bits-1), 2^(bits-1)),
 * bits <= 31; the row with every field lowest and the one with every field highest are
 * included). z's low bits_of(n - 1) bits are the row number, so the rows are distinct
 * (bits[3] must be at least that); shuffled. */
static int32_t *rows_of_width(size_t n, const int bits[4])
{
    int ib = bits_of(n - 1);
    cr_assert_geq(bits[3], ib);
    int32_t *c = malloc(n * 16);
    for (size_t i = 0; i < n; i++)
        for (int f = 0; f < 4; f++) {
            uint64_t m = bits[f] ? ((uint64_t)1 << bits[f]) - 1 : 0, v = rnd64() & m;
            if (i == 0)
                v = 0;
            if (i == n - 1)
                v = m;
            if (f == 3)
                v = (v & ~(((uint64_t)1 << ib) - 1)) | (uint64_t)i;
            int64_t half = bits[f] ? (int64_t)1 << (bits[f] - 1) : 0;
            c[4 * i + f] = (int32_t)((int64_t)v - half);
        }
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rnd64() % i);
        int32_t t[4];
        memcpy(t, c + 4 * (i - 1), 16);
        memcpy(c + 4 * (i - 1), c + 4 * j, 16);
        memcpy(c + 4 * j, t, 16);
    }
    return c;
}

/* The stable order of c's rows: want (n rows) and wperm (their rows). */
static void expected(const int32_t *c, size_t n, int32_t *want, uint32_t *wperm)
{
    pos_row *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) {
        memcpy(p[i].r, c + 4 * i, 16);
        p[i].at = (uint32_t)i;
    }
    qsort(p, n, sizeof *p, cmp_pos_row);
    for (size_t i = 0; i < n; i++) {
        memcpy(want + 4 * i, p[i].r, 16);
        wperm[i] = p[i].at;
    }
    free(p);
}

/* Sorts c (n rows, distinct) with mn_sort_threads (with and without perm) and mn_sort_index
 * on 1 to 4 threads, against the stable qsort. */
static void check_sorts(const int32_t *c, size_t n, const char *what)
{
    int32_t *want = malloc(n * 16);
    uint32_t *wperm = malloc(n * sizeof *wperm), *perm = malloc(n * sizeof *perm);
    expected(c, n, want, wperm);
    for (int th = 1; th <= 4; th++) {
        for (int wp = 0; wp < 2; wp++) {
            mn_coords co = {malloc(n * 16), n};
            memcpy(co.c, c, n * 16);
            cr_assert_eq(mn_sort_threads(&co, wp ? perm : NULL, th), MN_OK, "%s: %s", what,
                         mn_last_error());
            cr_assert_eq(memcmp(co.c, want, n * 16), 0, "%s, %d threads: rows", what, th);
            if (wp)
                cr_assert_eq(memcmp(perm, wperm, n * sizeof *perm), 0, "%s, %d threads: perm", what,
                             th);
            free(co.c);
        }
        mn_coords co = {(int32_t *)c, n};
        cr_assert_eq(mn_sort_index(&co, perm, th), MN_OK, "%s: %s", what, mn_last_error());
        cr_assert_eq(memcmp(perm, wperm, n * sizeof *perm), 0, "%s, %d threads: index", what, th);
    }
    free(perm);
    free(wperm);
    free(want);
}

/* The key bits the sort's layout gives c. */
static int key_bits(const int32_t *c, size_t n)
{
    mn_coords co = {(int32_t *)c, n};
    mn_layout_t L;
    cr_assert_eq(mn_layout(&co, NULL, 0, &L), MN_OK);
    return L.bits[0] + L.bits[1] + L.bits[2] + L.bits[3];
}

/* Field widths adding up to kb, z the widest and at least zmin bits (when kb allows),
 * every field at most 31 bits. */
static void split_bits(int kb, int zmin, int bits[4])
{
    bits[0] = kb > 93 ? kb - 93 : kb >= 4 ? 1 : 0;
    int rest = kb - bits[0];
    bits[3] = (rest + 2) / 3;
    bits[3] = bits[3] < zmin ? (zmin < rest ? zmin : rest) : bits[3];
    bits[1] = (rest - bits[3] + 1) / 2;
    bits[2] = rest - bits[3] - bits[1];
}

Test(sort_packed, both_sides_of_the_boundary)
{
    static const size_t ns[] = {65535, 65536, 65537, 131072, 131073};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
        size_t n = ns[a];
        int ib = bits_of(n - 1);
        const int kbs[] = {64 - ib - 1, 64 - ib, 64 - ib + 1, 64, 66};
        for (size_t k = 0; k < sizeof kbs / sizeof kbs[0]; k++) {
            int bits[4];
            split_bits(kbs[k], ib, bits);
            int32_t *c = rows_of_width(n, bits);
            cr_assert_eq(key_bits(c, n), kbs[k], "n %zu: the rows' key bits", n);
            char what[96];
            snprintf(what, sizeof what, "n %zu, kb %d + ib %d", n, kbs[k], ib);
            check_sorts(c, n, what);
            free(c);
        }
    }
}

/* Small n (one thread, and ib from 1 bit up), narrow and wide keys; the digits' width
 * follows n there. */
Test(sort_packed, small_inputs)
{
    static const size_t ns[] = {2, 3, 4, 5, 7, 8, 9, 16, 17, 255, 256, 257, 1023, 1024, 1025};
    static const int kbs[] = {4, 11, 12, 17, 30, 45, 62, 63};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (size_t k = 0; k < sizeof kbs / sizeof kbs[0]; k++) {
            size_t n = ns[a];
            int bits[4];
            split_bits(kbs[k], bits_of(n - 1), bits);
            if (bits[3] < bits_of(n - 1))
                continue; /* too few bits for n distinct rows */
            int32_t *c = rows_of_width(n, bits);
            cr_assert_eq(key_bits(c, n), kbs[k]);
            char what[64];
            snprintf(what, sizeof what, "n %zu, kb %d", n, kbs[k]);
            check_sorts(c, n, what);
            free(c);
        }
}

/* Inputs with few distinct rows (every digit but a few the same; most rows equal):
 * mn_sort_index keeps equal rows in row order for any thread count. */
Test(sort_packed, index_is_stable_with_duplicates)
{
    static const struct {
        size_t n;
        int span;
    } cases[] = {{2, 1}, {1000, 1}, {1000, 3}, {70000, 2}, {131073, 50}, {200000, 1 << 12}};
    for (size_t a = 0; a < sizeof cases / sizeof cases[0]; a++) {
        size_t n = cases[a].n;
        uint32_t span = (uint32_t)cases[a].span;
        int32_t *c = malloc(n * 16), *want = malloc(n * 16);
        for (size_t i = 0; i < n; i++) {
            c[4 * i] = 1;
            c[4 * i + 1] = (int32_t)(rnd64() % span) - 7;
            c[4 * i + 2] = 3;
            c[4 * i + 3] = -(int32_t)(rnd64() % 2) * (int32_t)span;
        }
        uint32_t *wperm = malloc(n * sizeof *wperm), *idx = malloc(n * sizeof *idx);
        expected(c, n, want, wperm);
        mn_coords co = {c, n};
        for (int th = 1; th <= 4; th++) {
            cr_assert_eq(mn_sort_index(&co, idx, th), MN_OK, "%s", mn_last_error());
            cr_assert_eq(memcmp(idx, wperm, n * sizeof *idx), 0, "n %zu, span %u, %d threads", n,
                         span, th);
        }
        free(idx);
        free(wperm);
        free(want);
        free(c);
    }
}

/* Distinct rows of the given key width with copies of some rows at other places: the sort
 * fails with the message naming the smallest duplicated row and its first two rows, the same
 * for every thread count and with or without perm, and leaves the rows as they were. */
static void dup_check(size_t n, int kb, int ndup)
{
    int bits[4];
    split_bits(kb, bits_of(n - 1), bits);
    int32_t *c = rows_of_width(n, bits);
    for (int d = 0; d < ndup; d++) { /* row b becomes a copy of row a */
        size_t a = (size_t)(rnd64() % n), b = (size_t)(rnd64() % n);
        if (a != b)
            memcpy(c + 4 * b, c + 4 * a, 16);
    }
    int32_t *want = malloc(n * 16);
    uint32_t *wperm = malloc(n * sizeof *wperm);
    expected(c, n, want, wperm);
    size_t i = 1;
    while (i < n && memcmp(want + 4 * (i - 1), want + 4 * i, 16) != 0)
        i++;
    cr_assert_lt(i, n, "no duplicate made");
    const int32_t *r = want + 4 * i;
    char msg[160];
    snprintf(msg, sizeof msg, "duplicate coordinate (%d, %d, %d, %d) at rows %u and %u", r[0], r[1],
             r[2], r[3], wperm[i - 1], wperm[i]);
    for (int th = 1; th <= 4; th++)
        for (int wp = 0; wp < 2; wp++) {
            mn_coords co = {malloc(n * 16), n};
            memcpy(co.c, c, n * 16);
            uint32_t *perm = wp ? malloc(n * sizeof *perm) : NULL;
            cr_assert_eq(mn_sort_threads(&co, perm, th), MN_EDUP, "n %zu, kb %d", n, kb);
            cr_assert_str_eq(mn_last_error(), msg, "n %zu, kb %d, %d threads", n, kb, th);
            cr_assert_eq(memcmp(co.c, c, n * 16), 0, "a failed sort changed the rows");
            free(perm);
            free(co.c);
        }
    free(wperm);
    free(want);
    free(c);
}

Test(sort_packed, duplicates_refused_alike_on_every_path)
{
    static const size_t ns[] = {5, 1024, 65536, 65537, 200000};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
        int ib = bits_of(ns[a] - 1);
        const int kbs[] = {3 * ib, 64 - ib, 64 - ib + 1, 70};
        for (size_t k = 0; k < sizeof kbs / sizeof kbs[0]; k++)
            for (int nd = 1; nd <= 3; nd++)
                dup_check(ns[a], kbs[k], nd);
    }
}
