/* coords.c: packed coordinate keys, the radix sort, strided output coordinates.
 *
 * A packed key puts (batch, x, y, z) into one unsigned 64-bit integer, each field biased by
 * its minimum (minus a margin) and given just enough bits for its range plus twice the
 * margin. With a margin of at least the largest kernel offset, key(q + delta) equals
 * key(q) + key_delta(delta) for every query, with no carry from one field into the next:
 * sorted outputs shifted by one offset stay sorted, which is what the sort-based kernel map
 * relies on. When the ranges need more than 64 bits, keys are 128-bit (still exact).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "keys.h"

/* ---- parallel loops ---------------------------------------------------------------------- */

typedef struct par_part {
    void (*fn)(void *ctx, size_t lo, size_t hi, int part);
    void *ctx;
    size_t lo, hi;
    int id;
} par_part;

static void *par_main(void *arg)
{
    par_part *p = arg;
    p->fn(p->ctx, p->lo, p->hi, p->id);
    return NULL;
}

int mn_par_parts(size_t n, int threads)
{
    int nt = n < MN_PAR_BELOW ? 1 : mn_threads(threads);
    return nt < 1 ? 1 : nt > MN_PAR_THREADS ? MN_PAR_THREADS : nt;
}

void mn_par_for(size_t n, int threads, void (*fn)(void *ctx, size_t lo, size_t hi, int part),
                void *ctx)
{
    int nt = mn_par_parts(n, threads);
    par_part P[MN_PAR_THREADS];
    for (int i = 0; i < nt; i++)
        P[i] = (par_part){fn, ctx, n * (size_t)i / (size_t)nt, n * (size_t)(i + 1) / (size_t)nt, i};
    mn_parts_run(P, sizeof P[0], nt, par_main);
}

/* ---- layout ------------------------------------------------------------------------------ */

static int bits_for(uint64_t span)
{
    int b = 0;
    while (b < 64 && (span >> b) != 0)
        b++;
    return b;
}

typedef struct range_job {
    const int32_t *c;
    int64_t lo[MN_PAR_THREADS][4], hi[MN_PAR_THREADS][4];
} range_job;

/* The smallest and largest value of each field over rows [lo, hi). */
typedef int32_t v4i32 __attribute__((vector_size(16)));

static void range_part(void *ctx, size_t lo, size_t hi, int part)
{
    range_job *R = ctx;
    /* a row is one 4-lane vector: lane-wise min and max by compare and select (SSE2) */
    v4i32 mn[2] = {{INT32_MAX, INT32_MAX, INT32_MAX, INT32_MAX},
                   {INT32_MAX, INT32_MAX, INT32_MAX, INT32_MAX}};
    v4i32 mx[2] = {{INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN},
                   {INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN}};
    const int32_t *c = R->c;
    for (size_t i = lo; i < hi; i++) { /* two chains of minima and maxima, row by row */
        v4i32 r;
        memcpy(&r, c + 4 * i, sizeof r);
        v4i32 lt = r<mn[i & 1], gt = r> mx[i & 1];
        mn[i & 1] = (r & lt) | (mn[i & 1] & ~lt);
        mx[i & 1] = (r & gt) | (mx[i & 1] & ~gt);
    }
    v4i32 lt = mn[1]<mn[0], gt = mx[1]> mx[0];
    mn[0] = (mn[1] & lt) | (mn[0] & ~lt);
    mx[0] = (mx[1] & gt) | (mx[0] & ~gt);
    for (int f = 0; f < 4; f++) {
        R->lo[part][f] = mn[0][f];
        R->hi[part][f] = mx[0][f];
    }
}

mn_status mn_layout(const mn_coords *a, const mn_coords *b, int64_t margin, mn_layout_t *L)
{
    return mn_layout_threads(a, b, margin, 1, L);
}

/* The layout for the rows of a and b (b may be NULL) with room for offsets up to margin. */
mn_status mn_layout_threads(const mn_coords *a, const mn_coords *b, int64_t margin, int threads,
                            mn_layout_t *L)
{
    memset(L, 0, sizeof *L);
    int64_t lo[4], hi[4];
    for (int f = 0; f < 4; f++) {
        lo[f] = INT64_MAX;
        hi[f] = INT64_MIN;
    }
    const mn_coords *sets[2] = {a, b};
    range_job R;
    for (int s = 0; s < 2; s++) {
        if (!sets[s] || sets[s]->n == 0)
            continue;
        R.c = sets[s]->c;
        int parts = mn_par_parts(sets[s]->n, threads);
        mn_par_for(sets[s]->n, threads, range_part, &R);
        for (int p = 0; p < parts; p++)
            for (int f = 0; f < 4; f++) {
                lo[f] = R.lo[p][f] < lo[f] ? R.lo[p][f] : lo[f];
                hi[f] = R.hi[p][f] > hi[f] ? R.hi[p][f] : hi[f];
            }
    }
    if (lo[0] > hi[0]) /* no rows */
        for (int f = 0; f < 4; f++)
            lo[f] = hi[f] = 0;
    int total = 0;
    for (int f = 3; f >= 0; f--) {
        int64_t m = f == 0 ? 0 : margin; /* offsets never cross batches */
        L->base[f] = lo[f] - m;
        uint64_t span = (uint64_t)(hi[f] - lo[f]) + 2 * (uint64_t)m;
        L->bits[f] = bits_for(span);
        L->shift[f] = total;
        total += L->bits[f];
    }
    L->wide = total > 64;
    if (total > 128)
        return mn_fail(MN_ERANGE, "coordinates span more than 128 bits of key");
    return MN_OK;
}

