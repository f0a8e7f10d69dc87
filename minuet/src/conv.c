/* conv.c: sparse convolution forward, two dataflows over Minuet's own GEMM (gemm.c):
 * grouped (gather, grouped GEMM, scatter) and fused (output tiles, gather and scatter done
 * by the GEMM through the map).
 *
 * Padding-efficient grouping (Minuet's third idea): offsets are taken in order of their
 * pair counts; a greedy pass puts neighbours in one group while the padding overhead
 * (max * g - sum) / sum stays under the threshold. On the GPU a group is one zero-padded
 * strided-batched GEMM [g, max, c_in] x W. Its CPU form here: every GEMM is cut into blocks
 * of GEMM_ROWS rows (counted from the offset's first pair) and the blocks run on the
 * threads. When the group's largest
 * GEMM has at most `batch_rows` rows the blocks of all its offsets are dealt out together
 * (no padding: it would only add work; the threshold bounds the load imbalance instead),
 * otherwise one offset after another. A group is gathered into the workspace in chunks of
 * at most 64 MiB (so a big group does not need a buffer of all its pairs).
 *
 * Gather/scatter tiles (the CPU form of Minuet's autotuned tiles): the scatter of a chunk is
 * one parallel pass in which each thread owns a range of output rows and walks it in blocks
 * of `tile_rows` rows (and `tile_channels` channels), adding every offset of the chunk into
 * the block before moving on, so the block stays in cache; the maps are sorted by the rows
 * they scatter to, so each offset keeps a cursor and needs no search. tune.c times the
 * candidates per layer shape.
 *
 * The fused dataflow (the CPU form of fetch-on-demand): no workspace. Threads take tiles of
 * `tile_rows` output rows from a shared counter; a tile is set to the bias, then every
 * offset in the order below runs one GEMM over its pairs that land in the tile, reading the
 * input rows through the map and adding into the output rows (the maps are sorted by the
 * rows they add to, so those pairs are a run found by binary search). The tile stays in
 * cache across the offsets; the price is reading every offset's weights once per tile.
 *
 * Determinism: every output element receives its terms in the fixed offset order (pair
 * count, then index; the order does not depend on the threshold: groups are runs of it),
 * each from one thread, each term from mn_gemm, whose result for a row depends on nothing
 * but the row and W (gemm.c). So every dataflow, threshold, batching, tile and thread count
 * gives the same bits, and so does every CPU kernel (AVX-512, AVX2, portable).
 *
 * Sections: grouping, parallel regions, the chunk passes (gather, GEMM, scatter), the fused
 * pass, checks, mn_conv.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "keys.h"

/* ---- grouping ---------------------------------------------------------------------------- */

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

/* ---- parallel regions -------------------------------------------------------------------- */

#define MAX_THREADS MN_RUN_MAX

typedef struct region_arg {
    mn_region_fn fn;
    void *arg;
    int t, nt;
} region_arg;

static void *region_main(void *p)
{
    region_arg *r = p;
    r->fn(r->arg, r->t, r->nt);
    return NULL;
}

void mn_region(int nt, mn_region_fn fn, void *arg)
{
    nt = nt < 1 ? 1 : nt > MAX_THREADS ? MAX_THREADS : nt;
    region_arg ra[MAX_THREADS];
    for (int i = 0; i < nt; i++)
        ra[i] = (region_arg){fn, arg, i, nt};
    mn_parts_run(ra, sizeof ra[0], nt, region_main);
}

/* Threads worth starting for `rows` rows of work (at least 4096 each). */
static int threads_for(size_t rows, int threads)
{
    size_t want = rows / 4096 + 1;
    return want < (size_t)threads ? (int)want : threads;
}

/* ---- the chunk passes -------------------------------------------------------------------- */

