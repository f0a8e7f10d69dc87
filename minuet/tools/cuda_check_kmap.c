/* cuda_check_kmap.c: minuet-cuda-check's part for kmap.cu: the device sort against mn_sort, the
 * packed keys against keys.h's layout and keys, and the device kernel maps (mn_cuda_kmap_build
 * with MN_SORT and MN_HASH, mn_cuda_dtbs at every block size, mn_cuda_hash_map) against
 * mn_kmap_build, offset by offset and pair by pair, on fresh random coordinates (several
 * batches, negative coordinates). Refusals are checked too: duplicates, coordinates past 64
 * bits of key, unsorted inputs, bad arguments (the same status and message as the CPU).
 *
 * Sections: helpers, sorting, keys and the search kernels, kernel maps, refusals.
 */
#include <stdlib.h>
#include <string.h>

#include "cuda_check.h"
#include "keys.h"

/* ---- helpers ------------------------------------------------------------------------------ */

/* A malloc'd copy of co's rows in a random order. */
static mn_coords shuffled(const mn_coords *co)
{
    mn_coords s = {.c = malloc((co->n ? co->n : 1) * 4 * sizeof(int32_t)), .n = co->n};
    if (!s.c) {
        fprintf(stderr, "minuet-cuda-check: out of memory\n");
        exit(1);
    }
    memcpy(s.c, co->c, co->n * 4 * sizeof(int32_t));
    for (size_t i = co->n; i > 1; i--) {
        size_t j = ck_rand() % i;
        int32_t t[4];
        memcpy(t, s.c + 4 * (i - 1), sizeof t);
        memcpy(s.c + 4 * (i - 1), s.c + 4 * j, sizeof t);
        memcpy(s.c + 4 * j, t, sizeof t);
    }
    return s;
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "minuet-cuda-check: out of memory\n");
        exit(1);
    }
    return p;
}

/* Whether the device map g holds the CPU map c's pairs: the same sizes, and for every offset the
 * same count and the same (input, output) pairs in the same order. The first difference goes to
 * why. */
static bool same_map(const mn_kmap *c, const mn_cuda_kmap *g, char *why, size_t len)
{
    if (g->nk != c->nk || g->K != c->K || g->total != c->total || g->n_in != c->n_in ||
        g->n_out != c->n_out || !g->start || !g->in || !g->out) {
        snprintf(why, len, "map K %d nk %d total %zu rows %zu -> %zu, CPU K %d nk %d total %zu",
                 g->K, g->nk, g->total, g->n_in, g->n_out, c->K, c->nk, c->total);
        return false;
    }
    int32_t *in = xmalloc(g->total * sizeof *in), *out = xmalloc(g->total * sizeof *out);
    ck_to_host(in, g->in, g->total * sizeof *in);
    ck_to_host(out, g->out, g->total * sizeof *out);
    bool ok = g->start[0] == 0 && g->start[g->nk] == g->total;
    if (!ok)
        snprintf(why, len, "start[0] %zu, start[nk] %zu, total %zu", g->start[0], g->start[g->nk],
                 g->total);
    for (int k = 0; ok && k < g->nk; k++) {
        size_t s = g->start[k], n = g->start[k + 1] - s;
        if (g->start[k + 1] < s || g->start[k + 1] > g->total || n != c->count[k]) {
            snprintf(why, len, "offset %d: pairs [%zu, %zu), CPU %zu pairs", k, s, g->start[k + 1],
                     c->count[k]);
            ok = false;
            break;
        }
        for (size_t p = 0; p < n; p++)
            if (in[s + p] != c->in[k][p] || out[s + p] != c->out[k][p]) {
                snprintf(why, len, "offset %d pair %zu: (%d, %d), CPU (%d, %d)", k, p, in[s + p],
                         out[s + p], c->in[k][p], c->out[k][p]);
                ok = false;
                break;
            }
    }
    free(in);
    free(out);
    return ok;
}