/* ---- keys ------------------------------------------------------------------------------------ */

typedef struct keys_job {
    const int32_t *c;
    const mn_layout_t *L;
    uint64_t *k;
    mn_u128 *k2;
    bool ascending[MN_PAR_THREADS]; /* 64-bit keys: whether each part's are, strictly */
} keys_job;

static void keys64_part(void *ctx, size_t lo, size_t hi, int part)
{
    keys_job *J = ctx;
    int64_t base[4];
    int shift[4];
    for (int f = 0; f < 4; f++) { /* in registers: the stores below may alias *J->L */
        base[f] = J->L->base[f];
        /* a 0-bit field may sit at shift 64; its rows all equal its base: nothing to add */
        shift[f] = J->L->bits[f] ? J->L->shift[f] : 0;
    }
    const int32_t *c = J->c;
    uint64_t *k = J->k;
    bool up = true;
    uint64_t prev = 0;
    for (size_t i = lo; i < hi; i++) {
        const int32_t *r = c + 4 * i;
        uint64_t v = 0;
        for (int f = 0; f < 4; f++)
            v |= (uint64_t)((int64_t)r[f] - base[f]) << shift[f];
        k[i] = v;
        up &= i == lo || v > prev;
        prev = v;
    }
    J->ascending[part] = up;
}

static void keys128_part(void *ctx, size_t lo, size_t hi, int part)
{
    (void)part;
    const keys_job *J = ctx;
    const mn_layout_t *L = J->L;
    for (size_t i = lo; i < hi; i++) {
        const int32_t *r = J->c + 4 * i;
        mn_u128 v = 0;
        for (int f = 0; f < 4; f++)
            if (L->bits[f]) /* as above, at shift 128 */
                v |= (mn_u128)(uint64_t)((int64_t)r[f] - L->base[f]) << L->shift[f];
        J->k2[i] = v;
    }
}

bool mn_keys64(const mn_coords *co, const mn_layout_t *L, uint64_t *k, int threads)
{
    keys_job J = {co->c, L, k, NULL, {false}};
    mn_par_for(co->n, threads, keys64_part, &J);
    int parts = mn_par_parts(co->n, threads);
    bool up = true;
    for (int p = 0; p < parts; p++) {
        size_t lo = co->n * (size_t)p / (size_t)parts; /* mn_par_for's ranges */
        up &= J.ascending[p] && (lo == 0 || lo >= co->n || k[lo - 1] < k[lo]);
    }
    return up;
}

void mn_keys128(const mn_coords *co, const mn_layout_t *L, mn_u128 *k, int threads)
{
    keys_job J = {co->c, L, NULL, k, {false}};
    mn_par_for(co->n, threads, keys128_part, &J);
}

mn_u128 mn_key_delta(const mn_layout_t *L, int64_t dx, int64_t dy, int64_t dz)
{
    /* Unsigned 128-bit arithmetic: a field's shift may reach 64 and beyond in wide layouts. */
    return ((mn_u128)dx << L->shift[1]) + ((mn_u128)dy << L->shift[2]) +
           ((mn_u128)dz << L->shift[3]);
}

/* ---- radix sort --------------------------------------------------------------------------- */

/* LSD radix sort of keys, producing idx: the original positions in key order. 8 bits a
 * pass; passes whose digit is the same for every key (known from one read that counts all
 * eight digits) are skipped. Stable. With several threads (up to MN_PAR_THREADS), each owns
 * a contiguous slice of the current order: per pass it counts its slice's digits, then
 * scatters its slice to the places that the prefix sums over (digit, thread) give it, so
 * the order of equal digits is kept across threads. The passes alternate between two
 * buffers; the first pass takes the positions as the identity rather than reading them, and
 * starts in idx or in the spare buffer as the number of passes is odd or even, so the last
 * one ends in idx without a copy. `key` and the spare keys k2 (n of them) are clobbered.
 * Small inputs use one thread. What remains of radix64's use: keys whose bits and the row
 * number's do not fit in 64 together (the packed sort below takes the others). */
typedef struct radix_part {
    const uint64_t *ks;
    const uint32_t *is; /* NULL: the identity (first pass) */
    uint64_t *kd;
    uint32_t *id;
    size_t lo, hi, cnt[8][256], at[256], one[256];
    int sh;
} radix_part;

