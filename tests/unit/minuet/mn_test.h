/* mn_test.h: what the Minuet unit tests share: a seeded random generator, random features,
 * random clouds on a lattice, the lexicographic row order, the tolerance against a double
 * oracle, the comparison of two kernel maps, and the CPU GEMM kernels to try.
 *
 * Each test file is its own program with its own generator state. A file that wants another
 * seed than the default defines MN_TEST_SEED before including this header. */
#ifndef MN_TEST_H
#define MN_TEST_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "minuet.h"

#ifndef MN_TEST_SEED
#define MN_TEST_SEED 0x9e3779b97f4a7c15ULL
#endif

/* Hidden in libminuet.so, reachable from the static library the tests link. */
int mn_gemm_set_isa(const char *name);

/* The CPU GEMM kernels, best first; mn_gemm_set_isa refuses the ones this CPU lacks. */
enum { MN_TEST_NKERNELS = 3 };
static const char *const mn_test_kernels[MN_TEST_NKERNELS] = {"avx512", "avx2", "generic"};

/* xorshift64 from MN_TEST_SEED: the whole state, and its low 32 bits. */
static inline uint64_t rnd64(void)
{
    static uint64_t rng = MN_TEST_SEED;
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static inline uint32_t rnd(void) { return (uint32_t)rnd64(); }

/* n features in [-1, 1], multiples of 1/1000, from rnd(). */
static inline float *randf(size_t n)
{
    float *f = calloc(n ? n : 1, sizeof *f); /* calloc: the analyzer cannot see every element set */
    for (size_t i = 0; i < n; i++)
        f[i] = (float)((int)(rnd() % 2001) - 1000) / 1000.0f;
    return f;
}

/* n values in [-0.5, 0.5) from a linear congruential sequence of its own, started at seed:
 * the same values whatever else the test draws. */
static inline float *randf_seeded(size_t n, uint64_t seed)
{
    float *f = malloc((n ? n : 1) * sizeof *f);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        f[i] = (float)((double)(seed >> 40) / (double)(1 << 24) - 0.5);
    }
    return f;
}

/* n distinct coordinates lo + grid * [0, span)^3 in batches 0..nb-1 (cells drawn with rnd()
 * and kept in a bitmap), sorted by mn_sort. */
static inline mn_coords cloud(size_t n, int span, int64_t lo, int grid, int nb)
{
    size_t side = (size_t)span, cells = (size_t)nb * side * side * side;
    cr_assert_leq(n, cells);
    bool *used = calloc(cells, 1);
    mn_coords c = {malloc(n * 16), 0};
    while (c.n < n) {
        size_t r = rnd() % cells;
        if (used[r])
            continue;
        used[r] = true;
        int32_t *row = c.c + 4 * c.n++;
        row[0] = (int32_t)(r / (side * side * side));
        row[1] = (int32_t)(lo + (int64_t)(r / (side * side) % side) * grid);
        row[2] = (int32_t)(lo + (int64_t)(r / side % side) * grid);
        row[3] = (int32_t)(lo + (int64_t)(r % side) * grid);
    }
    free(used);
    cr_assert_eq(mn_sort(&c, NULL), MN_OK, "%s", mn_last_error());
    return c;
}

/* (batch, x, y, z) rows in lexicographic order, for qsort. */
static inline int cmp4(const void *a, const void *b)
{
    const int32_t *x = a, *y = b;
    for (int f = 0; f < 4; f++)
        if (x[f] != y[f])
            return x[f] < y[f] ? -1 : 1;
    return 0;
}

/* Every got[i] within 1e-4 * (1 + |want[i]|) of the double oracle's want[i]. */
static inline void close_to(const float *got, const double *want, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        cr_assert(fabs(got[i] - want[i]) <= 1e-4 * (1 + fabs(want[i])), "%s: [%zu] %g vs %g", what,
                  i, (double)got[i], want[i]);
}

/* Two kernel maps are the same map: as many offsets and pairs, each offset's count, input
 * rows and output rows equal, and no arrays for an empty offset in either. */
static inline void same_kmaps(const mn_kmap *a, const mn_kmap *b, const char *what)
{
    cr_assert_eq(a->nk, b->nk, "%s: %d offsets, %d", what, a->nk, b->nk);
    cr_assert_eq(a->total, b->total, "%s: %zu pairs, %zu", what, a->total, b->total);
    for (int k = 0; k < a->nk; k++) {
        cr_assert_eq(a->count[k], b->count[k], "%s: offset %d: %zu pairs, %zu", what, k,
                     a->count[k], b->count[k]);
        if (a->count[k] == 0) {
            cr_assert(!a->in[k] && !a->out[k] && !b->in[k] && !b->out[k],
                      "%s: offset %d: arrays for no pairs", what, k);
            continue;
        }
        cr_assert_eq(memcmp(a->in[k], b->in[k], a->count[k] * 4), 0, "%s: offset %d inputs differ",
                     what, k);
        cr_assert_eq(memcmp(a->out[k], b->out[k], a->count[k] * 4), 0,
                     "%s: offset %d outputs differ", what, k);
    }
}

#endif
