/* test_tune.c: Minuet's autotuner and configuration: the tuned convolution gives the same bits
 * as the untuned one; a choice is made once per layer shape and kept in MINUET_TUNE_CACHE,
 * which a new process loads instead of tuning again; a corrupt cache is reported and left as
 * it is; malformed MINUET_* values are refused with a message naming the variable, and
 * MINUET_DEVICE=cuda with the reason where the CUDA backend cannot run. Each Test runs in its
 * own process (Criterion forks), so each starts with an empty table and reads the environment
 * it sets. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mn_test.h"

/* A submanifold K=3 layer on n random points of a span^3 grid: coordinates, map, features,
 * weights. */
typedef struct layer {
    mn_coords c;
    mn_kmap m;
    float *f, *W;
    int ci, co;
} layer;

static layer make_layer(size_t n, int span, int ci, int co)
{
    layer L = {.ci = ci, .co = co};
    L.c = cloud(n, span, 0, 1, 1);
    cr_assert_eq(mn_kmap_build(&L.c, &L.c, 3, 1, 1, MN_SORT, 0, &L.m), MN_OK);
    size_t nw = (size_t)L.m.nk * ci * co;
    L.f = malloc(n * (size_t)ci * sizeof *L.f);
    L.W = malloc((nw ? nw : 1) * sizeof *L.W); /* nw > 0; the analyzer cannot see it */
    for (size_t i = 0; i < n * (size_t)ci; i++)
        L.f[i] = (float)(rnd() % 2001) / 1000.0f - 1.0f;
    for (size_t i = 0; i < nw; i++)
        L.W[i] = (float)(rnd() % 2001) / 1000.0f - 1.0f;
    return L;
}

static void free_layer(layer *L)
{
    mn_kmap_free(&L->m);
    free(L->c.c);
    free(L->f);
    free(L->W);
}

static float *run(const layer *L, bool autotune, mn_status want)
{
    float *y = malloc(L->c.n * (size_t)L->co * sizeof *y);
    mn_conv_opts o = {.group_threshold = MN_DEFAULT_GROUP_THRESHOLD, .autotune = autotune};
    cr_assert_eq(mn_conv(&L->m, L->f, L->c.n, L->ci, L->W, NULL, L->co, y, L->c.n, &o), want, "%s",
                 mn_last_error());
    return y;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s missing", path);
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static char *cache_path(void)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/minuet-tune-test.%ld.json", (long)getpid());
    unlink(path);
    return path;
}

/* In a child process (so this one starts with an empty table): tune the layer once, check
 * the bits and the table; 0 when all is well, else a message and 1. */
static int tune_in_child(const layer *L, const float *plain)
{
    float *tuned = run(L, true, MN_OK);
    mn_tune_entry e[4];
    const char *why = NULL;
    if (memcmp(plain, tuned, L->c.n * (size_t)L->co * sizeof *plain) != 0)
        why = "the tuned convolution computes other bits";
    else if (mn_tune_entries(e, 4) != 1 || e[0].from_cache)
        why = "not one freshly tuned entry";
    else if (!strstr(e[0].shape, "cin 16 cout 24 offsets 27") || !strstr(e[0].device, "cpu: "))
        why = "the key does not name the shape and the device";
    else if (!(e[0].tuned_ms > 0 && e[0].tuned_ms <= e[0].default_ms))
        why = "the defaults are a candidate: the choice cannot be slower";
    free(tuned);
    if (!why) {
        free(run(L, true, MN_OK)); /* the same shape: no second entry */
        if (mn_tune_entries(e, 4) != 1)
            why = "the same shape was tuned twice";
    }
    if (why)
        fprintf(stderr, "%s\n", why);
    return why ? 1 : 0;
}

Test(tune, same_bits_once_per_shape_and_cached)
{
    char *path = cache_path();
    setenv("MINUET_TUNE_CACHE", path, 1);
    layer L = make_layer(20000, 36, 16, 24);
    float *plain = run(&L, false, MN_OK);
    pid_t pid = fork();
    if (pid == 0)
        _exit(tune_in_child(&L, plain));
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "tuning in the first process failed");
    char *text = slurp(path);
    cr_assert(strstr(text, "\"format\": \"minuet-tune 1\""), "%s", text);
    cr_assert(strstr(text, "cin 16 cout 24 offsets 27"), "%s", text);
    free(text);
    /* This process loads the choice instead of timing again, with the same result. */
    float *again = run(&L, true, MN_OK);
    cr_assert_eq(memcmp(again, plain, L.c.n * (size_t)L.co * sizeof *plain), 0);
    mn_tune_entry e[4];
    cr_assert_eq(mn_tune_entries(e, 4), 1);
    cr_assert(e[0].from_cache, "the cache was not used by a new process");
    /* Another shape adds an entry; both are in the file. */
    layer L2 = make_layer(3000, 20, 3, 8);
    free(run(&L2, true, MN_OK));
    cr_assert_eq(mn_tune_entries(e, 4), 2);
    text = slurp(path);
    cr_assert(strstr(text, "cin 16 cout 24") && strstr(text, "cin 3 cout 8"), "%s", text);
    free(text);
    free(plain);
    free(again);
    free_layer(&L);
    free_layer(&L2);
    unlink(path);
}

