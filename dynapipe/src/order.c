/* order.c: the ordering of a batch's samples before the DP cuts it into contiguous
 * micro-batches, so that neighbours have similar lengths and each micro-batch pads little.
 *
 * Decoder-only: by total length (input + target), ties by index.
 * Encoder-decoder: an open path through the (input, target) points, with the adjacency cost
 * sum |d input| + |d target| (Manhattan). The original clusters the points and runs the LKH
 * TSP solver; here three starting paths are built (sorted by (input, target), by (target,
 * input), and a boustrophedon over input strips of width ~ sqrt of the input range), each is
 * improved by 2-opt moves (reversing a segment of at most DP_ORDER_WINDOW samples when that
 * shortens the path) until no move helps, and the shortest path is kept. The 2-opt moves
 * never lengthen a path, so the result is never worse than the plain sort by (input, target);
 * the benchmark reports both costs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define DP_ORDER_WINDOW 48
#define DP_ORDER_PASSES 8

/* qsort has no context argument in C11; the planner's threads each order their own batch,
 * so the comparison's context is thread-local. */
static _Thread_local const dp_sample *sort_base;
static _Thread_local int sort_key; /* 0: total; 1: (input, target); 2: (target, input) */

static int cmp_samples(const void *a, const void *b)
{
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    const dp_sample *x = &sort_base[i], *y = &sort_base[j];
    long kx[2], ky[2];
    if (sort_key == 0) {
        kx[0] = (long)x->input_len + x->target_len;
        ky[0] = (long)y->input_len + y->target_len;
        kx[1] = ky[1] = 0;
    } else {
        kx[0] = sort_key == 1 ? x->input_len : x->target_len;
        kx[1] = sort_key == 1 ? x->target_len : x->input_len;
        ky[0] = sort_key == 1 ? y->input_len : y->target_len;
        ky[1] = sort_key == 1 ? y->target_len : y->input_len;
    }
    for (int k = 0; k < 2; k++)
        if (kx[k] != ky[k])
            return kx[k] < ky[k] ? -1 : 1;
    return (i > j) - (i < j);
}

static void sort_by(const dp_sample *s, size_t n, int key, size_t *order)
{
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    sort_base = s;
    sort_key = key;
    qsort(order, n, sizeof *order, cmp_samples);
}

static double dist(const dp_sample *a, const dp_sample *b)
{
    return fabs((double)a->input_len - b->input_len) + fabs((double)a->target_len - b->target_len);
}

double dp_adjacency_cost(const dp_sample *s, const size_t *order, size_t n)
{
    double c = 0;
    for (size_t k = 1; k < n; k++)
        c += dist(&s[order[k - 1]], &s[order[k]]);
    return c;
}

/* 2-opt on an open path: reverse order[i..j] when that shortens it. */
static void two_opt(const dp_sample *s, size_t n, size_t *o)
{
    for (int pass = 0; pass < DP_ORDER_PASSES; pass++) {
        bool improved = false;
        for (size_t i = 0; i + 1 < n; i++)
            for (size_t j = i + 1; j < n && j <= i + DP_ORDER_WINDOW; j++) {
                double before = 0, after = 0;
                if (i > 0) {
                    before += dist(&s[o[i - 1]], &s[o[i]]);
                    after += dist(&s[o[i - 1]], &s[o[j]]);
                }
                if (j + 1 < n) {
                    before += dist(&s[o[j]], &s[o[j + 1]]);
                    after += dist(&s[o[i]], &s[o[j + 1]]);
                }
                if (after < before - 1e-9) {
                    for (size_t a = i, b = j; a < b; a++, b--) {
                        size_t t = o[a];
                        o[a] = o[b];
                        o[b] = t;
                    }
                    improved = true;
                }
            }
        if (!improved)
            break;
    }
}

/* Strips of inputs, the target ascending in even strips and descending in odd ones. */
static void boustrophedon(const dp_sample *s, size_t n, size_t *o)
{
    sort_by(s, n, 1, o);
    int lo = s[o[0]].input_len, hi = s[o[n - 1]].input_len;
    int width = (int)ceil(sqrt((double)(hi - lo + 1))) * 4;
    size_t a = 0;
    for (int strip = 0; a < n; strip++) {
        size_t b = a;
        while (b < n && (s[o[b]].input_len - lo) / width == (s[o[a]].input_len - lo) / width)
            b++;
        sort_base = s;
        sort_key = 2;
        qsort(o + a, b - a, sizeof *o, cmp_samples);
        if (strip % 2)
            for (size_t x = a, y = b - 1; x < y; x++, y--) {
                size_t t = o[x];
                o[x] = o[y];
                o[y] = t;
            }
        a = b;
    }
}

dp_status dp_order(const dp_sample *s, size_t n, bool encdec, size_t *order)
{
    if (n == 0)
        return dp_done(DP_OK);
    if (!encdec) {
        sort_by(s, n, 0, order);
        return dp_done(DP_OK);
    }
    size_t *cand = malloc(3 * n * sizeof *cand);
    if (!cand)
        return dp_fail(DP_ENOMEM, "out of memory ordering %zu samples", n);
    sort_by(s, n, 1, cand);
    sort_by(s, n, 2, cand + n);
    boustrophedon(s, n, cand + 2 * n);
    int best = 0;
    double best_cost = INFINITY;
    for (int k = 0; k < 3; k++) {
        two_opt(s, n, cand + (size_t)k * n);
        double c = dp_adjacency_cost(s, cand + (size_t)k * n, n);
        if (c < best_cost) {
            best_cost = c;
            best = k;
        }
    }
    memcpy(order, cand + (size_t)best * n, n * sizeof *order);
    free(cand);
    return dp_done(DP_OK);
}