static void *radix_count(void *arg)
{
    radix_part *p = arg;
    for (size_t i = p->lo; i < p->hi; i++) {
        uint64_t k = p->ks[i];
        for (int pass = 0; pass < 8; pass++)
            p->cnt[pass][(k >> (pass * 8)) & 0xff]++;
    }
    return NULL;
}

/* This pass's digit histogram of the part's slice of the current order. */
static void *radix_count_one(void *arg)
{
    radix_part *p = arg;
    memset(p->one, 0, sizeof p->one);
    for (size_t i = p->lo; i < p->hi; i++)
        p->one[(p->ks[i] >> p->sh) & 0xff]++;
    return NULL;
}

static void *radix_move(void *arg)
{
    radix_part *p = arg;
    if (!p->is) {
        for (size_t i = p->lo; i < p->hi; i++) {
            size_t to = p->at[(p->ks[i] >> p->sh) & 0xff]++;
            p->kd[to] = p->ks[i];
            p->id[to] = (uint32_t)i;
        }
        return NULL;
    }
    for (size_t i = p->lo; i < p->hi; i++) {
        size_t to = p->at[(p->ks[i] >> p->sh) & 0xff]++;
        p->kd[to] = p->ks[i];
        p->id[to] = p->is[i];
    }
    return NULL;
}

static void identity_part(void *ctx, size_t lo, size_t hi, int part)
{
    (void)part;
    uint32_t *idx = ctx;
    for (size_t i = lo; i < hi; i++)
        idx[i] = (uint32_t)i;
}

static int radix64(uint64_t *key, uint64_t *k2, uint32_t *idx, size_t n, int threads)
{
    int nt = mn_par_parts(n, threads);
    if (n < 2) {
        mn_par_for(n, 1, identity_part, idx);
        return 0;
    }
    radix_part *P = calloc((size_t)nt, sizeof *P);
    if (!P)
        return -1;
    for (int t = 0; t < nt; t++) {
        P[t].lo = n * (size_t)t / (size_t)nt;
        P[t].hi = n * (size_t)(t + 1) / (size_t)nt;
        P[t].ks = key;
    }
    mn_parts_run(P, sizeof *P, nt, radix_count);
    int passes[8], np = 0;
    for (int pass = 0; pass < 8; pass++) {
        size_t total0 = 0; /* keys whose digit equals the first key's */
        int d0 = (int)((key[0] >> (pass * 8)) & 0xff);
        for (int t = 0; t < nt; t++)
            total0 += P[t].cnt[pass][d0];
        if (total0 != n) /* more than one digit value: a pass */
            passes[np++] = pass;
    }
    if (np == 0) { /* every key the same */
        mn_par_for(n, threads, identity_part, idx);
        free(P);
        return 0;
    }
    uint32_t *i2 = malloc(n * sizeof *i2);
    if (!i2) {
        free(P);
        return -1;
    }
    uint64_t *ks = key, *kd = k2;
    const uint32_t *is = NULL;
    uint32_t *id = np % 2 ? idx : i2, *other = np % 2 ? i2 : idx;
    for (int a = 0; a < np; a++) {
        int pass = passes[a];
        for (int t = 0; t < nt; t++) {
            P[t].ks = ks;
            P[t].is = is;
            P[t].kd = kd;
            P[t].id = id;
            P[t].sh = pass * 8;
        }
        /* The slices hold other keys after each pass: count them again (the first pass, or
         * one thread: the histogram of the first read is still the slice's). */
        if (nt > 1 && a > 0)
            mn_parts_run(P, sizeof *P, nt, radix_count_one);
        else
            for (int t = 0; t < nt; t++)
                memcpy(P[t].one, P[t].cnt[pass], sizeof P[t].one);
        size_t sum = 0;
        for (int d = 0; d < 256; d++)
            for (int t = 0; t < nt; t++) {
                P[t].at[d] = sum;
                sum += P[t].one[d];
            }
        mn_parts_run(P, sizeof *P, nt, radix_move);
        uint64_t *tk = ks;
        ks = kd;
        kd = tk;
        is = id;
        id = other;
        other = (uint32_t *)is;
    }
    free(i2);
    free(P);
    return 0;
}

/* ---- packed radix sort ------------------------------------------------------------------ */

/* When the key's kb significant bits and the ib = bits_for(n - 1) bits of a row number fit
 * in 64, the sort moves packed words (key << ib | row) rather than (key, position) pairs: 8
 * bytes a key and pass instead of 12, and the row bits keep equal keys in row order without
 * a second array. The words are built straight from the rows (no separate key array), in
 * the same read that counts every digit. Digits are up to `most` bits wide, balanced: kb
 * bits take ceil(kb / most) digits of equal width (the last narrower), of which those that
 * are the same for every key are skipped. most is PK_BITS, less for small n (bits_for(n) -
 * 2, at least 8; 2 bits less again on several threads, whose slices of one digit's
 * destination then span cache lines rather than share them: at 94 602 rows on 2 threads
 * the sort took 0.84 ms instead of 1.10) so that the histograms stay small beside the
 * keys: on the 2-core VM of
 * the README, the whole sort of 2.97M rows with 30-bit keys (gen:10000000 at 0.05, 1
 * thread) took 0.063 s with two passes of 15-bit digits, 0.081 s with three of 10 bits and
 * more with 8 bits. The threads own slices of the current order as in
 * radix64 (per-pass histograms, prefix sums over (digit, thread)), so the result is the
 * same for any thread count, and the same as radix64's: a stable sort of the keys. */
