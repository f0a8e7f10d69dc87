/* test_conv.c: Minuet's kernel maps and convolution against a brute-force oracle (set lookup
 * per output and offset, double accumulation): submanifold K = 3 and 5, strided s = 2 with
 * K = 2 and 3, dilation 2, transposed, a batch of 3 clouds, channels 1 to 96; sort and hash
 * maps identical; both dataflows, every grouping threshold, batching, tile, thread count and
 * CPU GEMM kernel bit-identical; features in shuffled row orders as in the sorted one; bad
 * input; the ResNet-21 and UNet-42 networks (shapes, sort = hash, translation equivariance). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MN_TEST_SEED 88172645463325252ULL
#include "mn_test.h"

/* ---- fixtures ------------------------------------------------------------------------------ */

/* n unique random coordinates in [lo, lo+span)^3 on a grid of `grid`, batches 0..nb-1, each
 * coordinate drawn on its own (a repeat is drawn again). */
static mn_coords drawn_cloud(size_t n, int span, int lo, int grid, int nb)
{
    mn_coords c = {malloc(n * 4 * sizeof(int32_t)), 0};
    while (c.n < n) {
        int32_t r[4] = {(int32_t)(rnd() % (uint32_t)nb),
                        lo + (int32_t)(rnd() % (uint32_t)span) * grid,
                        lo + (int32_t)(rnd() % (uint32_t)span) * grid,
                        lo + (int32_t)(rnd() % (uint32_t)span) * grid};
        bool dup = false;
        for (size_t i = 0; i < c.n && !dup; i++)
            dup = memcmp(c.c + 4 * i, r, sizeof r) == 0;
        if (!dup)
            memcpy(c.c + 4 * c.n++, r, sizeof r);
    }
    cr_assert_eq(mn_sort(&c, NULL), MN_OK, "%s", mn_last_error());
    return c;
}

/* n unique coordinates drawn from [0, span)^3 in batch 0 (a bitmap of the cells: fast for
 * the large clouds that make the parallel gather, GEMM and scatter run). */
static mn_coords dense_cloud(size_t n, int span) { return cloud(n, span, 0, 1, 1); }

