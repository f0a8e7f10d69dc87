/* minuet-cuda-check: Minuet's CUDA backend on a real GPU (scripts/gpu-check runs it).
 *
 * First every kernel against its CPU twin (cuda_check_kmap.c, cuda_check_conv.c): fresh random
 * inputs each run (the seed is printed; MINUET_CHECK_SEED replays one), outputs poisoned
 * before each kernel runs. Then the timings, on synthetic LiDAR-like scenes (mn_scene,
 * voxel 0.05 m) and on the point clouds named on the command line:
 *   - the sort of the coordinates (mn_cuda_sort);
 *   - kernel maps, sort-based (Minuet's double-traversed binary search, the sort included)
 *     against the hash table on the GPU: submanifold K=3, and strided K=2 s=2;
 *   - one K=3 submanifold convolution at 32 -> 32 channels, forward and backward;
 *   - end to end, map + forward: the sort-based path against the hash-based one;
 *   - the same map and convolution on the CPU backend, all cores.
 * Each GPU time is the median of 5 runs after a warm-up, the host clock read after the
 * stream is synchronised. The table is printed last; --csv FILE writes the rows.
 *
 *   minuet-cuda-check [--checks-only] [--scenes N[,N...]] [--csv FILE] [CLOUD[:VOXEL] ...]
 * (a cloud's voxel size defaults to 0.05; clouds are .ply or .xyz, as mn_cloud_read reads)
 * Exit status: 0 all checks passed, 1 a check failed, 77 no usable GPU (the reason printed).
 */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_check.h"

/* ---- what the parts share (cuda_check.h) ------------------------------------------------- */

static int n_checks, n_failed;
static uint64_t rng_state;

void ck_report(const char *name, const char *config, bool ok, const char *detail_fmt, ...)
{
    char detail[300];
    va_list ap;
    va_start(ap, detail_fmt);
    vsnprintf(detail, sizeof detail, detail_fmt, ap);
    va_end(ap);
    n_checks++;
    if (!ok)
        n_failed++;
    printf("check %-12s %-34s %s (%s)\n", name, config, ok ? "ok" : "FAILED", detail);
    fflush(stdout);
}

uint64_t ck_rand(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

double ck_uniform(void) { return (double)(ck_rand() >> 11) / 9007199254740992.0; }

float ck_normal(void)
{
    double u = ck_uniform(), v = ck_uniform();
    return (float)(sqrt(-2.0 * log(u + 1e-300)) * cos(2.0 * M_PI * v));
}

void *ck_dalloc_poisoned(size_t bytes)
{
    void *p = NULL;
    CK_CUDA(cudaMalloc(&p, bytes ? bytes : 1));
    CK_CUDA(cudaMemset(p, 0xFF, bytes ? bytes : 1)); /* NaN in every float, -1 in every int */
    return p;
}

void *ck_dup_to_device(const void *host, size_t bytes)
{
    void *p = NULL;
    CK_CUDA(cudaMalloc(&p, bytes ? bytes : 1));
    if (bytes)
        CK_CUDA(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice));
    return p;
}

void ck_to_host(void *host, const void *dev, size_t bytes)
{
    CK_CUDA(cudaDeviceSynchronize()); /* a fault in the kernel before surfaces here, named */
    if (bytes)
        CK_CUDA(cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost));
}

void ck_dfree(void *dev)
{
    if (dev)
        CK_CUDA(cudaFree(dev));
}

double ck_rel_err(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i]))
            return NAN;
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