#define PK_BITS   16
#define PK_DIGITS 8 /* ceil(63 / 8): kb <= 63 */

typedef struct pk_part {
    const int32_t *c; /* the rows, for the first read */
    const mn_layout_t *L;
    const uint64_t *ws; /* this pass's words */
    uint64_t *wd;       /* where they go, or NULL: */
    uint32_t *id;       /* the last pass's row numbers */
    size_t lo, hi;
    int ib, d, nd, sh;
    uint32_t *at;  /* 2^d: where the pass puts the slice's next word of each digit */
    uint32_t *cnt; /* nd * 2^d: the histograms of every digit (cnt + g * 2^d: digit g) */
} pk_part;

/* The first read: the slice's words into wd, every digit counted. */
static void *pk_pack(void *arg)
{
    pk_part *p = arg;
    int64_t base[4];
    int shift[4];
    for (int f = 0; f < 4; f++) {
        base[f] = p->L->base[f];
        shift[f] = p->L->bits[f] ? p->L->shift[f] : 0; /* a 0-bit field adds 0 anywhere */
    }
    const uint64_t mask = ((uint64_t)1 << p->d) - 1;
    const int ib = p->ib, d = p->d, nd = p->nd;
    const int32_t *c = p->c;
    uint64_t *wd = p->wd;
    uint32_t *cnt = p->cnt;
    for (size_t i = p->lo; i < p->hi; i++) {
        const int32_t *r = c + 4 * i;
        uint64_t v = 0;
        for (int f = 0; f < 4; f++)
            v |= (uint64_t)((int64_t)r[f] - base[f]) << shift[f];
        uint64_t w = v << ib | (uint64_t)i;
        wd[i] = w;
        for (int g = 0; g < nd; g++)
            cnt[((size_t)g << d) + ((w >> (ib + g * d)) & mask)]++;
    }
    return NULL;
}

/* This pass's digit histogram of the slice, into cnt (where digit 0's was). */
static void *pk_count(void *arg)
{
    pk_part *p = arg;
    const uint64_t mask = ((uint64_t)1 << p->d) - 1;
    const int sh = p->sh;
    const uint64_t *ws = p->ws;
    uint32_t *h = p->cnt;
    memset(h, 0, ((size_t)1 << p->d) * sizeof *h);
    for (size_t i = p->lo; i < p->hi; i++)
        h[(ws[i] >> sh) & mask]++;
    return NULL;
}

static void *pk_move(void *arg)
{
    pk_part *p = arg;
    const uint64_t mask = ((uint64_t)1 << p->d) - 1;
    const int sh = p->sh;
    const uint64_t *ws = p->ws;
    uint32_t *at = p->at;
    if (p->wd) {
        uint64_t *wd = p->wd;
        for (size_t i = p->lo; i < p->hi; i++) {
            uint64_t w = ws[i];
            wd[at[(w >> sh) & mask]++] = w;
        }
        return NULL;
    }
    const uint64_t rows = ((uint64_t)1 << p->ib) - 1;
    uint32_t *id = p->id;
    for (size_t i = p->lo; i < p->hi; i++) {
        uint64_t w = ws[i];
        id[at[(w >> sh) & mask]++] = (uint32_t)(w & rows);
    }
    return NULL;
}

/* Sorts co's rows (n >= 2, kb + ib <= 64) with w as room for 2n words. With idx, the last
 * pass writes the row numbers there and the result is idx; without, the sorted words, in w
 * or w + n. NULL when out of memory. */
