/* cuda_check_conv.c: the CUDA convolution (minuet/src/cuda/conv.cu) against its twins: the
 * gather and the scatter against plain C loops (the same float order: exact bits expected),
 * the grouped GEMM against a C loop in double, mn_cuda_conv against mn_conv and
 * mn_cuda_conv_backward against mn_conv_backward (libminuet's CPU backend). Maps come from
 * mn_kmap_build on the CPU and are copied to the device, so these checks do not depend on the
 * GPU kernel map. Every output is poisoned (NaN) first, so a row the kernels miss fails.
 *
 * Sections: helpers, gather, grouped GEMM, scatter, convolution, backward, ck_conv.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_check.h"

/* ---- helpers ----------------------------------------------------------------------------- */

#define TOL 1e-5 /* relative error allowed against a twin (float32 against float32 or double) */

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "minuet-cuda-check: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

static float *normals(size_t n)
{
    float *p = xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = ck_normal();
    return p;
}

/* The larger of two errors, NaN (a poisoned element left) winning for good. */
static double worse(double w, double e) { return isnan(w) || (!isnan(e) && e <= w) ? w : e; }

static float *to_dev(const float *h, size_t n) { return ck_dup_to_device(h, n * sizeof *h); }

static float *poisoned(size_t n) { return ck_dalloc_poisoned(n * sizeof(float)); }

static float *from_dev(const float *d, size_t n)
{
    float *h = xmalloc(n * sizeof *h);
    ck_to_host(h, d, n * sizeof *h);
    return h;
}

/* The CPU map on the device: start on the host, each offset's pairs flattened in order. */
static mn_cuda_kmap to_device_map(const mn_kmap *m)
{
    mn_cuda_kmap d = {
        .K = m->K, .nk = m->nk, .n_in = m->n_in, .n_out = m->n_out, .total = m->total};
    d.start = xmalloc(((size_t)m->nk + 1) * sizeof *d.start);
    int32_t *hi = xmalloc(m->total * sizeof *hi), *ho = xmalloc(m->total * sizeof *ho);
    size_t at = 0;
    for (int k = 0; k < m->nk; k++) {
        d.start[k] = at;
        if (m->count[k]) {
            memcpy(hi + at, m->in[k], m->count[k] * sizeof *hi);
            memcpy(ho + at, m->out[k], m->count[k] * sizeof *ho);
        }
        at += m->count[k];
    }
    d.start[m->nk] = at;
    d.in = ck_dup_to_device(hi, m->total * sizeof *hi);
    d.out = ck_dup_to_device(ho, m->total * sizeof *ho);
    free(hi);
    free(ho);
    return d;
}

/* A submanifold K=3 map on n random rows, or a strided K=2 (stride 2) one. *co (and *down for
 * the strided map) keep the coordinates; the caller frees them. */
static mn_kmap build_map(size_t n, bool strided, mn_coords *co, mn_coords *down)
{
    *co = ck_random_coords(n, 2, 0);
    mn_kmap m = {0};
    if (strided) {
        CK_MN(mn_downsample(co, 1, 2, down));
        CK_MN(mn_kmap_build(co, down, 2, 1, 1, MN_SORT, 0, &m));
    } else {
        down->c = NULL;
        down->n = 0;
        CK_MN(mn_kmap_build(co, co, 3, 1, 1, MN_SORT, 0, &m));
    }
    return m;
}

/* ---- gather ------------------------------------------------------------------------------ */

/* One gather at tile `tile` against rows copied by a C loop; src and dst shifted by `shift`
 * floats from cudaMalloc's alignment (1: the kernel must fall back to scalar accesses). */
static bool gather_once(const float *src, size_t n_src, int c, const int32_t *rows, size_t n,
                        const int32_t *drows, int tile, int shift)
{
    size_t cc = (size_t)c;
    float *dsrc = ck_dalloc_poisoned((n_src * cc + 1) * sizeof(float));
    CK_CUDA(cudaMemcpy(dsrc + shift, src, n_src * cc * sizeof(float), cudaMemcpyHostToDevice));
    float *ddst = poisoned(n * cc + 1);
    CK_MN(mn_cuda_gather(dsrc + shift, c, n_src, drows, n, ddst + shift, tile, NULL));
    float *got = xmalloc(n * cc * sizeof *got);
    ck_to_host(got, ddst + shift, n * cc * sizeof *got);
    bool ok = true;
    for (size_t p = 0; p < n && ok; p++)
        ok = memcmp(got + p * cc, src + (size_t)rows[p] * cc, cc * sizeof *got) == 0;
    free(got);
    ck_dfree(dsrc);
    ck_dfree(ddst);
    return ok;
}

