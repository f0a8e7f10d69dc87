/* coords.c: packed coordinate keys, the radix sort, strided output coordinates.
 *
 * A packed key puts (batch, x, y, z) into one unsigned 64-bit integer, each field biased by
 * its minimum (minus a margin) and given just enough bits for its range plus twice the
 * margin. With a margin of at least the largest kernel offset, key(q + delta) equals
 * key(q) + key_delta(delta) for every query, with no carry from one field into the next:
 * sorted outputs shifted by one offset stay sorted, which is what the sort-based kernel map
 * relies on. When the ranges need more than 64 bits, keys are 128-bit (still exact).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "keys.h"

/* ---- layout ------------------------------------------------------------------------------ */

static int bits_for(uint64_t span)
{
    int b = 0;
    while (b < 64 && (span >> b) != 0)
        b++;
    return b;
}

/* The layout for the rows of a and b (b may be NULL) with room for offsets up to margin. */
mn_status mn_layout(const mn_coords *a, const mn_coords *b, int64_t margin, mn_layout_t *L)
{
    memset(L, 0, sizeof *L);
    int64_t lo[4], hi[4];
    for (int f = 0; f < 4; f++) {
        lo[f] = INT64_MAX;
        hi[f] = INT64_MIN;
    }
    const mn_coords *sets[2] = {a, b};
    for (int s = 0; s < 2; s++) {
        if (!sets[s])
            continue;
        for (size_t i = 0; i < sets[s]->n; i++)
            for (int f = 0; f < 4; f++) {
                int64_t v = sets[s]->c[4 * i + f];
                lo[f] = v < lo[f] ? v : lo[f];
                hi[f] = v > hi[f] ? v : hi[f];
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

void mn_keys64(const mn_coords *co, const mn_layout_t *L, uint64_t *k)
{
    for (size_t i = 0; i < co->n; i++) {
        const int32_t *r = co->c + 4 * i;
        uint64_t v = 0;
        for (int f = 0; f < 4; f++)
            v |= (uint64_t)((int64_t)r[f] - L->base[f]) << L->shift[f];
        k[i] = v;
    }
}

void mn_keys128(const mn_coords *co, const mn_layout_t *L, mn_u128 *k)
{
    for (size_t i = 0; i < co->n; i++) {
        const int32_t *r = co->c + 4 * i;
        mn_u128 v = 0;
        for (int f = 0; f < 4; f++)
            v |= (mn_u128)(uint64_t)((int64_t)r[f] - L->base[f]) << L->shift[f];
        k[i] = v;
    }
}

mn_u128 mn_key_delta(const mn_layout_t *L, int64_t dx, int64_t dy, int64_t dz)
{
    /* Unsigned 128-bit arithmetic: a field's shift may reach 64 and beyond in wide layouts. */
    return ((mn_u128)dx << L->shift[1]) + ((mn_u128)dy << L->shift[2]) +
           ((mn_u128)dz << L->shift[3]);
}

/* ---- radix sort --------------------------------------------------------------------------- */

/* LSD radix sort of (key, index) pairs by key, 8 bits a pass; passes whose digit is the
 * same for every key (known from one read that counts all eight digits) are skipped.
 * Stable. idx may start as the identity. With several threads (up to 8), each owns a
 * contiguous slice of the current order: per pass it counts its slice's digits, then
 * scatters its slice to the places that the prefix sums over (digit, thread) give it, so
 * the order of equal digits is kept across threads.
 * The passes alternate between two buffers (one copy back at the end if their count is
 * odd). Small inputs use one thread. */
#define RADIX_THREADS   8
#define RADIX_PAR_BELOW 65536 /* fewer keys: one thread */

typedef struct radix_part {
    const uint64_t *ks;
    const uint32_t *is;
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
    for (size_t i = p->lo; i < p->hi; i++) {
        size_t to = p->at[(p->ks[i] >> p->sh) & 0xff]++;
        p->kd[to] = p->ks[i];
        p->id[to] = p->is[i];
    }
    return NULL;
}

/* Run fn on every part, part 0 on this thread. */
static void radix_run(radix_part *P, int nt, void *(*fn)(void *))
{
    pthread_t t[RADIX_THREADS];
    bool started[RADIX_THREADS] = {false};
    for (int i = 1; i < nt; i++)
        started[i] = pthread_create(&t[i], NULL, fn, &P[i]) == 0;
    fn(&P[0]);
    for (int i = 1; i < nt; i++) {
        if (started[i])
            pthread_join(t[i], NULL);
        else
            fn(&P[i]); /* no thread: do its part here */
    }
}

static int radix64(uint64_t *key, uint32_t *idx, size_t n, int threads)
{
    if (n < 2)
        return 0;
    int nt = n < RADIX_PAR_BELOW ? 1 : threads < 1 ? 1 : threads;
    nt = nt > RADIX_THREADS ? RADIX_THREADS : nt;
    uint64_t *k2 = malloc(n * sizeof *k2);
    uint32_t *i2 = malloc(n * sizeof *i2);
    radix_part *P = calloc((size_t)nt, sizeof *P);
    if (!k2 || !i2 || !P) {
        free(k2);
        free(i2);
        free(P);
        return -1;
    }
    for (int t = 0; t < nt; t++) {
        P[t].lo = n * (size_t)t / (size_t)nt;
        P[t].hi = n * (size_t)(t + 1) / (size_t)nt;
        P[t].ks = key;
    }
    radix_run(P, nt, radix_count);
    uint64_t *ks = key, *kd = k2;
    uint32_t *is = idx, *id = i2;
    for (int pass = 0; pass < 8; pass++) {
        size_t total0 = 0; /* keys whose digit equals the first key's */
        int d0 = (int)((ks[0] >> (pass * 8)) & 0xff);
        for (int t = 0; t < nt; t++)
            total0 += P[t].cnt[pass][d0];
        if (total0 == n)
            continue; /* one digit value for every key */
        for (int t = 0; t < nt; t++) {
            P[t].ks = ks;
            P[t].is = is;
            P[t].kd = kd;
            P[t].id = id;
            P[t].sh = pass * 8;
        }
        /* The slices hold other keys after each pass: count them again (one thread: the
         * histogram of the first read is still the slice's). */
        if (nt > 1)
            radix_run(P, nt, radix_count_one);
        else
            memcpy(P[0].one, P[0].cnt[pass], sizeof P[0].one);
        size_t sum = 0;
        for (int d = 0; d < 256; d++)
            for (int t = 0; t < nt; t++) {
                P[t].at[d] = sum;
                sum += P[t].one[d];
            }
        radix_run(P, nt, radix_move);
        uint64_t *tk = ks;
        ks = kd;
        kd = tk;
        uint32_t *ti = is;
        is = id;
        id = ti;
    }
    if (ks != key) {
        memcpy(key, ks, n * sizeof *key);
        memcpy(idx, is, n * sizeof *idx);
    }
    free(k2);
    free(i2);
    free(P);
    return 0;
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

mn_status mn_sort_index(const mn_coords *co, uint32_t *idx, int threads)
{
    size_t n = co->n;
    if (n > UINT32_MAX)
        return mn_fail(MN_EINVAL, "%zu coordinates: at most 2^32 - 1", n);
    for (size_t i = 0; i < n; i++)
        idx[i] = (uint32_t)i;
    mn_layout_t L;
    mn_status st = mn_layout(co, NULL, 0, &L);
    if (st != MN_OK)
        return st;
    if (L.wide) { /* more than 64 bits of key: a comparison sort over the four fields */
        qsort_r(idx, n, sizeof *idx, cmp_row, co->c);
        return MN_OK;
    }
    uint64_t *k = malloc((n ? n : 1) * sizeof *k);
    if (!k)
        return mn_fail(MN_ENOMEM, "out of memory sorting %zu coordinates", n);
    mn_keys64(co, &L, k);
    int rc = radix64(k, idx, n, mn_threads(threads));
    free(k);
    return rc < 0 ? mn_fail(MN_ENOMEM, "out of memory sorting %zu coordinates", n) : MN_OK;
}

mn_status mn_sort(mn_coords *co, uint32_t *perm) { return mn_sort_threads(co, perm, 0); }

mn_status mn_sort_threads(mn_coords *co, uint32_t *perm, int threads)
{
    size_t n = co->n;
    uint32_t *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx)
        return mn_fail(MN_ENOMEM, "out of memory sorting %zu coordinates", n);
    mn_status st = mn_sort_index(co, idx, threads);
    if (st != MN_OK) {
        free(idx);
        return st;
    }
    int32_t *sorted = malloc((n ? n : 1) * 4 * sizeof *sorted);
    if (!sorted) {
        free(idx);
        return mn_fail(MN_ENOMEM, "out of memory sorting %zu coordinates", n);
    }
    for (size_t i = 0; i < n; i++)
        memcpy(sorted + 4 * i, co->c + 4 * (size_t)idx[i], 4 * sizeof *sorted);
    for (size_t i = 1; i < n; i++)
        if (memcmp(sorted + 4 * (i - 1), sorted + 4 * i, 4 * sizeof *sorted) == 0) {
            const int32_t *r = sorted + 4 * i;
            st = mn_fail(MN_EDUP, "duplicate coordinate (%d, %d, %d, %d) at rows %u and %u", r[0],
                         r[1], r[2], r[3], idx[i - 1], idx[i]);
            free(sorted);
            free(idx);
            return st;
        }
    memcpy(co->c, sorted, n * 4 * sizeof *sorted);
    if (perm)
        memcpy(perm, idx, n * sizeof *perm);
    free(sorted);
    free(idx);
    return MN_OK;
}

/* ---- strided outputs ------------------------------------------------------------------------- */

static int64_t floor_to(int64_t v, int64_t f)
{
    int64_t q = v / f;
    if ((v % f != 0) && ((v < 0) != (f < 0)))
        q--;
    return q * f;
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
    mn_coords all = {c, in->n};
    uint32_t *perm = malloc((in->n ? in->n : 1) * sizeof *perm);
    int32_t *tmp = malloc((in->n ? in->n : 1) * 4 * sizeof *tmp);
    mn_status st = perm && tmp ? mn_sort_index(&all, perm, 1) : mn_fail(MN_ENOMEM, "out of memory");
    if (st != MN_OK || !perm || !tmp) {
        free(perm);
        free(tmp);
        free(c);
        return st;
    }
    size_t m = 0;
    for (size_t i = 0; i < in->n; i++) { /* keep the first of each run */
        const int32_t *r = c + 4 * (size_t)perm[i];
        if (m > 0 && memcmp(tmp + 4 * (m - 1), r, 4 * sizeof *r) == 0)
            continue;
        memcpy(tmp + 4 * m++, r, 4 * sizeof *r);
    }
    free(perm);
    free(c);
    if (st != MN_OK) {
        free(tmp);
        return st;
    }
    out->c = tmp;
    out->n = m;
    return MN_OK;
}
