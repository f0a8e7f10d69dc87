/* test_kmap_walk.c: the sort-based builder's branch-free walks (blocks of outputs, cursors
 * that seek four inputs at a time and gallop past longer runs, pairs written and kept by
 * the comparison, the unit-step lines of K = 3 written out) give exactly the hash-based
 * maps: the same per-offset counts and the same input and output arrays, with and without
 * the symmetric shortcut, for K = 2 to 7, tensor strides and dilations 1 and 2, distinct
 * input and output sets, 1 to 3 threads, clouds from nearly empty to full (long runs of
 * inputs in z), more outputs than one block, and keys that fill all 64 bits. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "keys.h"
#include "mn_test.h"

/* The sort-based map against the hash-based one, offset by offset. */
static void same_as_hash(const mn_coords *in, const mn_coords *out, int K, int t_in, int dil,
                         int threads, const char *what)
{
    mn_kmap ms, mh;
    cr_assert_eq(mn_kmap_build(in, out, K, t_in, dil, MN_SORT, threads, &ms), MN_OK, "%s",
                 mn_last_error());
    cr_assert_eq(mn_kmap_build(in, out, K, t_in, dil, MN_HASH, 1, &mh), MN_OK, "%s",
                 mn_last_error());
    char ctx[160];
    snprintf(ctx, sizeof ctx, "%s K=%d t=%d d=%d %d threads, sort and hash", what, K, t_in, dil,
             threads);
    same_kmaps(&ms, &mh, ctx);
    mn_kmap_free(&ms);
    mn_kmap_free(&mh);
}

static void all_kernels(const mn_coords *in, const mn_coords *out, const char *what)
{
    for (int K = 2; K <= 7; K++)
        for (int t = 1; t <= 2; t++)
            for (int d = 1; d <= 2; d++)
                for (int th = 1; th <= 3; th += 2) /* also strides off the lattice's */
                    same_as_hash(in, out, K, t, d, th, what);
}

Test(kmap_walk, densities_and_strides)
{
    int span = 16;
    size_t cells = (size_t)span * span * span;
    size_t sizes[] = {3, cells / 50, cells / 8, cells / 2, cells * 9 / 10, cells};
    for (int grid = 1; grid <= 2; grid++)
        for (int s = 0; s < 6; s++) {
            mn_coords c = cloud(sizes[s], span, -37, grid, 1);
            bool was = mn_kmap_symmetric(true);
            all_kernels(&c, &c, "submanifold");
            mn_kmap_symmetric(false);
            all_kernels(&c, &c, "submanifold, full search");
            mn_kmap_symmetric(was);
            free(c.c);
        }
}

Test(kmap_walk, distinct_inputs_and_outputs_and_batches)
{
    mn_coords in = cloud(3000, 20, 5, 1, 2), out = cloud(1500, 20, 5, 1, 2);
    all_kernels(&in, &out, "in != out");
    all_kernels(&out, &in, "out != in");
    free(in.c);
    free(out.c);
}

/* Several blocks of outputs, and the cursors' long seeks (full columns). */
Test(kmap_walk, many_blocks_threads)
{
    mn_coords c = cloud(60000, 48, 1000, 1, 1);
    for (int K = 3; K <= 5; K += 2)
        for (int th = 1; th <= 3; th++)
            same_as_hash(&c, &c, K, 1, 1, th, "many blocks");
    free(c.c);
}

/* Sparse maps (few pairs per output and line): every thread walks every line over its own
 * range of outputs (ranges of 16384 outputs at least, so 60000 outputs make up to 3), with
 * the lines that turn dense in some blocks (a dense cube inside the sparse cloud, and full
 * z columns) walked branch-free there. */
