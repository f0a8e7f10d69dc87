/* gemm.c: Minuet's own GEMM for the convolution: rows of A (contiguous, or picked by an
 * index: the gather fused in) times an offset's weights W [c_in, c_out], stored into or
 * added to rows of C (contiguous, or picked by an index: the scatter fused in).
 *
 * Why not OpenBLAS: for the narrow matrices of sparse convolution (c_in and c_out 4 to 256)
 * OpenBLAS spends as long packing A as multiplying (sgemm_oncopy), and its kernels give a
 * row other bits when the call's row count changes (conv.c's GEMM_ROWS blocks worked around
 * that). Here every output element is computed the same way whatever the rows, blocks,
 * threads or instruction set:
 *
 *     acc = 0;  for k in 0 .. c_in-1:  acc = fma(a[k], W[k][j], acc);   then  c = acc
 *                                                                      or    c = c + acc
 *
 * one rounding per step (a fused multiply-add), in that order. The AVX-512 and AVX2 kernels
 * do exactly this per lane and the portable one with fmaf, so all three give the same bits:
 * a convolution's result does not depend on the machine's vector width.
 *
 * Kernels: a block of MR rows x NV vectors of columns held in registers over the whole k
 * loop (W's rows read from cache, A's values broadcast), the last vector masked when c_out
 * is not a multiple of the width. Rows of a block past m reuse the last row for reading and
 * are not written. The kernel is the best the CPU has, or the one MINUET_ISA names (read by
 * mn_config in tune.c), for the tests and for comparison.
 *
 * mn_gemm_at is the weight gradient's product, D = X^T G over the rows of pairs, each
 * element the chain over the rows in order, the same way (on AVX-512 the panel is packed
 * straight from X's rows, which are its layout already).
 *
 * Sections: the kernels per instruction set, dispatch, mn_gemm, mn_gemm_at.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MN_X86 1
#endif

/* ---- the kernels ------------------------------------------------------------------------- */

/* The portable kernel: one row, columns [j0, j0 + w), w <= 64. */
static void row_generic(const float *a, const float *W, int c_in, int c_out, int j0, int w,
                        float *c, bool add)
{
    float acc[64];
    for (int j = 0; j < w; j++)
        acc[j] = 0.0f;
    for (int k = 0; k < c_in; k++) {
        const float *wk = W + (size_t)k * (size_t)c_out + j0;
        float x = a[k];
        for (int j = 0; j < w; j++)
            acc[j] = fmaf(x, wk[j], acc[j]);
    }
    for (int j = 0; j < w; j++)
        c[j0 + j] = add ? c[j0 + j] + acc[j] : acc[j];
}

#ifdef MN_X86

/* AVX-512: MR rows x NV vectors of 16 columns from column j0; `last` masks the last vector. */
#define K512(MR, NV)                                                                               \
    __attribute__((target("avx512f"))) static void k512_##MR##_##NV(                               \
        const float *const *a, const float *W, int c_in, int c_out, int j0, float *const *c,       \
        int mr, const __mmask16 *mk, bool add)                                                     \
    {                                                                                              \
        __m512 acc[(MR)][(NV)];                                                                    \
        _Pragma("GCC unroll 16") for (int r = 0; r < (MR); r++)                                    \
            _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++) acc[r][v] =                     \
                _mm512_setzero_ps();                                                               \
        const float *w = W + j0;                                                                   \
        for (int k = 0; k < c_in; k++, w += c_out) {                                               \
            __m512 b[(NV)];                                                                        \
            _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++) b[v] =                          \
                _mm512_maskz_loadu_ps(mk[v], w + (size_t)16 * (size_t)v);                          \
            _Pragma("GCC unroll 16") for (int r = 0; r < (MR); r++)                                \
            {                                                                                      \
                __m512 x = _mm512_set1_ps(a[r][k]);                                                \
                _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++) acc[r][v] =                 \
                    _mm512_fmadd_ps(x, b[v], acc[r][v]);                                           \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 16") for (int r = 0; r < (MR); r++)                                    \
        {                                                                                          \
            if (r >= mr)                                                                           \
                break;                                                                             \
            float *p = c[r] + j0;                                                                  \
            _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++)                                 \
            {                                                                                      \
                __m512 y = acc[r][v];                                                              \
                if (add)                                                                           \
                    y = _mm512_add_ps(_mm512_maskz_loadu_ps(mk[v], p + (size_t)16 * (size_t)v),    \
                                      y);                                                          \
                _mm512_mask_storeu_ps(p + (size_t)16 * (size_t)v, mk[v], y);                       \
            }                                                                                      \
        }                                                                                          \
    }