static void *radix_packed(const mn_coords *co, const mn_layout_t *L, int kb, int ib, uint64_t *w,
                          uint32_t *idx, int threads)
{
    size_t n = co->n;
    int nt = mn_par_parts(n, threads);
    int most = bits_for(n) - (nt > 1 ? 4 : 2);
    most = most < 8 ? 8 : most > PK_BITS ? PK_BITS : most;
    int nd = kb ? (kb + most - 1) / most : 1, d = kb ? (kb + nd - 1) / nd : 1;
    size_t hs = (size_t)1 << d; /* a histogram's size */
    pk_part *P = calloc((size_t)nt, sizeof *P);
    uint32_t *hist = calloc((size_t)nt * (size_t)(nd + 1) * hs, sizeof *hist);
    if (!P || !hist) {
        free(P);
        free(hist);
        return NULL;
    }
    for (int t = 0; t < nt; t++) {
        P[t].at = hist + (size_t)t * (size_t)(nd + 1) * hs;
        P[t].cnt = P[t].at + hs;
        P[t].c = co->c;
        P[t].L = L;
        P[t].wd = w;
        P[t].lo = n * (size_t)t / (size_t)nt;
        P[t].hi = n * (size_t)(t + 1) / (size_t)nt;
        P[t].ib = ib;
        P[t].d = d;
        P[t].nd = nd;
    }
    mn_parts_run(P, sizeof *P, nt, pk_pack);
    const uint64_t mask = ((uint64_t)1 << d) - 1;
    int digits[PK_DIGITS], np = 0;
    for (int g = 0; g < nd; g++) {
        uint64_t total0 = 0; /* words whose digit equals the first word's */
        size_t d0 = (size_t)((w[0] >> (ib + g * d)) & mask);
        for (int t = 0; t < nt; t++)
            total0 += P[t].cnt[((size_t)g << d) + d0];
        if (total0 != n)
            digits[np++] = g;
    }
    if (np == 0) { /* every key the same: the rows in order */
        free(hist);
        free(P);
        if (!idx)
            return w;
        mn_par_for(n, threads, identity_part, idx);
        return idx;
    }
    uint64_t *ws = w, *wd = w + n;
    for (int a = 0; a < np; a++) {
        int g = digits[a];
        bool to_idx = idx && a == np - 1;
        for (int t = 0; t < nt; t++) {
            P[t].ws = ws;
            P[t].wd = to_idx ? NULL : wd;
            P[t].id = idx;
            P[t].sh = ib + g * d;
        }
        /* The slices hold other words after a pass: count them again (the first pass, or
         * one thread: the first read's histogram is still the slice's). */
        if (nt > 1 && a > 0)
            mn_parts_run(P, sizeof *P, nt, pk_count);
        else if (g != 0)
            for (int t = 0; t < nt; t++)
                memcpy(P[t].cnt, P[t].cnt + ((size_t)g << d), hs * sizeof *P[t].cnt);
        uint32_t sum = 0; /* at most n <= UINT32_MAX */
        for (size_t v = 0; v <= mask; v++)
            for (int t = 0; t < nt; t++) {
                P[t].at[v] = sum;
                sum += P[t].cnt[v];
            }
        mn_parts_run(P, sizeof *P, nt, pk_move);
        uint64_t *tw = ws;
        ws = wd;
        wd = tw;
    }
    free(hist);
    free(P);
    return idx ? (void *)idx : (void *)ws;
}

/* The layout of co's rows for sorting, kb its key bits and ib the bits of a row number
 * (for the packed sort: kb + ib <= 64). */
static mn_status sort_layout(const mn_coords *co, int threads, mn_layout_t *L, int *kb, int *ib)
{
    if (co->n > UINT32_MAX)
        return mn_fail(MN_EINVAL, "%zu coordinates: at most 2^32 - 1", co->n);
    mn_status st = mn_layout_threads(co, NULL, 0, threads, L);
    *kb = 0;
    for (int f = 0; f < 4; f++)
        *kb += L->bits[f];
    *ib = bits_for((uint64_t)(co->n ? co->n - 1 : 0));
    return st;
}

static int cmp_row(const void *a, const void *b, void *rows)
{
    const int32_t *x = (const int32_t *)rows + 4 * (size_t) * (const uint32_t *)a;
    const int32_t *y = (const int32_t *)rows + 4 * (size_t) * (const uint32_t *)b;
    for (int f = 0; f < 4; f++)
        if (x[f] != y[f])
            return x[f] < y[f] ? -1 : 1;
    return (*(const uint32_t *)a > *(const uint32_t *)b) -
           (*(const uint32_t *)a < *(const uint32_t *)b);
}

/* mn_sort_index with the caller's scratch: room for 2n keys (n * 16 bytes), which
 * mn_sort_threads then reuses for the sorted rows. */
static mn_status sort_index(const mn_coords *co, const mn_layout_t *L, int kb, int ib,
                            uint32_t *idx, int threads, uint64_t *scratch)
{
    size_t n = co->n;
    if (L->wide) { /* more than 64 bits of key: a comparison sort over the four fields */
        mn_par_for(n, threads, identity_part, idx);
        qsort_r(idx, n, sizeof *idx, cmp_row, co->c);
        return MN_OK;
    }
    int fail;
    if (n >= 2 && kb + ib <= 64) {
        fail = !radix_packed(co, L, kb, ib, scratch, idx, threads);
    } else {
        (void)mn_keys64(co, L, scratch, threads);
        fail = radix64(scratch, scratch + n, idx, n, threads) < 0;
    }
    return fail ? mn_fail(MN_ENOMEM, "out of memory sorting %zu coordinates", n) : MN_OK;
}

