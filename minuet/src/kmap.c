/* kmap.c: kernel maps, sort-based (Minuet's) and hash-based (the baseline it beats).
 *
 * Sort-based: inputs and outputs are sorted once (mn_sort); their packed keys are then
 * ascending, and for a fixed offset delta the query keys key(q) + key(delta) stay
 * ascending. So each offset is one merge of two sorted arrays, which walks memory in order
 * (the CPU form of Minuet's double-traversed search; a galloping step skips long runs of
 * inputs with no match).
 *
 * Hash-based: one open-addressing table of the input keys (linear probing, power-of-two
 * size, load at most 1/2, a multiplicative hash of the 64-bit key, the key stored beside its
 * row so a probe touches one cache line), then one lookup per output and offset: random
 * accesses, which is what the paper measures against. Both are built with the same layout,
 * the same threads and the same output arrays, so the comparison is fair.
 *
 * Threads take offsets in turn; each offset's pairs come out ordered by output row, so the
 * map is the same whatever the thread count.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "keys.h"

typedef struct vec {
    int32_t *in, *out;
    size_t n, cap;
} vec;

static int vec_push(vec *v, int32_t i, int32_t o)
{
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 1024;
        int32_t *a = realloc(v->in, nc * sizeof *a);
        if (!a)
            return -1;
        v->in = a;
        int32_t *b = realloc(v->out, nc * sizeof *b);
        if (!b)
            return -1;
        v->out = b;
        v->cap = nc;
    }
    if (!v->in || !v->out)
        return -1;
    v->in[v->n] = i;
    v->out[v->n++] = o;
    return 0;
}

/* The offsets of a K^3 kernel, in offset-index order. */
static void offsets(int K, int64_t step, int64_t (*d)[3])
{
    int lo = K % 2 ? -(K / 2) : 0;
    int k = 0;
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++)
            for (int l = 0; l < K; l++, k++) {
                d[k][0] = (lo + i) * step;
                d[k][1] = (lo + j) * step;
                d[k][2] = (lo + l) * step;
            }
}

/* ---- the hash table ---------------------------------------------------------------------- */

typedef struct slot {
    uint64_t key; /* key + 1; 0 = empty */
    int32_t row;
} slot;

typedef struct table {
    slot *s;
    uint64_t mask;
} table;

static inline uint64_t hash64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
}

static int table_build(table *t, const uint64_t *keys, size_t n)
{
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)n)
        cap *= 2;
    t->s = calloc(cap, sizeof *t->s);
    if (!t->s)
        return -1;
    t->mask = cap - 1;
    for (size_t i = 0; i < n; i++) {
        uint64_t h = hash64(keys[i]) & t->mask;
        while (t->s[h].key)
            h = (h + 1) & t->mask;
        t->s[h] = (slot){keys[i] + 1, (int32_t)i};
    }
    return 0;
}

static inline int32_t table_find(const table *t, uint64_t key)
{
    uint64_t h = hash64(key) & t->mask;
    for (;;) {
        const slot *s = &t->s[h];
        if (s->key == key + 1)
            return s->row;
        if (!s->key)
            return -1;
        h = (h + 1) & t->mask;
    }
}

/* ---- building ----------------------------------------------------------------------------- */

typedef struct job {
    uint64_t *ik, *ok;  /* input and output keys (64-bit layouts) */
    mn_u128 *ik2, *ok2; /* or 128-bit */
    size_t nin, nout;
    const int64_t *delta; /* key delta per offset */
    int nk, threads, K;
    mn_method method;
    table tab;
    vec *v;
    int failed;
} job;