mn_coords ck_random_coords(size_t n, int batches, int extent)
{
    if (n == 0)
        return (mn_coords){0};
    if (batches < 1)
        batches = 1;
    if (extent < 1)
        extent = (int)cbrt(3.0 * (double)n / batches) + 2;
    uint64_t cells = (uint64_t)batches * extent * extent * extent;
    if (cells < n) {
        fprintf(stderr, "ck_random_coords: %zu rows do not fit %d batches of side %d\n", n, batches,
                extent);
        exit(1);
    }
    uint64_t *cand = malloc((n + n / 2 + 16) * sizeof *cand);
    size_t have = 0;
    while (have < n) { /* draw, sort, drop repeats, until n distinct cells */
        size_t want = n + n / 2 + 16;
        while (have < want)
            cand[have++] = ck_rand() % cells;
        qsort(cand, have, sizeof *cand, cmp_u64);
        size_t u = 0;
        for (size_t i = 0; i < have; i++)
            if (u == 0 || cand[i] != cand[u - 1])
                cand[u++] = cand[i];
        have = u;
    }
    for (size_t i = have; i > 1; i--) { /* keep a random n of them */
        size_t j = ck_rand() % i;
        uint64_t t = cand[i - 1];
        cand[i - 1] = cand[j];
        cand[j] = t;
    }
    mn_coords co = {.c = malloc(n * 4 * sizeof(int32_t)), .n = n};
    int half = extent / 2; /* negative coordinates too */
    for (size_t i = 0; i < n; i++) {
        uint64_t v = cand[i];
        co.c[4 * i + 3] = (int32_t)(v % (uint64_t)extent) - half;
        v /= (uint64_t)extent;
        co.c[4 * i + 2] = (int32_t)(v % (uint64_t)extent) - half;
        v /= (uint64_t)extent;
        co.c[4 * i + 1] = (int32_t)(v % (uint64_t)extent) - half;
        co.c[4 * i + 0] = (int32_t)(v / (uint64_t)extent);
    }
    free(cand);
    CK_MN(mn_sort(&co, NULL));
    return co;
}

/* ---- timings ------------------------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define REPS 5
typedef struct timing {
    double v[REPS];
    int n;
} timing;
static double median(timing *t)
{
    qsort(t->v, (size_t)t->n, sizeof t->v[0], cmp_d);
    return t->n ? t->v[t->n / 2] : NAN;
}

/* One row of the table: a scene and what was timed on it (ms). */
typedef struct row {
    char scene[64];
    size_t voxels, pairs;
    double sort_ms, map_sort_ms, map_hash_ms, smap_sort_ms, smap_hash_ms;
    double fwd_ms, bwd_ms, e2e_sort_ms, e2e_hash_ms, cpu_map_ms, cpu_fwd_ms;
} row;

