/* test_dense.c: the dense-grid cross-check of the convolution. Small clouds inside a
 * 12^3 box (negative coordinates included), one and two batches, are scattered into a
 * zero-filled dense grid; a plain dense 3-D convolution (a loop over every output site of
 * the box and every kernel offset, double accumulation, MinkowskiEngine's offset convention:
 * odd K centred, even K 0..K-1) is computed over the whole box and read at the output
 * coordinates, against mn_kmap_build (sort- and hash-based) + mn_conv. Submanifold K = 3 and
 * 5, strided K = 2 and 3 with s = 2 (and a second level at tensor stride 2), dilation 2, and
 * transposed K = 2. The strided output sites are also derived from the dense occupancy
 * grid and compared with mn_downsample. Written without the library's code paths or the
 * set-lookup oracle of test_conv.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mn_test.h"

/* The box [LO, LO + BOX)^3, LO a multiple of 4 so the strided lattices (2, 4) start on it. */
enum { BOX = 12, PAD = 4, G = BOX + 2 * PAD, LO = -8 };

/* Cell index of (b, x, y, z) in a [nb][G][G][G] grid; coordinates are box-relative plus PAD. */
static size_t cell(int b, int x, int y, int z)
{
    int gx = x - LO + PAD, gy = y - LO + PAD, gz = z - LO + PAD;
    cr_assert(gx >= 0 && gx < G && gy >= 0 && gy < G && gz >= 0 && gz < G,
              "(%d, %d, %d) outside the padded grid", x, y, z);
    return (((size_t)b * G + (size_t)gx) * G + (size_t)gy) * G + (size_t)gz;
}

/* n distinct voxels of [LO, LO + BOX)^3 in batches 0..nb-1, sorted by mn_sort. */
static mn_coords box_cloud(size_t n, int nb) { return cloud(n, BOX, LO, 1, nb); }

/* The features of the rows of co, scattered into a zero-filled dense grid [nb][G^3][c]. */
static double *densify(const mn_coords *co, const float *f, int c, int nb)
{
    double *g = calloc((size_t)nb * G * G * G * (size_t)c, sizeof *g);
    for (size_t i = 0; i < co->n; i++) {
        const int32_t *r = co->c + 4 * i;
        size_t at = cell(r[0], r[1], r[2], r[3]);
        for (int a = 0; a < c; a++)
            g[at * (size_t)c + (size_t)a] = f[i * (size_t)c + (size_t)a];
    }
    return g;
}

/* The dense convolution over every output site of the box (coordinates LO + multiples of
 * `ostride`): out[p] = sum over offsets d of in[p + sign * d] W[d], sign +1 for a forward
 * convolution and -1 for a transposed one, with d = o * step, o in [-(K/2), K/2] for odd K
 * and {0, .., K-1} for even K, offset index (i*K + j)*K + l. Sites outside the box read 0. */
static double *dense_conv(const double *in, int ci, int nb, const float *W, int co, int K, int step,
                          int ostride, int sign)
{
    double *out = calloc((size_t)nb * G * G * G * (size_t)co, sizeof *out);
    int lo = K % 2 ? -(K / 2) : 0;
    for (int b = 0; b < nb; b++)
        for (int x = LO; x < LO + BOX; x += ostride)
            for (int y = LO; y < LO + BOX; y += ostride)
                for (int z = LO; z < LO + BOX; z += ostride) {
                    double *o = out + cell(b, x, y, z) * (size_t)co;
                    for (int i = 0, k = 0; i < K; i++)
                        for (int j = 0; j < K; j++)
                            for (int l = 0; l < K; l++, k++) {
                                const double *p = in + cell(b, x + sign * (lo + i) * step,
                                                            y + sign * (lo + j) * step,
                                                            z + sign * (lo + l) * step) *
                                                           (size_t)ci;
                                for (int a = 0; a < ci; a++)
                                    for (int e = 0; e < co; e++)
                                        o[e] +=
                                            p[a] *
                                            (double)W[((size_t)k * ci + (size_t)a) * (size_t)co +
                                                      (size_t)e];
                            }
                }
    return out;
}

