/* minuet: the Minuet command: voxelize point clouds, build kernel maps, run a sparse
 * convolution, and time sort-based against hash-based map building.
 *
 * Sections: options, voxelize, gen, kmap, conv, bench-kmap, main.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <time.h>

#include "minuet.h"

static const char usage[] =
    "usage: minuet COMMAND [options]\n"
    "\n"
    "  voxelize --input CLOUD --voxel SIZE --out coords.npy [--batch B]\n"
    "        CLOUD: .ply (ascii or binary little-endian), .xyz/.txt/.pts, or gen:N[:SEED] for a\n"
    "        synthetic LiDAR-like scene of N points; writes int32 [N,4] (batch, x, y, z), sorted\n"
    "  kmap --coords C.npy --kernel K [--stride S] [--tensor-stride T] [--dilation D]\n"
    "       [--method sort|hash] [--threads N] [--json]\n"
    "        pairs per offset (outputs: C itself, or its stride-S downsampling) and the time\n"
    "  conv --coords C.npy --feats F.npy --weights W.npy --kernel K [--stride S]\n"
    "       [--dilation D] [--out-coords OC.npy] --out OUT.npy [--threads N] [--device cpu]\n"
    "        float32 features [N, Cin] in row order of C, weights [K^3, Cin, Cout] (or\n"
    "        [K^3*Cin, Cout]); writes the output features [M, Cout] and coordinates [M, 4]\n"
    "  bench-kmap --input CLOUD --voxel SIZE [--kernel K] [--threads N] [--repeat R]\n"
    "        build the submanifold map both ways; prints seconds and the speed-up\n"
    "  bench --input CLOUD --voxel SIZE --net resnet21|unet42 [--channels W0,W1,W2,W3,W4]\n"
    "        [--method sort|hash] [--threads N]\n"
    "        a network forward pass (random weights), per-stage times (map, gather, GEMM,\n"
    "        scatter), and the level-0 map built both ways; default widths 16,32,64,128,256\n"
    "        run twice: the first run autotunes each layer shape it meets, the second is\n"
    "        the steady state; then the tuned choices\n"
    "Environment: MINUET_DEVICE=cpu|cuda|auto (default auto; the hook's backend: this command\n"
    "runs on the CPU, and cuda fails where the CUDA backend cannot run, naming why),\n"
    "MINUET_TUNE=on|off (default on: conv and bench autotune each layer shape),\n"
    "MINUET_TUNE_CACHE=FILE (JSON; keeps the tuned choices across runs).\n"
    "Options may be given in any order. Exit status: 0 ok, 1 error (a message says why), 2 usage.\n";

typedef struct opts {
    const char *input, *coords, *feats, *weights, *out, *out_coords;
    double voxel;
    int K, stride, tstride, dilation, threads, batch, repeat;
    mn_method method;
    bool json;
    const char *net, *channels;
} opts;

static int fail(void)
{
    fprintf(stderr, "minuet: %s\n", mn_last_error());
    return 1;
}

static int usage_err(const char *msg)
{
    fprintf(stderr, "minuet: %s\n(see minuet --help)\n", msg);
    return 2;
}

/* Input files that are readable but do not fit together: exit status 1, with the shapes. */
static int data_err(const char *what, const mn_array *A, const char *want)
{
    fprintf(stderr, "minuet: %s is %s [%zu, %zu]: %s\n", what,
            A->dtype == 'f' ? "float32" : "int32", A->rows, A->cols, want);
    return 1;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* A cloud from a file, or gen:N[:SEED]. */
static mn_status load_cloud(const char *spec, mn_cloud *cl)
{
    if (strncmp(spec, "gen:", 4) == 0) {
        char *end;
        double n = strtod(spec + 4, &end);
        uint64_t seed = *end == ':' ? strtoull(end + 1, NULL, 10) : 1;
        return mn_scene((size_t)n, seed, cl);
    }
    return mn_cloud_read(spec, cl);
}

static mn_status load_coords(const char *path, mn_coords *co)
{
    mn_array a;
    mn_status st = mn_npy_read(path, &a);
    if (st != MN_OK)
        return st;
    if (a.dtype != 'i' || a.cols != 4) {
        free(a.data);
        fprintf(stderr, "minuet: %s: coordinates must be int32 [N, 4]\n", path);
        return MN_EFORMAT;
    }
    co->c = a.data;
    co->n = a.rows;
    return MN_OK;
}

/* ---- commands -------------------------------------------------------------------------- */

static int cmd_voxelize(const opts *o)
{
    if (!o->input || !o->out || !(o->voxel > 0))
        return usage_err("voxelize needs --input, --voxel > 0 and --out");
    mn_cloud cl;
    mn_coords co;
    if (load_cloud(o->input, &cl) != MN_OK || mn_voxelize(&cl, o->voxel, o->batch, &co) != MN_OK)
        return fail();
    mn_array a = {'i', co.n, 4, co.c};
    if (mn_npy_write(o->out, &a) != MN_OK)
        return fail();
    printf("%zu points -> %zu voxels of %g\n", cl.n, co.n, o->voxel);
    mn_cloud_free(&cl);
    free(co.c);
    return 0;
}

/* The output coordinates: the inputs themselves, or their downsampling. */
static int outputs(const opts *o, const mn_coords *in, mn_coords *out)
{
    if (o->stride <= 1) {
        *out = *in;
        return 0;
    }
    return mn_downsample(in, o->tstride, o->stride, out) == MN_OK ? 0 : -1;
}

static int cmd_kmap(const opts *o)
{
    if (!o->coords || o->K < 1)
        return usage_err("kmap needs --coords and --kernel");
    mn_coords in, out;
    if (load_coords(o->coords, &in) != MN_OK || mn_sort(&in, NULL) != MN_OK ||
        outputs(o, &in, &out) < 0)
        return fail();
    mn_kmap m;
    double t0 = now();
    if (mn_kmap_build(&in, &out, o->K, o->tstride, o->dilation, o->method, o->threads, &m) != MN_OK)
        return fail();
    double secs = now() - t0;
    const char *method = o->method == MN_SORT ? "sort" : "hash";
    if (o->json) {
        printf("{\"offsets\":%d,\"inputs\":%zu,\"outputs\":%zu,\"pairs\":[", m.nk, in.n, out.n);
        for (int k = 0; k < m.nk; k++)
            printf("%s%zu", k ? "," : "", m.count[k]);
        printf("],\"total\":%zu,\"method\":\"%s\",\"seconds\":%.6f}\n", m.total, method, secs);
    } else {
        printf("%zu inputs, %zu outputs, kernel %d: %zu pairs over %d offsets in %.4f s (%s)\n",
               in.n, out.n, o->K, m.total, m.nk, secs, method);
        for (int k = 0; k < m.nk; k++)
            printf("  offset %d: %zu\n", k, m.count[k]);
    }
    mn_kmap_free(&m);
    if (out.c != in.c)
        free(out.c);
    free(in.c);
    return 0;
}

static int cmd_conv(const opts *o)
{
    if (!o->coords || !o->feats || !o->weights || !o->out || o->K < 1)
        return usage_err("conv needs --coords, --feats, --weights, --kernel and --out");
    mn_coords in, out;
    mn_array F, W;
    if (load_coords(o->coords, &in) != MN_OK || mn_npy_read(o->feats, &F) != MN_OK ||
        mn_npy_read(o->weights, &W) != MN_OK)
        return fail();
    int nk = o->K * o->K * o->K;
    if (F.dtype != 'f' || F.rows != in.n)
        return data_err("--feats", &F, "expected float32 [N, Cin], N the number of coordinates");
    size_t cin = F.cols, cout = W.cols;
    if (W.dtype != 'f' || W.rows != (size_t)nk * cin)
        return data_err(
            "--weights", &W,
            "expected float32 [K^3, Cin, Cout] (or [K^3 * Cin, Cout]) for this K and Cin");
    /* Features follow the rows of the file; the engine wants sorted coordinates. */
    uint32_t *perm = malloc(in.n * sizeof *perm);
    float *fs = malloc(in.n * cin * sizeof *fs);
    if (!perm || !fs || mn_sort(&in, perm) != MN_OK || outputs(o, &in, &out) < 0)
        return fail();
    for (size_t i = 0; i < in.n; i++)
        memcpy(fs + i * cin, (float *)F.data + (size_t)perm[i] * cin, cin * sizeof *fs);
    mn_kmap m;
    float *y = malloc((out.n ? out.n : 1) * cout * sizeof *y);
    mn_conv_opts co = {
        .group_threshold = MN_DEFAULT_GROUP_THRESHOLD, .threads = o->threads, .autotune = true};
    if (!y ||
        mn_kmap_build(&in, &out, o->K, o->tstride, o->dilation, MN_SORT, o->threads, &m) != MN_OK ||
        mn_conv(&m, fs, in.n, (int)cin, W.data, NULL, (int)cout, y, out.n, &co) != MN_OK)
        return fail();
    mn_array Y = {'f', out.n, cout, y}, OC = {'i', out.n, 4, out.c};
    if (mn_npy_write(o->out, &Y) != MN_OK ||
        (o->out_coords && mn_npy_write(o->out_coords, &OC) != MN_OK))
        return fail();
    printf("%zu x %zu -> %zu x %zu features, %zu pairs\n", in.n, cin, out.n, cout, m.total);
    mn_kmap_free(&m);
    return 0;
}

static int cmd_bench_kmap(const opts *o)
{
    if (!o->input || !(o->voxel > 0))
        return usage_err("bench-kmap needs --input and --voxel");
    mn_cloud cl;
    mn_coords co;
    if (load_cloud(o->input, &cl) != MN_OK || mn_voxelize(&cl, o->voxel, 0, &co) != MN_OK)
        return fail();
    double best[2] = {1e9, 1e9}, sort_s = 1e9;
    size_t pairs = 0;
    mn_coords sh = {malloc(co.n * 16), co.n}, c = {malloc(co.n * 16), co.n};
    if (!sh.c || !c.c) {
        free(sh.c);
        free(c.c);
        return usage_err("out of memory");
    }
    /* The sort is part of the sort-based method: time it from shuffled rows. */
    memcpy(sh.c, co.c, co.n * 16);
    uint64_t s = 42;
    for (size_t i = co.n; i > 1; i--) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t j = (size_t)(s >> 33) % i;
        int32_t t[4];
        memcpy(t, sh.c + 4 * (i - 1), 16);
        memcpy(sh.c + 4 * (i - 1), sh.c + 4 * j, 16);
        memcpy(sh.c + 4 * j, t, 16);
    }
    for (int r = 0; r < o->repeat; r++) {
        for (int m = 0; m < 2; m++) {
            memcpy(c.c, sh.c, co.n * 16);
            double t0 = now();
            mn_kmap km;
            if (mn_sort_threads(&c, NULL, o->threads) != MN_OK)
                break;
            double t1 = now();
            if (mn_kmap_build(&c, &c, o->K, 1, 1, m ? MN_HASH : MN_SORT, o->threads, &km) != MN_OK)
                break;
            double t2 = now();
            /* The maps index the sorted rows either way; the hash method's own cost is its
             * table and probes, the sort-based one's is the sort plus the merges. */
            best[m] = fmin(best[m], t2 - t1);
            if (!m)
                sort_s = fmin(sort_s, t1 - t0);
            pairs = km.total;
            mn_kmap_free(&km);
        }
    }
    free(sh.c);
    free(c.c);
    if (best[0] >= 1e9 || best[1] >= 1e9)
        return fail();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf(
        "%zu points, %zu voxels (%g), kernel %d, %d threads: %zu pairs; sort %.4f s + map %.4f s = %.4f s; hash map %.4f s; hash / sort-based (sort included) %.1fx; peak RSS %ld MiB\n",
        cl.n, co.n, o->voxel, o->K, o->threads, pairs, sort_s, best[0], sort_s + best[0], best[1],
        best[1] / (sort_s + best[0]), ru.ru_maxrss / 1024);
    mn_cloud_free(&cl);
    free(co.c);
    return 0;
}