static int check_gather(void)
{
    static const int chans[] = {1, 3, 4, 16, 33, 64, 128};
    const size_t n_src = 3000, n = 7000;
    int failed = 0;
    int32_t *rows = xmalloc(n * sizeof *rows);
    for (size_t p = 0; p < n; p++)
        rows[p] = (int32_t)(ck_rand() % n_src);
    int32_t *drows = ck_dup_to_device(rows, n * sizeof *rows);
    for (size_t i = 0; i < sizeof chans / sizeof chans[0]; i++) {
        int c = chans[i];
        float *src = normals(n_src * (size_t)c);
        for (int tile = 1; tile <= 4; tile *= 2) {
            bool ok = gather_once(src, n_src, c, rows, n, drows, tile, 0);
            char cfg[64];
            snprintf(cfg, sizeof cfg, "c=%d tile=%d rows=%zu", c, tile, n);
            ck_report("gather", cfg, ok, "%s", ok ? "exact" : "rows differ from the C loop");
            failed += !ok;
        }
        if (c == 4 || c == 64) { /* float4-sized rows one float off alignment */
            bool ok = gather_once(src, n_src, c, rows, n, drows, 4, 1);
            char cfg[64];
            snprintf(cfg, sizeof cfg, "c=%d tile=4 unaligned", c);
            ck_report("gather", cfg, ok, "%s", ok ? "exact" : "rows differ from the C loop");
            failed += !ok;
        }
        free(src);
    }
    ck_dfree(drows);
    free(rows);
    return failed;
}

/* ---- grouped GEMM ------------------------------------------------------------------------ */

static int check_gemm(void)
{
    static const int chans[] = {1, 3, 16, 32, 64, 96, 128, 256};
    /* offsets of very different sizes: empty ones, one row, tile edges (63, 64, 65, 129) */
    static const size_t counts[] = {1000, 0, 1, 63, 64, 65, 0, 129, 1500, 7, 0, 300};
    enum { NK = sizeof counts / sizeof counts[0] };
    size_t start[NK + 1];
    start[0] = 0;
    for (int k = 0; k < NK; k++)
        start[k + 1] = start[k] + counts[k];
    const size_t total = start[NK];
    int failed = 0;
    for (size_t a = 0; a < sizeof chans / sizeof chans[0]; a++) {
        size_t ci = (size_t)chans[a];
        float *A = normals(total * ci), *dA = to_dev(A, total * ci);
        double worst = -1; /* below any error: the first c_out is named at least */
        int worst_co = 0;
        for (size_t b = 0; b < sizeof chans / sizeof chans[0]; b++) {
            size_t co = (size_t)chans[b];
            float *W = normals(NK * ci * co), *dW = to_dev(W, NK * ci * co);
            float *dC = poisoned(total * co);
            CK_MN(mn_cuda_gemm_grouped(dA, dW, (int)ci, (int)co, start, NK, dC, NULL));
            float *got = from_dev(dC, total * co), *want = xmalloc(total * co * sizeof *want);
            for (int k = 0; k < NK; k++)
                for (size_t r = start[k]; r < start[k + 1]; r++)
                    for (size_t n = 0; n < co; n++) {
                        double acc = 0;
                        for (size_t q = 0; q < ci; q++)
                            acc += (double)A[r * ci + q] * (double)W[((size_t)k * ci + q) * co + n];
                        want[r * co + n] = (float)acc;
                    }
            double err = ck_rel_err(got, want, total * co);
            if (!isnan(worst) && (isnan(err) || err > worst)) { /* a NaN stays the worst */
                worst = err;
                worst_co = (int)co;
            }
            free(W);
            free(got);
            free(want);
            ck_dfree(dW);
            ck_dfree(dC);
        }
        char cfg[64];
        snprintf(cfg, sizeof cfg, "c_in=%zu c_out=1..256 rows=%zu", ci, total);
        bool ok = worst < TOL;
        ck_report("gemm", cfg, ok, "worst rel err %.2e (c_out %d) against double", worst, worst_co);
        failed += !ok;
        free(A);
        ck_dfree(dA);
    }
    return failed;
}