/* One chunk: consecutive offsets of a group whose rows are in the workspace together. */
typedef struct chunk_job {
    const mn_kmap *map;
    bool tr;           /* transposed: gather by map->out, scatter by map->in */
    const int *ks;     /* the chunk's offsets, in order */
    int n;             /* how many */
    const size_t *cnt; /* workspace rows per offset (0: the identity offset, or empty) */
    const size_t *at;  /* [n] workspace row of each chunk offset's first pair */
    const float *in, *W;
    float *A, *C, *out; /* gathered rows, GEMM results, the output */
    int c_in, c_out;
    size_t n_out, tile_rows;
    int tile_ch;
    int xa, xb;         /* the scatter pass's offsets: a run of the chunk without the identity */
    int xg0;            /* the GEMM pass's first offset */
    size_t *blk;        /* [n] GEMM blocks of each offset in the pass */
    size_t nblk;        /* the pass's blocks in all */
    atomic_size_t next; /* the GEMM pass's next block */
    size_t *cursor;     /* [nt * n] scatter cursors */
    const int32_t *gperm, *sperm; /* the arrays' rows of the map's gathered / scattered rows */
} chunk_job;

static const int32_t *gather_rows(const chunk_job *J, int k)
{
    return J->tr ? J->map->out[k] : J->map->in[k];
}

static const int32_t *scatter_rows(const chunk_job *J, int k)
{
    return J->tr ? J->map->in[k] : J->map->out[k];
}

static const float *weights(const chunk_job *J, int k)
{
    return J->W + (size_t)k * (size_t)J->c_in * (size_t)J->c_out;
}

/* Each thread copies its share of every offset's rows into A. */
static void gather_part(void *arg, int t, int nt)
{
    chunk_job *J = arg;
    size_t ci = (size_t)J->c_in;
    for (int x = 0; x < J->n; x++) {
        int k = J->ks[x];
        size_t c = J->cnt[k], lo = c * (size_t)t / (size_t)nt,
               hi = c * (size_t)(t + 1) / (size_t)nt;
        const int32_t *rows = gather_rows(J, k);
        float *dst = J->A + J->at[x] * ci;
        const int32_t *pm = J->gperm;
        for (size_t r = lo; r < hi; r++)
            memcpy(dst + r * ci, J->in + (size_t)(pm ? pm[rows[r]] : rows[r]) * ci,
                   ci * sizeof(float));
    }
}

/* Rows per GEMM call of the grouped dataflow: the unit of work dealt to the threads. */
#define GEMM_ROWS 2048

static size_t blocks_of(size_t rows) { return (rows + GEMM_ROWS - 1) / GEMM_ROWS; }

/* Block b of offset x's GEMM: its rows of A times the offset's weights into C, or, for the
 * identity offset, its rows of the input added into the output. */
static void gemm_block(const chunk_job *J, int x, size_t b)
{
    int k = J->ks[x];
    bool ident = J->cnt[k] == 0;
    size_t n = ident ? J->n_out : J->cnt[k], r0 = b * GEMM_ROWS;
    size_t m = n - r0 < GEMM_ROWS ? n - r0 : GEMM_ROWS;
    const float *a =
        ident ? J->in + r0 * (size_t)J->c_in : J->A + (J->at[x] + r0) * (size_t)J->c_in;
    float *c = ident ? J->out + r0 * (size_t)J->c_out : J->C + (J->at[x] + r0) * (size_t)J->c_out;
    mn_gemm(m, a, NULL, weights(J, k), J->c_in, J->c_out, c, NULL, ident);
}

/* Threads take the pass's blocks in turn from a shared counter: block i is found by walking
 * the offsets from xg0, blk[x] blocks each. */
static void gemm_part(void *arg, int t, int nt)
{
    (void)t;
    (void)nt;
    chunk_job *J = arg;
    for (size_t i; (i = atomic_fetch_add(&J->next, 1)) < J->nblk;) {
        int x = J->xg0;
        while (i >= J->blk[x])
            i -= J->blk[x++];
        gemm_block(J, x, i);
    }
}