/* The key delta of every offset of a K^3 kernel with spacing step, as kmap.c lays them out
 * (k = (i*K + j)*K + l), for a layout with these shifts: modulo 2^64. */
static uint64_t *deltas(int K, int64_t step, const int shift[4])
{
    int nk = K * K * K, lo = K % 2 ? -(K / 2) : 0;
    uint64_t *d = xmalloc((size_t)nk * sizeof *d);
    for (int k = 0; k < nk; k++) {
        int64_t o[4] = {0, (lo + k / (K * K)) * step, (lo + k / K % K) * step, (lo + k % K) * step};
        uint64_t v = 0;
        for (int f = 1; f < 4; f++)
            if (shift[f] < 64)
                v += (uint64_t)o[f] << shift[f];
        d[k] = v;
    }
    return d;
}

/* ---- sorting -------------------------------------------------------------------------------- */

/* mn_cuda_sort against mn_sort on the same shuffled unique rows: rows and perm identical. */
static int check_sort(size_t n, int batches)
{
    mn_coords co = ck_random_coords(n, batches, 0);
    mn_coords cpu = shuffled(&co);
    int32_t *rows = xmalloc(n * 4 * sizeof *rows);
    memcpy(rows, cpu.c, n * 4 * sizeof *rows);
    int32_t *d = ck_dup_to_device(rows, n * 4 * sizeof *rows);
    uint32_t *d_perm = ck_dalloc_poisoned(n * sizeof *d_perm);
    uint32_t *perm = xmalloc(n * sizeof *perm), *gperm = xmalloc(n * sizeof *gperm);
    CK_MN(mn_sort(&cpu, perm));
    mn_status st = mn_cuda_sort(d, n, d_perm, NULL);
    char why[300] = "";
    bool ok = st == MN_OK;
    if (!ok) {
        snprintf(why, sizeof why, "%s: %s", mn_status_name(st), mn_last_error());
    } else {
        ck_to_host(rows, d, n * 4 * sizeof *rows);
        ck_to_host(gperm, d_perm, n * sizeof *gperm);
        for (size_t i = 0; ok && i < n; i++)
            if (memcmp(rows + 4 * i, cpu.c + 4 * i, 4 * sizeof *rows) != 0 || gperm[i] != perm[i]) {
                snprintf(
                    why, sizeof why, "row %zu: (%d, %d, %d, %d) perm %u, CPU (%d, %d, %d, %d) %u",
                    i, rows[4 * i], rows[4 * i + 1], rows[4 * i + 2], rows[4 * i + 3], gperm[i],
                    cpu.c[4 * i], cpu.c[4 * i + 1], cpu.c[4 * i + 2], cpu.c[4 * i + 3], perm[i]);
                ok = false;
            }
    }
    char config[64];
    snprintf(config, sizeof config, "n=%zu batches=%d", n, batches);
    ck_report("kmap sort", config, ok, "%s", ok ? "rows and perm as mn_sort's" : why);
    ck_dfree(d);
    ck_dfree(d_perm);
    free(perm);
    free(gperm);
    free(rows);
    free(cpu.c);
    free(co.c);
    return !ok;
}

/* A planted duplicate: MN_EDUP with the CPU's message (the coordinate and both original rows),
 * and the rows left as they were. */