static void time_scene(const char *name, const mn_coords *vox, row *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->scene, sizeof r->scene, "%s", name);
    r->voxels = vox->n;
    size_t n = vox->n, cb = n * 4 * sizeof(int32_t);
    const int C = 32;
    /* the rows shuffled, as a voxelizer's hash order would give them to the sort */
    int32_t *shuf = malloc(cb);
    memcpy(shuf, vox->c, cb);
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = ck_rand() % (i + 1);
        for (int d = 0; d < 4; d++) {
            int32_t t = shuf[4 * i + d];
            shuf[4 * i + d] = shuf[4 * j + d];
            shuf[4 * j + d] = t;
        }
    }
    int32_t *d_shuf = ck_dup_to_device(shuf, cb), *d_work = ck_dalloc_poisoned(cb);
    int32_t *d_sorted = ck_dup_to_device(vox->c, cb);
    uint32_t *d_perm = ck_dalloc_poisoned(n * sizeof(uint32_t));
    timing ts = {0}, tms = {0}, tmh = {0}, tss = {0}, tsh = {0}, tf = {0}, tb = {0};
    mn_cuda_kmap m = {0};
    for (int rep = -1; rep < REPS; rep++) { /* rep -1: the warm-up */
        CK_CUDA(cudaMemcpy(d_work, d_shuf, cb, cudaMemcpyDeviceToDevice));
        CK_CUDA(cudaDeviceSynchronize());
        double t0 = now_s();
        CK_MN(mn_cuda_sort(d_work, n, d_perm, NULL));
        CK_CUDA(cudaDeviceSynchronize());
        double t1 = now_s();
        if (rep == -1) { /* the sort against the voxelizer's (CPU) order, the whole scene */
            int32_t *back = malloc(cb);
            ck_to_host(back, d_work, cb);
            bool same = memcmp(back, vox->c, cb) == 0;
            free(back);
            char cfg[96];
            snprintf(cfg, sizeof cfg, "%s %zu voxels", name, n);
            ck_report("scene sort", cfg, same, "GPU sort of the shuffled rows against the CPU's");
        }
        CK_MN(mn_cuda_kmap_build(d_sorted, n, d_sorted, n, 3, 1, 1, MN_SORT, NULL, &m));
        CK_CUDA(cudaDeviceSynchronize());
        double t2 = now_s();
        r->pairs = m.total;
        mn_cuda_kmap_free(&m);
        CK_MN(mn_cuda_kmap_build(d_sorted, n, d_sorted, n, 3, 1, 1, MN_HASH, NULL, &m));
        CK_CUDA(cudaDeviceSynchronize());
        double t3 = now_s();
        mn_cuda_kmap_free(&m);
        if (rep >= 0) {
            ts.v[ts.n++] = (t1 - t0) * 1e3;
            tms.v[tms.n++] = (t2 - t1) * 1e3;
            tmh.v[tmh.n++] = (t3 - t2) * 1e3;
        }
    }
    r->sort_ms = median(&ts);
    r->map_sort_ms = median(&tms) + r->sort_ms; /* the sort-based map needs sorted rows */
    r->map_hash_ms = median(&tmh);

    /* strided K=2 s=2: outputs downsampled on the CPU */
    mn_coords down = {0};
    CK_MN(mn_downsample(vox, 1, 2, &down));
    int32_t *d_down = ck_dup_to_device(down.c, down.n * 4 * sizeof(int32_t));
    for (int rep = -1; rep < REPS; rep++) {
        double t0 = now_s();
        CK_MN(mn_cuda_kmap_build(d_sorted, n, d_down, down.n, 2, 1, 1, MN_SORT, NULL, &m));
        CK_CUDA(cudaDeviceSynchronize());
        double t1 = now_s();
        mn_cuda_kmap_free(&m);
        CK_MN(mn_cuda_kmap_build(d_sorted, n, d_down, down.n, 2, 1, 1, MN_HASH, NULL, &m));
        CK_CUDA(cudaDeviceSynchronize());
        double t2 = now_s();
        mn_cuda_kmap_free(&m);
        if (rep >= 0) {
            tss.v[tss.n++] = (t1 - t0) * 1e3 + r->sort_ms;
            tsh.v[tsh.n++] = (t2 - t1) * 1e3;
        }
    }
    r->smap_sort_ms = median(&tss);
    r->smap_hash_ms = median(&tsh);

    /* one K=3 32 -> 32 convolution, forward and backward (tiles tuned in the warm-up) */
    CK_MN(mn_cuda_kmap_build(d_sorted, n, d_sorted, n, 3, 1, 1, MN_SORT, NULL, &m));
    size_t fb = n * C * sizeof(float), wb = (size_t)27 * C * C * sizeof(float);
    float *h = malloc(fb > wb ? fb : wb);
    for (size_t i = 0; i < n * C; i++)
        h[i] = ck_normal();
    float *d_in = ck_dup_to_device(h, fb);
    for (size_t i = 0; i < (size_t)27 * C * C; i++)
        h[i] = ck_normal() * 0.05f;
    float *d_w = ck_dup_to_device(h, wb);
    float *d_out = ck_dalloc_poisoned(fb), *d_din = ck_dalloc_poisoned(fb);
    float *d_dw = ck_dalloc_poisoned(wb), *d_db = ck_dalloc_poisoned(C * sizeof(float));
    for (int rep = -1; rep < REPS; rep++) {
        CK_CUDA(cudaDeviceSynchronize());
        double t0 = now_s();
        CK_MN(mn_cuda_conv(&m, d_in, C, d_w, NULL, C, d_out, false, NULL));
        CK_CUDA(cudaDeviceSynchronize());
        double t1 = now_s();
        CK_MN(mn_cuda_conv_backward(&m, d_in, C, d_w, C, d_out, d_din, d_dw, d_db, false, NULL));
        CK_CUDA(cudaDeviceSynchronize());
        double t2 = now_s();
        if (rep >= 0) {
            tf.v[tf.n++] = (t1 - t0) * 1e3;
            tb.v[tb.n++] = (t2 - t1) * 1e3;
        }
    }
    mn_cuda_kmap_free(&m);
    r->fwd_ms = median(&tf);
    r->bwd_ms = median(&tb);
    r->e2e_sort_ms = r->map_sort_ms + r->fwd_ms;
    r->e2e_hash_ms = r->map_hash_ms + r->fwd_ms;

    /* the CPU backend on the same layer, all cores */
    mn_kmap cm = {0};
    double t0 = now_s();
    CK_MN(mn_kmap_build(vox, vox, 3, 1, 1, MN_SORT, 0, &cm));
    double t1 = now_s();
    float *hin = malloc(fb), *hw = malloc(wb), *hout = malloc(fb);
    ck_to_host(hin, d_in, fb);
    ck_to_host(hw, d_w, wb);
    mn_conv_opts o = {.autotune = false, .group_threshold = MN_DEFAULT_GROUP_THRESHOLD};
    double t2 = now_s();
    CK_MN(mn_conv(&cm, hin, n, C, hw, NULL, C, hout, n, &o));
    double t3 = now_s();
    r->cpu_map_ms = (t1 - t0) * 1e3;
    r->cpu_fwd_ms = (t3 - t2) * 1e3;
    /* and the GPU's forward against the CPU's on the whole scene */
    float *gout = malloc(fb);
    ck_to_host(gout, d_out, fb);
    CK_MN(mn_cuda_kmap_build(d_sorted, n, d_sorted, n, 3, 1, 1, MN_SORT, NULL, &m));
    CK_MN(mn_cuda_conv(&m, d_in, C, d_w, NULL, C, d_out, false, NULL));
    ck_to_host(gout, d_out, fb);
    mn_cuda_kmap_free(&m);
    double err = ck_rel_err(gout, hout, n * C);
    char cfg[96];
    snprintf(cfg, sizeof cfg, "%s %zu voxels 32->32", name, n);
    ck_report("scene conv", cfg, err < 1e-5, "GPU against CPU, rel err %.2e", err);
    mn_kmap_free(&cm);
    free(hin), free(hw), free(hout), free(gout), free(h), free(shuf), free(down.c);
    ck_dfree(d_in), ck_dfree(d_w), ck_dfree(d_out), ck_dfree(d_din), ck_dfree(d_dw);
    ck_dfree(d_db), ck_dfree(d_shuf), ck_dfree(d_work), ck_dfree(d_sorted), ck_dfree(d_perm);
    ck_dfree(d_down);
}

