/* test_conv_blas.c: Minuet's bits do not depend on the BLAS kernel. Some sgemm kernels
 * (OpenBLAS's Haswell and Zen ones) give a row other bits when the call's row count or
 * thread count changes; which kernel runs depends on the CPU. This binary links its own
 * cblas_sgemm in place of OpenBLAS's: correct to float32 rounding, but it adds a row's terms
 * in an order that depends on the call's row count, the row's place in the call and
 * OpenBLAS's thread setting, as a kernel with an M tail would. Against it, on any machine:
 *  - the forward convolution (and the input gradient, a convolution) calls no BLAS at all:
 *    its GEMM is Minuet's own (gemm.c);
 *  - the weight gradient, the one BLAS user, gives the same bits and the same multiset of
 *    GEMM calls (shape, beta, both operands' contents) for every dataflow, grouping
 *    threshold, batching, tile and thread count;
 *  - each call runs with OpenBLAS's threads at 1, and the caller's setting is restored.
 * With the weight-gradient GEMMs cut by the thread count it fails. */
#include <cblas.h>
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "minuet.h"

/* ---- the shape-sensitive sgemm -------------------------------------------------------------- */

typedef struct call {
    int m, n, k;
    float beta;
    uint64_t a_hash, b_hash; /* the operands' contents (B may sit in a per-thread scratch) */
} call;

static call *calls;
static size_t ncalls, capcalls;
static int calls_multithreaded; /* calls made while OpenBLAS was set to more than 1 thread */

static uint64_t hash_floats(const float *a, size_t rows, size_t cols, size_t ld)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t r = 0; r < rows; r++) {
        const unsigned char *p = (const unsigned char *)(a + r * ld);
        for (size_t i = 0; i < cols * sizeof(float); i++)
            h = (h ^ p[i]) * 1099511628211ULL;
    }
    return h;
}

/* Row-major, A transposed or not, B not: what libminuet calls. */
void cblas_sgemm(OPENBLAS_CONST enum CBLAS_ORDER order, OPENBLAS_CONST enum CBLAS_TRANSPOSE ta,
                 OPENBLAS_CONST enum CBLAS_TRANSPOSE tb, OPENBLAS_CONST blasint M,
                 OPENBLAS_CONST blasint N, OPENBLAS_CONST blasint K, OPENBLAS_CONST float alpha,
                 OPENBLAS_CONST float *A, OPENBLAS_CONST blasint lda, OPENBLAS_CONST float *B,
                 OPENBLAS_CONST blasint ldb, OPENBLAS_CONST float beta, float *C,
                 OPENBLAS_CONST blasint ldc)
{
    cr_assert(order == CblasRowMajor && tb == CblasNoTrans && alpha == 1.0f);
    bool tra = ta == CblasTrans;
    int nt = openblas_get_num_threads();
    if (nt != 1)
        __atomic_fetch_add(&calls_multithreaded, 1, __ATOMIC_RELAXED);
    call c = {M, N, K, beta,
              tra ? hash_floats(A, (size_t)K, (size_t)M, (size_t)lda)
                  : hash_floats(A, (size_t)M, (size_t)K, (size_t)lda),
              hash_floats(B, (size_t)K, (size_t)N, (size_t)ldb)};
    /* Several library threads call at once. */
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    if (ncalls == capcalls) {
        capcalls = capcalls ? 2 * capcalls : 4096;
        calls = realloc(calls, capcalls * sizeof *calls);
    }
    calls[ncalls++] = c;
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < M; i++) {
        /* A tail of M % 8 rows adds its terms backwards; on several threads, odd rows too. */
        bool back = i >= M - M % 8 || (nt > 1 && (i & 1));
        for (int j = 0; j < N; j++) {
            float acc = 0;
            for (int q = 0; q < K; q++) {
                int kk = back ? K - 1 - q : q;
                float a = tra ? A[(size_t)kk * (size_t)lda + (size_t)i]
                              : A[(size_t)i * (size_t)lda + (size_t)kk];
                acc += a * B[(size_t)kk * (size_t)ldb + (size_t)j];
            }
            float *o = &C[(size_t)i * (size_t)ldc + (size_t)j];
            *o = beta == 0.0f ? acc : beta * *o + acc;
        }
    }
}