static int cmd_bench(const opts *o)
{
    if (!o->input || !(o->voxel > 0) || !o->net)
        return usage_err("bench needs --input, --voxel and --net");
    mn_net_kind kind;
    if (strcmp(o->net, "resnet21") == 0)
        kind = MN_RESNET21;
    else if (strcmp(o->net, "unet42") == 0)
        kind = MN_UNET42;
    else
        return usage_err("--net: accepted resnet21 or unet42");
    int w[5] = {16, 32, 64, 128, 256};
    if (o->channels) {
        const char *p = o->channels;
        for (int i = 0; i < 5; i++) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || v < 1 || v > 4096 || *end != (i < 4 ? ',' : '\0'))
                return usage_err("--channels: five comma-separated widths, 1..4096");
            w[i] = (int)v;
            p = end + 1;
        }
    }
    mn_cloud cl;
    mn_coords co;
    if (load_cloud(o->input, &cl) != MN_OK || mn_voxelize(&cl, o->voxel, 0, &co) != MN_OK)
        return fail();
    /* Input features: 1 and the voxel's coordinates, scaled. */
    float *f = malloc(co.n * 4 * sizeof *f);
    if (!f)
        return usage_err("out of memory");
    for (size_t i = 0; i < co.n; i++) {
        f[4 * i] = 1;
        for (int d = 1; d < 4; d++)
            f[4 * i + d] = (float)co.c[4 * i + d] * 0.01f;
    }
    mn_net *net;
    float *y = NULL;
    size_t ny;
    int cy;
    mn_net_stats st;
    if (mn_net_create(kind, 4, w, 1, &net) != MN_OK)
        return fail();
    printf(
        "%s on %zu points -> %zu voxels (%g), widths %d,%d,%d,%d,%d, %d threads, maps %s, autotune %s:\n",
        o->net, cl.n, co.n, o->voxel, w[0], w[1], w[2], w[3], w[4],
        o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN),
        o->method == MN_SORT ? "sort" : "hash", mn_tune_enabled() ? "on" : "off");
    /* Twice: the first run tunes the layer shapes it meets (unless cached), the second is
     * the steady state. */
    for (int run = 0; run < 2; run++) {
        free(y);
        if (mn_net_forward(net, &co, f, o->method, o->threads, &y, &ny, &cy, &st) != MN_OK)
            return fail();
        double sum = 0;
        for (size_t i = 0; i < ny * (size_t)cy; i++)
            sum += y[i];
        printf(
            "  %s run: %zu convolutions, %zu pairs; total %.3f s: maps %.3f s, tuning %.3f s, gather %.3f s, GEMM %.3f s, scatter %.3f s, other %.3f s; output %zu x %d (checksum %.6g)\n",
            run ? "second" : "first", st.convs, st.pairs, st.total_s, st.map_s, st.tune_s,
            st.gather_s, st.gemm_s, st.scatter_s, st.other_s, ny, cy, sum);
    }
    mn_tune_entry te[64];
    size_t nt = mn_tune_entries(te, 64);
    for (size_t i = 0; i < nt && i < 64; i++)
        printf(
            "  tuned %-52s %-7s threshold %-4g batch %-10zu tile %4zu x %-3d sample %.2f ms (defaults %.2f ms)%s\n",
            te[i].shape, te[i].dataflow == MN_FUSED ? "fused" : "grouped", te[i].group_threshold,
            te[i].batch_rows, te[i].tile_rows, te[i].tile_channels, te[i].tuned_ms,
            te[i].default_ms, te[i].from_cache ? ", from the cache" : "");
    for (int m = 0; m < 2; m++) { /* the level-0 map alone, both ways */
        mn_kmap km;
        double t0 = now();
        if (mn_kmap_build(&co, &co, 3, 1, 1, m ? MN_HASH : MN_SORT, o->threads, &km) != MN_OK)
            return fail();
        printf("  level-0 map (%zu pairs): %s %.4f s\n", km.total, m ? "hash" : "sort", now() - t0);
        mn_kmap_free(&km);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("  peak RSS %ld MiB\n", ru.ru_maxrss / 1024);
    mn_net_free(net);
    free(y);
    free(f);
    free(co.c);
    mn_cloud_free(&cl);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"input", 1, NULL, 'i'},         {"coords", 1, NULL, 'c'},   {"feats", 1, NULL, 'f'},
        {"weights", 1, NULL, 'w'},       {"out", 1, NULL, 'o'},      {"out-coords", 1, NULL, 'O'},
        {"voxel", 1, NULL, 'v'},         {"kernel", 1, NULL, 'k'},   {"stride", 1, NULL, 's'},
        {"tensor-stride", 1, NULL, 't'}, {"dilation", 1, NULL, 'd'}, {"threads", 1, NULL, 'T'},
        {"batch", 1, NULL, 'b'},         {"method", 1, NULL, 'm'},   {"json", 0, NULL, 'j'},
        {"repeat", 1, NULL, 'r'},        {"device", 1, NULL, 'D'},   {"help", 0, NULL, 'h'},
        {"net", 1, NULL, 'n'},           {"channels", 1, NULL, 'C'}, {NULL, 0, NULL, 0}};
    opts o = {.K = 3, .stride = 1, .tstride = 1, .dilation = 1, .repeat = 3, .method = MN_SORT};
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    optind = 2;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        char *end = NULL;
        switch (ch) {
        case 'i':
            o.input = optarg;
            break;
        case 'c':
            o.coords = optarg;
            break;
        case 'f':
            o.feats = optarg;
            break;
        case 'w':
            o.weights = optarg;
            break;
        case 'o':
            o.out = optarg;
            break;
        case 'O':
            o.out_coords = optarg;
            break;
        case 'v':
            o.voxel = strtod(optarg, &end);
            break;
        case 'k':
            o.K = (int)strtol(optarg, &end, 10);
            break;
        case 's':
            o.stride = (int)strtol(optarg, &end, 10);
            break;
        case 't':
            o.tstride = (int)strtol(optarg, &end, 10);
            break;
        case 'd':
            o.dilation = (int)strtol(optarg, &end, 10);
            break;
        case 'T':
            o.threads = (int)strtol(optarg, &end, 10);
            break;
        case 'b':
            o.batch = (int)strtol(optarg, &end, 10);
            break;
        case 'r':
            o.repeat = (int)strtol(optarg, &end, 10);
            break;
        case 'j':
            o.json = true;
            break;
        case 'm':
            if (strcmp(optarg, "sort") != 0 && strcmp(optarg, "hash") != 0)
                return usage_err("--method: accepted sort or hash");
            o.method = strcmp(optarg, "hash") == 0 ? MN_HASH : MN_SORT;
            break;
        case 'D':
            if (strcmp(optarg, "cuda") == 0) {
                /* the command's files are on the host: its commands run on the CPU backend;
                 * the CUDA backend takes device pointers (the hook; minuet-cuda-check) */
                if (mn_cuda_init() != MN_OK)
                    fprintf(stderr, "minuet: --device cuda: %s\n", mn_last_error());
                else
                    fprintf(stderr,
                            "minuet: --device cuda: the minuet command runs on the CPU "
                            "backend (the CUDA backend on %s takes device memory: "
                            "minuet-cuda-check times it)\n",
                            mn_cuda_device_name());
                return 1;
            }
            if (strcmp(optarg, "cpu") != 0)
                return usage_err("--device: cpu or cuda");
            break;
        case 'n':
            o.net = optarg;
            break;
        case 'C':
            o.channels = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            return usage_err("unknown option");
        }
        if (end && *end)
            return usage_err("a numeric option has trailing characters");
    }
    if (optind < argc)
        return usage_err("unexpected argument");
    if (o.repeat < 1)
        o.repeat = 1;
    if (strcmp(cmd, "voxelize") == 0)
        return cmd_voxelize(&o);
    if (strcmp(cmd, "kmap") == 0)
        return cmd_kmap(&o);
    if (strcmp(cmd, "conv") == 0)
        return mn_config() != MN_OK ? fail() : cmd_conv(&o);
    if (strcmp(cmd, "bench-kmap") == 0)
        return cmd_bench_kmap(&o);
    if (strcmp(cmd, "bench") == 0)
        return mn_config() != MN_OK ? fail() : cmd_bench(&o);
    return usage_err("unknown command");
}