static void print_table(const row *rows, int nr, FILE *csv)
{
    if (csv)
        fprintf(csv, "scene,voxels,pairs,sort_ms,map_sort_ms,map_hash_ms,map_hash_over_sort,"
                     "strided_sort_ms,strided_hash_ms,strided_hash_over_sort,fwd_ms,bwd_ms,"
                     "e2e_sort_ms,e2e_hash_ms,e2e_hash_over_sort,cpu_map_ms,cpu_fwd_ms\n");
    printf("\nMinuet on %s (ms, median of %d; map = K=3 submanifold, sort included; strided = K=2 "
           "s=2; fwd/bwd = one 32->32 K=3 layer; e2e = map + fwd)\n",
           mn_cuda_device_name(), REPS);
    printf("%-22s %9s %10s %7s %8s %8s %6s %8s %8s %6s %8s %8s %6s %9s %9s\n", "scene", "voxels",
           "pairs", "sort", "map", "hash", "x", "strided", "hash", "x", "fwd", "bwd", "e2e x",
           "cpu map", "cpu fwd");
    double gm = 0, ge = 0;
    for (int i = 0; i < nr; i++) {
        const row *r = &rows[i];
        double x = r->map_hash_ms / r->map_sort_ms, xs = r->smap_hash_ms / r->smap_sort_ms;
        double xe = r->e2e_hash_ms / r->e2e_sort_ms;
        gm += log(x);
        ge += log(xe);
        printf("%-22s %9zu %10zu %7.2f %8.2f %8.2f %6.2f %8.2f %8.2f %6.2f %8.2f %8.2f %6.2f %9.1f "
               "%9.1f\n",
               r->scene, r->voxels, r->pairs, r->sort_ms, r->map_sort_ms, r->map_hash_ms, x,
               r->smap_sort_ms, r->smap_hash_ms, xs, r->fwd_ms, r->bwd_ms, xe, r->cpu_map_ms,
               r->cpu_fwd_ms);
        if (csv)
            fprintf(csv,
                    "%s,%zu,%zu,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.1f,"
                    "%.1f\n",
                    r->scene, r->voxels, r->pairs, r->sort_ms, r->map_sort_ms, r->map_hash_ms, x,
                    r->smap_sort_ms, r->smap_hash_ms, xs, r->fwd_ms, r->bwd_ms, r->e2e_sort_ms,
                    r->e2e_hash_ms, xe, r->cpu_map_ms, r->cpu_fwd_ms);
    }
    if (nr)
        printf("geometric mean over the scenes: map hash/sort %.2fx, end to end %.2fx\n",
               exp(gm / nr), exp(ge / nr));
}