K512(6, 4)
K512(8, 3)
K512(12, 2)
K512(14, 1)

/* The same on a packed panel: ap[k * MR + r] is row r's value k (one pointer for the rows,
 * none held in registers per row); MASKED 0 for strips of whole vectors (no masks). */
#define K512P(MR, NV, MASKED)                                                                      \
    __attribute__((target("avx512f"))) static void k512p_##MR##_##NV##_##MASKED(                   \
        const float *ap, const float *W, int c_in, int c_out, int j0, float *const *c, int mr,     \
        const __mmask16 *mk, bool add)                                                             \
    {                                                                                              \
        __m512 acc[(MR)][(NV)];                                                                    \
        __mmask16 m[(NV)];                                                                         \
        _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++) m[v] = mk[v];                       \
        _Pragma("GCC unroll 16") for (int r = 0; r < (MR); r++)                                    \
            _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++) acc[r][v] =                     \
                _mm512_setzero_ps();                                                               \
        const float *w = W + j0;                                                                   \
        for (int k = 0; k < c_in; k++, w += c_out, ap += (MR)) {                                   \
            __m512 b[(NV)];                                                                        \
            _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++) b[v] =                          \
                (MASKED) ? _mm512_maskz_loadu_ps(m[v], w + (size_t)16 * (size_t)v)                 \
                         : _mm512_loadu_ps(w + (size_t)16 * (size_t)v);                            \
            _Pragma("GCC unroll 16") for (int r = 0; r < (MR); r++)                                \
            {                                                                                      \
                __m512 x = _mm512_set1_ps(ap[r]);                                                  \
                _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++) acc[r][v] =                 \
                    _mm512_fmadd_ps(x, b[v], acc[r][v]);                                           \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 16") for (int r = 0; r < (MR); r++)                                    \
        {                                                                                          \
            if (r >= mr)                                                                           \
                break;                                                                             \
            float *p = c[r] + j0;                                                                  \
            _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++)                                 \
            {                                                                                      \
                __m512 y = acc[r][v];                                                              \
                if (add)                                                                           \
                    y = _mm512_add_ps(_mm512_maskz_loadu_ps(m[v], p + (size_t)16 * (size_t)v), y); \
                _mm512_mask_storeu_ps(p + (size_t)16 * (size_t)v, m[v], y);                        \
            }                                                                                      \
        }                                                                                          \
    }
K512P(6, 4, 0)
K512P(6, 4, 1)
K512P(8, 3, 0)
K512P(8, 3, 1)
K512P(12, 2, 0)
K512P(12, 2, 1)
K512P(14, 1, 0)
K512P(14, 1, 1)