static int check_sort_dup(void)
{
    size_t n = 1000;
    mn_coords co = ck_random_coords(n, 2, 0);
    mn_coords cpu = shuffled(&co);
    size_t a = ck_rand() % n, b = (a + 1 + ck_rand() % (n - 1)) % n;
    memcpy(cpu.c + 4 * b, cpu.c + 4 * a, 4 * sizeof(int32_t));
    int32_t *orig = xmalloc(n * 4 * sizeof *orig), *back = xmalloc(n * 4 * sizeof *back);
    memcpy(orig, cpu.c, n * 4 * sizeof *orig);
    int32_t *d = ck_dup_to_device(orig, n * 4 * sizeof *orig);
    mn_status cs = mn_sort(&cpu, NULL);
    char cmsg[300];
    snprintf(cmsg, sizeof cmsg, "%s", mn_last_error());
    mn_status gs = mn_cuda_sort(d, n, NULL, NULL);
    char gmsg[300];
    snprintf(gmsg, sizeof gmsg, "%s", mn_last_error());
    ck_to_host(back, d, n * 4 * sizeof *back);
    bool ok = cs == MN_EDUP && gs == MN_EDUP && strcmp(cmsg, gmsg) == 0 &&
              memcmp(back, orig, n * 4 * sizeof *orig) == 0;
    ck_report("kmap sort", "planted duplicate", ok, "%s: \"%s\", CPU %s: \"%s\"",
              mn_status_name(gs), gmsg, mn_status_name(cs), cmsg);
    ck_dfree(d);
    free(orig);
    free(back);
    free(cpu.c);
    free(co.c);
    return !ok;
}

/* Coordinates whose fields span 97 bits: MN_ERANGE (the CPU sorts them by comparison). */
static int check_sort_range(void)
{
    int32_t rows[16] = {0, INT32_MIN, INT32_MIN, INT32_MIN, 0, INT32_MAX, INT32_MAX, INT32_MAX,
                        1, 0,         0,         0,         0, 5,         -7,        9};
    int32_t back[16];
    int32_t *d = ck_dup_to_device(rows, sizeof rows);
    mn_status st = mn_cuda_sort(d, 4, NULL, NULL);
    ck_to_host(back, d, sizeof back);
    bool ok = st == MN_ERANGE && memcmp(back, rows, sizeof rows) == 0;
    ck_report("kmap sort", "97 bits of key", ok, "%s: %s", mn_status_name(st), mn_last_error());
    ck_dfree(d);
    return !ok;
}

/* ---- keys and the search kernels -------------------------------------------------------------- */

/* The rows of in followed by those of out, on the device: one key layout covers both. */
static int32_t *dup_both(const mn_coords *in, const mn_coords *out)
{
    size_t bytes = (in->n + out->n) * 4 * sizeof(int32_t);
    int32_t *h = xmalloc(bytes);
    memcpy(h, in->c, in->n * 4 * sizeof(int32_t));
    memcpy(h + 4 * in->n, out->c, out->n * 4 * sizeof(int32_t));
    int32_t *d = ck_dup_to_device(h, bytes);
    free(h);
    return d;
}

/* mn_cuda_pack_keys on in and out together against mn_layout and mn_keys64; then
 * mn_cuda_dtbs at every block size and mn_cuda_hash_map on those keys against mn_kmap_build. */