Test(kmap_walk, sparse_ranges_threads)
{
    mn_coords sparse = cloud(60000, 160, -500, 1, 1);
    mn_coords cube = cloud(12000, 24, 0, 1, 1); /* inside the sparse cloud's span */
    mn_coords mixed = {malloc((sparse.n + cube.n + 16000) * 16), 0};
    for (size_t i = 0; i < sparse.n; i++) { /* the sparse rows outside the cube */
        const int32_t *r = sparse.c + 4 * i;
        if (r[1] >= 0 && r[1] < 24 && r[2] >= 0 && r[2] < 24 && r[3] >= 0 && r[3] < 24)
            continue;
        memcpy(mixed.c + 4 * mixed.n++, r, 16);
    }
    memcpy(mixed.c + 4 * mixed.n, cube.c, cube.n * 16);
    mixed.n += cube.n;
    for (int col = 0; col < 400; col++) /* full z columns at x = 100 + col / 20 * 2 */
        for (int z = 0; z < 40; z++) {
            int32_t r[4] = {0, 100 + col / 20 * 2, 100 + col % 20 * 2, -300 + z};
            memcpy(mixed.c + 4 * mixed.n++, r, 16);
        }
    cr_assert_eq(mn_sort(&mixed, NULL), MN_OK, "%s", mn_last_error());
    for (size_t i = 1; i < mixed.n; i++) /* columns placed off the sparse rows */
        cr_assert_neq(memcmp(mixed.c + 4 * (i - 1), mixed.c + 4 * i, 16), 0, "duplicate row");
    mn_coords *clouds[] = {&sparse, &mixed};
    for (int c = 0; c < 2; c++)
        for (int K = 2; K <= 5; K++)
            for (int th = 1; th <= 4; th++)
                same_as_hash(clouds[c], clouds[c], K, 1, 1, th, c ? "mixed" : "sparse");
    mn_coords down;
    cr_assert_eq(mn_downsample(&sparse, 1, 2, &down), MN_OK, "%s", mn_last_error());
    for (int th = 1; th <= 3; th++) {
        same_as_hash(&sparse, &down, 3, 1, 1, th, "sparse, strided");
        same_as_hash(&down, &sparse, 3, 1, 1, th, "sparse, transposed");
    }
    free(down.c);
    free(mixed.c);
    free(cube.c);
    free(sparse.c);
}

/* A layout of exactly 64 bits (batches 0 and 1, x, y and z spans of 2^21 - the margin), with
 * rows at its corners: the walk's sentinel is above every real key but one it may equal.
 * (Batch 1 keeps every field's shift below 64.) */
Test(kmap_walk, keys_of_64_bits)
{
    int32_t x1 = (1 << 21) - 3;
    int32_t rows[][4] = {{0, 1, 1, 1},
                         {0, 1, 1, 2},
                         {0, 1, 2, 1},
                         {0, 2, 2, 2},
                         {1, 1, 1, 1},
                         {1, 1, 1, 2},
                         {1, 2, 1, 1},
                         {0, x1, x1, x1},
                         {1, x1, x1, x1 - 2},
                         {1, x1, x1, x1 - 1},
                         {1, x1, x1, x1},
                         {1, x1 - 1, x1, x1},
                         {1, x1, x1 - 1, x1 - 1},
                         {1, x1 - 1, x1 - 1, x1}};
    size_t n = sizeof rows / sizeof rows[0];
    mn_coords c = {malloc(n * 16), n};
    memcpy(c.c, rows, n * 16);
    cr_assert_eq(mn_sort(&c, NULL), MN_OK, "%s", mn_last_error());
    mn_layout_t L;
    cr_assert_eq(mn_layout(&c, NULL, 1, &L), MN_OK, "%s", mn_last_error());
    cr_assert(!L.wide && L.bits[0] + L.bits[1] + L.bits[2] + L.bits[3] == 64, "%d %d %d %d",
              L.bits[0], L.bits[1], L.bits[2], L.bits[3]);
    for (int th = 1; th <= 2; th++) {
        same_as_hash(&c, &c, 3, 1, 1, th, "64-bit keys");
        same_as_hash(&c, &c, 2, 1, 1, th, "64-bit keys");
    }
    free(c.c);
}

/* Exactly 64 bits of x, y and z with a single batch: the batch field has 0 bits and sits at
 * bit 64, where a shift would be undefined (UBSan in the asan suite catches one). */
Test(kmap_walk, keys_of_64_bits_one_batch)
{
    int32_t x1 = (1 << 22) - 3, y1 = (1 << 21) - 3;
    int32_t rows[][4] = {{0, 1, 1, 1},        {0, 1, 1, 2},           {0, 1, 2, 1},
                         {0, 2, 2, 2},        {0, x1, y1, y1},        {0, x1, y1, y1 - 1},
                         {0, x1 - 1, y1, y1}, {0, x1, y1 - 1, y1 - 1}};
    size_t n = sizeof rows / sizeof rows[0];
    mn_coords c = {malloc(n * 16), n};
    memcpy(c.c, rows, n * 16);
    cr_assert_eq(mn_sort(&c, NULL), MN_OK, "%s", mn_last_error());
    mn_layout_t L;
    cr_assert_eq(mn_layout(&c, NULL, 1, &L), MN_OK, "%s", mn_last_error());
    cr_assert(!L.wide && L.bits[0] == 0 && L.bits[1] + L.bits[2] + L.bits[3] == 64, "%d %d %d %d",
              L.bits[0], L.bits[1], L.bits[2], L.bits[3]);
    for (int th = 1; th <= 2; th++)
        same_as_hash(&c, &c, 3, 1, 1, th, "64-bit keys, one batch");
    free(c.c);
}