static long find(const mn_coords *c, const int32_t *q)
{
    size_t lo = 0, hi = c->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const int32_t *r = c->c + 4 * mid;
        int d = 0;
        for (int f = 0; f < 4 && !d; f++)
            d = r[f] < q[f] ? -1 : r[f] > q[f];
        if (d == 0)
            return (long)mid;
        if (d < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* The oracle: out[q] = sum over offsets of in[q + delta] W[k]; in double. */
static double *oracle(const mn_coords *in, const float *f, int ci, const mn_coords *out,
                      const float *W, int co, int K, int step)
{
    double *res = calloc(out->n * (size_t)co, sizeof *res);
    int lo = K % 2 ? -(K / 2) : 0, k = 0;
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++)
            for (int l = 0; l < K; l++, k++)
                for (size_t o = 0; o < out->n; o++) {
                    const int32_t *q = out->c + 4 * o;
                    int32_t p[4] = {q[0], q[1] + (lo + i) * step, q[2] + (lo + j) * step,
                                    q[3] + (lo + l) * step};
                    long r = find(in, p);
                    if (r < 0)
                        continue;
                    for (int b = 0; b < co; b++) {
                        double s = 0;
                        for (int a = 0; a < ci; a++)
                            s += (double)f[r * ci + a] * (double)W[((size_t)k * ci + a) * co + b];
                        res[o * co + b] += s;
                    }
                }
    return res;
}

/* Build the map both ways, check they match, run the convolution, check against the oracle. */
static void check(const mn_coords *in, const mn_coords *out, int K, int t_in, int dil, int ci,
                  int co, const char *what)
{
    mn_kmap ms, mh;
    cr_assert_eq(mn_kmap_build(in, out, K, t_in, dil, MN_SORT, 2, &ms), MN_OK, "%s",
                 mn_last_error());
    cr_assert_eq(mn_kmap_build(in, out, K, t_in, dil, MN_HASH, 1, &mh), MN_OK, "%s",
                 mn_last_error());
    same_kmaps(&ms, &mh, what);
    float *f = randf(in->n * (size_t)ci), *W = randf((size_t)ms.nk * ci * co);
    float *y = malloc(out->n * (size_t)co * sizeof *y),
          *y2 = malloc(out->n * (size_t)co * sizeof *y2);
    mn_conv_opts o = {.group_threshold = 0.25, .threads = 2};
    cr_assert_eq(mn_conv(&ms, f, in->n, ci, W, NULL, co, y, out->n, &o), MN_OK, "%s",
                 mn_last_error());
    double *want = oracle(in, f, ci, out, W, co, K, t_in * dil);
    close_to(y, want, out->n * (size_t)co, what);
    /* Both dataflows, every grouping threshold, batched or not, every tile and thread count:
     * the same bits. */
    double thr[] = {0, 0.1, 1, 1000};
    size_t tiles[][2] = {{1, 0}, {16, 1}, {256, 7}, {100000, 32}};
    for (int t = 0; t < 4; t++)
        for (int th = 1; th <= 3; th++)
            for (int b = 0; b < 2; b++) {
                mn_conv_opts o2 = {.group_threshold = thr[t],
                                   .threads = th,
                                   .batch_rows = b ? (size_t)1 << 30 : 0,
                                   .tile_rows = tiles[(t + th) % 4][0],
                                   .tile_channels = (int)tiles[(t + b) % 4][1],
                                   .dataflow = (t + th + b) % 2 ? MN_FUSED : MN_GROUPED};
                cr_assert_eq(mn_conv(&ms, f, in->n, ci, W, NULL, co, y2, out->n, &o2), MN_OK);
                cr_assert_eq(memcmp(y, y2, out->n * (size_t)co * sizeof *y), 0,
                             "%s: %s, threshold %g, %d threads, batched %d, tile %zu x %d", what,
                             o2.dataflow == MN_FUSED ? "fused" : "grouped", thr[t], th, b,
                             o2.tile_rows, o2.tile_channels);
            }
    /* Every GEMM kernel this CPU has: the same bits too. */
    const char *was = mn_cpu_kernel();
    for (int q = 0; q < MN_TEST_NKERNELS; q++)
        for (int df = 0; df < 2 && mn_gemm_set_isa(mn_test_kernels[q]) == 0; df++) {
            mn_conv_opts o2 = {.threads = 2, .dataflow = df ? MN_FUSED : MN_GROUPED};
            cr_assert_eq(mn_conv(&ms, f, in->n, ci, W, NULL, co, y2, out->n, &o2), MN_OK);
            cr_assert_eq(memcmp(y, y2, out->n * (size_t)co * sizeof *y), 0, "%s: the %s kernel, %s",
                         what, mn_test_kernels[q], df ? "fused" : "grouped");
        }
    cr_assert_eq(mn_gemm_set_isa(was), 0);
    free(f);
    free(W);
    free(y);
    free(y2);
    free(want);
    mn_kmap_free(&ms);
    mn_kmap_free(&mh);
}

Test(conv, submanifold_k3_k5_many_channels)
{
    mn_coords c = drawn_cloud(400, 12, -6, 1, 1);
    int chans[][2] = {{1, 1}, {3, 16}, {16, 3}, {64, 96}};
    for (int i = 0; i < 4; i++)
        check(&c, &c, 3, 1, 1, chans[i][0], chans[i][1], "submanifold K=3");
    check(&c, &c, 5, 1, 1, 3, 4, "submanifold K=5");
    free(c.c);
}

/* Enough pairs (about 400 000) that gather, batched GEMMs and scatter run on several
 * threads: still the oracle's result, and the same bits for every variant. */
Test(conv, large_cloud_runs_in_parallel)
{
    mn_coords c = dense_cloud(30000, 40), q;
    check(&c, &c, 3, 1, 1, 3, 5, "submanifold K=3, 30000 points");
    cr_assert_eq(mn_downsample(&c, 1, 2, &q), MN_OK);
    check(&c, &q, 2, 1, 1, 2, 33, "strided K=2, 30000 points");
    free(c.c);
    free(q.c);
}

Test(conv, strided_k2_k3_and_dilation)
{
    mn_coords c = drawn_cloud(500, 16, -8, 1, 1), q;
    cr_assert_eq(mn_downsample(&c, 1, 2, &q), MN_OK);
    cr_assert_lt(q.n, c.n);
    for (size_t i = 0; i < q.n; i++)
        for (int d = 1; d < 4; d++)
            cr_assert_eq(((q.c[4 * i + d] % 2) + 2) % 2, 0);
    check(&c, &q, 2, 1, 1, 4, 5, "strided K=2");
    check(&c, &q, 3, 1, 1, 4, 5, "strided K=3");
    check(&c, &c, 3, 1, 2, 3, 3, "dilation 2");
    /* The next level: tensor stride 2 on the downsampled coordinates. */
    mn_coords q2;
    cr_assert_eq(mn_downsample(&q, 2, 2, &q2), MN_OK);
    check(&q, &q2, 3, 2, 1, 2, 2, "strided at tensor stride 2");
    free(c.c);
    free(q.c);
    free(q2.c);
}

Test(conv, transposed_reuses_the_map)
{
    mn_coords c = drawn_cloud(300, 10, 0, 1, 1), q;
    cr_assert_eq(mn_downsample(&c, 1, 2, &q), MN_OK);
    mn_kmap m;
    cr_assert_eq(mn_kmap_build(&c, &q, 2, 1, 1, MN_SORT, 1, &m), MN_OK);
    /* Transposed: coarse features in, fine features out: fine[i] += coarse[o] W[k]. */
    int ci = 3, co = 2;
    float *f = randf(q.n * (size_t)ci), *W = randf((size_t)m.nk * ci * co);
    float *y = malloc(c.n * (size_t)co * sizeof *y);
    mn_conv_opts o = {.group_threshold = 0.25, .transposed = true};
    cr_assert_eq(mn_conv(&m, f, q.n, ci, W, NULL, co, y, c.n, &o), MN_OK, "%s", mn_last_error());
    double *want = calloc(c.n * (size_t)co, sizeof *want);
    for (int k = 0; k < m.nk; k++)
        for (size_t p = 0; p < m.count[k]; p++)
            for (int b = 0; b < co; b++)
                for (int a = 0; a < ci; a++)
                    want[(size_t)m.in[k][p] * co + b] +=
                        (double)f[(size_t)m.out[k][p] * ci + a] * W[((size_t)k * ci + a) * co + b];
    close_to(y, want, c.n * (size_t)co, "transposed");
    free(f);
    free(W);
    free(y);
    free(want);
    mn_kmap_free(&m);
    free(c.c);
    free(q.c);
}

Test(conv, batches_never_mix)
{
    /* Three clouds with the same spatial coordinates in batches 0, 1, 2. */
    mn_coords one = drawn_cloud(150, 8, 0, 1, 1);
    mn_coords three = {malloc(one.n * 12 * sizeof(int32_t)), one.n * 3};
    for (int b = 0; b < 3; b++)
        for (size_t i = 0; i < one.n; i++) {
            memcpy(three.c + 4 * ((size_t)b * one.n + i), one.c + 4 * i, 16);
            three.c[4 * ((size_t)b * one.n + i)] = b;
        }
    cr_assert_eq(mn_sort(&three, NULL), MN_OK);
    mn_kmap a, b3;
    cr_assert_eq(mn_kmap_build(&one, &one, 3, 1, 1, MN_SORT, 1, &a), MN_OK);
    cr_assert_eq(mn_kmap_build(&three, &three, 3, 1, 1, MN_SORT, 1, &b3), MN_OK);
    cr_assert_eq(b3.total, 3 * a.total, "offsets crossed batches");
    check(&three, &three, 3, 1, 1, 2, 3, "batch of 3");
    mn_kmap_free(&a);
    mn_kmap_free(&b3);
    free(one.c);
    free(three.c);
}

Test(conv, large_coordinates_use_wide_keys)
{
    /* Far apart coordinates need more than 64 bits of key: the 128-bit path. */
    mn_coords c = {malloc(24 * sizeof(int32_t)), 6};
    int32_t rows[6][4] = {{0, -2000000000, 5, 5}, {0, -2000000000, 5, 6}, {0, 2000000000, 1, 1},
                          {70000, 0, 0, 0},       {70000, 0, 0, 1},       {70000, 1, 1, 1}};
    memcpy(c.c, rows, sizeof rows);
    cr_assert_eq(mn_sort(&c, NULL), MN_OK, "%s", mn_last_error());
    check(&c, &c, 3, 1, 1, 2, 2, "wide keys");
    free(c.c);
}

/* The radix sort against qsort, for key widths from one digit to most of 64 bits (so both
 * even and odd numbers of non-trivial passes), negative coordinates included, with 1, 2 and
 * 3 threads; the permutation maps sorted rows back to the input rows. */
Test(sort, radix_matches_qsort_for_every_width)
{
    static const int spans[] = {3, 200, 5000, 1 << 20, 1 << 30};
    for (size_t w = 0; w < 3 * sizeof spans / sizeof spans[0]; w++) {
        /* 1, 2 and 3 threads; the threaded passes start at 65536 keys */
        int threads = (int)(w % 3) + 1;
        size_t n = threads == 1 ? 20000 : 150000 + (size_t)threads;
        mn_coords c = {malloc(n * 16), n};
        for (size_t i = 0; i < n; i++) { /* distinct: the row number is in x */
            c.c[4 * i] = (int32_t)(rnd() % 3);
            c.c[4 * i + 1] = (int32_t)i - 7000;
            int span = spans[w / 3];
            c.c[4 * i + 2] = (int32_t)(rnd() % (uint32_t)span) - span / 2;
            c.c[4 * i + 3] = (int32_t)(rnd() % (uint32_t)span) - span / 2;
        }
        int32_t *orig = malloc(n * 16), *want = malloc(n * 16);
        memcpy(orig, c.c, n * 16);
        memcpy(want, c.c, n * 16);
        qsort(want, n, 16, cmp4);
        uint32_t *perm = malloc(n * sizeof *perm);
        cr_assert_eq(mn_sort_threads(&c, perm, threads), MN_OK, "%s", mn_last_error());
        cr_assert_eq(memcmp(c.c, want, n * 16), 0, "span %d, %d threads", spans[w / 3], threads);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(memcmp(c.c + 4 * i, orig + 4 * (size_t)perm[i], 16), 0);
        free(perm);
        free(orig);
        free(want);
        free(c.c);
    }
}

Test(conv, bad_input)
{
    mn_coords d = {malloc(12 * sizeof(int32_t)), 3};
    int32_t rows[3][4] = {{0, 1, 2, 3}, {0, 4, 5, 6}, {0, 1, 2, 3}};
    memcpy(d.c, rows, sizeof rows);
    cr_assert_eq(mn_sort(&d, NULL), MN_EDUP);
    cr_assert(strstr(mn_last_error(), "duplicate coordinate (0, 1, 2, 3)"), "%s", mn_last_error());
    mn_coords c = drawn_cloud(50, 6, 0, 1, 1);
    mn_kmap m;
    mn_coords empty = {c.c, 0};
    cr_assert_eq(mn_kmap_build(&empty, &c, 3, 1, 1, MN_SORT, 1, &m), MN_EEMPTY);
    cr_assert_eq(mn_kmap_build(&c, &c, 0, 1, 1, MN_SORT, 1, &m), MN_EINVAL);
    cr_assert_eq(mn_kmap_build(&c, &c, 3, 0, 1, MN_SORT, 1, &m), MN_EINVAL);
    /* Unsorted coordinates are refused, not silently mapped wrong. */
    int32_t t[4];
    memcpy(t, c.c, 16);
    memcpy(c.c, c.c + 4, 16);
    memcpy(c.c + 4, t, 16);
    cr_assert_eq(mn_kmap_build(&c, &c, 3, 1, 1, MN_SORT, 1, &m), MN_EINVAL);
    cr_assert(strstr(mn_last_error(), "not sorted"), "%s", mn_last_error());
    cr_assert_eq(mn_sort(&c, NULL), MN_OK);
    cr_assert_eq(mn_kmap_build(&c, &c, 3, 1, 1, MN_SORT, 1, &m), MN_OK);
    float *f = randf(c.n * 2), *W = randf((size_t)m.nk * 4), *y = malloc(c.n * 2 * sizeof *y);
    f[7] = NAN;
    cr_assert_eq(mn_conv(&m, f, c.n, 2, W, NULL, 2, y, c.n, NULL), MN_ENAN);
    cr_assert(strstr(mn_last_error(), "feature [3, 1]"), "%s", mn_last_error());
    f[7] = 0;
    cr_assert_eq(mn_conv(&m, f, c.n - 1, 2, W, NULL, 2, y, c.n, NULL), MN_EINVAL,
                 "too few input rows");
    cr_assert(strstr(mn_last_error(), "built for"), "%s", mn_last_error());
    cr_assert_eq(mn_conv(&m, f, c.n, 0, W, NULL, 2, y, c.n, NULL), MN_EINVAL);
    /* A hand-made map (no row counts from mn_kmap_build: its pairs are checked) whose pairs
     * do not ascend in the rows they add to is refused, and one with a row outside. */
    m.n_in = m.n_out = 0;
    int k = 0;
    while (m.count[k] < 2)
        k++;
    int32_t o0 = m.out[k][0];
    m.out[k][0] = m.out[k][1];
    m.out[k][1] = o0;
    cr_assert_eq(mn_conv(&m, f, c.n, 2, W, NULL, 2, y, c.n, NULL), MN_EINVAL);
    cr_assert(strstr(mn_last_error(), "not strictly ascending"), "%s", mn_last_error());
    m.out[k][1] = m.out[k][0];
    m.out[k][0] = o0;
    int32_t i0 = m.in[k][0];
    m.in[k][0] = (int32_t)c.n;
    cr_assert_eq(mn_conv(&m, f, c.n, 2, W, NULL, 2, y, c.n, NULL), MN_EINVAL);
    cr_assert(strstr(mn_last_error(), "refers to row"), "%s", mn_last_error());
    m.in[k][0] = i0;
    cr_assert_eq(mn_conv(&m, f, c.n, 2, W, NULL, 2, y, c.n, NULL), MN_OK, "restored: %s",
                 mn_last_error());
    free(f);
    free(W);
    free(y);
    mn_kmap_free(&m);
    free(c.c);
    free(d.c);
}

/* ---- networks ------------------------------------------------------------------------------ */

static float *net_run(mn_net *net, const mn_coords *c, const float *f, mn_method m, int threads,
                      size_t *n, int *ch, mn_net_stats *st)
{
    float *y = NULL;
    cr_assert_eq(mn_net_forward(net, c, f, m, threads, &y, n, ch, st), MN_OK, "%s",
                 mn_last_error());
    return y;
}

/* Shapes and convolution counts; sort and hash maps, 1 and 2 threads give the same bits; and
 * the network is translation-equivariant: moving the cloud by a multiple of the coarsest
 * stride (16), negative included, gives the same features, which only holds when every
 * level's downsampling and map are right. */
Test(net, resnet21_unet42_shapes_and_equivariance)
{
    static const int widths[5] = {8, 16, 16, 24, 32};
    mn_coords c = drawn_cloud(3000, 40, 0, 1, 2);
    float *f = randf(c.n * 3);
    for (int kind = 0; kind < 2; kind++) {
        mn_net *net;
        cr_assert_eq(mn_net_create((mn_net_kind)kind, 3, widths, 7, &net), MN_OK, "%s",
                     mn_last_error());
        size_t n, n2;
        int ch, ch2;
        mn_net_stats st, st2;
        float *y = net_run(net, &c, f, MN_SORT, 2, &n, &ch, &st);
        cr_assert_eq(st.convs, kind ? 42u : 21u);
        /* Gather and scatter are 0 where the fused dataflow ran: it does them in the GEMM. */
        cr_assert(st.map_s > 0 && st.gather_s >= 0 && st.gemm_s > 0 && st.scatter_s >= 0 &&
                      st.other_s >= 0,
                  "stage times %g %g %g %g %g", st.map_s, st.gather_s, st.gemm_s, st.scatter_s,
                  st.other_s);
        cr_assert(st.tune_s >= 0);
        cr_assert(fabs(st.map_s + st.tune_s + st.gather_s + st.gemm_s + st.scatter_s + st.other_s -
                       st.total_s) < 1e-9,
                  "the stages add up to the total");
        cr_assert_eq(ch, kind ? widths[0] : widths[4]);
        if (kind == MN_UNET42)
            cr_assert_eq(n, c.n, "UNet-42 ends at full resolution");
        else
            cr_assert(n > 0 && n < c.n / 8, "ResNet-21 ends at stride 16: %zu of %zu", n, c.n);
        double mag = 0;
        for (size_t i = 0; i < n * (size_t)ch; i++) {
            cr_assert(isfinite(y[i]));
            mag += fabsf(y[i]);
        }
        cr_assert(mag > 0, "the output is not all zero");
        float *y2 = net_run(net, &c, f, MN_HASH, 1, &n2, &ch2, &st2);
        cr_assert(n2 == n && ch2 == ch && st2.pairs == st.pairs);
        cr_assert_eq(memcmp(y, y2, n * (size_t)ch * sizeof *y), 0, "sort/2 threads vs hash/1");
        free(y2);
        mn_coords moved = {malloc(c.n * 16), c.n};
        for (size_t i = 0; i < c.n; i++) {
            moved.c[4 * i] = c.c[4 * i];
            moved.c[4 * i + 1] = c.c[4 * i + 1] - 16 * 5;
            moved.c[4 * i + 2] = c.c[4 * i + 2] + 16 * 3;
            moved.c[4 * i + 3] = c.c[4 * i + 3] - 16 * 1000;
        }
        y2 = net_run(net, &moved, f, MN_SORT, 2, &n2, &ch2, &st2);
        cr_assert(n2 == n && st2.pairs == st.pairs);
        cr_assert_eq(memcmp(y, y2, n * (size_t)ch * sizeof *y), 0, "translated by 16s");
        free(y2);
        /* A shift of 1 changes which voxels share a coarse cell: the pair count moves. */
        for (size_t i = 0; i < c.n; i++)
            moved.c[4 * i + 1] = c.c[4 * i + 1] + 1;
        y2 = net_run(net, &moved, f, MN_SORT, 2, &n2, &ch2, &st2);
        cr_assert(st2.pairs != st.pairs || memcmp(y, y2, n * (size_t)ch * sizeof *y) != 0);
        free(y2);
        free(moved.c);
        free(y);
        mn_net_free(net);
    }
    free(f);
    free(c.c);
}

Test(net, bad_input)
{
    int widths[5] = {8, 16, 16, 24, 32};
    mn_net *net;
    cr_assert_eq(mn_net_create((mn_net_kind)5, 3, widths, 1, &net), MN_EINVAL);
    cr_assert_eq(mn_net_create(MN_RESNET21, 0, widths, 1, &net), MN_EINVAL);
    widths[2] = 0;
    cr_assert_eq(mn_net_create(MN_RESNET21, 3, widths, 1, &net), MN_EINVAL);
    cr_assert(strstr(mn_last_error(), "width 0"), "%s", mn_last_error());
    widths[2] = 16;
    cr_assert_eq(mn_net_create(MN_UNET42, 3, widths, 1, &net), MN_OK);
    mn_coords c = drawn_cloud(200, 10, 0, 1, 1);
    float *f = randf(c.n * 3), *y;
    size_t n;
    int ch;
    mn_net_stats st;
    mn_coords empty = {c.c, 0};
    cr_assert_eq(mn_net_forward(net, &empty, f, MN_SORT, 1, &y, &n, &ch, &st), MN_EEMPTY);
    int32_t t[4]; /* unsorted: refused by the first map */
    memcpy(t, c.c, 16);
    memcpy(c.c, c.c + 4, 16);
    memcpy(c.c + 4, t, 16);
    cr_assert_eq(mn_net_forward(net, &c, f, MN_SORT, 1, &y, &n, &ch, &st), MN_EINVAL);
    cr_assert_null(y);
    cr_assert_eq(mn_net_forward(net, &c, NULL, MN_SORT, 1, &y, &n, &ch, &st), MN_EINVAL);
    mn_net_free(net);
    free(f);
    free(c.c);
}

/* A random permutation of 0 .. n-1 (Fisher-Yates, fixed seed). */
static int32_t *shuffled(size_t n, uint64_t seed)
{
    int32_t *p = calloc(n > 8 ? n : 8, sizeof *p); /* calloc: the analyzer sees it set */
    for (size_t i = 0; i < n; i++)
        p[i] = (int32_t)i;
    for (size_t i = n; i > 1; i--) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t j = (size_t)(seed >> 33) % i;
        int32_t t = p[i - 1];
        p[i - 1] = p[j];
        p[j] = t;
    }
    return p;
}