static int check_search(const char *what, const mn_coords *in, const mn_coords *out, int K,
                        int t_in)
{
    int failed = 0, nk = K * K * K;
    size_t n = in->n + out->n;
    int64_t margin = (K % 2 ? K / 2 : K - 1) * (int64_t)t_in;
    char config[64], why[300] = "";
    snprintf(config, sizeof config, "%s K=%d n=%zu->%zu", what, K, in->n, out->n);

    int32_t *d_rows = dup_both(in, out);
    uint64_t *d_keys = ck_dalloc_poisoned(n * sizeof *d_keys);
    int64_t base[4];
    int shift[4], bits[4];
    CK_MN(mn_cuda_pack_keys(d_rows, n, margin, NULL, d_keys, base, shift, bits));
    mn_layout_t L;
    CK_MN(mn_layout(in, out, margin, &L));
    mn_coords both = {.c = xmalloc(n * 4 * sizeof(int32_t)), .n = n};
    memcpy(both.c, in->c, in->n * 4 * sizeof(int32_t));
    memcpy(both.c + 4 * in->n, out->c, out->n * 4 * sizeof(int32_t));
    uint64_t *ck = xmalloc(n * sizeof *ck), *gk = xmalloc(n * sizeof *gk);
    (void)mn_keys64(&both, &L, ck, 0);
    ck_to_host(gk, d_keys, n * sizeof *gk);
    bool ok = !L.wide;
    for (int f = 0; f < 4; f++)
        ok &= base[f] == L.base[f] && shift[f] == L.shift[f] && bits[f] == L.bits[f];
    if (!ok)
        snprintf(why, sizeof why, "layout: bits %d %d %d %d, CPU %d %d %d %d", bits[0], bits[1],
                 bits[2], bits[3], L.bits[0], L.bits[1], L.bits[2], L.bits[3]);
    for (size_t i = 0; ok && i < n; i++)
        if (gk[i] != ck[i]) {
            snprintf(why, sizeof why, "row %zu: key %#llx, CPU %#llx", i, (unsigned long long)gk[i],
                     (unsigned long long)ck[i]);
            ok = false;
        }
    ck_report("kmap keys", config, ok, "%s", ok ? "layout and keys as mn_layout/mn_keys64" : why);
    failed += !ok;

    mn_kmap cpu = {0};
    CK_MN(mn_kmap_build(in, out, K, t_in, 1, MN_SORT, 0, &cpu));
    uint64_t *delta = deltas(K, t_in, shift);
    uint64_t *d_delta = ck_dup_to_device(delta, (size_t)nk * sizeof *delta);
    static const int blocks[] = {64, 128, 256, 512};
    for (int b = 0; b < 5; b++) {
        mn_cuda_kmap g;
        memset(&g, 0xFF, sizeof g); /* every field must be written */
        mn_status st =
            b < 4 ? mn_cuda_dtbs(d_keys, in->n, d_keys + in->n, out->n, d_delta, nk, blocks[b],
                                 NULL, &g)
                  : mn_cuda_hash_map(d_keys, in->n, d_keys + in->n, out->n, d_delta, nk, NULL, &g);
        ok = st == MN_OK;
        if (ok)
            ok = same_map(&cpu, &g, why, sizeof why);
        else
            snprintf(why, sizeof why, "%s: %s", mn_status_name(st), mn_last_error());
        char cfg[96];
        if (b < 4)
            snprintf(cfg, sizeof cfg, "%s B=%d", config, blocks[b]);
        else
            snprintf(cfg, sizeof cfg, "%s", config);
        ck_report(b < 4 ? "kmap dtbs" : "kmap hashmap", cfg, ok, "%s",
                  ok ? "pairs as mn_kmap_build's" : why);
        failed += !ok;
        if (st == MN_OK)
            mn_cuda_kmap_free(&g);
    }
    mn_kmap_free(&cpu);
    ck_dfree(d_delta);
    ck_dfree(d_keys);
    ck_dfree(d_rows);
    free(delta);
    free(ck);
    free(gk);
    free(both.c);
    return failed;
}

/* ---- kernel maps ---------------------------------------------------------------------------- */

/* mn_cuda_kmap_build, both methods, against mn_kmap_build with the same arguments. in == out
 * passes one device array for both (the shared keys), unless separate. */