/* The GEMMs of offsets [x0, x1), all their blocks dealt out over the threads. */
static void run_gemms(chunk_job *J, int x0, int x1, int threads)
{
    size_t nblk = 0;
    for (int x = x0; x < x1; x++) {
        int k = J->ks[x];
        J->blk[x] = blocks_of(J->cnt[k] ? J->cnt[k] : J->map->count[k] ? J->n_out : 0);
        nblk += J->blk[x];
    }
    if (!nblk)
        return;
    J->xg0 = x0;
    J->nblk = nblk;
    atomic_store(&J->next, 0);
    mn_region(nblk < (size_t)threads ? (int)nblk : threads, gemm_part, J);
}

size_t mn_rows_below(const int32_t *rows, size_t n, size_t r)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((size_t)rows[mid] < r)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Output rows up to e and channels [c0, c0 + cw) of one offset: the GEMM results of its
 * pairs from `cur` on, added into out. Returns the cursor past the block. */
static size_t scatter_block(const chunk_job *J, int x, size_t cur, size_t e, int c0, int cw)
{
    int k = J->ks[x];
    size_t co = (size_t)J->c_out;
    const int32_t *rows = scatter_rows(J, k);
    size_t n = J->cnt[k];
    const float *src = J->C + J->at[x] * co + (size_t)c0;
    const int32_t *pm = J->sperm;
    for (; cur < n && (size_t)rows[cur] < e; cur++) {
        float *o = J->out + (size_t)(pm ? pm[rows[cur]] : rows[cur]) * co + (size_t)c0;
        const float *s = src + cur * co;
        for (int j = 0; j < cw; j++)
            o[j] += s[j];
    }
    return cur;
}

/* Each thread owns output rows [r0, r1) and walks them in tiles of rows and channels, adding
 * every offset of the segment [xa, xb) into a tile, in order, before moving on. */
static void scatter_part(void *arg, int t, int nt)
{
    chunk_job *J = arg;
    size_t r0 = J->n_out * (size_t)t / (size_t)nt, r1 = J->n_out * (size_t)(t + 1) / (size_t)nt;
    size_t *cur = J->cursor + (size_t)t * 2 * (size_t)J->n, *next = cur + J->n;
    for (int x = J->xa; x < J->xb; x++)
        cur[x] = mn_rows_below(scatter_rows(J, J->ks[x]), J->cnt[J->ks[x]], r0);
    int cb = J->tile_ch > 0 && J->tile_ch < J->c_out ? J->tile_ch : J->c_out;
    for (size_t b = r0; b < r1;) {
        size_t first = r1; /* skip rows no offset of the segment writes */
        for (int x = J->xa; x < J->xb; x++)
            if (cur[x] < J->cnt[J->ks[x]] && (size_t)scatter_rows(J, J->ks[x])[cur[x]] < first)
                first = (size_t)scatter_rows(J, J->ks[x])[cur[x]];
        b = first > b ? first : b;
        if (b >= r1)
            break;
        size_t e = b + J->tile_rows < r1 ? b + J->tile_rows : r1;
        for (int c0 = 0; c0 < J->c_out; c0 += cb) /* each channel tile from the same cursors */
            for (int x = J->xa; x < J->xb; x++)
                next[x] =
                    scatter_block(J, x, cur[x], e, c0, J->c_out - c0 < cb ? J->c_out - c0 : cb);
        memcpy(cur + J->xa, next + J->xa, (size_t)(J->xb - J->xa) * sizeof *cur);
        b = e;
    }
}

/* ---- the fused pass ---------------------------------------------------------------------- */

typedef struct fused_job {
    const mn_kmap *map;
    bool tr;
    const int *order; /* the offsets in the fixed order (those with pairs) */
    int n;
    const float *in, *W, *bias;
    float *out;
    int c_in, c_out;
    size_t n_out, tile_rows, ntiles;
    atomic_size_t next; /* the next tile */
    const int32_t *gperm, *sperm;
    int32_t *idx; /* per thread: 2 x tile_rows composed rows (with gperm or sperm) */
} fused_job;