/* rows of a [n, c] array in another order: out[perm[r]] = in[r]. */
static float *scatter_rows(const float *in, const int32_t *perm, size_t n, int c)
{
    float *out = malloc((n ? n : 1) * (size_t)c * sizeof *out);
    for (size_t r = 0; r < n; r++)
        memcpy(out + (size_t)perm[r] * (size_t)c, in + r * (size_t)c, (size_t)c * sizeof *out);
    return out;
}

/* One map, features kept in an unsorted order (in_rows / out_rows): the same bits as with
 * the features copied into the map's order, forward (both dataflows) and backward. */
static void rows_case(const mn_coords *a, const mn_coords *b, int K, bool tr, int ci, int co,
                      const char *what)
{
    mn_kmap m;
    cr_assert_eq(mn_kmap_build(a, b, K, 1, 1, MN_SORT, 2, &m), MN_OK, "%s", mn_last_error());
    size_t n_in = tr ? b->n : a->n, n_out = tr ? a->n : b->n;
    int32_t *pa = shuffled(a->n, 7), *pb = K % 2 && a == b ? pa : shuffled(b->n, 8);
    const int32_t *p_in = tr ? pb : pa, *p_out = tr ? pa : pb; /* rows of `in` / `out` */
    float *f = randf(n_in * (size_t)ci), *W = randf((size_t)m.nk * ci * co);
    float *g = randf(n_out * (size_t)co);
    float *fp = scatter_rows(f, p_in, n_in, ci), *gp = scatter_rows(g, p_out, n_out, co);
    float *y = malloc(n_out * (size_t)co * sizeof *y),
          *yp = malloc(n_out * (size_t)co * sizeof *yp);
    float *di = malloc(n_in * (size_t)ci * sizeof *di),
          *dip = malloc(n_in * (size_t)ci * sizeof *dip);
    size_t nw = (size_t)m.nk * (size_t)ci * (size_t)co;
    float *dw = malloc(nw * sizeof *dw), *dwp = malloc(nw * sizeof *dwp);
    for (int df = 0; df < 2; df++) {
        mn_conv_opts o = {.threads = 2, .transposed = tr, .dataflow = df ? MN_FUSED : MN_GROUPED};
        cr_assert_eq(mn_conv(&m, f, n_in, ci, W, NULL, co, y, n_out, &o), MN_OK, "%s",
                     mn_last_error());
        cr_assert_eq(mn_conv_backward(&m, f, n_in, ci, W, co, g, n_out, di, dw, NULL, &o), MN_OK);
        o.in_rows = pa;
        o.out_rows = pb;
        cr_assert_eq(mn_conv(&m, fp, n_in, ci, W, NULL, co, yp, n_out, &o), MN_OK, "%s",
                     mn_last_error());
        cr_assert_eq(mn_conv_backward(&m, fp, n_in, ci, W, co, gp, n_out, dip, dwp, NULL, &o),
                     MN_OK, "%s", mn_last_error());
        for (size_t r = 0; r < n_out; r++)
            cr_assert_eq(memcmp(y + r * (size_t)co, yp + (size_t)p_out[r] * (size_t)co,
                                (size_t)co * sizeof *y),
                         0, "%s, %s: output row %zu", what, df ? "fused" : "grouped", r);
        for (size_t r = 0; r < n_in; r++)
            cr_assert_eq(memcmp(di + r * (size_t)ci, dip + (size_t)p_in[r] * (size_t)ci,
                                (size_t)ci * sizeof *di),
                         0, "%s: input-gradient row %zu", what, r);
        cr_assert_eq(memcmp(dw, dwp, nw * sizeof *dw), 0, "%s: weight gradient", what);
    }
    free(f), free(W), free(g), free(fp), free(gp), free(y), free(yp), free(di), free(dip);
    free(dw), free(dwp);
    if (pb != pa)
        free(pb);
    free(pa);
    mn_kmap_free(&m);
}