/* ---- scatter ----------------------------------------------------------------------------- */

/* Every tile, with and without a bias, against the C loop that adds in offset order. */
static int check_scatter_map(const char *what, const mn_kmap *m, bool tr)
{
    static const int chans[] = {1, 3, 16, 33, 64};
    mn_cuda_kmap dm = to_device_map(m);
    const size_t n_tgt = tr ? m->n_in : m->n_out;
    int failed = 0;
    for (size_t i = 0; i < sizeof chans / sizeof chans[0]; i++) {
        size_t c = (size_t)chans[i];
        float *prod = normals(m->total * c), *bias = normals(c);
        float *dprod = to_dev(prod, m->total * c), *dbias = to_dev(bias, c);
        float *want = xmalloc(n_tgt * c * sizeof *want), *first = NULL;
        double worst = 0;
        bool same = true;
        for (int wb = 0; wb < 2; wb++) {
            for (size_t o = 0; o < n_tgt; o++)
                for (size_t j = 0; j < c; j++)
                    want[o * c + j] = wb ? bias[j] : 0.0f;
            size_t at = 0;
            for (int k = 0; k < m->nk; k++)
                for (size_t p = 0; p < m->count[k]; p++, at++) {
                    size_t t = (size_t)(tr ? m->in[k][p] : m->out[k][p]);
                    for (size_t j = 0; j < c; j++)
                        want[t * c + j] += prod[at * c + j];
                }
            for (int tile = 1; tile <= 4; tile *= 2) {
                float *dout = poisoned(n_tgt * c);
                CK_MN(mn_cuda_scatter(dprod, &dm, tr, (int)c, wb ? dbias : NULL, dout, n_tgt, tile,
                                      NULL));
                float *got = from_dev(dout, n_tgt * c);
                double err = ck_rel_err(got, want, n_tgt * c);
                worst = worse(worst, err);
                if (tile == 1) {
                    free(first);
                    first = got;
                } else {
                    same = same && memcmp(first, got, n_tgt * c * sizeof *got) == 0;
                    free(got);
                }
                ck_dfree(dout);
            }
        }
        char cfg[64];
        snprintf(cfg, sizeof cfg, "%s%s c=%zu tiles 1,2,4", what, tr ? " tr" : "", c);
        bool ok = worst < TOL && same;
        ck_report("scatter", cfg, ok, "rel err %.2e, %s, bias and none", worst,
                  same ? "same bits every tile" : "DIFFERENT bits between tiles");
        failed += !ok;
        free(prod);
        free(bias);
        free(want);
        free(first);
        ck_dfree(dprod);
        ck_dfree(dbias);
    }
    mn_cuda_kmap_free(&dm);
    return failed;
}

/* ---- convolution ------------------------------------------------------------------------- */

/* mn_cuda_conv twice against mn_conv once, on fresh features and weights. */
static int check_conv_case(const char *what, const mn_kmap *m, const mn_cuda_kmap *dm, bool tr,
                           int c_in, int c_out, bool with_bias)
{
    const size_t n_src = tr ? m->n_out : m->n_in, n_tgt = tr ? m->n_in : m->n_out;
    const size_t ci = (size_t)c_in, co = (size_t)c_out, nw = (size_t)m->nk * ci * co;
    float *in = normals(n_src * ci), *W = normals(nw), *bias = normals(co);
    float *want = xmalloc(n_tgt * co * sizeof *want);
    mn_conv_opts o = {.group_threshold = MN_DEFAULT_GROUP_THRESHOLD, .transposed = tr};
    CK_MN(mn_conv(m, in, n_src, c_in, W, with_bias ? bias : NULL, c_out, want, n_tgt, &o));
    float *din = to_dev(in, n_src * ci), *dW = to_dev(W, nw), *dbias = to_dev(bias, co);
    float *got[2];
    for (int run = 0; run < 2; run++) { /* the first run tunes the tiles, the second does not */
        float *dout = poisoned(n_tgt * co);
        CK_MN(mn_cuda_conv(dm, din, c_in, dW, with_bias ? dbias : NULL, c_out, dout, tr, NULL));
        got[run] = from_dev(dout, n_tgt * co);
        ck_dfree(dout);
    }
    double err = ck_rel_err(got[0], want, n_tgt * co);
    bool same = memcmp(got[0], got[1], n_tgt * co * sizeof *want) == 0;
    char cfg[80];
    snprintf(cfg, sizeof cfg, "%s%s %d->%d%s", what, tr ? " tr" : "", c_in, c_out,
             with_bias ? " bias" : "");
    bool ok = err < TOL && same;
    ck_report("conv", cfg, ok, "rel err %.2e against mn_conv, %s", err,
              same ? "same bits twice" : "DIFFERENT bits run to run");
    free(in);
    free(W);
    free(bias);
    free(want);
    free(got[0]);
    free(got[1]);
    ck_dfree(din);
    ck_dfree(dW);
    ck_dfree(dbias);
    return !ok;
}

