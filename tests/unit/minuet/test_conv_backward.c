/* test_conv_backward.c: mn_conv_backward against a brute-force oracle (double accumulation
 * over the map's pairs, written without the library's code): the input, weight and bias
 * gradients of submanifold K = 3 and 5, strided K = 2 and 3 (s = 2), transposed K = 2, on a
 * synthetic scene and a batch of 2; the same bits for every dataflow, threshold, batching,
 * tile, thread count and CPU GEMM kernel; each output optional; bad input refused with a
 * message. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mn_test.h"

/* Voxels of a synthetic scene; with two batches, the second a shifted copy. */
static mn_coords scene(size_t points, double voxel, int batches)
{
    mn_cloud cl;
    mn_coords a, b;
    cr_assert_eq(mn_scene(points, 11, &cl), MN_OK, "%s", mn_last_error());
    cr_assert_eq(mn_voxelize(&cl, voxel, 0, &a), MN_OK, "%s", mn_last_error());
    if (batches == 1) {
        mn_cloud_free(&cl);
        return a;
    }
    for (size_t i = 0; i < cl.n; i++)
        cl.xyz[3 * i] += 0.37 * voxel;
    cr_assert_eq(mn_voxelize(&cl, voxel, 1, &b), MN_OK, "%s", mn_last_error());
    mn_cloud_free(&cl);
    mn_coords c = {malloc((a.n + b.n) * 4 * sizeof(int32_t)), a.n + b.n};
    memcpy(c.c, a.c, a.n * 4 * sizeof(int32_t));
    memcpy(c.c + 4 * a.n, b.c, b.n * 4 * sizeof(int32_t));
    free(a.c);
    free(b.c);
    cr_assert_eq(mn_sort(&c, NULL), MN_OK, "%s", mn_last_error());
    return c;
}

/* One layer: map in -> out (or its transpose), oracle gradients, then the library's. */
static void check(const mn_coords *in, const mn_coords *out, int K, bool tr, int ci, int co,
                  const char *what)
{
    mn_kmap map; /* a transposed layer uses the map of out -> in the other way */
    cr_assert_eq(mn_kmap_build(tr ? out : in, tr ? in : out, K, 1, 1, MN_SORT, 2, &map), MN_OK,
                 "%s", mn_last_error());
    size_t ni = in->n, no = out->n, nw = (size_t)map.nk * (size_t)ci * (size_t)co;
    float *x = randf_seeded(ni * (size_t)ci, 1), *W = randf_seeded(nw, 2),
          *g = randf_seeded(no * (size_t)co, 3);
    double *wi = calloc(ni * (size_t)ci, sizeof *wi), *ww = calloc(nw, sizeof *ww),
           *wb = calloc((size_t)co, sizeof *wb);
    for (int k = 0; k < map.nk; k++)
        for (size_t p = 0; p < map.count[k]; p++) {
            size_t i = (size_t)(tr ? map.out[k][p] : map.in[k][p]);
            size_t o = (size_t)(tr ? map.in[k][p] : map.out[k][p]);
            for (int a = 0; a < ci; a++)
                for (int b = 0; b < co; b++) {
                    size_t w = ((size_t)k * (size_t)ci + (size_t)a) * (size_t)co + (size_t)b;
                    wi[i * (size_t)ci + (size_t)a] += (double)g[o * (size_t)co + (size_t)b] * W[w];
                    ww[w] += (double)x[i * (size_t)ci + (size_t)a] * g[o * (size_t)co + (size_t)b];
                }
        }
    for (size_t o = 0; o < no; o++)
        for (int b = 0; b < co; b++)
            wb[b] += g[o * (size_t)co + (size_t)b];
    float *di = malloc(ni * (size_t)ci * sizeof *di), *dw = malloc(nw * sizeof *dw),
          *db = malloc((size_t)co * sizeof *db);
    float *di2 = malloc(ni * (size_t)ci * sizeof *di2), *dw2 = malloc(nw * sizeof *dw2);
    mn_conv_opts o = {.group_threshold = 0.25, .threads = 2, .transposed = tr};
    cr_assert_eq(mn_conv_backward(&map, x, ni, ci, W, co, g, no, di, dw, db, &o), MN_OK, "%s: %s",
                 what, mn_last_error());
    char lbl[200];
    snprintf(lbl, sizeof lbl, "%s: d_in", what);
    close_to(di, wi, ni * (size_t)ci, lbl);
    snprintf(lbl, sizeof lbl, "%s: d_W", what);
    close_to(dw, ww, nw, lbl);
    snprintf(lbl, sizeof lbl, "%s: d_bias", what);
    close_to(db, wb, (size_t)co, lbl);
    /* Every dataflow, threshold, batching, tile and thread count: the same bits; outputs
     * optional. */
    double thr[] = {0, 1, 1000};
    for (int t = 0; t < 3; t++)
        for (int th = 1; th <= 3; th++) {
            mn_conv_opts o2 = {.group_threshold = thr[t],
                               .threads = th,
                               .transposed = tr,
                               .batch_rows = th == 2 ? (size_t)1 << 30 : 0,
                               .tile_rows = (size_t)(1 + 40 * t),
                               .tile_channels = t,
                               .dataflow = (t + th) % 2 ? MN_FUSED : MN_GROUPED};
            cr_assert_eq(mn_conv_backward(&map, x, ni, ci, W, co, g, no, t == 1 ? NULL : di2, dw2,
                                          NULL, &o2),
                         MN_OK);
            cr_assert_eq(mn_conv_backward(&map, x, ni, ci, W, co, g, no, t == 1 ? di2 : NULL,
                                          t == 1 ? NULL : dw2, NULL, &o2),
                         MN_OK);
            cr_assert_eq(memcmp(di, di2, ni * (size_t)ci * sizeof *di), 0,
                         "%s: d_in bits, threshold %g, %d threads", what, thr[t], th);
            cr_assert_eq(memcmp(dw, dw2, nw * sizeof *dw), 0,
                         "%s: d_W bits, threshold %g, %d threads", what, thr[t], th);
        }
    /* Every GEMM kernel this CPU has: the same bits too (no BLAS anywhere). */
    const char *was = mn_cpu_kernel();
    for (int q = 0; q < MN_TEST_NKERNELS; q++) {
        if (mn_gemm_set_isa(mn_test_kernels[q]) != 0)
            continue;
        mn_conv_opts o2 = {.threads = 2, .transposed = tr};
        cr_assert_eq(mn_conv_backward(&map, x, ni, ci, W, co, g, no, di2, dw2, NULL, &o2), MN_OK);
        cr_assert_eq(memcmp(di, di2, ni * (size_t)ci * sizeof *di), 0,
                     "%s: d_in bits, the %s kernel", what, mn_test_kernels[q]);
        cr_assert_eq(memcmp(dw, dw2, nw * sizeof *dw), 0, "%s: d_W bits, the %s kernel", what,
                     mn_test_kernels[q]);
    }
    cr_assert_eq(mn_gemm_set_isa(was), 0);
    free(x);
    free(W);
    free(g);
    free(wi);
    free(ww);
    free(wb);
    free(di);
    free(dw);
    free(db);
    free(di2);
    free(dw2);
    mn_kmap_free(&map);
}