/* Output rows [b, e) set to the bias (or 0); with perm, rows perm[b .. e). */
static void init_rows(float *out, const float *bias, int c_out, size_t b, size_t e,
                      const int32_t *perm)
{
    size_t co = (size_t)c_out;
    if (perm) {
        for (size_t r = b; r < e; r++) {
            float *o = out + (size_t)perm[r] * co;
            if (bias)
                memcpy(o, bias, co * sizeof *out);
            else
                memset(o, 0, co * sizeof *out);
        }
        return;
    }
    if (!bias) {
        memset(out + b * co, 0, (e - b) * co * sizeof *out);
        return;
    }
    for (size_t r = b; r < e; r++)
        memcpy(out + r * co, bias, co * sizeof *out);
}

static void fused_part(void *arg, int t, int nt)
{
    (void)nt;
    fused_job *J = arg;
    int32_t *gi = J->idx + (size_t)t * 2 * J->tile_rows, *si = gi + J->tile_rows;
    for (size_t i; (i = atomic_fetch_add(&J->next, 1)) < J->ntiles;) {
        size_t b = i * J->tile_rows, e = b + J->tile_rows < J->n_out ? b + J->tile_rows : J->n_out;
        init_rows(J->out, J->bias, J->c_out, b, e, J->sperm);
        for (int x = 0; x < J->n; x++) {
            int k = J->order[x];
            size_t cnt = J->map->count[k];
            const int32_t *gr = J->tr ? J->map->out[k] : J->map->in[k];
            const int32_t *sr = J->tr ? J->map->in[k] : J->map->out[k];
            size_t lo = mn_rows_below(sr, cnt, b);
            size_t hi = lo + mn_rows_below(sr + lo, cnt - lo, e);
            if (hi == lo)
                continue;
            /* At most one pair per output row in an offset: the run fits the tile. */
            const int32_t *g = gr + lo, *sc = sr + lo;
            if (J->gperm) {
                for (size_t p = lo; p < hi; p++)
                    gi[p - lo] = J->gperm[gr[p]];
                g = gi;
            }
            if (J->sperm) {
                for (size_t p = lo; p < hi; p++)
                    si[p - lo] = J->sperm[sr[p]];
                sc = si;
            }
            mn_gemm(hi - lo, J->in, g, J->W + (size_t)k * (size_t)J->c_in * (size_t)J->c_out,
                    J->c_in, J->c_out, J->out, sc, true);
        }
    }
}

/* The fused dataflow: the offsets with pairs in the fixed order, tiles over the threads. */
static mn_status run_fused(const mn_kmap *map, const int *order, const float *in, int c_in,
                           const float *W, const float *bias, int c_out, float *out, size_t n_out,
                           const mn_conv_opts *o, int threads)
{
    int first = 0;
    while (first < map->nk && map->count[order[first]] == 0)
        first++;
    fused_job J = {.map = map,
                   .tr = o->transposed,
                   .order = order + first,
                   .n = map->nk - first,
                   .in = in,
                   .W = W,
                   .bias = bias,
                   .out = out,
                   .c_in = c_in,
                   .c_out = c_out,
                   .n_out = n_out,
                   .tile_rows = o->tile_rows ? o->tile_rows : MN_DEFAULT_TILE_ROWS,
                   .gperm = o->transposed ? o->out_rows : o->in_rows,
                   .sperm = o->transposed ? o->in_rows : o->out_rows};
    J.tile_rows = J.tile_rows < n_out ? J.tile_rows : (n_out ? n_out : 1); /* bounds idx */
    J.ntiles = (n_out + J.tile_rows - 1) / J.tile_rows;
    int nt = J.ntiles < (size_t)threads ? (int)J.ntiles : threads;
    if (J.gperm || J.sperm) {
        J.idx = malloc((size_t)(nt ? nt : 1) * 2 * J.tile_rows * sizeof *J.idx);
        if (!J.idx)
            return mn_fail(MN_ENOMEM, "out of memory for %zu-row tiles", J.tile_rows);
    }
    atomic_store(&J.next, 0);
    mn_region(nt, fused_part, &J);
    free(J.idx);
    return MN_OK;
}

/* ---- mn_conv ----------------------------------------------------------------------------- */

typedef struct init_job {
    float *out;
    const float *bias;
    int c_out;
    size_t n_out;
} init_job;