/* AVX2 + FMA: MR rows x NV vectors of 8 columns; `last` masks the last vector. */
#define K256(MR, NV)                                                                               \
    __attribute__((target("avx2,fma"))) static void k256_##MR##_##NV(                              \
        const float *const *a, const float *W, int c_in, int c_out, int j0, float *const *c,       \
        int mr, const __m256i *mk, bool add)                                                       \
    {                                                                                              \
        __m256 acc[(MR)][(NV)];                                                                    \
        _Pragma("GCC unroll 16") for (int r = 0; r < (MR); r++)                                    \
            _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++) acc[r][v] =                     \
                _mm256_setzero_ps();                                                               \
        const float *w = W + j0;                                                                   \
        for (int k = 0; k < c_in; k++, w += c_out) {                                               \
            __m256 b[(NV)];                                                                        \
            _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++) b[v] =                          \
                _mm256_maskload_ps(w + (size_t)8 * (size_t)v, mk[v]);                              \
            _Pragma("GCC unroll 16") for (int r = 0; r < (MR); r++)                                \
            {                                                                                      \
                __m256 x = _mm256_broadcast_ss(a[r] + (size_t)k);                                  \
                _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++) acc[r][v] =                 \
                    _mm256_fmadd_ps(x, b[v], acc[r][v]);                                           \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 16") for (int r = 0; r < (MR); r++)                                    \
        {                                                                                          \
            if (r >= mr)                                                                           \
                break;                                                                             \
            float *p = c[r] + j0;                                                                  \
            _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++)                                 \
            {                                                                                      \
                __m256 y = acc[r][v];                                                              \
                if (add)                                                                           \
                    y = _mm256_add_ps(_mm256_maskload_ps(p + (size_t)8 * (size_t)v, mk[v]), y);    \
                _mm256_maskstore_ps(p + (size_t)8 * (size_t)v, mk[v], y);                          \
            }                                                                                      \
        }                                                                                          \
    }
K256(6, 2)
K256(12, 1)

#endif /* MN_X86 */

/* ---- dispatch ---------------------------------------------------------------------------- */

static const char *const isa_names[] = {"generic", "avx2", "avx512"};
static struct {
    pthread_once_t once;
    int isa; /* index into isa_names */
} pick = {.once = PTHREAD_ONCE_INIT};

static int isa_best(void)
{
#ifdef MN_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return 1;
#endif
    return 0;
}

static void pick_best(void) { pick.isa = isa_best(); }

const char *mn_cpu_kernel(void)
{
    pthread_once(&pick.once, pick_best);
    return isa_names[pick.isa];
}

int mn_gemm_set_isa(const char *name)
{
    pthread_once(&pick.once, pick_best);
    for (int i = 0; i < 3; i++)
        if (i <= isa_best() && strcmp(name, isa_names[i]) == 0) {
            pick.isa = i;
            return 0;
        }
    return -1;
}

/* ---- mn_gemm ----------------------------------------------------------------------------- */

#define MR_MAX 14
#define PACK_K 512 /* input channels up to which a row block is packed into a panel */

static const float *row_of(const float *base, const int32_t *idx, size_t r, size_t ld)
{
    return base + (idx ? (size_t)idx[r] : r) * ld;
}

#ifdef MN_X86
/* The lane masks of the 4 vectors of a strip from column j0: columns past c_out off. */
__attribute__((target("avx512f"))) static void masks512(int c_out, int j0, __mmask16 mk[4])
{
    for (int v = 0; v < 4; v++) {
        int w = c_out - j0 - v * 16;
        mk[v] = (__mmask16)(w >= 16 ? 0xffffu : w > 0 ? (1u << w) - 1 : 0u);
    }
}

/* One strip of NV vectors from column j0 over a packed panel: the kernel of that shape,
 * unmasked when the strip is whole. */
__attribute__((target("avx512f"))) static void strip512p(const float *ap, const float *W, int c_in,
                                                         int c_out, int j0, float *const *c, int n,
                                                         int nv, bool add)
{
    __mmask16 mk[4];
    masks512(c_out, j0, mk);
    bool full = c_out - j0 >= nv * 16;
    switch (nv * 2 + full) {
    case 9:
        k512p_6_4_0(ap, W, c_in, c_out, j0, c, n, mk, add);
        break;
    case 8:
        k512p_6_4_1(ap, W, c_in, c_out, j0, c, n, mk, add);
        break;
    case 7:
        k512p_8_3_0(ap, W, c_in, c_out, j0, c, n, mk, add);
        break;
    case 6:
        k512p_8_3_1(ap, W, c_in, c_out, j0, c, n, mk, add);
        break;
    case 5:
        k512p_12_2_0(ap, W, c_in, c_out, j0, c, n, mk, add);
        break;
    case 4:
        k512p_12_2_1(ap, W, c_in, c_out, j0, c, n, mk, add);
        break;
    case 3:
        k512p_14_1_0(ap, W, c_in, c_out, j0, c, n, mk, add);
        break;
    default:
        k512p_14_1_1(ap, W, c_in, c_out, j0, c, n, mk, add);
        break;
    }
}