mn_status mn_sort_index(const mn_coords *co, uint32_t *idx, int threads)
{
    size_t n = co->n;
    if (n > UINT32_MAX)
        return mn_fail(MN_EINVAL, "%zu coordinates: at most 2^32 - 1", n);
    uint64_t *k = malloc((n ? n : 1) * 2 * sizeof *k);
    if (!k)
        return mn_fail(MN_ENOMEM, "out of memory sorting %zu coordinates", n);
    mn_layout_t L;
    int kb, ib;
    mn_status st = sort_layout(co, threads, &L, &kb, &ib);
    if (st == MN_OK)
        st = sort_index(co, &L, kb, ib, idx, threads, k);
    free(k);
    return st;
}

mn_status mn_sort(mn_coords *co, uint32_t *perm) { return mn_done(mn_sort_threads(co, perm, 0)); }

/* Gathering the rows in sorted order: each part copies its range of sorted rows and notes
 * its first row equal to the one before (SIZE_MAX: none). */
typedef struct gather_job {
    const int32_t *src;
    const uint32_t *idx;
    int32_t *dst;
    size_t dup[MN_PAR_THREADS];
} gather_job;

static void gather_part(void *ctx, size_t lo, size_t hi, int part)
{
    gather_job *G = ctx;
    size_t dup = SIZE_MAX;
    const int32_t *prev = lo > 0 ? G->src + 4 * (size_t)G->idx[lo - 1] : NULL;
    for (size_t i = lo; i < hi; i++) {
        const int32_t *r = G->src + 4 * (size_t)G->idx[i];
        memcpy(G->dst + 4 * i, r, 4 * sizeof *r);
        if (prev && dup == SIZE_MAX && memcmp(prev, r, 4 * sizeof *r) == 0)
            dup = i;
        prev = r;
    }
    G->dup[part] = dup;
}

typedef struct copy_job {
    const int32_t *src;
    int32_t *dst;
} copy_job;

static void copy_part(void *ctx, size_t lo, size_t hi, int part)
{
    (void)part;
    const copy_job *C = ctx;
    memcpy(C->dst + 4 * lo, C->src + 4 * lo, (hi - lo) * 4 * sizeof *C->dst);
}

/* After the packed sort: the sorted words w, each part noting its first key equal to the
 * one before (SIZE_MAX: none) and writing the row numbers into perm when given; then, with
 * no duplicate, the rows decoded from the keys (the layout is exact) into dst. */
typedef struct words_job {
    const uint64_t *w;
    const mn_layout_t *L;
    uint32_t *perm;
    int32_t *dst;
    int ib;
    size_t dup[MN_PAR_THREADS];
} words_job;

static void words_check_part(void *ctx, size_t lo, size_t hi, int part)
{
    words_job *W = ctx;
    const uint64_t *w = W->w;
    const int ib = W->ib;
    size_t dup = SIZE_MAX;
    for (size_t i = lo > 0 ? lo : 1; i < hi; i++)
        if ((w[i] >> ib) == (w[i - 1] >> ib)) {
            dup = i;
            break;
        }
    if (W->perm) {
        const uint64_t rows = ((uint64_t)1 << ib) - 1;
        for (size_t i = lo; i < hi; i++)
            W->perm[i] = (uint32_t)(w[i] & rows);
    }
    W->dup[part] = dup;
}

static void words_decode_part(void *ctx, size_t lo, size_t hi, int part)
{
    (void)part;
    const words_job *W = ctx;
    int64_t base[4];
    uint64_t mask[4];
    int shift[4];
    for (int f = 0; f < 4; f++) {
        base[f] = W->L->base[f];
        int b = W->L->bits[f]; /* < 64 here; a field of 0 bits may sit at bit 64 */
        shift[f] = b ? W->L->shift[f] + W->ib : 0;
        mask[f] = ((uint64_t)1 << b) - 1;
    }
    const uint64_t *w = W->w;
    int32_t *dst = W->dst;
    for (size_t i = lo; i < hi; i++)
        for (int f = 0; f < 4; f++)
            dst[4 * i + f] = (int32_t)(base[f] + (int64_t)((w[i] >> shift[f]) & mask[f]));
}

/* The packed sort's end of mn_sort_threads: no gather (the sorted keys are the sorted rows)
 * and no copy (the rows are decoded in place once the duplicate check has passed). */
static mn_status sort_rows_packed(mn_coords *co, const mn_layout_t *L, int kb, int ib,
                                  uint32_t *perm, int threads, uint64_t *scratch)
{
    size_t n = co->n;
    const uint64_t *w = radix_packed(co, L, kb, ib, scratch, NULL, threads);
    if (!w)
        return mn_fail(MN_ENOMEM, "out of memory sorting %zu coordinates", n);
    words_job W = {.w = w, .L = L, .perm = perm, .dst = co->c, .ib = ib};
    int parts = mn_par_parts(n, threads);
    mn_par_for(n, threads, words_check_part, &W);
    for (int p = 0; p < parts; p++)
        if (W.dup[p] != SIZE_MAX) { /* the first duplicate in sorted order */
            size_t i = W.dup[p];
            const uint64_t rows = ((uint64_t)1 << ib) - 1;
            uint32_t r0 = (uint32_t)(w[i - 1] & rows), r1 = (uint32_t)(w[i] & rows);
            const int32_t *r = co->c + 4 * (size_t)r1;
            return mn_fail(MN_EDUP, "duplicate coordinate (%d, %d, %d, %d) at rows %u and %u", r[0],
                           r[1], r[2], r[3], r0, r1);
        }
    mn_par_for(n, threads, words_decode_part, &W);
    return MN_OK;
}