static int check_build(const char *what, const mn_coords *in, const mn_coords *out, int K, int t_in,
                       int dilation, bool separate)
{
    int failed = 0;
    mn_kmap cpu = {0};
    CK_MN(mn_kmap_build(in, out, K, t_in, dilation, MN_SORT, 0, &cpu));
    int32_t *d_in = ck_dup_to_device(in->c, in->n * 4 * sizeof(int32_t));
    int32_t *d_out =
        out == in && !separate ? d_in : ck_dup_to_device(out->c, out->n * 4 * sizeof(int32_t));
    char config[96];
    snprintf(config, sizeof config, "%s K=%d t=%d d=%d n=%zu->%zu", what, K, t_in, dilation, in->n,
             out->n);
    for (int m = 0; m < 2; m++) {
        mn_method method = m ? MN_HASH : MN_SORT;
        mn_cuda_kmap g;
        memset(&g, 0xFF, sizeof g);
        mn_status st =
            mn_cuda_kmap_build(d_in, in->n, d_out, out->n, K, t_in, dilation, method, NULL, &g);
        char why[300] = "";
        bool ok = st == MN_OK;
        if (ok)
            ok = same_map(&cpu, &g, why, sizeof why);
        else
            snprintf(why, sizeof why, "%s: %s", mn_status_name(st), mn_last_error());
        if (ok)
            snprintf(why, sizeof why, "%zu pairs in %d offsets, as mn_kmap_build's", g.total, g.nk);
        char cfg[112];
        snprintf(cfg, sizeof cfg, "%s %s", config, m ? "hash" : "sort");
        ck_report("kmap build", cfg, ok, "%s", why);
        failed += !ok;
        if (st == MN_OK)
            mn_cuda_kmap_free(&g);
    }
    if (d_out != d_in)
        ck_dfree(d_out);
    ck_dfree(d_in);
    mn_kmap_free(&cpu);
    return failed;
}

/* ---- refusals --------------------------------------------------------------------------------- */

/* Inputs not strictly ascending (two rows swapped; a repeated row): MN_EINVAL as on the CPU, the
 * map left empty. */
static int check_unsorted(void)
{
    int failed = 0;
    size_t n = 1000;
    for (int v = 0; v < 2; v++) {
        mn_coords co = ck_random_coords(n, 2, 0);
        size_t a = 1 + ck_rand() % (n - 2);
        if (v == 0) { /* swapped with a later row */
            size_t b = a + 1 + ck_rand() % (n - 1 - a);
            int32_t t[4];
            memcpy(t, co.c + 4 * a, sizeof t);
            memcpy(co.c + 4 * a, co.c + 4 * b, sizeof t);
            memcpy(co.c + 4 * b, t, sizeof t);
        } else { /* row a repeated: sorted, not strictly */
            memcpy(co.c + 4 * (a + 1), co.c + 4 * a, 4 * sizeof(int32_t));
        }
        mn_kmap cpu = {0};
        mn_status cs = mn_kmap_build(&co, &co, 3, 1, 1, MN_SORT, 0, &cpu);
        mn_kmap_free(&cpu);
        int32_t *d = ck_dup_to_device(co.c, n * 4 * sizeof(int32_t));
        for (int m = 0; m < 2; m++) {
            mn_cuda_kmap g;
            memset(&g, 0xFF, sizeof g);
            mn_status gs = mn_cuda_kmap_build(d, n, d, n, 3, 1, 1, m ? MN_HASH : MN_SORT, NULL, &g);
            bool ok = cs == MN_EINVAL && gs == MN_EINVAL && !g.start && !g.in && !g.out &&
                      g.total == 0 && g.nk == 0;
            char config[64];
            snprintf(config, sizeof config, "%s, %s", v ? "repeated row" : "swapped rows",
                     m ? "hash" : "sort");
            ck_report("kmap unsorted", config, ok, "%s: %s", mn_status_name(gs), mn_last_error());
            failed += !ok;
            if (gs == MN_OK)
                mn_cuda_kmap_free(&g);
        }
        ck_dfree(d);
        free(co.c);
    }
    return failed;
}