int main(int argc, char **argv)
{
    bool checks_only = false;
    const char *scenes = "100000,1000000,10000000", *csv_path = NULL;
    const char *clouds[16];
    int nclouds = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--checks-only"))
            checks_only = true;
        else if (!strcmp(argv[i], "--scenes") && i + 1 < argc)
            scenes = argv[++i];
        else if (!strcmp(argv[i], "--csv") && i + 1 < argc)
            csv_path = argv[++i];
        else if (argv[i][0] != '-' && nclouds < 16)
            clouds[nclouds++] = argv[i];
        else {
            fprintf(stderr, "usage: minuet-cuda-check [--checks-only] [--scenes N[,N...]] "
                            "[--csv FILE] [CLOUD[:VOXEL] ...]\n");
            return 2;
        }
    }
    if (mn_cuda_init() != MN_OK) {
        printf("minuet-cuda-check: skipped: %s\n", mn_last_error());
        return 77;
    }
    const char *seed_env = getenv("MINUET_CHECK_SEED");
    uint64_t seed = seed_env ? strtoull(seed_env, NULL, 0) : (uint64_t)time(NULL) * 2654435761u;
    rng_state = seed ? seed : 1;
    printf("minuet-cuda-check on %s, seed %llu (MINUET_CHECK_SEED replays it)\n",
           mn_cuda_device_name(), (unsigned long long)seed);
    double t0 = now_s();
    ck_kmap();
    double t1 = now_s();
    ck_conv();
    double t2 = now_s();
    printf("checks: %d run, %d failed (kernel maps %.1f s, convolution %.1f s)\n", n_checks,
           n_failed, t1 - t0, t2 - t1);
    if (checks_only || n_failed)
        return n_failed ? 1 : 0; /* nothing is timed unless every kernel matched its twin */

    row rows[32];
    int nr = 0;
    char list[256];
    snprintf(list, sizeof list, "%s", scenes);
    for (char *tok = strtok(list, ","); tok && nr < 24; tok = strtok(NULL, ",")) {
        size_t pts = strtoull(tok, NULL, 10);
        mn_cloud cl = {0};
        mn_coords vox = {0};
        CK_MN(mn_scene(pts, 42, &cl));
        CK_MN(mn_voxelize(&cl, 0.05, 0, &vox));
        char name[64];
        snprintf(name, sizeof name, "scene %zu", pts);
        time_scene(name, &vox, &rows[nr++]);
        mn_cloud_free(&cl);
        free(vox.c);
    }
    for (int i = 0; i < nclouds && nr < 32; i++) { /* PATH[:VOXEL] */
        char path[512];
        snprintf(path, sizeof path, "%s", clouds[i]);
        double voxel = 0.05;
        char *colon = strrchr(path, ':');
        if (colon) {
            voxel = strtod(colon + 1, NULL);
            *colon = '\0';
        }
        mn_cloud cl = {0};
        mn_coords vox = {0};
        if (mn_cloud_read(path, &cl) != MN_OK || mn_voxelize(&cl, voxel, 0, &vox) != MN_OK) {
            printf("minuet-cuda-check: %s left out: %s\n", path, mn_last_error());
            mn_cloud_free(&cl);
            continue; /* a bad file costs its row, not the table */
        }
        const char *b = strrchr(path, '/');
        char name[64];
        snprintf(name, sizeof name, "%.50s@%g", b ? b + 1 : path, voxel);
        time_scene(name, &vox, &rows[nr++]);
        mn_cloud_free(&cl);
        free(vox.c);
    }
    FILE *csv = csv_path ? fopen(csv_path, "w") : NULL;
    print_table(rows, nr, csv);
    if (csv)
        fclose(csv);
    printf("checks: %d run, %d failed\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