/* The output sites of a strided convolution from the dense occupancy grid: every cell of the
 * lattice of f = t_in * s whose f^3 block holds an input, in (batch, x, y, z) order. */
static mn_coords dense_downsample(const mn_coords *in, int nb, int f)
{
    bool *occ = calloc((size_t)nb * G * G * G, 1);
    for (size_t i = 0; i < in->n; i++) {
        const int32_t *r = in->c + 4 * i;
        occ[cell(r[0], r[1], r[2], r[3])] = true;
    }
    mn_coords q = {malloc((size_t)nb * BOX * BOX * BOX * 16), 0};
    for (int b = 0; b < nb; b++)
        for (int x = LO; x < LO + BOX; x += f)
            for (int y = LO; y < LO + BOX; y += f)
                for (int z = LO; z < LO + BOX; z += f) {
                    bool any = false;
                    for (int u = 0; u < f && !any; u++)
                        for (int v = 0; v < f && !any; v++)
                            for (int w = 0; w < f && !any; w++)
                                any = occ[cell(b, x + u, y + v, z + w)];
                    if (any) {
                        int32_t *r = q.c + 4 * q.n++;
                        r[0] = b;
                        r[1] = x;
                        r[2] = y;
                        r[3] = z;
                    }
                }
    free(occ);
    return q;
}

/* Compare the library's outputs (rows of oc) with the dense result read at those sites:
 * |got - want| <= 1e-4 * (1 + |want|). Returns how many compared values are not zero, so a
 * caller can check the comparison was not vacuous. */
static size_t compare(const float *got, const mn_coords *oc, const double *dense, int co,
                      const char *what)
{
    size_t nonzero = 0;
    for (size_t i = 0; i < oc->n; i++) {
        const int32_t *r = oc->c + 4 * i;
        const double *want = dense + cell(r[0], r[1], r[2], r[3]) * (size_t)co;
        for (int e = 0; e < co; e++) {
            double g = got[i * (size_t)co + (size_t)e], w = want[e];
            cr_assert(fabs(g - w) <= 1e-4 * (1 + fabs(w)),
                      "%s: output (%d, %d, %d, %d) channel %d: %g, dense grid %g", what, r[0], r[1],
                      r[2], r[3], e, g, w);
            nonzero += w != 0;
        }
    }
    return nonzero;
}

/* Forward: the map in -> out with both builders, mn_conv on 1 and 2 threads, against the
 * dense convolution of the box read at out's sites. ostride: the lattice of the outputs. */
static void check_forward(const mn_coords *in, const mn_coords *out, int nb, int K, int t_in,
                          int dil, int ostride, const char *what)
{
    int ci = 3, co = 4;
    float *f = randf(in->n * (size_t)ci), *W = randf((size_t)K * K * K * ci * co);
    double *gin = densify(in, f, ci, nb);
    double *want = dense_conv(gin, ci, nb, W, co, K, t_in * dil, ostride, +1);
    float *y = malloc(out->n * (size_t)co * sizeof *y);
    for (int m = 0; m < 2; m++) {
        mn_kmap map;
        cr_assert_eq(mn_kmap_build(in, out, K, t_in, dil, m ? MN_HASH : MN_SORT, 2, &map), MN_OK,
                     "%s: %s", what, mn_last_error());
        for (int th = 1; th <= 2; th++) {
            mn_conv_opts o = {.group_threshold = 0.25, .threads = th};
            cr_assert_eq(mn_conv(&map, f, in->n, ci, W, NULL, co, y, out->n, &o), MN_OK, "%s: %s",
                         what, mn_last_error());
            size_t nz = compare(y, out, want, co, what);
            cr_assert_gt(nz, out->n * (size_t)co / 2, "%s: mostly zero outputs (%zu)", what, nz);
        }
        mn_kmap_free(&map);
    }
    free(f);
    free(W);
    free(gin);
    free(want);
    free(y);
}