static int cmp_call(const void *pa, const void *pb)
{
    const call *a = pa, *b = pb;
    if (a->m != b->m)
        return a->m < b->m ? -1 : 1;
    if (a->a_hash != b->a_hash)
        return a->a_hash < b->a_hash ? -1 : 1;
    if (a->b_hash != b->b_hash)
        return a->b_hash < b->b_hash ? -1 : 1;
    if (a->beta != b->beta)
        return a->beta < b->beta ? -1 : 1;
    return (a->n > b->n) - (a->n < b->n) + (a->k > b->k) - (a->k < b->k);
}

/* ---- fixtures ------------------------------------------------------------------------------ */

static float *randf(size_t n, uint64_t seed)
{
    float *f = malloc(n * sizeof *f);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        f[i] = (float)((double)(seed >> 40) / (double)(1 << 24) - 0.5);
    }
    return f;
}

/* A synthetic scene's voxels: offsets of hundreds to thousands of pairs, so GEMMs of
 * several blocks and tails of every length. */
static mn_coords scene(size_t points, double voxel)
{
    mn_cloud cl;
    mn_coords c;
    cr_assert_eq(mn_scene(points, 5, &cl), MN_OK, "%s", mn_last_error());
    cr_assert_eq(mn_voxelize(&cl, voxel, 0, &c), MN_OK, "%s", mn_last_error());
    mn_cloud_free(&cl);
    return c;
}

/* The fake above is shape-sensitive: the same rows in a call of another row count get other
 * bits (else the checks below could not fail). */
Test(blas, the_fake_sgemm_depends_on_the_call_shape)
{
    int k = 48, n = 8;
    size_t row = (size_t)n * sizeof(float);
    float *a = randf((size_t)16 * k, 1), *b = randf((size_t)k * n, 2), c13[13 * 8], c16[16 * 8];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 13, n, k, 1.0f, a, k, b, n, 0.0f, c13,
                n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 16, n, k, 1.0f, a, k, b, n, 0.0f, c16,
                n);
    cr_assert_eq(memcmp(c13, c16, 8 * row), 0, "the first 8 rows: one order");
    cr_assert_neq(memcmp(c13 + 8 * (size_t)n, c16 + 8 * (size_t)n, 5 * row), 0,
                  "rows 8-12 of a 13-row call differ from those of a 16-row call");
    free(a);
    free(b);
}

