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
 * Submanifold maps of odd K (the same rows in and out) are symmetric, for both builders:
 * the pairs of offset -d are those of d with input and output swapped, so only the offsets
 * below the centre are searched, the centre is the identity (one array for inputs and
 * outputs), and each offset above it shares its twin's arrays, swapped (mn_kmap_symmetric
 * turns this off, for the tests).
 *
 * Threads take runs of lines (sort-based, dense maps), ranges of outputs (sort-based,
 * sparse maps) or offsets in turn (hash-based); each offset's pairs come out ordered by
 * output row, so the map is the same whatever the thread count.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "keys.h"

typedef struct vec {
    int32_t *in, *out; /* out may be in (the identity offset) */
    size_t n, cap;
    bool borrowed; /* the arrays are another offset's (a mirrored one) */
} vec;

/* Free v's arrays if it owns them, and empty it. */
static void vec_free(vec *v)
{
    if (!v->borrowed) {
        if (v->out != v->in)
            free(v->out);
        free(v->in);
    }
    *v = (vec){0};
}

/* Double the arrays (1024 pairs at first). */
static int vec_grow(vec *v)
{
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
    return 0;
}

static int vec_push(vec *v, int32_t i, int32_t o)
{
    if (v->n == v->cap && vec_grow(v) < 0)
        return -1;
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

/* A line of a sort-based walk: the offsets k .. k + nl - 1, consecutive in dz (same dx, dy). */
typedef struct line {
    int k, nl;
} line;

typedef struct job {
    uint64_t *ik, *ok;  /* input and output keys (64-bit layouts); ok == ik when symmetric */
    mn_u128 *ik2, *ok2; /* or 128-bit */
    size_t nin, nout;
    const mn_u128 *delta; /* key delta per offset (64-bit keys: its low 64 bits) */
    int nk, threads, K;
    mn_method method;
    /* Symmetric (inputs == outputs, odd K): only the offsets below the centre are searched;
     * the centre is the identity and each offset above it the mirror of one below. */
    bool sym;
    int units; /* offsets searched (one at a time: hash, 128-bit keys, K = 1) */
    /* Or the sort-based walks' lines, nlines of them: every thread walks every line over its
     * own range of outputs, into parts (nk vecs a thread), then each offset's parts are
     * joined in output order into v. Sparse maps (the walks' sample found few pairs; unit z
     * step) walk more lines at a time, in another form. */
    line *lines;
    int nlines;
    bool sparse;
    vec *parts;
    table tab;
    vec *v;
    int failed;
} job;

/* Whether submanifold maps use the symmetric shortcut (mn_kmap_symmetric; default on). */
static int sym_enabled = 1;

bool mn_kmap_symmetric(bool on)
{
    return __atomic_exchange_n(&sym_enabled, on ? 1 : 0, __ATOMIC_RELAXED) != 0;
}

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

/* Lines served by one walk over the outputs: at most a few. In dense maps, DENSE_LINES (at
 * 10^6 voxels, one thread, walks of 1 to 3 lines took the same time and walks of 9 lines
 * 20 % more; at 1.5 * 10^6 voxels walks of 5 lines took 18 % more than walks of 3); in
 * sparse maps WALK_LINES, every line of a symmetric K = 3 map (whose cursors then advance
 * together: at 94 602 voxels the map took 0.0019 s with walks of 3 lines, 0.0017 s with 5). */
#define WALK_LINES  5
#define DENSE_LINES 3

/* Keys past the last input: a sentinel above every query (the input keys are allocated
 * KEY_PAD entries longer and filled with it, so the walks read ahead of the cursor without
 * bounds checks; a match at index nin, should a key equal it, is rejected by its index).
 * The cursor reads 4 entries ahead, a line of K offsets K - 1 <= 14. */
#define KEY_PAD 16

/* How many of a[0..4) are below t (a ascending): branch-free. */
static inline size_t below4(const uint64_t *a, uint64_t t)
{
    return (size_t)(a[0] < t) + (size_t)(a[1] < t) + (size_t)(a[2] < t) + (size_t)(a[3] < t);
}

/* First index >= j with key >= t: four entries branch-free, then (rarely) a galloping
 * search. ik is padded with the sentinel, so the result is at most nin. */
static inline size_t seek64(const uint64_t *ik, size_t nin, size_t j, uint64_t t)
{
    size_t c = below4(ik + j, t);
    j += c;
    if (c == 4)
        j = gallop64(ik, nin, j, t);
    return j;
}

/* seek64 with a second branch-free step of four before the galloping search (sparse lines
 * skip more inputs per output; at 94 602 voxels their walks took 7 % less time). */
static inline size_t seek64_8(const uint64_t *ik, size_t nin, size_t j, uint64_t t)
{
    size_t c = below4(ik + j, t);
    return c == 4 ? seek64(ik, nin, j + 4, t) : j + c;
}

/* Room for `more` pairs in v. */
static int vec_room(vec *v, size_t more)
{
    while (v->cap - v->n < more)
        if (vec_grow(v) < 0)
            return -1;
    return 0;
}

/* Outputs per block of a walk: each line of the walk takes the block in turn, with its
 * cursor and its arrays' ends in registers, and the block's keys stay in the L1 cache. */
#define WALK_BLOCK 512

/* Sparse lines: fewer pairs than one per SPARSE_DIV outputs (in a map's sample, and per
 * line in a block of a sparse map's walk). */
#define SPARSE_DIV 8

/* One line over outputs [o0, o1), unit step (the keys of a line's offsets are consecutive
 * integers): the input wanted by the l-th offset, if present, is at j + (how many of
 * ik[j .. j + l) are below it), where j is the cursor (the first input at or above the
 * first offset's key). Every pair is written and kept only when it matches (the count
 * advances by the comparison): no data-dependent branch but the rare long seek. The arrays
 * have room for o1 - o0 more pairs. NL: the line's offsets (a constant when inlined). */
static inline size_t line_unit(const uint64_t *ik, size_t nin, const uint64_t *ok, size_t o0,
                               size_t o1, uint64_t d, size_t j, vec *w, int NL)
{
    int32_t *pi[15], *po[15];
    for (int l = 0; l < NL; l++) {
        pi[l] = w[l].in + w[l].n;
        po[l] = w[l].out + w[l].n;
    }
    for (size_t o = o0; o < o1; o++) {
        uint64_t want = ok[o] + d;
        j = seek64(ik, nin, j, want);
        const uint64_t *a = ik + j;
        for (int l = 0; l < NL; l++) {
            uint64_t t = want + (uint64_t)l;
            size_t p = j;
            for (int m = 0; m < l; m++)
                p += a[m] < t;
            size_t hit = (size_t)((ik[p] == t) & (p < nin));
            *pi[l] = (int32_t)p;
            *po[l] = (int32_t)o;
            pi[l] += hit;
            po[l] += hit;
        }
    }
    for (int l = 0; l < NL; l++)
        w[l].n = (size_t)(pi[l] - w[l].in);
    return j;
}

/* Sparse blocks, where most outputs have no input on a line: the walk's lines (up to
 * WALK_LINES, unit step) advance together, output by output, so that their cursors' seeks,
 * each a chain of loads and comparisons through its cursor, overlap. Per line and output:
 * the seek, then one comparison (is the first input at or above the wanted key within the
 * line's nl keys?), rarely true and so well predicted; the inputs of a hit are the
 * consecutive ones from the cursor. NLN: the lines (a constant when inlined). */
static inline void lines_sparse(const uint64_t *ik, size_t nin, const uint64_t *ok, size_t o0,
                                size_t o1, const uint64_t *d, const int *nl, size_t *cur,
                                vec *const *w, int NLN)
{
    size_t j[WALK_LINES];
    for (int y = 0; y < NLN; y++)
        j[y] = cur[y];
    for (size_t o = o0; o < o1; o++) {
        uint64_t key = ok[o];
        for (int y = 0; y < NLN; y++) {
            uint64_t t = key + d[y];
            j[y] = seek64_8(ik, nin, j[y], t);
            if (ik[j[y]] - t >= (uint64_t)nl[y]) /* ik[j] >= t: no input in [t, t + nl) */
                continue;
            for (size_t p = j[y]; p < nin && ik[p] - t < (uint64_t)nl[y]; p++) {
                vec *v = &w[y][ik[p] - t];
                v->in[v->n] = (int32_t)p;
                v->out[v->n++] = (int32_t)o;
            }
        }
    }
    for (int y = 0; y < NLN; y++)
        cur[y] = j[y];
}

/* Dense blocks of NLN lines of three offsets (K = 3), together: per output, each line's
 * seek and its three candidate pairs written branch-free, so that the lines' cursor chains
 * overlap. */
static inline void lines_unit3(const uint64_t *ik, size_t nin, const uint64_t *ok, size_t o0,
                               size_t o1, const uint64_t *d, size_t *cur, vec *const *w, int NLN)
{
    int32_t *pi[DENSE_LINES][3], *po[DENSE_LINES][3];
    size_t j[DENSE_LINES];
    for (int y = 0; y < NLN; y++) {
        j[y] = cur[y];
        for (int l = 0; l < 3; l++) {
            pi[y][l] = w[y][l].in + w[y][l].n;
            po[y][l] = w[y][l].out + w[y][l].n;
        }
    }
    for (size_t o = o0; o < o1; o++) {
        uint64_t key = ok[o];
        for (int y = 0; y < NLN; y++) {
            uint64_t t = key + d[y];
            size_t jj = seek64(ik, nin, j[y], t);
            j[y] = jj;
            uint64_t a0 = ik[jj], a1 = ik[jj + 1];
            size_t p1 = jj + (a0 < t + 1), p2 = jj + (a0 < t + 2) + (a1 < t + 2);
            size_t h0 = (size_t)((a0 == t) & (jj < nin));
            size_t h1 = (size_t)((ik[p1] == t + 1) & (p1 < nin));
            size_t h2 = (size_t)((ik[p2] == t + 2) & (p2 < nin));
            *pi[y][0] = (int32_t)jj;
            *po[y][0] = (int32_t)o;
            *pi[y][1] = (int32_t)p1;
            *po[y][1] = (int32_t)o;
            *pi[y][2] = (int32_t)p2;
            *po[y][2] = (int32_t)o;
            pi[y][0] += h0;
            po[y][0] += h0;
            pi[y][1] += h1;
            po[y][1] += h1;
            pi[y][2] += h2;
            po[y][2] += h2;
        }
    }
    for (int y = 0; y < NLN; y++) {
        cur[y] = j[y];
        for (int l = 0; l < 3; l++)
            w[y][l].n = (size_t)(pi[y][l] - w[y][l].in);
    }
}

/* The same for any step: each offset seeks on from the previous one's input. */
static size_t line_step(const uint64_t *ik, size_t nin, const uint64_t *ok, size_t o0, size_t o1,
                        uint64_t d, uint64_t zstep, size_t j, vec *w, int nl)
{
    size_t cur = j;
    for (size_t o = o0; o < o1; o++) {
        uint64_t want = ok[o] + d;
        cur = seek64(ik, nin, cur, want);
        j = cur;
        for (int l = 0; l < nl; l++, want += zstep) {
            if (l > 0)
                j = seek64(ik, nin, j, want);
            size_t n = w[l].n;
            w[l].in[n] = (int32_t)j;
            w[l].out[n] = (int32_t)o;
            w[l].n = n + (size_t)((ik[j] == want) & (j < nin));
        }
    }
    return cur;
}

/* One walk over outputs [ob, oe) for up to WALK_LINES lines, into v (one vec per offset).
 * The offsets of a line (same dx and dy, dz = z0, z0 + step, ...) have query keys that
 * differ only in the lowest field, so one output's matches on a line are consecutive
 * inputs: a cursor per line finds the first candidate (seek64) and the line's offsets look
 * on from it. Dense maps (J->sparse false) take the branch-free forms over each block,
 * lines of three offsets together (lines_unit3), others one at a time; in sparse ones, the
 * lines whose last block found fewer pairs than one per SPARSE_DIV outputs advance together
 * (lines_sparse), the others as in dense maps. */
static int walk64(const job *J, const line *ln, int nln, vec *v, size_t ob, size_t oe)
{
    if (!J->ik || !J->ok || J->K < 2 || J->K > 15 || nln < 1 || nln > WALK_LINES)
        return -1;
    const uint64_t *ik = J->ik, *ok = J->ok;
    const size_t nin = J->nin;
    uint64_t zstep = (uint64_t)(J->delta[1] - J->delta[0]);
    size_t cur[WALK_LINES];
    bool sparse[WALK_LINES];
    uint64_t d[WALK_LINES];
    int nls[WALK_LINES];
    vec *ws[WALK_LINES];
    size_t before[WALK_LINES];
    for (int y = 0; y < nln; y++) {
        d[y] = (uint64_t)J->delta[ln[y].k];
        nls[y] = ln[y].nl;
        ws[y] = &v[ln[y].k];
        cur[y] = ob < oe ? gallop64(ik, nin, 0, ok[ob] + d[y]) : 0;
        sparse[y] = J->sparse;
    }
    for (size_t o0 = ob; o0 < oe; o0 += WALK_BLOCK) {
        size_t o1 = oe - o0 < WALK_BLOCK ? oe : o0 + WALK_BLOCK;
        int ns = 0, sy[WALK_LINES], snl[WALK_LINES];
        uint64_t sd[WALK_LINES];
        size_t scur[WALK_LINES];
        vec *sw[WALK_LINES];
        for (int y = 0; y < nln; y++) {
            before[y] = 0;
            for (int l = 0; l < nls[y]; l++) {
                if (vec_room(&ws[y][l], o1 - o0) < 0)
                    return -1;
                before[y] += ws[y][l].n;
            }
            if (sparse[y]) {
                sy[ns] = y;
                sd[ns] = d[y];
                snl[ns] = nls[y];
                scur[ns] = cur[y];
                sw[ns++] = ws[y];
            }
        }
        switch (ns) { /* the sparse lines together */
        case 0:
            break;
        case 1:
            lines_sparse(ik, nin, ok, o0, o1, sd, snl, scur, sw, 1);
            break;
        case 2:
            lines_sparse(ik, nin, ok, o0, o1, sd, snl, scur, sw, 2);
            break;
        case 3:
            lines_sparse(ik, nin, ok, o0, o1, sd, snl, scur, sw, 3);
            break;
        case 4:
            lines_sparse(ik, nin, ok, o0, o1, sd, snl, scur, sw, 4);
            break;
        default:
            lines_sparse(ik, nin, ok, o0, o1, sd, snl, scur, sw, WALK_LINES);
            break;
        }
        for (int i = 0; i < ns; i++)
            cur[sy[i]] = scur[i];
        /* Dense lines of three offsets, up to three of them together (at 711 805 voxels
         * the map took 4-7 % less time than one line at a time); the rest one by one. */
        int nd3 = 0, dy[WALK_LINES] = {0};
        uint64_t dd[WALK_LINES];
        size_t dcur[WALK_LINES] = {0};
        vec *dw[WALK_LINES];
        for (int y = 0; y < nln && zstep == 1; y++)
            if (!sparse[y] && nls[y] == 3 && nd3 < DENSE_LINES) {
                dy[nd3] = y;
                dd[nd3] = d[y];
                dcur[nd3] = cur[y];
                dw[nd3++] = ws[y];
            }
        if (nd3 == 3)
            lines_unit3(ik, nin, ok, o0, o1, dd, dcur, dw, 3);
        else if (nd3 == 2)
            lines_unit3(ik, nin, ok, o0, o1, dd, dcur, dw, 2);
        else if (nd3 == 1)
            lines_unit3(ik, nin, ok, o0, o1, dd, dcur, dw, 1);
        bool done[WALK_LINES] = {false};
        for (int i = 0; i < nd3; i++) {
            cur[dy[i]] = dcur[i];
            done[dy[i]] = true;
        }
        for (int y = 0; y < nln; y++) { /* the others one by one */
            if (done[y])
                continue;
            vec *w = ws[y];
            int nl = nls[y];
            if (sparse[y])
                continue;
            if (zstep != 1)
                cur[y] = line_step(ik, nin, ok, o0, o1, d[y], zstep, cur[y], w, nl);
            else if (nl == 1)
                cur[y] = line_unit(ik, nin, ok, o0, o1, d[y], cur[y], w, 1);
            else
                cur[y] = line_unit(ik, nin, ok, o0, o1, d[y], cur[y], w, nl);
        }
        for (int y = 0; y < nln && J->sparse; y++) {
            size_t after = 0;
            for (int l = 0; l < nls[y]; l++)
                after += ws[y][l].n;
            sparse[y] = (after - before[y]) * SPARSE_DIV < o1 - o0;
        }
    }
    return 0;
}

static int merge128(const job *J, int k)
{
    if (!J->ik2 || !J->ok2)
        return -1;
    mn_u128 d = J->delta[k];
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

/* Symmetric maps. The pairs of -d are those of d with input and output swapped: (i, o) with
 * coord(o) + d = coord(i) is (o, i) for -d. Adding d preserves the key order, so along the
 * pairs of d, ordered by output row, the input rows ascend too: the swapped arrays are
 * already ordered by their new output row, and the mirrored offset shares them (its inputs
 * are d's outputs and its outputs d's inputs; no copy). */
static int mirror(const job *J, int k)
{
    const vec *s = &J->v[k];
    vec *m = &J->v[J->nk - 1 - k];
    if (s->n == 0) /* empty offsets have no arrays */
        return 0;
    *m = (vec){.in = s->out, .out = s->in, .n = s->n, .cap = s->n, .borrowed = true};
    return 0;
}

/* The centre offset of a symmetric map: every row paired with itself (one array, its inputs
 * and its outputs). */
static int identity(const job *J)
{
    vec *m = &J->v[J->nk / 2];
    size_t n = J->nout;
    m->in = m->out = malloc(n * sizeof *m->in);
    if (!m->in)
        return -1;
    for (size_t i = 0; i < n; i++)
        m->in[i] = (int32_t)i;
    m->n = m->cap = n;
    return 0;
}

typedef struct worker {
    job *J;
    int id;
} worker;

static void worker_failed(job *J) { __atomic_store_n(&J->failed, 1, __ATOMIC_RELAXED); }

/* The centre of a symmetric map, by the last thread, once the searches are done. */
static void worker_identity(const worker *w)
{
    if (w->J->sym && w->id == w->J->threads - 1 && identity(w->J) < 0)
        worker_failed(w->J);
}

/* Maps without walks (hash-based, 128-bit keys, K = 1): this thread's offsets in turn, then
 * their mirrors. */
static void *work(void *arg)
{
    worker *w = arg;
    job *J = w->J;
    int rc = 0;
    for (int k = w->id; k < J->units && rc == 0; k += J->threads) {
        rc = J->ik2 ? merge128(J, k) : J->method == MN_HASH ? probe(J, k) : merge64(J, k);
        if (rc == 0 && J->sym)
            rc = mirror(J, k);
    }
    if (rc < 0)
        worker_failed(J);
    else
        worker_identity(w);
    return NULL;
}

/* Walks, first step: every line over this thread's range of outputs. */
static void *work_rows(void *arg)
{
    worker *w = arg;
    job *J = w->J;
    size_t ob = J->nout * (size_t)w->id / (size_t)J->threads;
    size_t oe = J->nout * (size_t)(w->id + 1) / (size_t)J->threads;
    vec *v = J->parts + (size_t)w->id * (size_t)J->nk;
    int per = J->sparse ? WALK_LINES : DENSE_LINES;
    for (int l0 = 0; l0 < J->nlines; l0 += per) {
        int n = J->nlines - l0 < per ? J->nlines - l0 : per;
        if (walk64(J, J->lines + l0, n, v, ob, oe) < 0) {
            worker_failed(J);
            break;
        }
    }
    return NULL;
}

/* Walks, second step: the searched offsets k = id, id + threads, ...: their parts
 * joined in thread (= output) order, then mirrored. */
static void *work_join(void *arg)
{
    worker *w = arg;
    job *J = w->J;
    int rc = 0;
    for (int k = w->id; k < J->units && rc == 0; k += J->threads) {
        vec *v = &J->v[k];
        *v = J->parts[k]; /* part 0's arrays, grown to hold the rest */
        J->parts[k] = (vec){0};
        size_t total = v->n;
        for (int t = 1; t < J->threads; t++)
            total += J->parts[(size_t)t * (size_t)J->nk + (size_t)k].n;
        if (total > v->n && (rc = vec_room(v, total - v->n)) < 0)
            break;
        for (int t = 1; t < J->threads; t++) {
            vec *p = &J->parts[(size_t)t * (size_t)J->nk + (size_t)k];
            if (p->n) {
                memcpy(v->in + v->n, p->in, p->n * sizeof *p->in);
                memcpy(v->out + v->n, p->out, p->n * sizeof *p->out);
                v->n += p->n;
            }
        }
        if (J->sym)
            rc = mirror(J, k);
    }
    if (rc < 0)
        worker_failed(J);
    else
        worker_identity(w);
    return NULL;
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
 * ascending (unsorted or with duplicates). When the two sets hold the same rows (`same`),
 * the outputs share the inputs' keys. */
static mn_status make_keys(job *J, const mn_coords *in, const mn_coords *out, const mn_layout_t *L,
                           bool same, int threads)
{
    size_t a = in->n ? in->n : 1, b = out->n ? out->n : 1;
    bool sorted;
    if (!L->wide) {
        uint64_t *ik = malloc((a + KEY_PAD) * sizeof *ik);
        J->ik = J->ok = ik;
        if (!ik)
            return mn_fail(MN_ENOMEM, "out of memory");
        sorted = mn_keys64(in, L, ik, threads);
        for (size_t i = in->n; i < in->n + KEY_PAD; i++)
            ik[i] = UINT64_MAX;
        if (!same) {
            uint64_t *ok = malloc(b * sizeof *ok);
            J->ok = ok;
            if (!ok)
                return mn_fail(MN_ENOMEM, "out of memory");
            sorted &= mn_keys64(out, L, ok, threads);
        }
    } else {
        mn_u128 *ik = malloc(a * sizeof *ik);
        J->ik2 = J->ok2 = ik;
        if (!ik)
            return mn_fail(MN_ENOMEM, "out of memory");
        mn_keys128(in, L, ik, threads);
        if (!same) {
            mn_u128 *ok = malloc(b * sizeof *ok);
            J->ok2 = ok;
            if (!ok)
                return mn_fail(MN_ENOMEM, "out of memory");
            mn_keys128(out, L, ok, threads);
        }
        sorted = ascending128(ik, in->n) && (same || ascending128(J->ok2, out->n));
    }
    return sorted ? MN_OK
                  : mn_fail(MN_EINVAL, "coordinates not sorted or with duplicates: use mn_sort");
}

/* The sort-based walks' lines (every line of K offsets, or in a symmetric map the offsets
 * below the centre), split into nt contiguous runs of about equal cost (a line costs its
 * cursor's walk, about K steps, plus one step per offset). */
static mn_status plan_lines(job *J)
{
    int K = J->K, half = J->nk / 2;
    J->lines = malloc((size_t)K * (size_t)K * sizeof *J->lines);
    if (!J->lines)
        return mn_fail(MN_ENOMEM, "out of memory");
    J->nlines = 0;
    for (int k = 0; k < J->nk; k += K) {
        int nl = J->sym ? (half - k < K ? half - k : K) : K;
        if (nl <= 0)
            break;
        J->lines[J->nlines++] = (line){k, nl};
    }
    return MN_OK;
}

/* Whether the walks' lines are sparse: on SAMPLE outputs spread evenly, fewer pairs than
 * one per SPARSE_DIV outputs and lines. */
#define SAMPLE 128
static bool sample_sparse(const job *J)
{
    size_t S = J->nout < SAMPLE ? J->nout : SAMPLE, found = 0;
    for (size_t s = 0; s < S; s++) {
        uint64_t key = J->ok[J->nout * s / S];
        for (int y = 0; y < J->nlines; y++) {
            uint64_t t = key + (uint64_t)J->delta[J->lines[y].k];
            for (size_t p = gallop64(J->ik, J->nin, 0, t);
                 p < J->nin && J->ik[p] - t < (uint64_t)J->lines[y].nl; p++)
                found++;
        }
    }
    return found * SPARSE_DIV < S * (size_t)J->nlines;
}

/* Run the workers: sort-based walks (64-bit keys, K > 1) over ranges of outputs, or single
 * offsets over the threads. */
static mn_status run_workers(job *J, int threads)
{
    bool walks = !J->ik2 && J->method == MN_SORT && J->K > 1;
    J->units = J->sym ? J->nk / 2 : J->nk;
    int nt = mn_threads(threads);
    nt = nt < MN_RUN_MAX ? nt : MN_RUN_MAX;
    worker w[MN_RUN_MAX] = {{0}};
    if (walks) {
        mn_status st = plan_lines(J);
        if (st != MN_OK)
            return st;
        J->sparse = J->nk > 1 && J->nlines > 0 && (uint64_t)(J->delta[1] - J->delta[0]) == 1 &&
                    sample_sparse(J);
        /* Ranges of at least MN_PAR_BELOW / 4 outputs (or one range): at 711 805 voxels on 2
         * threads, dense maps took 5 % less time than with the lines split between the
         * threads (5 lines do not split evenly in 2), joins included. */
        size_t most = J->nout / (MN_PAR_BELOW / 4);
        most = most ? most : 1;
        J->threads = (size_t)nt < most ? nt : (int)most;
        J->parts = calloc((size_t)J->threads * (size_t)J->nk, sizeof *J->parts);
        if (!J->parts)
            return mn_fail(MN_ENOMEM, "out of memory");
        for (int i = 0; i < J->threads; i++)
            w[i] = (worker){J, i};
        mn_parts_run(w, sizeof w[0], J->threads, work_rows);
        if (!J->failed)
            mn_parts_run(w, sizeof w[0], J->threads, work_join);
    } else {
        nt = nt < J->units ? nt : J->units;
        nt = nt > 0 ? nt : 1; /* a symmetric K = 1 map: no search, only the identity */
        J->threads = nt;
        for (int i = 0; i < nt; i++)
            w[i] = (worker){J, i};
        /* A part whose thread cannot start runs here (it used to be joined unstarted, its
         * offsets left unsearched). */
        mn_parts_run(w, sizeof w[0], nt, work);
    }
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
        if (J->v[k].n == 0) /* empty offsets have no arrays, whatever the builder */
            vec_free(&J->v[k]);
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
        return mn_fail(
            MN_EINVAL,
            "kernel %d, tensor stride %d, dilation %d: accepted kernel 1..15, strides and dilation >= 1",
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
    mn_u128 *delta = malloc((size_t)nk * sizeof *delta);
    /* A submanifold map (the same rows in and out) of odd K is symmetric. */
    bool same = in->n == out->n &&
                (in->c == out->c || memcmp(in->c, out->c, in->n * 4 * sizeof *in->c) == 0);
    job J = {.nin = in->n,
             .nout = out->n,
             .nk = nk,
             .K = K,
             .method = method,
             .delta = delta,
             .sym = same && K % 2 == 1 && __atomic_load_n(&sym_enabled, __ATOMIC_RELAXED)};
    mn_layout_t L;
    mn_status st;
    if (!d || !delta) {
        st = mn_fail(MN_ENOMEM, "out of memory");
        goto done;
    }
    offsets(K, step, d);
    if ((st = mn_layout_threads(in, same ? NULL : out, (K % 2 ? K / 2 : K - 1) * step, threads,
                                &L)) != MN_OK)
        goto done;
    for (int k = 0; k < nk; k++)
        delta[k] = mn_key_delta(&L, d[k][0], d[k][1], d[k][2]);
    if ((st = make_keys(&J, in, out, &L, same, threads)) != MN_OK)
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
    if (st == MN_OK) {
        map->n_in = in->n;
        map->n_out = out->n;
    }
done:
    for (int k = 0; J.v && k < nk; k++)
        vec_free(&J.v[k]);
    free(J.v);
    for (size_t i = 0; J.parts && i < (size_t)J.threads * (size_t)nk; i++)
        vec_free(&J.parts[i]);
    free(J.parts);
    free(J.tab.s);
    if (J.ok != J.ik)
        free(J.ok);
    free(J.ik);
    if (J.ok2 != J.ik2)
        free(J.ok2);
    free(J.ik2);
    free(J.lines);
    free(d);
    free(delta);
    if (st != MN_OK)
        mn_kmap_free(map);
    return mn_done(st);
}

/* Offsets share arrays in two ways only (mirror, identity): offset k above the centre has
 * its twin nk - 1 - k's arrays, swapped, and the identity offset one array for inputs and
 * outputs. Each array is freed once, by its owner. */
void mn_kmap_free(mn_kmap *map)
{
    for (int k = 0; map->in && map->out && k < map->nk; k++) {
        int twin = map->nk - 1 - k;
        if (k > twin && map->in[k] && map->in[k] == map->out[twin])
            continue; /* a mirror: its twin frees them */
        if (map->out[k] != map->in[k])
            free(map->out[k]);
        free(map->in[k]);
    }
    free(map->in);
    free(map->out);
    free(map->count);
    memset(map, 0, sizeof *map);
}