/* Bad arguments are refused before anything runs. */
static int check_conv_args(const mn_cuda_kmap *dm)
{
    float *d = poisoned(16);
    mn_status a = mn_cuda_conv(NULL, d, 1, d, NULL, 1, d, false, NULL);
    mn_status b = mn_cuda_conv(dm, d, 0, d, NULL, 1, d, false, NULL);
    mn_status c = mn_cuda_conv(dm, NULL, 1, d, NULL, 1, d, false, NULL);
    mn_status e = mn_cuda_conv_backward(dm, d, 1, NULL, 1, d, d, NULL, NULL, false, NULL);
    bool ok = a == MN_EINVAL && b == MN_EINVAL && c == MN_EINVAL && e == MN_EINVAL;
    ck_report("conv", "bad arguments", ok, "%s %s %s %s", mn_status_name(a), mn_status_name(b),
              mn_status_name(c), mn_status_name(e));
    ck_dfree(d);
    return !ok;
}

/* ---- backward ---------------------------------------------------------------------------- */

static int check_backward_case(const char *what, const mn_kmap *m, const mn_cuda_kmap *dm, bool tr,
                               int c_in, int c_out)
{
    const size_t n_src = tr ? m->n_out : m->n_in, n_tgt = tr ? m->n_in : m->n_out;
    const size_t ci = (size_t)c_in, co = (size_t)c_out, nw = (size_t)m->nk * ci * co;
    float *in = normals(n_src * ci), *W = normals(nw), *g = normals(n_tgt * co);
    float *w_din = xmalloc(n_src * ci * sizeof(float)), *w_dW = xmalloc(nw * sizeof(float));
    float *w_db = xmalloc(co * sizeof(float));
    mn_conv_opts o = {.group_threshold = MN_DEFAULT_GROUP_THRESHOLD, .transposed = tr};
    CK_MN(mn_conv_backward(m, in, n_src, c_in, W, c_out, g, n_tgt, w_din, w_dW, w_db, &o));
    float *din = to_dev(in, n_src * ci), *dW = to_dev(W, nw), *dg = to_dev(g, n_tgt * co);
    float *g_din = poisoned(n_src * ci), *g_dW = poisoned(nw), *g_db = poisoned(co);
    CK_MN(mn_cuda_conv_backward(dm, din, c_in, dW, c_out, dg, g_din, g_dW, g_db, tr, NULL));
    float *h_din = from_dev(g_din, n_src * ci), *h_dW = from_dev(g_dW, nw);
    float *h_db = from_dev(g_db, co);
    /* d_W alone, again: the same bits (the other outputs not wanted) */
    float *g_dW2 = poisoned(nw);
    CK_MN(mn_cuda_conv_backward(dm, din, c_in, dW, c_out, dg, NULL, g_dW2, NULL, tr, NULL));
    float *h_dW2 = from_dev(g_dW2, nw);
    bool same = memcmp(h_dW, h_dW2, nw * sizeof(float)) == 0;
    double e_in = ck_rel_err(h_din, w_din, n_src * ci), e_W = ck_rel_err(h_dW, w_dW, nw);
    double e_b = ck_rel_err(h_db, w_db, co);
    char cfg[80];
    snprintf(cfg, sizeof cfg, "%s%s %d->%d d_in", what, tr ? " tr" : "", c_in, c_out);
    ck_report("backward", cfg, e_in < TOL, "rel err %.2e against mn_conv_backward", e_in);
    snprintf(cfg, sizeof cfg, "%s%s %d->%d d_W", what, tr ? " tr" : "", c_in, c_out);
    ck_report("backward", cfg, e_W < TOL && same, "rel err %.2e, %s", e_W,
              same ? "same bits again alone" : "DIFFERENT bits when computed alone");
    snprintf(cfg, sizeof cfg, "%s%s %d->%d d_bias", what, tr ? " tr" : "", c_in, c_out);
    ck_report("backward", cfg, e_b < TOL, "rel err %.2e", e_b);
    int failed = !(e_in < TOL) + !(e_W < TOL && same) + !(e_b < TOL);
    float *hosts[] = {in, W, g, w_din, w_dW, w_db, h_din, h_dW, h_db, h_dW2};
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++)
        free(hosts[i]);
    float *devs[] = {din, dW, dg, g_din, g_dW, g_db, g_dW2};
    for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++)
        ck_dfree(devs[i]);
    return failed;
}