/* Bad arguments: the CPU's status and message. */
static int check_args(void)
{
    int failed = 0;
    mn_coords co = ck_random_coords(100, 1, 0), none = {co.c, 0};
    int32_t *d = ck_dup_to_device(co.c, co.n * 4 * sizeof(int32_t));
    static const struct {
        const char *what;
        int K, t_in, dilation, method;
        bool empty;
    } cases[] = {{"K=16", 16, 1, 1, MN_SORT, false},  {"K=0", 0, 1, 1, MN_SORT, false},
                 {"t_in=0", 3, 0, 1, MN_SORT, false}, {"dilation=0", 3, 1, 0, MN_HASH, false},
                 {"method 7", 3, 1, 1, 7, false},     {"no inputs", 3, 1, 1, MN_SORT, true}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mn_kmap cpu = {0};
        mn_status cs = mn_kmap_build(cases[i].empty ? &none : &co, &co, cases[i].K, cases[i].t_in,
                                     cases[i].dilation, (mn_method)cases[i].method, 1, &cpu);
        mn_kmap_free(&cpu);
        char cmsg[300];
        snprintf(cmsg, sizeof cmsg, "%s", mn_last_error());
        mn_cuda_kmap g;
        memset(&g, 0xFF, sizeof g);
        mn_status gs =
            mn_cuda_kmap_build(d, cases[i].empty ? 0 : co.n, d, co.n, cases[i].K, cases[i].t_in,
                               cases[i].dilation, (mn_method)cases[i].method, NULL, &g);
        bool ok =
            cs != MN_OK && gs == cs && strcmp(cmsg, mn_last_error()) == 0 && !g.start && !g.in;
        ck_report("kmap args", cases[i].what, ok, "%s: \"%s\", CPU %s: \"%s\"", mn_status_name(gs),
                  mn_last_error(), mn_status_name(cs), cmsg);
        failed += !ok;
        if (gs == MN_OK)
            mn_cuda_kmap_free(&g);
    }
    ck_dfree(d);
    free(co.c);
    return failed;
}

/* mn_downsample or exit. */
static mn_coords down(const mn_coords *in, int t_in, int stride)
{
    mn_coords out = {0};
    CK_MN(mn_downsample(in, t_in, stride, &out));
    return out;
}

int ck_kmap(void)
{
    int failed = 0;
    failed += check_sort(1, 1);
    failed += check_sort(1000, 3);
    failed += check_sort(100000, 4);
    failed += check_sort(1000003, 2);
    failed += check_sort_dup();
    failed += check_sort_range();

    /* Dense coordinates (about a third of a cube occupied, 2 batches), their stride-2 and
     * stride-4 outputs, and coordinates of tensor stride 2. */
    mn_coords big = ck_random_coords(200000, 2, 0), mid = ck_random_coords(100000, 3, 0);
    mn_coords small = ck_random_coords(1000, 1, 0), k5 = ck_random_coords(30000, 2, 0);
    mn_coords big2 = down(&big, 1, 2), mid4 = down(&mid, 1, 4), big4 = down(&big2, 2, 2);
    /* Sparse: 20 000 rows in 2 cubes of side 300 (0.04 % occupied): long key ranges. */
    mn_coords sparse = ck_random_coords(20000, 2, 300);

    failed += check_search("subm", &mid, &mid, 3, 1);
    failed += check_search("stride 4", &mid, &mid4, 4, 1);
    failed += check_search("sparse", &sparse, &sparse, 3, 1);

    failed += check_build("subm", &small, &small, 3, 1, 1, false);
    failed += check_build("subm", &big, &big, 3, 1, 1, false);
    failed += check_build("subm, 2 arrays", &small, &small, 3, 1, 1, true);
    failed += check_build("subm", &k5, &k5, 5, 1, 1, false);
    failed += check_build("subm", &small, &small, 1, 1, 1, false);
    failed += check_build("subm", &small, &small, 15, 1, 1, false);
    failed += check_build("stride 2", &big, &big2, 2, 1, 1, false);
    failed += check_build("stride 4", &mid, &mid4, 4, 1, 1, false);
    failed += check_build("dilated", &mid, &mid, 3, 1, 2, false);
    failed += check_build("subm t_in 2", &big2, &big2, 3, 2, 1, false);
    failed += check_build("stride 2 t_in 2", &big2, &big4, 2, 2, 1, false);
    failed += check_build("sparse", &sparse, &sparse, 3, 1, 1, false);

    failed += check_unsorted();
    failed += check_args();

    free(big.c);
    free(mid.c);
    free(small.c);
    free(k5.c);
    free(big2.c);
    free(mid4.c);
    free(big4.c);
    free(sparse.c);
    return failed;
}