Test(backward, submanifold_strided_transposed_against_the_oracle, .timeout = 300)
{
    mn_coords c = scene(6000, 0.4, 1), q;
    cr_assert_eq(mn_downsample(&c, 1, 2, &q), MN_OK);
    check(&c, &c, 3, false, 4, 6, "submanifold K=3");
    check(&c, &c, 5, false, 3, 2, "submanifold K=5");
    check(&c, &q, 2, false, 5, 3, "strided K=2");
    check(&c, &q, 3, false, 2, 4, "strided K=3");
    check(&q, &c, 2, true, 3, 5, "transposed K=2");
    free(c.c);
    free(q.c);
}

/* More pairs per offset than one weight-gradient block (256), a batch of 2. */
Test(backward, large_batch_of_two, .timeout = 300)
{
    mn_coords c = scene(40000, 0.25, 2);
    cr_assert(c.n > 20000, "%zu voxels", c.n);
    check(&c, &c, 3, false, 8, 8, "submanifold K=3, 2 batches");
    free(c.c);
}

Test(backward, bad_input)
{
    mn_coords c = scene(2000, 0.5, 1);
    mn_kmap map;
    cr_assert_eq(mn_kmap_build(&c, &c, 3, 1, 1, MN_SORT, 1, &map), MN_OK);
    size_t n = c.n;
    float *x = randf_seeded(n * 2, 1), *W = randf_seeded((size_t)27 * 2 * 3, 2),
          *g = randf_seeded(n * 3, 3);
    float *di = malloc(n * 2 * sizeof *di), *dw = malloc((size_t)27 * 6 * sizeof *dw);
    cr_assert_eq(mn_conv_backward(&map, x, n, 2, W, 3, NULL, n, di, dw, NULL, NULL), MN_EINVAL);
    cr_assert_eq(mn_conv_backward(&map, x, n, 2, NULL, 3, g, n, di, NULL, NULL, NULL), MN_EINVAL);
    cr_assert_eq(mn_conv_backward(&map, NULL, n, 2, W, 3, g, n, NULL, dw, NULL, NULL), MN_EINVAL);
    g[7] = NAN;
    cr_assert_eq(mn_conv_backward(&map, x, n, 2, W, 3, g, n, di, dw, NULL, NULL), MN_ENAN);
    cr_assert(strstr(mn_last_error(), "nan"), "%s", mn_last_error());
    g[7] = 0;
    x[3] = INFINITY;
    cr_assert_eq(mn_conv_backward(&map, x, n, 2, W, 3, g, n, NULL, dw, NULL, NULL), MN_ENAN);
    x[3] = 0;
    cr_assert_eq(mn_conv_backward(&map, x, n - 1, 2, W, 3, g, n, di, dw, NULL, NULL), MN_EINVAL,
                 "fewer inputs than the map refers to");
    cr_assert(strstr(mn_last_error(), "shapes do not match"), "%s", mn_last_error());
    cr_assert_eq(mn_conv_backward(&map, x, n, 0, W, 3, g, n, di, dw, NULL, NULL), MN_EINVAL);
    free(x);
    free(W);
    free(g);
    free(di);
    free(dw);
    mn_kmap_free(&map);
    free(c.c);
}