/* ---- ck_conv ----------------------------------------------------------------------------- */

int ck_conv(void)
{
    int failed = check_gather() + check_gemm();

    mn_coords co, down;
    mn_kmap small = build_map(5000, false, &co, &down);
    mn_cuda_kmap d_small = to_device_map(&small);
    failed += check_scatter_map("K=3 n=5000", &small, false);
    failed += check_conv_args(&d_small);
    failed += check_conv_case("K=3 n=5000", &small, &d_small, false, 16, 32, true);
    failed += check_conv_case("K=3 n=5000", &small, &d_small, false, 32, 32, false);
    failed += check_conv_case("K=3 n=5000", &small, &d_small, false, 64, 64, true);
    failed += check_conv_case("K=3 n=5000", &small, &d_small, false, 3, 16, true);
    failed += check_backward_case("K=3 n=5000", &small, &d_small, false, 16, 32);
    mn_cuda_kmap_free(&d_small);
    mn_kmap_free(&small);
    free(co.c);

    mn_kmap big = build_map(100000, false, &co, &down);
    mn_cuda_kmap d_big = to_device_map(&big);
    failed += check_conv_case("K=3 n=100000", &big, &d_big, false, 16, 32, true);
    failed += check_conv_case("K=3 n=100000", &big, &d_big, false, 32, 32, false);
    failed += check_conv_case("K=3 n=100000", &big, &d_big, false, 64, 64, true);
    failed += check_conv_case("K=3 n=100000", &big, &d_big, false, 3, 16, false);
    mn_cuda_kmap_free(&d_big);
    mn_kmap_free(&big);
    free(co.c);

    mn_kmap mid = build_map(20000, false, &co, &down);
    mn_cuda_kmap d_mid = to_device_map(&mid);
    failed += check_backward_case("K=3 n=20000", &mid, &d_mid, false, 32, 32);
    mn_cuda_kmap_free(&d_mid);
    mn_kmap_free(&mid);
    free(co.c);

    mn_kmap str = build_map(20000, true, &co, &down);
    mn_cuda_kmap d_str = to_device_map(&str);
    failed += check_scatter_map("K=2 s=2", &str, false);
    failed += check_scatter_map("K=2 s=2", &str, true);
    failed += check_conv_case("K=2 s=2 n=20000", &str, &d_str, false, 32, 64, true);
    failed += check_conv_case("K=2 s=2 n=20000", &str, &d_str, false, 16, 32, false);
    failed += check_conv_case("K=2 s=2 n=20000", &str, &d_str, true, 64, 32, true);
    failed += check_conv_case("K=2 s=2 n=20000", &str, &d_str, true, 64, 32, false);
    failed += check_backward_case("K=2 s=2 n=20000", &str, &d_str, false, 32, 64);
    failed += check_backward_case("K=2 s=2 n=20000", &str, &d_str, true, 64, 32);
    mn_cuda_kmap_free(&d_str);
    mn_kmap_free(&str);
    free(co.c);
    free(down.c);
    return failed;
}