/* The row blocks of one call: NV vectors a strip (fewer for narrow c_out), the strips of a
 * block of rows taken in turn, the vectors past c_out masked. */
__attribute__((target("avx512f"))) static void run512(size_t m, const float *A, const int32_t *ai,
                                                      const float *W, int c_in, int c_out, float *C,
                                                      const int32_t *ci, bool add)
{
    const float *a[MR_MAX];
    float *c[MR_MAX];
    /* Strips of 64 columns while a strip of W (c_in x 64) fits the L1 cache, else of 32; the
     * rows in chunks whose A fits the L2 cache, each chunk's strips in turn, each strip
     * over the chunk's blocks of rows (W's strip stays in L1, the chunk's A in L2). */
    int vecs = (c_out + 15) / 16, cap = c_in <= 96 ? 4 : 2, nv = vecs < cap ? vecs : cap;
    int mr = nv == 4 ? 6 : nv == 3 ? 8 : nv == 2 ? 12 : 14;
    size_t chunk = ((size_t)256 << 10) / ((size_t)(c_in > 0 ? c_in : 1) * sizeof(float));
    chunk = chunk < (size_t)mr ? (size_t)mr : chunk / (size_t)mr * (size_t)mr;
    if (c_in <= PACK_K && c_out > nv * 16) {
        /* Row blocks outer: the block's rows packed once (the gather, when indexed), then
         * every strip of W over them. */
        float ap[MR_MAX * PACK_K] __attribute__((aligned(64)));
        for (size_t r0 = 0; r0 < m; r0 += (size_t)mr) {
            int n = m - r0 < (size_t)mr ? (int)(m - r0) : mr;
            for (int r = 0; r < mr; r++) {
                size_t rr = r0 + (size_t)(r < n ? r : n - 1);
                const float *src = row_of(A, ai, rr, (size_t)c_in);
                for (int k = 0; k < c_in; k++)
                    ap[k * mr + r] = src[k];
                c[r] = (float *)row_of(C, ci, rr, (size_t)c_out);
            }
            for (int j0 = 0; j0 < c_out; j0 += nv * 16) {
                strip512p(ap, W, c_in, c_out, j0, c, n, nv, add);
            }
        }
        return;
    }
    for (size_t q0 = 0; q0 < m; q0 += chunk) {
        size_t q1 = m - q0 < chunk ? m : q0 + chunk;
        for (int j0 = 0; j0 < c_out; j0 += nv * 16) {
            __mmask16 mk[4];
            masks512(c_out, j0, mk);
            for (size_t r0 = q0; r0 < q1; r0 += (size_t)mr) {
                int n = q1 - r0 < (size_t)mr ? (int)(q1 - r0) : mr;
                for (int r = 0; r < mr; r++) {
                    size_t rr = r0 + (size_t)(r < n ? r : n - 1);
                    a[r] = row_of(A, ai, rr, (size_t)c_in);
                    c[r] = (float *)row_of(C, ci, rr, (size_t)c_out);
                }
                switch (nv) {
                case 4:
                    k512_6_4(a, W, c_in, c_out, j0, c, n, mk, add);
                    break;
                case 3:
                    k512_8_3(a, W, c_in, c_out, j0, c, n, mk, add);
                    break;
                case 2:
                    k512_12_2(a, W, c_in, c_out, j0, c, n, mk, add);
                    break;
                default:
                    k512_14_1(a, W, c_in, c_out, j0, c, n, mk, add);
                    break;
                }
            }
        }
    }
}

