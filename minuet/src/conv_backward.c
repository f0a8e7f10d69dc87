/* conv_backward.c: the backward pass of mn_conv, with the same map.
 *
 * The input gradient is a convolution through the transposed map: d_in[i] += d_out[o] W[k]^T
 * for every pair (i, o) of offset k, so it is mn_conv itself with the map used the other way
 * and each offset's weights transposed: the same grouping, tiles, autotuner (its own layer
 * shape: channels swapped, transposed flag flipped) and determinism.
 *
 * The weight gradient of offset k is A_k^T G_k, A_k the input rows of its pairs and G_k the
 * output-gradient rows. Its reduction runs over the pairs, so for the bits not to depend on
 * the threads each element is a chain over fixed blocks of DW_ROWS pairs, the blocks added in
 * order: per block, the output-gradient rows are gathered and mn_gemm_at (Minuet's GEMM:
 * the same bits on every CPU kernel) multiplies the unit's columns of the input rows, read
 * through the map, by them. The threads take units of one offset x DW_A rows of d_W, the
 * biggest offsets first.
 *
 * The bias gradient is the column sums of d_out, in double, rows in order. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "keys.h"

/* Pairs per block of the weight gradient's chains: a constant, so the summation order is
 * too (at most 512: mn_gemm packs that many "input channels"). */
#define DW_ROWS 256
/* Rows of d_W (input channels) per unit of work. */
#define DW_A       1024
#define DW_SCRATCH ((size_t)DW_A * DW_ROWS) /* mn_gemm_at's: max(DW_A, 14) x DW_ROWS floats */

typedef struct dw_job {
    const mn_kmap *map;
    bool tr;
    const float *in, *d_out;
    float *d_W;
    int c_in, c_out;
    size_t n_in, n_out;
    const int32_t *iperm, *gperm; /* the row orders of `in` and of d_out (NULL: the map's) */
    int parts;                    /* DW_A-row parts of d_W */
    const int *units;             /* offset * parts + part, the biggest offsets first */
    int nunits;
    float *scratch; /* per thread: DW_SCRATCH (mn_gemm_at's) + DW_ROWS x c_out (d_out rows) */
    int32_t *rows;  /* per thread: DW_ROWS input rows */
    atomic_int next;
} dw_job;

/* Rows [a0, a1) of d_W[k]: per block of DW_ROWS pairs, the block's input rows (columns
 * a0..a1) transposed into XT and its output-gradient rows into Gb, then d_W rows = XT x Gb
 * by mn_gemm, the blocks added in order. Each element is the chain over the pairs in order,
 * block by block: the same bits on every kernel and thread count. */
static void dw_unit(const dw_job *J, int k, int a0, int a1, float *XT, float *Gb, int32_t *xi)
{
    size_t ci = (size_t)J->c_in, co = (size_t)J->c_out, n = J->map->count[k];
    size_t na = (size_t)(a1 - a0);
    float *dw = J->d_W + ((size_t)k * ci + (size_t)a0) * co;
    if (n == 0) {
        memset(dw, 0, na * co * sizeof *dw);
        return;
    }
    /* Rows of `in` and of d_out: forward gathers by in[] and scatters by out[] (through the
     * arrays' row orders, when given). */
    const int32_t *ir = J->tr ? J->map->out[k] : J->map->in[k];
    const int32_t *gr = J->tr ? J->map->in[k] : J->map->out[k];
    for (size_t r0 = 0; r0 < n; r0 += DW_ROWS) {
        size_t m = n - r0 < DW_ROWS ? n - r0 : DW_ROWS;
        for (size_t p = 0; p < m; p++) {
            size_t xr = (size_t)ir[r0 + p], gq = (size_t)gr[r0 + p];
            xi[p] = (int32_t)(J->iperm ? (size_t)J->iperm[xr] : xr);
            gq = J->gperm ? (size_t)J->gperm[gq] : gq;
            memcpy(Gb + p * co, J->d_out + gq * co, co * sizeof *Gb);
        }
        mn_gemm_at(na, J->in + a0, xi, ci, m, Gb, J->c_out, dw, r0 > 0, XT);
    }
}

static void dw_part(void *arg, int t, int nt)
{
    (void)nt;
    dw_job *J = arg;
    float *XT = J->scratch + (size_t)t * (DW_SCRATCH + (size_t)DW_ROWS * (size_t)J->c_out);
    float *Gb = XT + DW_SCRATCH;
    int32_t *xi = J->rows + (size_t)t * DW_ROWS;
    for (int u; (u = atomic_fetch_add(&J->next, 1)) < J->nunits;) {
        int k = J->units[u] / J->parts, part = J->units[u] % J->parts;
        int a0 = part * DW_A, a1 = a0 + DW_A < J->c_in ? a0 + DW_A : J->c_in;
        dw_unit(J, k, a0, a1, XT, Gb, xi);
    }
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
    mn_status cs = mn_config(); /* MINUET_ISA picks the kernel, as in mn_conv */
    if (cs != MN_OK)
        return mn_done(cs);
    /* The map used the other way: d_out's rows are gathered, the inputs' rows receive. */
    mn_conv_opts back = *o;
    back.transposed = !o->transposed;
    mn_status s = mn_conv_check_args(map, d_out, n_out, c_out, c_in, n_in, &back); /* once */
    if (s != MN_OK)
        return mn_done(s);
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
            return mn_done(s);
    }
    if (d_W) {
        int threads = mn_threads(o->threads);
        threads = threads < MN_RUN_MAX ? threads : MN_RUN_MAX;
        int parts = (c_in + DW_A - 1) / DW_A, nunits = map->nk * parts;
        int *units = calloc((size_t)nunits, sizeof *units); /* calloc: the analyzer sees it set */
        float *scratch =
            malloc((size_t)threads * (DW_SCRATCH + (size_t)DW_ROWS * co) * sizeof *scratch);
        int32_t *rows = malloc((size_t)threads * DW_ROWS * sizeof *rows);
        if (!units || !scratch || !rows) {
            free(units);
            free(scratch);
            free(rows);
            return mn_fail(MN_ENOMEM, "out of memory for the weight gradient");
        }
        /* The biggest offsets first, so that the last units to run are short. */
        int nu = 0;
        for (int k = 0; k < map->nk; k++)
            for (int pt = 0; pt < parts; pt++)
                units[nu++] = k * parts + pt;
        for (int a = 1; a < nunits; a++)
            for (int b = a;
                 b > 0 && map->count[units[b] / parts] > map->count[units[b - 1] / parts]; b--) {
                int t = units[b];
                units[b] = units[b - 1];
                units[b - 1] = t;
            }
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
                    .parts = parts,
                    .units = units,
                    .nunits = nunits,
                    .scratch = scratch,
                    .rows = rows};
        double t0 = mn_seconds();
        atomic_store(&J.next, 0);
        mn_region(threads < nunits ? threads : nunits, dw_part, &J);
        free(units);
        free(scratch);
        free(rows);
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
    return mn_done(MN_OK);
}
