/* test_kmap_sym.c: the symmetric-map shortcut of submanifold maps (odd K, the same rows in
 * and out: the offsets below the centre searched, the centre the identity, the rest
 * mirrored) gives exactly the maps of the full search: the same per-offset counts and the
 * same input and output arrays, for both builders, on random clouds of several densities,
 * one to three batches, K = 1, 3, 5 and 7, dilation 2 and tensor stride 2, 1 to 3 threads,
 * 128-bit keys, and input and output passed as distinct copies of the same rows. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "keys.h"
#define MN_TEST_SEED 0x2545f4914f6cdd1dULL
#include "mn_test.h"

/* The map built with and without the shortcut: identical, offset by offset. */
static void same_maps(const mn_coords *in, const mn_coords *out, int K, int t_in, int dil,
                      mn_method m, int threads, const char *what)
{
    mn_kmap full, sym;
    mn_kmap_symmetric(false);
    cr_assert_eq(mn_kmap_build(in, out, K, t_in, dil, m, threads, &full), MN_OK, "%s",
                 mn_last_error());
    mn_kmap_symmetric(true);
    cr_assert_eq(mn_kmap_build(in, out, K, t_in, dil, m, threads, &sym), MN_OK, "%s",
                 mn_last_error());
    char ctx[160];
    snprintf(ctx, sizeof ctx, "%s K=%d %s %d threads, full search and shortcut", what, K,
             m == MN_SORT ? "sort" : "hash", threads);
    same_kmaps(&full, &sym, ctx);
    if (K > 1) /* not a map of the centre offset alone */
        cr_assert_gt(full.total, in->n, "%s: only the centre matched", what);
    /* The shortcut ran exactly where it applies (same rows in and out, odd K): its maps, and
     * only its, share arrays: the identity offset one for inputs and outputs, each offset
     * above the centre its twin's, swapped. */
    bool applies = K % 2 == 1 && in->n == out->n && memcmp(in->c, out->c, in->n * 16) == 0;
    for (int k = 0; k < full.nk; k++) {
        int twin = full.nk - 1 - k;
        if (full.count[k])
            cr_assert(full.in[k] != full.out[k], "%s offset %d: full search shares", what, k);
        if (!sym.count[k])
            continue;
        if (k == twin)
            cr_assert_eq(sym.in[k] == sym.out[k], applies, "%s: identity offset %s", what,
                         applies ? "not shared" : "shared");
        else if (k > twin)
            cr_assert_eq(sym.in[k] == sym.out[twin] && sym.out[k] == sym.in[twin], applies,
                         "%s offset %d: %s", what, k, applies ? "not its twin's" : "its twin's");
    }
    mn_kmap_free(&full);
    mn_kmap_free(&sym);
}

static void all_ways(const mn_coords *c, int K, int t_in, int dil, const char *what)
{
    for (int m = 0; m < 2; m++)
        for (int th = 1; th <= 3; th++)
            same_maps(c, c, K, t_in, dil, (mn_method)m, th, what);
}

Test(kmap_sym, random_clouds_k3_k5)
{
    /* Sparse and dense clouds, one to three batches. */
    static const struct {
        size_t n;
        int span, nb;
    } cases[] = {{300, 12, 1}, {1500, 12, 1}, {2000, 20, 2}, {4000, 16, 3}, {200, 20, 2}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mn_coords c = cloud(cases[i].n, cases[i].span, -cases[i].span / 2, 1, cases[i].nb);
        all_ways(&c, 3, 1, 1, "random");
        all_ways(&c, 5, 1, 1, "random");
        free(c.c);
    }
}

Test(kmap_sym, k1_k7_dilation_and_tensor_stride)
{
    mn_coords c = cloud(2500, 14, -3, 1, 2), c2 = cloud(1200, 10, -8, 2, 2);
    all_ways(&c, 1, 1, 1, "K=1");
    all_ways(&c, 7, 1, 1, "K=7");
    all_ways(&c, 3, 1, 2, "dilation 2");
    all_ways(&c2, 3, 2, 1, "tensor stride 2");
    all_ways(&c2, 5, 2, 1, "tensor stride 2");
    free(c.c);
    free(c2.c);
}