__attribute__((target("avx2,fma"))) static void run256(size_t m, const float *A, const int32_t *ai,
                                                       const float *W, int c_in, int c_out,
                                                       float *C, const int32_t *ci, bool add)
{
    const float *a[MR_MAX];
    float *c[MR_MAX];
    int nv = c_out > 8 ? 2 : 1, mr = nv == 2 ? 6 : 12;
    for (size_t r0 = 0; r0 < m; r0 += (size_t)mr) {
        int n = m - r0 < (size_t)mr ? (int)(m - r0) : mr;
        for (int r = 0; r < mr; r++) {
            size_t rr = r0 + (size_t)(r < n ? r : n - 1);
            a[r] = row_of(A, ai, rr, (size_t)c_in);
            c[r] = (float *)row_of(C, ci, rr, (size_t)c_out);
        }
        for (int j0 = 0; j0 < c_out; j0 += nv * 8) {
            __m256i mk[2];
            for (int v = 0; v < 2; v++)
                mk[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32(c_out - j0 - v * 8),
                                           _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            if (nv == 2)
                k256_6_2(a, W, c_in, c_out, j0, c, n, mk, add);
            else
                k256_12_1(a, W, c_in, c_out, j0, c, n, mk, add);
        }
    }
}
#endif

void mn_gemm(size_t m, const float *A, const int32_t *ai, const float *W, int c_in, int c_out,
             float *C, const int32_t *ci, bool add)
{
    pthread_once(&pick.once, pick_best);
#ifdef MN_X86
    if (pick.isa == 2) {
        run512(m, A, ai, W, c_in, c_out, C, ci, add);
        return;
    }
    if (pick.isa == 1) {
        run256(m, A, ai, W, c_in, c_out, C, ci, add);
        return;
    }
#endif
    for (size_t r = 0; r < m; r++)
        for (int j0 = 0; j0 < c_out; j0 += 64)
            row_generic(row_of(A, ai, r, (size_t)c_in), W, c_in, c_out, j0,
                        c_out - j0 < 64 ? c_out - j0 : 64, (float *)row_of(C, ci, r, (size_t)c_out),
                        add);
}

/* ---- mn_gemm_at: the weight gradient's product ----------------------------------------------- */

#ifdef MN_X86
__attribute__((target("avx512f"))) static void at512(size_t na, const float *X, const int32_t *xi,
                                                     size_t ldx, size_t m, const float *G,
                                                     int c_out, float *D, bool add, float *ap)
{
    float *c[MR_MAX];
    int vecs = (c_out + 15) / 16, cap = m <= 96 ? 4 : 2, nv = vecs < cap ? vecs : cap;
    int mr = nv == 4 ? 6 : nv == 3 ? 8 : nv == 2 ? 12 : 14;
    for (size_t r0 = 0; r0 < na; r0 += (size_t)mr) {
        int n = na - r0 < (size_t)mr ? (int)(na - r0) : mr;
        /* The panel straight from the rows: ap[p * mr + r] = X_p[r0 + r] (the last row
         * repeated past n). */
        for (size_t p = 0; p < m; p++) {
            const float *x = X + (xi ? (size_t)xi[p] : p) * ldx + r0;
            float *d = ap + p * (size_t)mr;
            if (n == mr) {
                memcpy(d, x, (size_t)mr * sizeof *d);
                continue;
            }
            for (int r = 0; r < mr; r++)
                d[r] = x[r < n ? r : n - 1];
        }
        for (int r = 0; r < mr; r++)
            c[r] = D + (r0 + (size_t)(r < n ? r : n - 1)) * (size_t)c_out;
        for (int j0 = 0; j0 < c_out; j0 += nv * 16) {
            strip512p(ap, G, (int)m, c_out, j0, c, n, nv, add);
        }
    }
}
#endif

void mn_gemm_at(size_t na, const float *X, const int32_t *xi, size_t ldx, size_t m, const float *G,
                int c_out, float *D, bool add, float *scratch)
{
    pthread_once(&pick.once, pick_best);
#ifdef MN_X86
    if (pick.isa == 2) {
        at512(na, X, xi, ldx, m, G, c_out, D, add, scratch);
        return;
    }
#endif
    /* The others: X's columns transposed into rows (at[a][p] = X_p[a]), then mn_gemm. */
    for (size_t p = 0; p < m; p++) {
        const float *x = X + (xi ? (size_t)xi[p] : p) * ldx;
        for (size_t a = 0; a < na; a++)
            scratch[a * m + p] = x[a];
    }
    mn_gemm(na, scratch, NULL, G, (int)m, c_out, D, NULL, add);
}