/* The index (into perm when given), then the rows gathered in that order with the duplicate
 * check, then copied back: every step split over the threads from 65536 rows. The keys'
 * scratch (2n keys) holds the gathered rows afterwards, so the sort maps fresh memory once.
 * With the packed sort, sort_rows_packed's steps instead. On failure the rows are left as
 * they were (perm's contents are then unspecified). */
mn_status mn_sort_threads(mn_coords *co, uint32_t *perm, int threads)
{
    size_t n = co->n;
    mn_layout_t L;
    int kb, ib;
    mn_status st = sort_layout(co, threads, &L, &kb, &ib);
    if (st != MN_OK)
        return mn_done(st);
    bool packed = !L.wide && n >= 2 && kb + ib <= 64;
    uint32_t *idx = perm || packed ? perm : malloc((n ? n : 1) * sizeof *idx);
    uint64_t *scratch = malloc((n ? n : 1) * 2 * sizeof *scratch);
    if ((!idx && !packed) || !scratch) {
        if (idx != perm)
            free(idx);
        free(scratch);
        return mn_fail(MN_ENOMEM, "out of memory sorting %zu coordinates", n);
    }
    if (packed) {
        st = sort_rows_packed(co, &L, kb, ib, perm, threads, scratch);
        free(scratch);
        return mn_done(st);
    }
    st = sort_index(co, &L, kb, ib, idx, threads, scratch);
    if (st != MN_OK) {
        if (idx != perm)
            free(idx);
        free(scratch);
        return mn_done(st);
    }
    int32_t *sorted = (int32_t *)scratch; /* n rows of 16 bytes: the 2n keys' room */
    gather_job G = {.src = co->c, .idx = idx, .dst = sorted};
    int parts = mn_par_parts(n, threads);
    mn_par_for(n, threads, gather_part, &G);
    for (int p = 0; p < parts; p++)
        if (G.dup[p] != SIZE_MAX) { /* the first duplicate in sorted order */
            size_t i = G.dup[p];
            const int32_t *r = co->c + 4 * (size_t)idx[i];
            st = mn_fail(MN_EDUP, "duplicate coordinate (%d, %d, %d, %d) at rows %u and %u", r[0],
                         r[1], r[2], r[3], idx[i - 1], idx[i]);
            break;
        }
    if (st == MN_OK) {
        copy_job C = {sorted, co->c};
        mn_par_for(n, threads, copy_part, &C);
    }
    free(scratch);
    if (idx != perm)
        free(idx);
    return mn_done(st);
}

/* ---- strided outputs ------------------------------------------------------------------------- */

static int64_t floor_to(int64_t v, int64_t f)
{
    int64_t q = v / f;
    if ((v % f != 0) && ((v < 0) != (f < 0)))
        q--;
    return q * f;
}

/* Sort the n rows of c (malloc'd, taken) and keep one of each: *out. */
static mn_status sort_unique(int32_t *c, size_t n, int threads, mn_coords *out)
{
    mn_coords all = {c, n};
    /* calloc: the analyzer cannot see mn_sort_index fill it */
    uint32_t *perm = calloc(n ? n : 1, sizeof *perm);
    int32_t *tmp = malloc((n ? n : 1) * 4 * sizeof *tmp);
    mn_status st =
        perm && tmp ? mn_sort_index(&all, perm, threads) : mn_fail(MN_ENOMEM, "out of memory");
    if (st != MN_OK || !perm || !tmp) {
        free(perm);
        free(tmp);
        free(c);
        return st;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) { /* keep the first of each run */
        const int32_t *r = c + 4 * (size_t)perm[i];
        if (m > 0 && memcmp(tmp + 4 * (m - 1), r, 4 * sizeof *r) == 0)
            continue;
        memcpy(tmp + 4 * m++, r, 4 * sizeof *r);
    }
    free(perm);
    free(c);
    out->c = tmp;
    out->n = m;
    return MN_OK;
}

mn_status mn_downsample(const mn_coords *in, int t_in, int stride, mn_coords *out)
{
    memset(out, 0, sizeof *out);
    if (t_in < 1 || stride < 1 || (int64_t)t_in * stride > (1 << 30))
        return mn_fail(MN_EINVAL, "tensor stride %d and stride %d: both must be at least 1", t_in,
                       stride);
    int64_t f = (int64_t)t_in * stride;
    int32_t *c = malloc((in->n ? in->n : 1) * 4 * sizeof *c);
    if (!c)
        return mn_fail(MN_ENOMEM, "out of memory");
    for (size_t i = 0; i < in->n; i++) {
        c[4 * i] = in->c[4 * i];
        for (int d = 1; d < 4; d++)
            c[4 * i + d] = (int32_t)floor_to(in->c[4 * i + d], f);
    }
    return mn_done(sort_unique(c, in->n, 1, out));
}

