/* test_conv_outputs.c: mn_conv_outputs (the output sites of a strided or padded convolution
 * in spconv's grid convention) against a brute force over every input and kernel offset, for
 * kernels 1-5, strides 1-3, paddings 0-2, dilations 1-3 (dilation a multiple of the stride
 * included: then every k or none divides), two batches, sites at the shape's edges; bad
 * arguments refused. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "mn_test.h"

/* Every (b, o) with o*s - p + k*d an input site for some k, 0 <= o < shape: sorted, unique. */
static size_t brute(const mn_coords *in, int K, int s, int p, int d, const int shape[3],
                    int32_t **out)
{
    size_t cap = in->n * (size_t)K * K * K + 1, n = 0;
    int32_t *c = malloc(cap * 4 * sizeof *c);
    for (size_t i = 0; i < in->n; i++)
        for (int a = 0; a < K; a++)
            for (int b = 0; b < K; b++)
                for (int e = 0; e < K; e++) {
                    int k[3] = {a, b, e}, o[3], ok = 1;
                    for (int x = 0; x < 3; x++) {
                        int v = in->c[4 * i + 1 + x] + p - k[x] * d;
                        ok &= v >= 0 && v % s == 0 && v / s < shape[x];
                        o[x] = v >= 0 ? v / s : 0;
                    }
                    if (ok) {
                        int32_t *r = c + 4 * n++;
                        r[0] = in->c[4 * i];
                        memcpy(r + 1, o, sizeof o);
                    }
                }
    qsort(c, n, 4 * sizeof *c, cmp4);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!m || cmp4(c + 4 * (m - 1), c + 4 * i) != 0)
            memmove(c + 4 * m++, c + 4 * i, 4 * sizeof *c);
    *out = c;
    return m;
}

Test(conv_outputs, against_brute_force)
{
    int span = 9;
    mn_coords in = {malloc((size_t)600 * 4 * sizeof(int32_t)), 0};
    for (int i = 0; i < 600; i++) {
        int32_t r[4] = {(int32_t)(rnd() % 2), (int32_t)(rnd() % (uint32_t)span),
                        (int32_t)(rnd() % (uint32_t)span), (int32_t)(rnd() % (uint32_t)span)};
        if (i < 4) /* the corners of the shape */
            r[1] = r[2] = r[3] = i % 2 ? span - 1 : 0;
        bool dup = false;
        for (size_t j = 0; j < in.n && !dup; j++)
            dup = memcmp(in.c + 4 * j, r, sizeof r) == 0;
        if (!dup)
            memcpy(in.c + 4 * in.n++, r, sizeof r);
    }
    int tried = 0;
    for (int K = 1; K <= 5; K++)
        for (int s = 1; s <= 3; s++)
            for (int p = 0; p <= 2; p++)
                for (int d = 1; d <= 3; d++) {
                    int shape[3];
                    for (int x = 0; x < 3; x++) /* PyTorch's output size */
                        shape[x] = (span + 2 * p - d * (K - 1) - 1) / s + 1;
                    if (shape[0] < 1)
                        continue;
                    int32_t *want;
                    size_t nw = brute(&in, K, s, p, d, shape, &want);
                    mn_coords got;
                    cr_assert_eq(mn_conv_outputs(&in, K, s, p, d, shape, 2, &got), MN_OK,
                                 "K %d s %d p %d d %d: %s", K, s, p, d, mn_last_error());
                    cr_assert_eq(got.n, nw, "K %d s %d p %d d %d: %zu sites, brute force %zu", K, s,
                                 p, d, got.n, nw);
                    cr_assert_eq(memcmp(got.c, want, nw * 4 * sizeof *want), 0,
                                 "K %d s %d p %d d %d: other sites", K, s, p, d);
                    free(got.c);
                    free(want);
                    tried++;
                }
    cr_assert_gt(tried, 100);
    free(in.c);
}

Test(conv_outputs, bad_arguments)
{
    int32_t rows[8] = {0, 1, 1, 1, 0, 2, 2, 2};
    mn_coords in = {rows, 2}, out;
    int shape[3] = {4, 4, 4}, zero[3] = {4, 0, 4};
    cr_assert_eq(mn_conv_outputs(&in, 0, 1, 0, 1, shape, 1, &out), MN_EINVAL);
    cr_assert_eq(mn_conv_outputs(&in, 3, 0, 0, 1, shape, 1, &out), MN_EINVAL);
    cr_assert_eq(mn_conv_outputs(&in, 3, 1, -1, 1, shape, 1, &out), MN_EINVAL);
    cr_assert_eq(mn_conv_outputs(&in, 3, 1, 0, 0, shape, 1, &out), MN_EINVAL);
    cr_assert_eq(mn_conv_outputs(&in, 16, 1, 0, 1, shape, 1, &out), MN_EINVAL);
    cr_assert_eq(mn_conv_outputs(&in, 3, 1, 0, 1, zero, 1, &out), MN_EINVAL);
    cr_assert(strstr(mn_last_error(), "output shape"), "%s", mn_last_error());
    mn_coords empty = {rows, 0};
    cr_assert_eq(mn_conv_outputs(&empty, 3, 2, 1, 1, shape, 1, &out), MN_OK);
    cr_assert_eq(out.n, 0u);
    free(out.c);
}