static void same_bits_and_calls(const mn_coords *in, const mn_coords *out, int K, bool tr, int ci,
                                int co, const char *what)
{
    mn_kmap map;
    cr_assert_eq(mn_kmap_build(tr ? out : in, tr ? in : out, K, 1, 1, MN_SORT, 2, &map), MN_OK,
                 "%s", mn_last_error());
    size_t n_in = in->n, n_out = out->n;
    float *f = randf(n_in * (size_t)ci, 3), *W = randf((size_t)map.nk * ci * co, 4);
    float *g = randf(n_out * (size_t)co, 5);
    size_t nw = (size_t)map.nk * (size_t)ci * (size_t)co;
    float *ref_dw = malloc(nw * sizeof *ref_dw), *dw = malloc(nw * sizeof *dw);
    float *ref_di = malloc(n_in * (size_t)ci * sizeof *ref_di),
          *di = malloc(n_in * (size_t)ci * sizeof *di);
    float *y = malloc(n_out * (size_t)co * sizeof *y);
    call *ref_calls = NULL;
    size_t ref_n = 0;
    double thr[] = {0.25, 0, 1, 1000};
    size_t tiles[][2] = {{256, 0}, {1, 0}, {16, 3}, {100000, 32}};
    for (int t = 0; t < 4; t++)
        for (int th = 1; th <= 3; th++)
            for (int b = 0; b < 2; b++) {
                mn_conv_opts o = {.group_threshold = thr[t],
                                  .threads = th,
                                  .transposed = tr,
                                  .batch_rows = b ? (size_t)1 << 30 : 0,
                                  .tile_rows = tiles[(t + th) % 4][0],
                                  .tile_channels = (int)tiles[(t + b) % 4][1],
                                  .dataflow = (t + b) % 2 ? MN_FUSED : MN_GROUPED};
                char cfg[200];
                snprintf(cfg, sizeof cfg, "%s: %s, threshold %g, %d threads, batched %d, tile %zu x %d",
                         what, o.dataflow == MN_FUSED ? "fused" : "grouped", thr[t], th, b,
                         o.tile_rows, o.tile_channels);
                openblas_set_num_threads(2); /* the caller's setting */
                ncalls = 0;
                cr_assert_eq(mn_conv(&map, f, n_in, ci, W, NULL, co, y, n_out, &o), MN_OK, "%s",
                             mn_last_error());
                cr_assert_eq(ncalls, 0, "%s: the forward made %zu BLAS calls", cfg, ncalls);
                calls_multithreaded = 0;
                cr_assert_eq(mn_conv_backward(&map, f, n_in, ci, W, co, g, n_out, di, dw, NULL, &o),
                             MN_OK, "%s", mn_last_error());
                cr_assert_eq(openblas_get_num_threads(), 2, "%s: the caller's setting restored",
                             cfg);
                cr_assert_eq(calls_multithreaded, 0, "%s: %d GEMM calls with OpenBLAS threaded",
                             cfg, calls_multithreaded);
                cr_assert_gt(ncalls, 0, "%s: the weight gradient runs on the BLAS", cfg);
                qsort(calls, ncalls, sizeof *calls, cmp_call);
                if (!ref_calls) {
                    memcpy(ref_dw, dw, nw * sizeof *dw);
                    memcpy(ref_di, di, n_in * (size_t)ci * sizeof *di);
                    ref_calls = malloc(ncalls * sizeof *calls);
                    memcpy(ref_calls, calls, ncalls * sizeof *calls);
                    ref_n = ncalls;
                    continue;
                }
                cr_assert_eq(ncalls, ref_n, "%s: %zu GEMM calls, %zu in the first", cfg, ncalls,
                             ref_n);
                cr_assert_eq(memcmp(calls, ref_calls, ncalls * sizeof *calls), 0,
                             "%s: other GEMM calls", cfg);
                cr_assert_eq(memcmp(ref_dw, dw, nw * sizeof *dw), 0, "%s: other weight-gradient bits",
                             cfg);
                cr_assert_eq(memcmp(ref_di, di, n_in * (size_t)ci * sizeof *di), 0,
                             "%s: other input-gradient bits", cfg);
            }
    free(ref_calls);
    free(f);
    free(W);
    free(g);
    free(ref_dw);
    free(dw);
    free(ref_di);
    free(di);
    free(y);
    mn_kmap_free(&map);
}

Test(blas, same_bits_whatever_the_configuration, .timeout = 600)
{
    mn_coords c = scene(60000, 0.3), q;
    cr_assert_eq(mn_downsample(&c, 1, 2, &q), MN_OK);
    cr_assert(c.n > 8000, "%zu voxels", c.n);
    same_bits_and_calls(&c, &c, 3, false, 16, 16, "submanifold K=3");
    same_bits_and_calls(&c, &q, 2, false, 8, 24, "strided K=2");
    same_bits_and_calls(&q, &c, 2, true, 24, 8, "transposed K=2");
    free(c.c);
    free(q.c);
}
