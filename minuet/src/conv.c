/* conv.c: sparse convolution forward: gather, grouped GEMM (OpenBLAS), scatter.
 *
 * Padding-efficient grouping (Minuet's third idea): offsets are taken in order of their
 * pair counts; a greedy pass puts neighbours in one group while the padding overhead
 * (max * g - sum) / sum stays under the threshold. On the GPU a group is one zero-padded
 * strided-batched GEMM [g, max, c_in] x W. OpenBLAS has no batched call, so here each
 * offset's GEMM runs on its own count rows (padding would only add work), the offsets of a
 * group are gathered back to back into the workspace in chunks of at most 64 MiB (so a big
 * group does not need a buffer of all its pairs), and the grouping decides the order.
 *
 * Determinism: groups run in a fixed order and each output row is updated by one thread per
 * offset (an output row appears at most once per offset), so every output element sums its
 * terms in the same order whatever the thread count; OpenBLAS splits M and N, never the
 * K dimension, so its results do not depend on its thread count either.
 */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "internal.h"
#include "keys.h"

typedef struct group {
    int first, n; /* positions in the sorted offset order */
    size_t max;   /* the padded row count */
} group;

/* Offsets sorted by pair count (stable by index), then grouped greedily. Returns groups. */
static int make_groups(const mn_kmap *m, double thr, int *order, group *g)
{
    for (int k = 0; k < m->nk; k++)
        order[k] = k;
    for (int a = 1; a < m->nk; a++) /* insertion sort: nk <= 3375, counts mostly distinct */
        for (int b = a; b > 0 && m->count[order[b]] < m->count[order[b - 1]]; b--) {
            int t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
    int ng = 0, k = 0;
    while (k < m->nk && m->count[order[k]] == 0)
        k++; /* empty offsets do nothing */
    while (k < m->nk) {
        group cur = {k, 1, m->count[order[k]]};
        double sum = (double)cur.max;
        while (k + cur.n < m->nk) {
            size_t next = m->count[order[k + cur.n]]; /* ascending: the new max */
            double pad = ((double)next * (cur.n + 1) - (sum + (double)next)) / (sum + (double)next);
            if (pad > thr)
                break;
            sum += (double)next;
            cur.max = next;
            cur.n++;
        }
        g[ng++] = cur;
        k += cur.n;
    }
    return ng;
}

typedef struct part {
    const int32_t *rows; /* rows to gather from or scatter to */
    size_t lo, hi;       /* the pair range of this thread */
    const float *src;
    float *dst;
    int c;
    bool scatter;
} part;

static void *copy_rows(void *arg)
{
    part *p = arg;
    for (size_t r = p->lo; r < p->hi; r++) {
        if (!p->scatter) {
            memcpy(p->dst + r * (size_t)p->c, p->src + (size_t)p->rows[r] * p->c,
                   (size_t)p->c * sizeof(float));
        } else {
            float *o = p->dst + (size_t)p->rows[r] * p->c;
            const float *s = p->src + r * (size_t)p->c;
            for (int j = 0; j < p->c; j++)
                o[j] += s[j];
        }
    }
    return NULL;
}

/* Gather (scatter=false: dst[r] = src[rows[r]]) or scatter-add (dst[rows[r]] += src[r]) over
 * n rows, split across threads by row ranges. */
static void move_rows(const int32_t *rows, size_t n, const float *src, float *dst, int c,
                      bool scatter, int threads)
{
    if (threads <= 1 || n < 4096) {
        part p = {rows, 0, n, src, dst, c, scatter};
        copy_rows(&p);
        return;
    }
    pthread_t t[64];
    part p[64] = {{0}};
    int nt = threads < 64 ? threads : 64;
    for (int i = 0; i < nt; i++) {
        p[i] = (part){
            rows,   n * (size_t)i / (size_t)nt, n * (size_t)(i + 1) / (size_t)nt, src, dst, c,
            scatter};
        if (i > 0)
            pthread_create(&t[i], NULL, copy_rows, &p[i]);
    }
    copy_rows(&p[0]);
    for (int i = 1; i < nt; i++)
        pthread_join(t[i], NULL);
}

/* The chunk of offsets ks[x0 ..) whose rows fit WORKSPACE_CAP floats of `width` each (at
 * least one offset): sets *x1 past its end and returns its row count. */
#define WORKSPACE_CAP ((size_t)64 << 20 >> 2) /* 64 MiB of floats */
static size_t chunk(const size_t *cnt, const int *ks, int x0, int n, size_t width, int *x1)
{
    size_t rows = cnt[ks[x0]];
    int x = x0 + 1;
    while (x < n && (rows + cnt[ks[x]]) * width <= WORKSPACE_CAP)
        rows += cnt[ks[x++]];
    *x1 = x;
    return rows;
}

mn_status mn_conv(const mn_kmap *map, const float *in, size_t n_in, int c_in, const float *W,
                  const float *bias, int c_out, float *out, size_t n_out, const mn_conv_opts *o)
{
    mn_conv_opts def = {.group_threshold = 0.25};
    if (!o)
        o = &def;
    if (c_in < 1 || c_out < 1 || !map || map->nk < 1)
        return mn_fail(MN_EINVAL, "channels %d -> %d: both must be at least 1", c_in, c_out);
    if (o->group_threshold < 0 || !isfinite(o->group_threshold))
        return mn_fail(MN_EINVAL, "group threshold %g: accepted a finite value >= 0",
                       o->group_threshold);
    /* The pairs must point inside the arrays given (a map of other coordinates, say). */
    for (int k = 0; k < map->nk; k++)
        for (size_t p = 0; p < map->count[k]; p++) {
            size_t gi = (size_t)(o->transposed ? map->out[k][p] : map->in[k][p]);
            size_t so = (size_t)(o->transposed ? map->in[k][p] : map->out[k][p]);
            if (gi >= n_in || so >= n_out)
                return mn_fail(MN_EINVAL,
                               "the kernel map refers to row %zu of %zu inputs / %zu of "
                               "%zu outputs: the shapes do not match",
                               gi, n_in, so, n_out);
        }
    for (size_t i = 0; i < n_in * (size_t)c_in; i++)
        if (!isfinite(in[i]))
            return mn_fail(MN_ENAN, "feature [%zu, %zu] is %g", i / (size_t)c_in, i % (size_t)c_in,
                           (double)in[i]);
    for (size_t r = 0; r < n_out; r++)
        for (int j = 0; j < c_out; j++)
            out[r * (size_t)c_out + j] = bias ? bias[j] : 0.0f;
    int threads = mn_threads(o->threads);
    openblas_set_num_threads(threads);
    int *order = calloc((size_t)map->nk, sizeof *order);
    group *g = malloc((size_t)map->nk * sizeof *g);
    if (!order || !g) {
        free(order);
        free(g);
        return mn_fail(MN_ENOMEM, "out of memory");
    }
    int ng = make_groups(map, o->group_threshold, order, g);
    /* The identity offset (a submanifold map's centre: pair p is (p, p) for every row) needs
     * no gather and no scatter: its GEMM reads `in` and adds into `out` directly (beta 1),
     * at its place in the offset order. cnt[k] is the rows an offset puts in the workspace. */
    size_t *cnt = malloc((size_t)map->nk * sizeof *cnt);
    if (!cnt) {
        free(order);
        free(g);
        return mn_fail(MN_ENOMEM, "out of memory");
    }
    for (int k = 0; k < map->nk; k++) {
        bool ident = map->count[k] == n_in && n_in == n_out;
        for (size_t p = 0; ident && p < map->count[k]; p++)
            ident = (size_t)map->in[k][p] == p && (size_t)map->out[k][p] == p;
        cnt[k] = ident ? 0 : map->count[k];
    }
    /* A group runs in chunks of consecutive offsets whose gathered rows and results fit the
     * workspace cap (at least one offset a chunk), each offset's rows packed after the last. */
    size_t width = (size_t)c_in + (size_t)c_out, biggest = 1;
    for (int gi = 0; gi < ng; gi++)
        for (int x0 = 0, x1; x0 < g[gi].n; x0 = x1) {
            size_t rows = chunk(cnt, order + g[gi].first, x0, g[gi].n, width, &x1);
            biggest = rows > biggest ? rows : biggest;
        }
    /* A: the gathered rows, C: the GEMM results; every row is written before it is read. */
    size_t na = biggest * (size_t)c_in, nc = biggest * (size_t)c_out;
    mn_workspace local = {0}, *ws = o->ws ? o->ws : &local;
    if (!ws->buf || ws->size < (na + nc) * sizeof(float)) {
        free(ws->buf);
        ws->size = 0;
        ws->buf = malloc((na + nc) * sizeof(float));
        if (!ws->buf) {
            free(cnt);
            free(order);
            free(g);
            return mn_fail(MN_ENOMEM, "out of memory for %zu gathered rows", biggest);
        }
        ws->size = (na + nc) * sizeof(float);
    }
    float *A = ws->buf, *C = A + na;
    double tg = 0, tm = 0, ts = 0;
    for (int gi = 0; gi < ng; gi++)
        for (int x0 = 0, x1; x0 < g[gi].n; x0 = x1) {
            const int *ks = order + g[gi].first;
            chunk(cnt, ks, x0, g[gi].n, width, &x1);
            double t0 = mn_seconds();
            size_t at = 0;
            for (int x = x0; x < x1; at += cnt[ks[x]], x++) /* gather */
                move_rows(o->transposed ? map->out[ks[x]] : map->in[ks[x]], cnt[ks[x]], in,
                          A + at * (size_t)c_in, c_in, false, threads);
            double t1 = mn_seconds();
            at = 0;
            for (int x = x0; x < x1; at += cnt[ks[x]], x++)
                if (cnt[ks[x]])
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cnt[ks[x]], c_out,
                                c_in, 1.0f, A + at * (size_t)c_in, c_in,
                                W + (size_t)ks[x] * (size_t)c_in * (size_t)c_out, c_out, 0.0f,
                                C + at * (size_t)c_out, c_out);
            double t2 = mn_seconds(), tid = 0;
            at = 0; /* scatter in the fixed offset order: the same sums for every output */
            for (int x = x0; x < x1; at += cnt[ks[x]], x++) {
                if (cnt[ks[x]] || map->count[ks[x]] == 0) {
                    move_rows(o->transposed ? map->in[ks[x]] : map->out[ks[x]], cnt[ks[x]],
                              C + at * (size_t)c_out, out, c_out, true, threads);
                    continue;
                }
                double ti = mn_seconds(); /* the identity offset, straight into out */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n_out, c_out, c_in,
                            1.0f, in, c_in, W + (size_t)ks[x] * (size_t)c_in * (size_t)c_out, c_out,
                            1.0f, out, c_out);
                tid += mn_seconds() - ti;
            }
            double t3 = mn_seconds();
            tg += t1 - t0;
            tm += t2 - t1 + tid;
            ts += t3 - t2 - tid;
        }
    if (o->times) {
        o->times->gather += tg;
        o->times->gemm += tm;
        o->times->scatter += ts;
    }
    free(local.buf);
    free(cnt);
    free(order);
    free(g);
    return MN_OK;
}

void mn_workspace_free(mn_workspace *ws)
{
    if (!ws)
        return;
    free(ws->buf);
    ws->buf = NULL;
    ws->size = 0;
}