Test(dense, submanifold_k3_k5)
{
    for (int nb = 1; nb <= 2; nb++) {
        mn_coords c = box_cloud(300 * (size_t)nb, nb);
        check_forward(&c, &c, nb, 3, 1, 1, 1, nb == 1 ? "submanifold K=3" : "K=3, 2 batches");
        check_forward(&c, &c, nb, 5, 1, 1, 1, nb == 1 ? "submanifold K=5" : "K=5, 2 batches");
        free(c.c);
    }
}

Test(dense, dilation_2)
{
    for (int nb = 1; nb <= 2; nb++) {
        mn_coords c = box_cloud(400, nb);
        check_forward(&c, &c, nb, 3, 1, 2, 1, "dilation 2");
        free(c.c);
    }
}

/* Strided K = 2 and 3 with s = 2, then a second level: K = 3 s = 2 at tensor stride 2. The
 * output sites themselves are checked against the dense occupancy grid. */
Test(dense, strided_k2_k3)
{
    for (int nb = 1; nb <= 2; nb++) {
        mn_coords c = box_cloud(350, nb), q, q2;
        cr_assert_eq(mn_downsample(&c, 1, 2, &q), MN_OK, "%s", mn_last_error());
        mn_coords dq = dense_downsample(&c, nb, 2);
        cr_assert_eq(q.n, dq.n, "strided outputs: %zu, dense grid %zu", q.n, dq.n);
        cr_assert_eq(memcmp(q.c, dq.c, q.n * 16), 0, "strided output sites");
        check_forward(&c, &q, nb, 2, 1, 1, 2, "strided K=2 s=2");
        check_forward(&c, &q, nb, 3, 1, 1, 2, "strided K=3 s=2");
        cr_assert_eq(mn_downsample(&q, 2, 2, &q2), MN_OK, "%s", mn_last_error());
        mn_coords dq2 = dense_downsample(&c, nb, 4);
        cr_assert_eq(q2.n, dq2.n);
        cr_assert_eq(memcmp(q2.c, dq2.c, q2.n * 16), 0, "second-level output sites");
        check_forward(&q, &q2, nb, 3, 2, 1, 4, "strided K=3 s=2 at tensor stride 2");
        free(dq.c);
        free(dq2.c);
        free(q2.c);
        free(q.c);
        free(c.c);
    }
}

/* Transposed K = 2: the strided map (fine -> coarse) used the other way, coarse features in,
 * fine features out; the dense transposed convolution out[p] = sum_d coarse[p - d] W[d]. */
Test(dense, transposed_k2)
{
    for (int nb = 1; nb <= 2; nb++) {
        mn_coords c = box_cloud(300, nb), q;
        cr_assert_eq(mn_downsample(&c, 1, 2, &q), MN_OK, "%s", mn_last_error());
        int ci = 3, co = 2;
        float *f = randf(q.n * (size_t)ci), *W = randf((size_t)8 * ci * co);
        double *gin = densify(&q, f, ci, nb);
        double *want = dense_conv(gin, ci, nb, W, co, 2, 1, 1, -1);
        float *y = malloc(c.n * (size_t)co * sizeof *y);
        for (int m = 0; m < 2; m++) {
            mn_kmap map;
            cr_assert_eq(mn_kmap_build(&c, &q, 2, 1, 1, m ? MN_HASH : MN_SORT, 2, &map), MN_OK,
                         "%s", mn_last_error());
            for (int th = 1; th <= 2; th++) {
                mn_conv_opts o = {.group_threshold = 0.25, .threads = th, .transposed = true};
                cr_assert_eq(mn_conv(&map, f, q.n, ci, W, NULL, co, y, c.n, &o), MN_OK, "%s",
                             mn_last_error());
                /* Every fine site lies in exactly one coarse cell: all outputs receive a term. */
                size_t nz = compare(y, &c, want, co, "transposed K=2");
                cr_assert_gt(nz, c.n * (size_t)co / 2);
            }
            mn_kmap_free(&map);
        }
        free(f);
        free(W);
        free(gin);
        free(want);
        free(y);
        free(q.c);
        free(c.c);
    }
}