/* Candidate outputs of mn_conv_outputs, one part of the input rows each: row i's go from
 * slot i * per on (at most per of them). */
typedef struct cand_job {
    const mn_coords *in;
    int32_t *c;
    int K, stride, shift, padding, dilation; /* shift: log2(stride), or -1 */
    size_t per;
    const int *out_shape;
    size_t first[MN_PAR_THREADS], made[MN_PAR_THREADS];
} cand_job;

static void cand_part(void *ctx, size_t lo, size_t hi, int part)
{
    cand_job *J = ctx;
    int32_t *c = J->c + 4 * lo * J->per;
    size_t n = 0;
    int64_t mask = J->shift >= 0 ? ((int64_t)1 << J->shift) - 1 : 0;
    for (size_t i = lo; i < hi; i++) {
        const int32_t *p = J->in->c + 4 * i;
        int32_t o[3][16];
        int no[3];
        for (int d = 0; d < 3; d++) {
            no[d] = 0;
            for (int k = 0; k < J->K; k++) {
                int64_t v = (int64_t)p[1 + d] + J->padding - (int64_t)k * J->dilation;
                if (v < 0)
                    continue;
                if (J->shift >= 0) {
                    if (v & mask)
                        continue;
                    v >>= J->shift;
                } else {
                    if (v % J->stride)
                        continue;
                    v /= J->stride;
                }
                if (v < J->out_shape[d])
                    o[d][no[d]++] = (int32_t)v;
            }
        }
        for (int a = 0; a < no[0]; a++)
            for (int b = 0; b < no[1]; b++)
                for (int e = 0; e < no[2]; e++) {
                    int32_t *r = c + 4 * n++; /* at most per for this row: reach^3 */
                    r[0] = p[0];
                    r[1] = o[0][a];
                    r[2] = o[1][b];
                    r[3] = o[2][e];
                }
    }
    J->first[part] = lo;
    J->made[part] = n;
}

mn_status mn_conv_outputs(const mn_coords *in, int K, int stride, int padding, int dilation,
                          const int out_shape[3], int threads, mn_coords *out)
{
    memset(out, 0, sizeof *out);
    if (K < 1 || K > 15 || stride < 1 || padding < 0 || dilation < 1 || stride > (1 << 20) ||
        padding > (1 << 20) || dilation > (1 << 20))
        return mn_fail(
            MN_EINVAL,
            "kernel %d, stride %d, padding %d, dilation %d: accepted a kernel of 1 to 15, stride and dilation >= 1, padding >= 0",
            K, stride, padding, dilation);
    for (int d = 0; d < 3; d++)
        if (out_shape[d] < 1)
            return mn_fail(MN_EINVAL, "output shape %d x %d x %d: every size must be >= 1",
                           out_shape[0], out_shape[1], out_shape[2]);
    /* Per input row and dimension, the outputs it reaches: o = (x + padding - k * dilation) /
     * stride for the k that divide exactly and land inside the shape. */
    /* k per dimension that divide exactly: k * dilation is fixed mod stride, so k runs over
     * one residue mod stride / gcd(dilation, stride). */
    int g = stride, h = dilation;
    while (h) {
        int t = g % h;
        g = h;
        h = t;
    }
    int period = stride / g;
    size_t reach = (size_t)((K + period - 1) / period);
    size_t per = reach * reach * reach;
    size_t cap = in->n * per;
    int32_t *c = malloc((cap ? cap : 1) * 4 * sizeof *c);
    if (!c)
        return mn_fail(MN_ENOMEM, "out of memory for %zu candidate outputs", in->n * per);
    int shift = 0; /* a power-of-two stride: shifts and masks instead of divisions */
    while (shift < 20 && (1u << shift) < (unsigned)stride) /* stride <= 2^20 (checked) */
        shift++;
    cand_job J = {.in = in,
                  .c = c,
                  .K = K,
                  .stride = stride,
                  .shift = (1u << shift) == (unsigned)stride ? shift : -1,
                  .padding = padding,
                  .dilation = dilation,
                  .per = per,
                  .out_shape = out_shape};
    mn_par_for(in->n, threads, cand_part, &J);
    /* Each part wrote its rows' candidates from its first row's slot on: close the gaps. */
    size_t n = 0;
    for (int t = 0; t < MN_PAR_THREADS; t++) {
        if (!J.made[t])
            continue;
        if (J.first[t] * per != n)
            memmove(c + 4 * n, c + 4 * J.first[t] * per, J.made[t] * 4 * sizeof *c);
        n += J.made[t];
    }
    return mn_done(sort_unique(c, n, threads, out));
}