/* Large enough that the radix sort and the map run on several threads. */
Test(kmap_sym, large_cloud_threads)
{
    mn_coords c = cloud(120000, 64, 0, 1, 2);
    for (int th = 1; th <= 2; th++)
        for (int m = 0; m < 2; m++) {
            same_maps(&c, &c, 3, 1, 1, (mn_method)m, th, "large");
            same_maps(&c, &c, 5, 1, 1, (mn_method)m, th, "large");
        }
    free(c.c);
}

/* Two clusters of the same cloud: close together (an ordinary 64-bit key), or far apart in
 * x, y and z (about 96 bits: 128-bit keys, whose x field starts at bit 64 or beyond). Only
 * their placement differs, so their sorted rows correspond and the maps must be equal. */
static mn_coords clusters(const mn_coords *c, bool far)
{
    mn_coords w = {malloc(c->n * 16), c->n};
    memcpy(w.c, c->c, c->n * 16);
    for (size_t i = 0; i < w.n; i++) {
        int32_t *r = w.c + 4 * i;
        bool a = r[1] < 6;
        if (far) {
            r[1] += a ? -2000000000 : 2000000000 - 20;
            r[2] += a ? 2000000000 - 20 : -2000000000;
            r[3] += a ? -2000000000 : 2000000000 - 20;
        } else if (!a) {
            r[1] += 100;
            r[2] -= 100;
            r[3] += 100;
        }
    }
    cr_assert_eq(mn_sort(&w, NULL), MN_OK, "%s", mn_last_error());
    return w;
}

/* The same rows passed as two copies (not one pointer) still make a symmetric map; maps over
 * 128-bit keys, with and without the shortcut, equal those of the same clusters placed
 * close together. */
Test(kmap_sym, copies_and_wide_keys)
{
    mn_coords c = cloud(1000, 12, 0, 1, 1), d = {malloc(c.n * 16), c.n};
    memcpy(d.c, c.c, c.n * 16);
    for (int th = 1; th <= 2; th++)
        for (int m = 0; m < 2; m++)
            same_maps(&c, &d, 3, 1, 1, (mn_method)m, th, "copies");
    free(d.c);
    mn_coords nw = clusters(&c, false), wd = clusters(&c, true);
    mn_layout_t L;
    cr_assert_eq(mn_layout(&nw, NULL, 2, &L), MN_OK);
    cr_assert(!L.wide);
    cr_assert_eq(mn_layout(&wd, NULL, 2, &L), MN_OK);
    cr_assert(L.wide && L.shift[1] >= 64, "128-bit keys, x from bit %d", L.shift[1]);
    for (int K = 3; K <= 5; K += 2) {
        all_ways(&wd, K, 1, 1, "wide keys");
        for (int m = 0; m < 2; m++)
            for (int sym = 0; sym < 2; sym++) {
                mn_kmap a, b;
                mn_kmap_symmetric(sym);
                cr_assert_eq(mn_kmap_build(&nw, &nw, K, 1, 1, (mn_method)m, 2, &a), MN_OK);
                cr_assert_eq(mn_kmap_build(&wd, &wd, K, 1, 1, (mn_method)m, 2, &b), MN_OK);
                char ctx[64];
                snprintf(ctx, sizeof ctx, "K=%d, close and far apart", K);
                same_kmaps(&a, &b, ctx);
                mn_kmap_free(&a);
                mn_kmap_free(&b);
            }
    }
    free(nw.c);
    free(wd.c);
    free(c.c);
}

/* A map between different rows (strided) is not symmetric: the shortcut leaves it alone. */
Test(kmap_sym, strided_maps_unchanged)
{
    mn_coords c = cloud(800, 12, -6, 1, 2), q;
    cr_assert_eq(mn_downsample(&c, 1, 2, &q), MN_OK, "%s", mn_last_error());
    for (int m = 0; m < 2; m++)
        for (int th = 1; th <= 2; th++) {
            same_maps(&c, &q, 3, 1, 1, (mn_method)m, th, "strided K=3");
            same_maps(&q, &c, 3, 1, 1, (mn_method)m, th, "strided, reversed");
        }
    free(c.c);
    free(q.c);
}