Test(conv, unsorted_rows_give_the_same_bits)
{
    mn_coords c = dense_cloud(3000, 16), q;
    cr_assert_eq(mn_downsample(&c, 1, 2, &q), MN_OK);
    rows_case(&c, &c, 3, false, 5, 7, "submanifold K=3");
    rows_case(&c, &q, 2, false, 4, 6, "strided K=2");
    rows_case(&c, &q, 2, true, 6, 4, "transposed K=2");
    free(c.c);
    free(q.c);
}

Test(conv, row_orders_must_be_permutations)
{
    mn_coords c = drawn_cloud(200, 8, 0, 1, 1);
    mn_kmap m;
    cr_assert_eq(mn_kmap_build(&c, &c, 3, 1, 1, MN_SORT, 1, &m), MN_OK);
    float *f = randf(c.n * 2), *W = randf((size_t)m.nk * 4), *y = malloc(c.n * 2 * sizeof *y);
    int32_t *p = shuffled(c.n, 3);
    mn_conv_opts o = {.in_rows = p};
    p[5] = p[6];
    cr_assert_eq(mn_conv(&m, f, c.n, 2, W, NULL, 2, y, c.n, &o), MN_EINVAL);
    cr_assert(strstr(mn_last_error(), "given twice"), "%s", mn_last_error());
    p[5] = (int32_t)c.n;
    cr_assert_eq(mn_conv(&m, f, c.n, 2, W, NULL, 2, y, c.n, &o), MN_EINVAL);
    cr_assert(strstr(mn_last_error(), "outside"), "%s", mn_last_error());
    free(f), free(W), free(y), free(p);
    mn_kmap_free(&m);
    free(c.c);
}