/* The output set to the bias (or 0), the rows split over the threads. */
static void init_part(void *arg, int t, int nt)
{
    init_job *J = arg;
    init_rows(J->out, J->bias, J->c_out, J->n_out * (size_t)t / (size_t)nt,
              J->n_out * (size_t)(t + 1) / (size_t)nt, NULL);
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

/* The map and feature checks, split over the threads: each finds the first failure in its
 * share (pairs in offset order, then feature values), and the earliest share's is reported,
 * so the message is the one a sequential pass would give. */
typedef struct check_job {
    const mn_kmap *map;
    bool tr;
    const float *in;
    size_t n_in, n_out, values;
    bool pairs; /* check the pairs (a map not from mn_kmap_build) */
    struct {
        int kind; /* 0 none, 1 a row outside, 2 scatter rows not ascending, 3 a non-finite value */
        int k;
        size_t p, gi, so, i;
    } bad[MAX_THREADS];
} check_job;

static void check_part(void *arg, int t, int nt)
{
    check_job *J = arg;
    const mn_kmap *m = J->map;
    J->bad[t].kind = 0;
    size_t pairs = J->pairs ? m->total : 0; /* a built map's pairs are trusted */
    size_t lo = pairs * (size_t)t / (size_t)nt, hi = pairs * (size_t)(t + 1) / (size_t)nt;
    size_t base = 0; /* global index of offset k's first pair */
    for (int k = 0; k < m->nk && base < hi; base += m->count[k], k++) {
        size_t n = m->count[k];
        if (base + n <= lo)
            continue;
        const int32_t *g = J->tr ? m->out[k] : m->in[k], *sc = J->tr ? m->in[k] : m->out[k];
        size_t p0 = lo > base ? lo - base : 0, p1 = hi - base < n ? hi - base : n;
        for (size_t p = p0; p < p1; p++) {
            size_t gi = (size_t)g[p], so = (size_t)sc[p];
            if (gi >= J->n_in || so >= J->n_out || (p && so <= (size_t)sc[p - 1])) {
                J->bad[t].kind = gi >= J->n_in || so >= J->n_out ? 1 : 2;
                J->bad[t].k = k;
                J->bad[t].p = p;
                J->bad[t].gi = gi;
                J->bad[t].so = so;
                return;
            }
        }
    }
    lo = J->values * (size_t)t / (size_t)nt;
    hi = J->values * (size_t)(t + 1) / (size_t)nt;
    for (size_t i = lo; i < hi; i++)
        if (!isfinite(J->in[i])) {
            J->bad[t].kind = 3;
            J->bad[t].i = i;
            return;
        }
}

/* perm[0 .. n) a permutation of the rows 0 .. n-1. */
static mn_status check_perm(const int32_t *perm, size_t n, const char *what)
{
    uint8_t *seen = calloc(n / 8 + 1, 1);
    if (!seen)
        return mn_fail(MN_ENOMEM, "out of memory");
    mn_status s = MN_OK;
    for (size_t r = 0; r < n && s == MN_OK; r++) {
        size_t v = (size_t)(uint32_t)perm[r];
        if (v >= n || (seen[v / 8] >> (v % 8) & 1))
            s = mn_fail(MN_EINVAL, "%s: entry %zu is %d, %s", what, r, (int)perm[r],
                        v >= n ? "outside the array" : "a row given twice (not a permutation)");
        else
            seen[v / 8] |= (uint8_t)(1u << (v % 8));
    }
    free(seen);
    return s;
}

/* Arguments that do not fit, and maps that could not come from mn_kmap_build: pairs outside
 * the arrays, scatter rows not strictly ascending within an offset (the parallel scatter
 * relies on both); row orders that are not permutations of the arrays' rows; non-finite
 * features. */
mn_status mn_conv_check_args(const mn_kmap *map, const float *in, size_t n_in, int c_in, int c_out,
                             size_t n_out, const mn_conv_opts *o)
{
    if (c_in < 1 || c_out < 1 || !map || map->nk < 1)
        return mn_fail(MN_EINVAL, "channels %d -> %d: both must be at least 1", c_in, c_out);
    if (o->group_threshold < 0 || !isfinite(o->group_threshold))
        return mn_fail(MN_EINVAL, "group threshold %g: accepted a finite value >= 0",
                       o->group_threshold);
    if (o->tile_channels < 0)
        return mn_fail(MN_EINVAL, "tile channels %d: accepted 0 (all) or more", o->tile_channels);
    if (o->dataflow != MN_GROUPED && o->dataflow != MN_FUSED)
        return mn_fail(MN_EINVAL, "dataflow %d: accepted MN_GROUPED or MN_FUSED", (int)o->dataflow);
    const int32_t *gp = o->transposed ? o->out_rows : o->in_rows;
    const int32_t *sp = o->transposed ? o->in_rows : o->out_rows;
    mn_status st;
    if ((gp && (st = check_perm(gp, n_in, "the input rows")) != MN_OK) ||
        (sp && (st = check_perm(sp, n_out, "the output rows")) != MN_OK))
        return st;
    bool built = map->n_in && map->n_out;
    if (built) { /* mn_kmap_build's: only the row counts need to match the arrays */
        size_t a = o->transposed ? map->n_out : map->n_in,
               b = o->transposed ? map->n_in : map->n_out;
        if (a != n_in || b != n_out)
            return mn_fail(
                MN_EINVAL,
                "the kernel map was built for %zu inputs and %zu outputs, given %zu and %zu%s: the shapes do not match",
                a, b, n_in, n_out, o->transposed ? " (transposed)" : "");
    }
    check_job J = {.map = map,
                   .tr = o->transposed,
                   .in = in,
                   .n_in = n_in,
                   .n_out = n_out,
                   .values = n_in * (size_t)c_in,
                   .pairs = !built};
    int threads = mn_threads(o->threads);
    threads = threads < MAX_THREADS ? threads : MAX_THREADS;
    mn_region(threads_for((built ? 0 : map->total) + J.values / 4, threads), check_part, &J);
    for (int t = 0; t < MAX_THREADS; t++) { /* the map's failures first, then the features' */
        if (J.bad[t].kind == 1)
            return mn_fail(
                MN_EINVAL,
                "the kernel map refers to row %zu of %zu inputs / %zu of %zu outputs: the shapes do not match",
                J.bad[t].gi, n_in, J.bad[t].so, n_out);
        if (J.bad[t].kind == 2)
            return mn_fail(
                MN_EINVAL,
                "kernel map offset %d: the rows it adds to are not strictly ascending at pair %zu (maps from mn_kmap_build are)",
                J.bad[t].k, J.bad[t].p);
    }
    for (int t = 0; t < MAX_THREADS; t++)
        if (J.bad[t].kind == 3)
            return mn_fail(MN_ENAN, "feature [%zu, %zu] is %g", J.bad[t].i / (size_t)c_in,
                           J.bad[t].i % (size_t)c_in, (double)in[J.bad[t].i]);
    return MN_OK;
}

bool mn_identity_offset(const mn_kmap *map, int k, size_t n_out)
{
    bool ident = map->count[k] == n_out && n_out > 0;
    for (size_t p = 0; ident && p < map->count[k]; p++)
        ident = (size_t)map->in[k][p] == p && (size_t)map->out[k][p] == p;
    return ident;
}

/* cnt[k]: the rows offset k puts in the workspace: its pairs, or 0 for the identity offset
 * (a submanifold map's centre: pair p is (p, p) for every output row), which needs no gather
 * and no scatter: its GEMM reads `in` and adds into `out` directly, row for row (also when
 * both sides' rows are the same permutation: it still pairs every row with itself). */
static void workspace_rows(const mn_kmap *map, size_t n_out, const mn_conv_opts *o, size_t *cnt)
{
    bool same = o->in_rows == o->out_rows; /* both the map's order, or the same permutation */
    for (int k = 0; k < map->nk; k++)
        cnt[k] = same && mn_identity_offset(map, k, n_out) ? 0 : map->count[k];
}

/* Grow the workspace to `bytes`. */
static mn_status reserve(mn_workspace *ws, size_t bytes)
{
    if (ws->buf && ws->size >= bytes)
        return MN_OK;
    free(ws->buf);
    ws->size = 0;
    ws->buf = malloc(bytes ? bytes : 1);
    if (!ws->buf)
        return mn_fail(MN_ENOMEM, "out of memory for a %zu-byte workspace", bytes);
    ws->size = bytes;
    return MN_OK;
}

/* Gather, GEMMs and scatter of the offsets J->ks[0 .. J->n); adds the stage times. */
static void run_chunk(chunk_job *J, size_t rows, size_t max_rows, size_t batch_rows, int threads,
                      double t[3])
{
    double t0 = mn_seconds();
    mn_region(threads_for(rows, threads), gather_part, J);
    double t1 = mn_seconds();
    if (J->n > 1 && max_rows <= batch_rows) { /* the batched form */
        int x = 0;
        while (x < J->n) { /* the identity offset runs later, at its place in the order */
            int xe = x;
            while (xe < J->n && (J->cnt[J->ks[xe]] || J->map->count[J->ks[xe]] == 0))
                xe++;
            run_gemms(J, x, xe, threads);
            x = xe + 1;
        }
    } else {
        for (int x = 0; x < J->n; x++)
            if (J->cnt[J->ks[x]])
                run_gemms(J, x, x + 1, threads);
    }
    double t2 = mn_seconds(), tid = 0;
    /* Scatter in runs between identity offsets, which run at their place in the order. */
    for (int xa = 0; xa < J->n;) {
        int xb = xa;
        size_t seg = 0;
        while (xb < J->n && (J->cnt[J->ks[xb]] || J->map->count[J->ks[xb]] == 0))
            seg += J->cnt[J->ks[xb++]];
        if (xb > xa) {
            J->xa = xa;
            J->xb = xb;
            mn_region(threads_for(seg, threads), scatter_part, J);
        }
        if (xb < J->n) {
            double ti = mn_seconds();
            run_gemms(J, xb, xb + 1, threads);
            tid += mn_seconds() - ti;
            xb++;
        }
        xa = xb;
    }
    double t3 = mn_seconds();
    t[0] += t1 - t0;
    t[1] += t2 - t1 + tid;
    t[2] += t3 - t2 - tid;
}

mn_status mn_conv(const mn_kmap *map, const float *in, size_t n_in, int c_in, const float *W,
                  const float *bias, int c_out, float *out, size_t n_out, const mn_conv_opts *o)
{
    mn_conv_opts def = {.group_threshold = MN_DEFAULT_GROUP_THRESHOLD};
    if (!o)
        o = &def;
    mn_status s = mn_config(); /* MINUET_ISA picks the kernel */
    if (s == MN_OK)
        s = mn_conv_check_args(map, in, n_in, c_in, c_out, n_out, o);
    return mn_done(s != MN_OK ? s : mn_conv_tuned(map, in, c_in, W, bias, c_out, out, n_out, o));
}

mn_status mn_conv_tuned(const mn_kmap *map, const float *in, int c_in, const float *W,
                        const float *bias, int c_out, float *out, size_t n_out,
                        const mn_conv_opts *o)
{
    mn_status s;
    mn_conv_opts tuned;
    if (o->autotune && mn_tune_enabled()) {
        tuned = *o;
        double t0 = mn_seconds();
        s = mn_tune_lookup(map, in, c_in, W, c_out, n_out, o, &tuned);
        if (o->times)
            o->times->tune += mn_seconds() - t0;
        if (s != MN_OK)
            return s;
        o = &tuned;
    }
    return mn_conv_checked(map, in, c_in, W, bias, c_out, out, n_out, o);
}

mn_status mn_conv_checked(const mn_kmap *map, const float *in, int c_in, const float *W,
                          const float *bias, int c_out, float *out, size_t n_out,
                          const mn_conv_opts *o)
{
    mn_status s = MN_OK;
    int threads = mn_threads(o->threads);
    threads = threads < MAX_THREADS ? threads : MAX_THREADS;
    int *order = calloc((size_t)map->nk, sizeof *order); /* calloc: the analyzer sees it set */
    group *g = malloc((size_t)map->nk * sizeof *g);
    size_t *cnt = malloc((size_t)map->nk * sizeof *cnt), *at = malloc((size_t)map->nk * sizeof *at);
    size_t *cursor = malloc((size_t)threads * 2 * (size_t)map->nk * sizeof *cursor);
    size_t *blk = malloc((size_t)map->nk * sizeof *blk);
    mn_workspace local = {0}, *ws = o->ws ? o->ws : &local;
    if (!order || !g || !cnt || !at || !cursor || !blk) {
        s = mn_fail(MN_ENOMEM, "out of memory");
        goto done;
    }
    int ng = make_groups(map, o->group_threshold, order, g);
    if (o->dataflow == MN_FUSED) {
        double t0 = mn_seconds();
        s = run_fused(map, order, in, c_in, W, bias, c_out, out, n_out, o, threads);
        if (o->times)
            o->times->gemm += mn_seconds() - t0; /* gather and scatter are inside it */
        goto done;
    }
    init_job ij = {.out = out, .bias = bias, .c_out = c_out, .n_out = n_out};
    mn_region(threads_for(n_out * (size_t)c_out / 16, threads), init_part, &ij);
    workspace_rows(map, n_out, o, cnt);
    /* A group runs in chunks of consecutive offsets whose gathered rows and results fit the
     * workspace cap (at least one offset a chunk), each offset's rows packed after the last. */
    size_t width = (size_t)c_in + (size_t)c_out, biggest = 1;
    for (int gi = 0; gi < ng; gi++)
        for (int x0 = 0, x1; x0 < g[gi].n; x0 = x1) {
            size_t rows = chunk(cnt, order + g[gi].first, x0, g[gi].n, width, &x1);
            biggest = rows > biggest ? rows : biggest;
        }
    /* A: the gathered rows, C: the GEMM results; every row is written before it is read. */
    size_t na = biggest * (size_t)c_in;
    s = reserve(ws, (na + biggest * (size_t)c_out) * sizeof(float));
    if (s != MN_OK)
        goto done;
    chunk_job J = {.map = map,
                   .tr = o->transposed,
                   .cnt = cnt,
                   .at = at,
                   .in = in,
                   .W = W,
                   .A = ws->buf,
                   .C = (float *)ws->buf + na,
                   .out = out,
                   .c_in = c_in,
                   .c_out = c_out,
                   .n_out = n_out,
                   .tile_rows = o->tile_rows ? o->tile_rows : MN_DEFAULT_TILE_ROWS,
                   .tile_ch = o->tile_channels,
                   .cursor = cursor,
                   .blk = blk,
                   .gperm = o->transposed ? o->out_rows : o->in_rows,
                   .sperm = o->transposed ? o->in_rows : o->out_rows};
    double t[3] = {0, 0, 0};
    for (int gi = 0; gi < ng; gi++)
        for (int x0 = 0, x1; x0 < g[gi].n; x0 = x1) {
            J.ks = order + g[gi].first + x0;
            size_t rows = chunk(cnt, order + g[gi].first, x0, g[gi].n, width, &x1);
            J.n = x1 - x0;
            size_t acc = 0;
            for (int x = 0; x < J.n; x++) {
                at[x] = acc;
                acc += cnt[J.ks[x]];
            }
            run_chunk(&J, rows, g[gi].max, o->batch_rows, threads, t);
        }
    if (o->times) {
        o->times->gather += t[0];
        o->times->gemm += t[1];
        o->times->scatter += t[2];
    }
done:
    free(local.buf);
    free(cursor);
    free(blk);
    free(at);
    free(cnt);
    free(order);
    free(g);
    return s;
}

void mn_workspace_free(mn_workspace *ws)
{
    if (!ws)
        return;
    free(ws->buf);
    ws->buf = NULL;
    ws->size = 0;
}
