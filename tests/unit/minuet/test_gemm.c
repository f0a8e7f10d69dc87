/* test_gemm.c: Minuet's own GEMM (gemm.c) computes every element as the documented chain
 *     acc = 0; for k in order: acc = fmaf(a[k], W[k][j], acc);  c = acc  (or c + acc)
 * bit for bit, on every kernel this CPU has (AVX-512, AVX2 + FMA, portable): for channel
 * counts around the vector widths and the register blocks, row counts around the row blocks,
 * rows picked through indices (the fused gather and scatter) or contiguous, stored or added.
 * The chain itself is checked against float64 to float32 rounding. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mn_test.h"

/* The documented chain, one element at a time. */
static void chain(size_t m, const float *A, const int32_t *ai, const float *W, int ci, int co,
                  float *C, const int32_t *oi, bool add)
{
    for (size_t r = 0; r < m; r++) {
        const float *a = A + (ai ? (size_t)ai[r] : r) * (size_t)ci;
        float *c = C + (oi ? (size_t)oi[r] : r) * (size_t)co;
        for (int j = 0; j < co; j++) {
            float acc = 0.0f;
            for (int k = 0; k < ci; k++)
                acc = fmaf(a[k], W[(size_t)k * (size_t)co + (size_t)j], acc);
            c[j] = add ? c[j] + acc : acc;
        }
    }
}

Test(gemm, the_chain_is_the_product_to_float32_rounding)
{
    int ci = 200, co = 37;
    size_t m = 9;
    float *A = randf_seeded(m * (size_t)ci, 1), *W = randf_seeded((size_t)ci * (size_t)co, 2);
    float *C = malloc(m * (size_t)co * sizeof *C);
    chain(m, A, NULL, W, ci, co, C, NULL, false);
    for (size_t r = 0; r < m; r++)
        for (int j = 0; j < co; j++) {
            double want = 0, mag = 0;
            for (int k = 0; k < ci; k++) {
                want += (double)A[r * (size_t)ci + (size_t)k] *
                        (double)W[(size_t)k * (size_t)co + (size_t)j];
                mag += fabs((double)A[r * (size_t)ci + (size_t)k] *
                            (double)W[(size_t)k * (size_t)co + (size_t)j]);
            }
            cr_assert_leq(fabs(C[r * (size_t)co + (size_t)j] - want), 1e-6 * mag * ci + 1e-30,
                          "row %zu col %d: %g, want %g", r, j,
                          (double)C[r * (size_t)co + (size_t)j], want);
        }
    free(A);
    free(W);
    free(C);
}

/* One shape on every kernel this CPU has, with and without indices, stored and added: the
 * chain computed once, each kernel compared with it. */
static void one_shape(size_t m, int ci, int co)
{
    size_t n_in = m + 7, n_out = m + m / 3 + 2, no = n_out * (size_t)co;
    float *A = randf_seeded(n_in * (size_t)ci, 3 + m),
          *W = randf_seeded((size_t)ci * (size_t)co, 4 + (uint64_t)co);
    float *base = randf_seeded(no, 5);
    float *got = malloc(no * sizeof *got), *want = malloc(no * sizeof *want);
    int32_t *ai = malloc((m ? m : 1) * sizeof *ai), *oi = malloc((m ? m : 1) * sizeof *oi);
    for (size_t r = 0; r < m; r++) {
        ai[r] = (int32_t)((r * 5 + 3) % n_in); /* any rows, repeats allowed */
        oi[r] = (int32_t)(r + r / 3 + 1);      /* ascending, distinct, with gaps */
    }
    for (int v = 0; v < 4; v++) {
        bool idx = v & 1, add = v & 2;
        memcpy(want, base, no * sizeof *want);
        chain(m, A, idx ? ai : NULL, W, ci, co, want, idx ? oi : NULL, add);
        for (int q = 0; q < MN_TEST_NKERNELS; q++) {
            if (mn_gemm_set_isa(mn_test_kernels[q]) != 0)
                continue; /* this CPU lacks it */
            memcpy(got, base, no * sizeof *got);
            mn_gemm(m, A, idx ? ai : NULL, W, ci, co, got, idx ? oi : NULL, add);
            for (size_t i = 0; i < no; i++) {
                uint32_t gb, wb; /* the bits, not the values */
                memcpy(&gb, &got[i], sizeof gb);
                memcpy(&wb, &want[i], sizeof wb);
                if (gb != wb)
                    cr_assert_fail(
                        "%s kernel, m %zu, %d -> %d channels, %s, %s: element [%zu, %zu] "
                        "is %.9g, the chain gives %.9g",
                        mn_test_kernels[q], m, ci, co, idx ? "indexed" : "contiguous",
                        add ? "added" : "stored", i / (size_t)co, i % (size_t)co, (double)got[i],
                        (double)want[i]);
            }
        }
    }
    free(A);
    free(W);
    free(base);
    free(got);
    free(want);
    free(ai);
    free(oi);
}

Test(gemm, every_kernel_gives_the_chain_bits, .timeout = 300)
{
    static const int chans[] = {1,  3,  4,  8,  15, 16, 17, 24, 31,  32,  33,
                                47, 48, 49, 64, 65, 80, 96, 97, 128, 130, 256};
    static const size_t rows[] = {0, 1, 5, 6, 7, 13, 14, 29};
    int ran = 0;
    for (int q = 0; q < MN_TEST_NKERNELS; q++)
        ran += mn_gemm_set_isa(mn_test_kernels[q]) == 0;
    cr_assert_geq(ran, 1, "the portable kernel at least");
    size_t nc = sizeof chans / sizeof chans[0], nr = sizeof rows / sizeof rows[0];
    for (size_t a = 0; a < nc; a++)
        for (size_t b = 0; b < nc; b++) {
            /* A spread, not every pair; wide shapes with few rows (the portable kernel is
             * slow under the sanitizers). */
            if ((a + b) % 3 != 0 && chans[a] < 128 && chans[b] > 4)
                continue;
            size_t m = rows[(a + 2 * b) % nr];
            one_shape(chans[a] * chans[b] > 4096 && m > 7 ? 7 : m, chans[a], chans[b]);
        }
    for (size_t r = 0; r < nr; r++) /* row blocks of every size around the blocks' */
        one_shape(rows[r] + 15, 64, 256);
    cr_assert_eq(mn_gemm_set_isa("generic"), 0, "the portable kernel runs everywhere");
    cr_assert_str_eq(mn_cpu_kernel(), "generic");
    cr_assert_eq(mn_gemm_set_isa("sse9"), -1, "an unknown kernel is refused");
}
