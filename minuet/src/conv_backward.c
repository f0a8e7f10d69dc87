/* conv_backward.c: the backward pass of mn_conv, with the same map.
 *
 * The input gradient is a convolution through the transposed map: d_in[i] += d_out[o] W[k]^T
 * for every pair (i, o) of offset k, so it is mn_conv itself with the map used the other way
 * and each offset's weights transposed: the same grouping, tiles, autotuner (its own layer
 * shape: channels swapped, transposed flag flipped) and determinism.
 *
 * The weight gradient of offset k is A_k^T G_k, A_k the input rows of its pairs and G_k the
 * output-gradient rows, both gathered. Its reduction runs over the pairs, so for the bits not
 * to depend on the threads it is cut into fixed blocks of DW_ROWS pairs, summed in order into
 * d_W[k] by one thread (OpenBLAS single-threaded, beta 1 after the first block); the threads
 * take whole offsets. The identity offset (a submanifold map's centre) gathers nothing: its
 * rows are the arrays themselves.
 *
 * The bias gradient is the column sums of d_out, in double, rows in order. */
#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "keys.h"

/* Pairs per weight-gradient GEMM: a constant, so the summation order is too. */
#define DW_ROWS 2048

typedef struct dw_job {
    const mn_kmap *map;
    bool tr;
    const float *in, *d_out;
    float *d_W;
    int c_in, c_out;
    size_t n_in, n_out;
    float *scratch; /* per thread: DW_ROWS x (c_in + c_out) floats */
    const int32_t *iperm, *gperm; /* the row orders of `in` and of d_out (NULL: the map's) */
    atomic_int next;
} dw_job;

static void dw_offset(const dw_job *J, int k, float *A, float *G)
{
    size_t ci = (size_t)J->c_in, co = (size_t)J->c_out, n = J->map->count[k];
    float *dw = J->d_W + (size_t)k * ci * co;
    if (n == 0) {
        memset(dw, 0, ci * co * sizeof *dw);
        return;
    }
    /* Rows of `in` and of d_out: forward gathers by in[] and scatters by out[] (through the
     * arrays' row orders, when given). */
    const int32_t *ir = J->tr ? J->map->out[k] : J->map->in[k];
    const int32_t *gr = J->tr ? J->map->in[k] : J->map->out[k];
    bool ident = J->n_in == J->n_out && !J->iperm && !J->gperm && /* rows in the map's order */
                 mn_identity_offset(J->map, k, J->n_out);
    for (size_t r0 = 0; r0 < n; r0 += DW_ROWS) {
        size_t m = n - r0 < DW_ROWS ? n - r0 : DW_ROWS;
        const float *a = J->in + r0 * ci, *g = J->d_out + r0 * co;
        if (!ident) {
            for (size_t r = 0; r < m; r++) {
                size_t a_row = (size_t)ir[r0 + r], g_row = (size_t)gr[r0 + r];
                a_row = J->iperm ? (size_t)J->iperm[a_row] : a_row;
                g_row = J->gperm ? (size_t)J->gperm[g_row] : g_row;
                memcpy(A + r * ci, J->in + a_row * ci, ci * sizeof *A);
                memcpy(G + r * co, J->d_out + g_row * co, co * sizeof *G);
            }
            a = A;
            g = G;
        }
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, J->c_in, J->c_out, (int)m, 1.0f, a,
                    J->c_in, g, J->c_out, r0 ? 1.0f : 0.0f, dw, J->c_out);
    }
}

static void dw_part(void *arg, int t, int nt)
{
    (void)nt;
    dw_job *J = arg;
    float *A = J->scratch + (size_t)t * DW_ROWS * (size_t)(J->c_in + J->c_out);
    float *G = A + (size_t)DW_ROWS * (size_t)J->c_in;
    for (int k; (k = atomic_fetch_add(&J->next, 1)) < J->map->nk;)
        dw_offset(J, k, A, G);
}

mn_status mn_conv_backward(const mn_kmap *map, const float *in, size_t n_in, int c_in,
                           const float *W, int c_out, const float *d_out, size_t n_out, float *d_in,
                           float *d_W, float *d_bias, const mn_conv_opts *o)
{
    mn_conv_opts def = {.group_threshold = MN_DEFAULT_GROUP_THRESHOLD};
    if (!o)
        o = &def;
    if (!d_out || (d_in && !W) || (d_W && !in))
        return mn_fail(MN_EINVAL, "mn_conv_backward: d_out, and W for d_in, in for d_W");
    /* The map used the other way: d_out's rows are gathered, the inputs' rows receive. */
    mn_conv_opts back = *o;
    back.transposed = !o->transposed;
    mn_status s = mn_conv_check_args(map, d_out, n_out, c_out, c_in, n_in, &back); /* once */
    if (s != MN_OK)
        return s;
    if (d_W)
        for (size_t i = 0; i < n_in * (size_t)c_in; i++)
            if (!isfinite(in[i]))
                return mn_fail(MN_ENAN, "feature [%zu, %zu] is %g", i / (size_t)c_in,
                               i % (size_t)c_in, (double)in[i]);
    size_t ci = (size_t)c_in, co = (size_t)c_out;
    if (d_in) {
        float *Wt = malloc((size_t)map->nk * ci * co * sizeof *Wt);
        if (!Wt)
            return mn_fail(MN_ENOMEM, "out of memory for the transposed weights");
        for (int k = 0; k < map->nk; k++)
            for (size_t a = 0; a < ci; a++)
                for (size_t b = 0; b < co; b++)
                    Wt[((size_t)k * co + b) * ci + a] = W[((size_t)k * ci + a) * co + b];
        s = mn_conv_tuned(map, d_out, c_out, Wt, NULL, c_in, d_in, n_in, &back);
        free(Wt);
        if (s != MN_OK)
            return s;
    }
    if (d_W) {
        int threads = mn_threads(o->threads);
        threads = threads < map->nk ? threads : map->nk;
        threads = threads < MN_RUN_MAX ? threads : MN_RUN_MAX;
        dw_job J = {.map = map,
                    .tr = o->transposed,
                    .in = in,
                    .d_out = d_out,
                    .d_W = d_W,
                    .c_in = c_in,
                    .c_out = c_out,
                    .n_in = n_in,
                    .n_out = n_out,
                    .iperm = o->transposed ? o->out_rows : o->in_rows,
                    .gperm = o->transposed ? o->in_rows : o->out_rows,
                    .scratch = malloc((size_t)threads * DW_ROWS * (ci + co) * sizeof(float))};
        if (!J.scratch)
            return mn_fail(MN_ENOMEM, "out of memory for the weight-gradient scratch");
        double t0 = mn_seconds();
        int blas_threads = openblas_get_num_threads();
        openblas_set_num_threads(1);
        atomic_store(&J.next, 0);
        mn_region(threads, dw_part, &J);
        openblas_set_num_threads(blas_threads);
        free(J.scratch);
        if (o->times)
            o->times->gemm += mn_seconds() - t0;
    }
    if (d_bias) {
        for (size_t j = 0; j < co; j++) {
            double acc = 0;
            for (size_t r = 0; r < n_out; r++)
                acc += (double)d_out[r * co + j];
            d_bias[j] = (float)acc;
        }
    }
    return MN_OK;
}