Test(tune, corrupt_cache_is_reported_and_left_alone)
{
    char *path = cache_path();
    const char bad[] = "{\"format\": \"minuet-tune 1\", \"entries\": [{\"device\": 3}]}\n";
    FILE *f = fopen(path, "w");
    fputs(bad, f);
    fclose(f);
    setenv("MINUET_TUNE_CACHE", path, 1);
    layer L = make_layer(2000, 16, 4, 4);
    float *plain = run(&L, false, MN_OK), *tuned = run(&L, true, MN_OK);
    cr_assert_eq(memcmp(plain, tuned, L.c.n * (size_t)L.co * sizeof *plain), 0);
    char *text = slurp(path);
    cr_assert_str_eq(text, bad, "the corrupt cache was overwritten");
    free(text);
    mn_tune_entry e;
    cr_assert_eq(mn_tune_entries(&e, 1), 1, "tuning goes on in memory");
    free(plain);
    free(tuned);
    free_layer(&L);
    unlink(path);
}

Test(tune, off_means_the_defaults)
{
    setenv("MINUET_TUNE", "off", 1);
    layer L = make_layer(2000, 16, 4, 4);
    free(run(&L, true, MN_OK));
    mn_tune_entry e;
    cr_assert_eq(mn_tune_entries(&e, 1), 0);
    free_layer(&L);
}

Test(tune, malformed_settings_are_refused)
{
    setenv("MINUET_TUNE", "sometimes", 1);
    layer L = make_layer(500, 12, 2, 2);
    free(run(&L, true, MN_EINVAL));
    cr_assert(strstr(mn_last_error(), "MINUET_TUNE='sometimes'"), "%s", mn_last_error());
    free(run(&L, false, MN_EINVAL)); /* without autotune too: every mn_conv reads them */
    free_layer(&L);
}

Test(tune, isa_names_are_checked)
{
    setenv("MINUET_ISA", "sse9", 1);
    cr_assert_eq(mn_config(), MN_EINVAL);
    cr_assert(strstr(mn_last_error(), "MINUET_ISA='sse9'"), "%s", mn_last_error());
}

Test(tune, isa_generic_runs_the_portable_kernel)
{
    setenv("MINUET_ISA", "generic", 1);
    cr_assert_eq(mn_config(), MN_OK, "%s", mn_last_error());
    cr_assert_str_eq(mn_cpu_kernel(), "generic");
}

/* Where the CUDA backend cannot run (no driver, no device, no nvcc at build time: this test
 * asks the library which), MINUET_DEVICE=cuda is refused with the reason, and every mn_cuda_*
 * call returns MN_ENODEV with it. Where it can run, cuda is accepted. */
Test(tune, cuda_device_needs_a_usable_gpu)
{
    bool usable = mn_cuda_init() == MN_OK;
    char reason[512];
    snprintf(reason, sizeof reason, "%s", mn_last_error());
    setenv("MINUET_DEVICE", "cuda", 1);
    if (usable) {
        cr_assert_eq(mn_config(), MN_OK, "%s", mn_last_error());
        cr_assert_str_eq(mn_device(), "cuda");
        return;
    }
    cr_assert(strstr(reason, "CUDA backend: "), "%s", reason);
    cr_assert_eq(mn_config(), MN_ENODEV);
    cr_assert(strstr(mn_last_error(), "MINUET_DEVICE=cuda: "), "%s", mn_last_error());
    cr_assert(strstr(mn_last_error(), reason), "%s", mn_last_error());
    setenv("MINUET_DEVICE", "tpu", 1); /* read once per process: still the first verdict */
    cr_assert_eq(mn_config(), MN_ENODEV);
    int32_t c[4] = {0, 1, 2, 3};
    float f[4] = {1, 2, 3, 4};
    mn_cuda_kmap m = {0};
    cr_assert_eq(mn_cuda_sort(c, 1, NULL, NULL), MN_ENODEV);
    cr_assert_str_eq(mn_last_error(), reason);
    cr_assert_eq(mn_cuda_kmap_build(c, 1, c, 1, 3, 1, 1, MN_SORT, NULL, &m), MN_ENODEV);
    cr_assert_str_eq(mn_last_error(), reason);
    cr_assert_eq(mn_cuda_conv(&m, f, 1, f, NULL, 1, f, false, NULL), MN_ENODEV);
    cr_assert_str_eq(mn_last_error(), reason);
    cr_assert_eq(mn_cuda_conv_backward(&m, f, 1, f, 1, f, f, NULL, NULL, false, NULL), MN_ENODEV);
    cr_assert_str_eq(mn_last_error(), reason);
    mn_cuda_kmap_free(&m);
    cr_assert_str_eq(mn_cuda_device_name(), "");
}

Test(tune, device_names)
{
    setenv("MINUET_DEVICE", "tpu", 1);
    cr_assert_eq(mn_config(), MN_EINVAL);
    cr_assert(strstr(mn_last_error(), "MINUET_DEVICE='tpu'"), "%s", mn_last_error());
}

/* auto: the CUDA backend where it can run, else the CPU, with no error either way */
Test(tune, auto_is_cuda_where_usable_else_cpu)
{
    bool usable = mn_cuda_init() == MN_OK;
    setenv("MINUET_DEVICE", "AUTO", 1);
    cr_assert_eq(mn_config(), MN_OK, "%s", mn_last_error());
    cr_assert_str_eq(mn_device(), usable ? "cuda" : "cpu");
    cr_assert_str_eq(mn_last_error(), "");
    setenv("MINUET_DEVICE", "cpu", 1); /* read once: still auto */
    cr_assert_str_eq(mn_device(), usable ? "cuda" : "cpu");
}