/* First index >= from with key >= t (galloping, then binary search). */
static size_t gallop64(const uint64_t *a, size_t n, size_t from, uint64_t t)
{
    size_t step = 1, lo = from, hi = from;
    while (hi < n && a[hi] < t) {
        lo = hi + 1;
        hi += step;
        step *= 2;
    }
    if (hi > n)
        hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int merge64(const job *J, int k)
{
    if (!J->ik || !J->ok)
        return -1;
    const uint64_t *ik = J->ik, *ok = J->ok;
    uint64_t d = (uint64_t)J->delta[k];
    size_t j = 0;
    for (size_t o = 0; o < J->nout && j < J->nin; o++) {
        uint64_t t = ok[o] + d;
        if (ik[j] < t)
            j = gallop64(ik, J->nin, j + 1, t);
        if (j < J->nin && ik[j] == t && vec_push(&J->v[k], (int32_t)j, (int32_t)o) < 0)
            return -1;
    }
    return 0;
}

/* One walk over the outputs for the K*K offsets of one dx (k0 = its first offset). The K
 * offsets of a line (same dx and dy, dz = z0, z0 + step, ...) have query keys that differ
 * only in the lowest field, so one output's matches on a line are consecutive inputs: a
 * cursor per line finds the first candidate (a few steps, then a galloping search) and
 * checks the next entries. */
static int merge64_line(const job *J, int k0)
{
    if (!J->ik || !J->ok || J->K < 2 || k0 + J->K * J->K > J->nk)
        return -1;
    const uint64_t *ik = J->ik, *ok = J->ok;
    const size_t nin = J->nin;
    int K = J->K;
    /* All K lines of one dx share the walk over the outputs: K cursors, one per dy. */
    uint64_t d[16], zstep = (uint64_t)(J->delta[k0 + 1] - J->delta[k0]);
    size_t cur[16];
    for (int y = 0; y < K; y++) {
        d[y] = (uint64_t)J->delta[k0 + y * K];
        cur[y] = 0;
    }
    for (size_t o = 0; o < J->nout; o++) {
        uint64_t q = ok[o];
        for (int y = 0; y < K; y++) {
            uint64_t t = q + d[y];
            size_t j = cur[y];
            if (j < nin && ik[j] < t) { /* a few steps, then gallop */
                int s = 0;
                while (++j < nin && ik[j] < t && ++s < 8) {
                }
                if (j < nin && ik[j] < t)
                    j = gallop64(ik, nin, j + 1, t);
            }
            cur[y] = j;
            uint64_t want = t;
            for (int l = 0; l < K && j < nin; l++, want += zstep) {
                while (j < nin && ik[j] < want)
                    j++;
                if (j < nin && ik[j] == want &&
                    vec_push(&J->v[k0 + y * K + l], (int32_t)j, (int32_t)o) < 0)
                    return -1;
            }
        }
    }
    return 0;
}

static int merge128(const job *J, int k)
{
    if (!J->ik2 || !J->ok2)
        return -1;
    mn_u128 d = (mn_u128)(__int128)J->delta[k];
    size_t j = 0;
    for (size_t o = 0; o < J->nout && j < J->nin; o++) {
        mn_u128 t = J->ok2[o] + d;
        while (j < J->nin && J->ik2[j] < t)
            j++;
        if (j < J->nin && J->ik2[j] == t && vec_push(&J->v[k], (int32_t)j, (int32_t)o) < 0)
            return -1;
    }
    return 0;
}

static int probe(const job *J, int k)
{
    if (!J->ok || !J->tab.s)
        return -1;
    uint64_t d = (uint64_t)J->delta[k];
    for (size_t o = 0; o < J->nout; o++) {
        int32_t i = table_find(&J->tab, J->ok[o] + d);
        if (i >= 0 && vec_push(&J->v[k], i, (int32_t)o) < 0)
            return -1;
    }
    return 0;
}

typedef struct worker {
    job *J;
    int id;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    job *J = w->J;
    if (!J->ik2 && J->method == MN_SORT && J->K > 1) { /* a line of K offsets at a time */
        for (int x = w->id; x < J->K; x += J->threads) /* one walk per dx */
            if (merge64_line(J, x * J->K * J->K) < 0)
                __atomic_store_n(&J->failed, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    for (int k = w->id; k < J->nk; k += J->threads) {
        int rc = J->ik2 ? merge128(J, k) : J->method == MN_HASH ? probe(J, k) : merge64(J, k);
        if (rc < 0)
            __atomic_store_n(&J->failed, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static bool ascending64(const uint64_t *k, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (k[i - 1] >= k[i])
            return false;
    return true;
}

static bool ascending128(const mn_u128 *k, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (k[i - 1] >= k[i])
            return false;
    return true;
}

int mn_threads(int want)
{
    if (want > 0)
        return want;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Keys of both coordinate sets in one layout; MN_EINVAL when either is not strictly
 * ascending (unsorted or with duplicates). */
static mn_status make_keys(job *J, const mn_coords *in, const mn_coords *out, const mn_layout_t *L)
{
    size_t a = in->n ? in->n : 1, b = out->n ? out->n : 1;
    bool sorted;
    if (!L->wide) {
        uint64_t *ik = malloc(a * sizeof *ik), *ok = malloc(b * sizeof *ok);
        J->ik = ik;
        J->ok = ok;
        if (!ik || !ok)
            return mn_fail(MN_ENOMEM, "out of memory");
        mn_keys64(in, L, ik);
        mn_keys64(out, L, ok);
        sorted = ascending64(ik, in->n) && ascending64(ok, out->n);
    } else {
        mn_u128 *ik = malloc(a * sizeof *ik), *ok = malloc(b * sizeof *ok);
        J->ik2 = ik;
        J->ok2 = ok;
        if (!ik || !ok)
            return mn_fail(MN_ENOMEM, "out of memory");
        mn_keys128(in, L, ik);
        mn_keys128(out, L, ok);
        sorted = ascending128(ik, in->n) && ascending128(ok, out->n);
    }
    return sorted ? MN_OK
                  : mn_fail(MN_EINVAL, "coordinates not sorted or with duplicates: use mn_sort");
}

/* Run the workers: dx planes (sort-based, K > 1) or single offsets, spread over threads. */
static mn_status run_workers(job *J, int threads)
{
    int units = !J->ik2 && J->method == MN_SORT && J->K > 1 ? J->K : J->nk;
    int nt = mn_threads(threads);
    nt = nt < units ? nt : units;
    nt = nt < 64 ? nt : 64;
    J->threads = nt;
    pthread_t t[64];
    worker w[64] = {{0}};
    for (int i = 0; i < nt; i++) {
        w[i] = (worker){J, i};
        if (i > 0)
            pthread_create(&t[i], NULL, work, &w[i]);
    }
    work(&w[0]);
    for (int i = 1; i < nt; i++)
        pthread_join(t[i], NULL);
    return J->failed ? mn_fail(MN_ENOMEM, "out of memory for the kernel map") : MN_OK;
}

/* Hand the per-offset vectors over to the map. */
static mn_status collect(job *J, int K, mn_kmap *map)
{
    map->K = K;
    map->nk = J->nk;
    map->count = calloc((size_t)J->nk, sizeof *map->count);
    map->in = calloc((size_t)J->nk, sizeof *map->in);
    map->out = calloc((size_t)J->nk, sizeof *map->out);
    if (!map->count || !map->in || !map->out)
        return mn_fail(MN_ENOMEM, "out of memory");
    for (int k = 0; k < J->nk; k++) {
        map->count[k] = J->v[k].n;
        map->in[k] = J->v[k].in;
        map->out[k] = J->v[k].out;
        map->total += J->v[k].n;
        J->v[k] = (vec){0};
    }
    return MN_OK;
}

mn_status mn_kmap_build(const mn_coords *in, const mn_coords *out, int K, int t_in, int dilation,
                        mn_method method, int threads, mn_kmap *map)
{
    memset(map, 0, sizeof *map);
    if (K < 1 || K > 15 || t_in < 1 || dilation < 1 || (int64_t)t_in * dilation > (1 << 24))
        return mn_fail(MN_EINVAL,
                       "kernel %d, tensor stride %d, dilation %d: accepted kernel 1..15, "
                       "strides and dilation >= 1",
                       K, t_in, dilation);
    if (method != MN_SORT && method != MN_HASH)
        return mn_fail(MN_EINVAL, "unknown map method %d", (int)method);
    if (in->n > INT32_MAX || out->n > INT32_MAX)
        return mn_fail(MN_EINVAL, "at most 2^31 - 1 rows");
    if (in->n == 0 || out->n == 0)
        return mn_fail(MN_EEMPTY, "no %s coordinates", in->n == 0 ? "input" : "output");
    int nk = K * K * K;
    int64_t step = (int64_t)t_in * dilation;
    int64_t(*d)[3] = malloc((size_t)nk * sizeof *d);
    int64_t *delta = malloc((size_t)nk * sizeof *delta);
    job J = {.nin = in->n, .nout = out->n, .nk = nk, .K = K, .method = method, .delta = delta};
    mn_layout_t L;
    mn_status st;
    if (!d || !delta) {
        st = mn_fail(MN_ENOMEM, "out of memory");
        goto done;
    }
    offsets(K, step, d);
    if ((st = mn_layout(in, out, (K % 2 ? K / 2 : K - 1) * step, &L)) != MN_OK)
        goto done;
    for (int k = 0; k < nk; k++)
        delta[k] = mn_key_delta(&L, d[k][0], d[k][1], d[k][2]);
    if ((st = make_keys(&J, in, out, &L)) != MN_OK)
        goto done;
    if (method == MN_HASH && !L.wide && table_build(&J.tab, J.ik, in->n) < 0) {
        st = mn_fail(MN_ENOMEM, "out of memory for the hash table");
        goto done;
    }
    /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc): the analyzer loses J.ik here; freed at done */
    J.v = calloc((size_t)nk, sizeof *J.v);
    if (!J.v) {
        st = mn_fail(MN_ENOMEM, "out of memory");
        goto done;
    }
    if ((st = run_workers(&J, threads)) == MN_OK)
        st = collect(&J, K, map);
done:
    for (int k = 0; J.v && k < nk; k++) {
        free(J.v[k].in);
        free(J.v[k].out);
    }
    free(J.v);
    free(J.tab.s);
    free(J.ik);
    free(J.ok);
    free(J.ik2);
    free(J.ok2);
    free(d);
    free(delta);
    if (st != MN_OK)
        mn_kmap_free(map);
    return st;
}

void mn_kmap_free(mn_kmap *map)
{
    for (int k = 0; k < map->nk; k++) {
        if (map->in)
            free(map->in[k]);
        if (map->out)
            free(map->out[k]);
    }
    free(map->in);
    free(map->out);
    free(map->count);
    memset(map, 0, sizeof *map);
}
