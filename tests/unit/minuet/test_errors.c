/* test_errors.c: Minuet's error convention: a call that fails names the cause in
 * mn_last_error; a call that succeeds leaves it empty, after a failure of the same entry point,
 * of another one, or of a step the call recovered from (an unreadable MINUET_TUNE_CACHE); every
 * status has its name. Each Test runs in its own process (Criterion forks). */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "minuet.h"

#define assert_failed_with(call, want, needle)                                                     \
    do {                                                                                           \
        mn_status got_ = (call);                                                                   \
        cr_assert_eq(got_, (want), "%s: %s, want %s", #call, mn_status_name(got_),                 \
                     mn_status_name(want));                                                        \
        cr_assert(strstr(mn_last_error(), (needle)), "%s: message '%s' lacks '%s'", #call,         \
                  mn_last_error(), (needle));                                                      \
    } while (0)

#define assert_succeeded_clean(call)                                                               \
    do {                                                                                           \
        mn_status got_ = (call);                                                                   \
        cr_assert_eq(got_, MN_OK, "%s: %s (%s)", #call, mn_status_name(got_), mn_last_error());    \
        cr_assert_str_eq(mn_last_error(), "", "%s succeeded but left '%s'", #call,                 \
                         mn_last_error());                                                         \
    } while (0)

Test(errors, sort_failure_then_success)
{
    int32_t dup[] = {0, 1, 2, 3, 0, 5, 6, 7, 0, 1, 2, 3};
    mn_coords c = {dup, 3};
    assert_failed_with(mn_sort(&c, NULL), MN_EDUP, "duplicate coordinate (0, 1, 2, 3)");
    int32_t fine[] = {0, 1, 2, 3, 0, 5, 6, 7, 0, 1, 2, 4};
    mn_coords d = {fine, 3};
    assert_succeeded_clean(mn_sort(&d, NULL));
}

Test(errors, voxelize_failure_then_other_call_succeeds)
{
    mn_cloud cl = {0};
    assert_succeeded_clean(mn_scene(200, 7, &cl));
    mn_coords v = {0};
    assert_failed_with(mn_voxelize(&cl, 0.0, 0, &v), MN_EINVAL, "voxel size 0");
    /* Another entry point's success empties the message too. */
    mn_array a = {0};
    int32_t data[] = {1, 2, 3};
    assert_failed_with(mn_npy_parse("not an array", 12, &a), MN_EFORMAT, "");
    cr_assert_neq(mn_last_error()[0], '\0', "an EFORMAT without a message");
    mn_array w = {.dtype = 'i', .rows = 3, .cols = 1, .data = data};
    char path[] = "/tmp/minuet-errors-XXXXXX.npy";
    int fd = mkstemps(path, 4);
    cr_assert_geq(fd, 0);
    close(fd);
    assert_succeeded_clean(mn_npy_write(path, &w));
    assert_failed_with(mn_voxelize(&cl, 0.5, 0, NULL), MN_EINVAL, "NULL argument");
    assert_succeeded_clean(mn_npy_read(path, &a));
    cr_assert_eq(((int32_t *)a.data)[2], 3);
    unlink(path);
    free(a.data);
    assert_succeeded_clean(mn_voxelize(&cl, 0.5, 0, &v));
    free(v.c);
    mn_cloud_free(&cl);
}

Test(errors, kmap_failure_then_success)
{
    int32_t rows[] = {0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0};
    mn_coords c = {rows, 3};
    mn_kmap m = {0};
    assert_failed_with(mn_kmap_build(&c, &c, 0, 1, 1, MN_SORT, 1, &m), MN_EINVAL, "");
    cr_assert_neq(mn_last_error()[0], '\0', "an EINVAL without a message");
    assert_succeeded_clean(mn_kmap_build(&c, &c, 3, 1, 1, MN_SORT, 1, &m));
    mn_kmap_free(&m);
}

/* The tuner meets a MINUET_TUNE_CACHE it cannot read (a directory): it says so on stderr and
 * tunes in memory; the convolution succeeds, and the reading's failure is not left behind as
 * this thread's last error. */
Test(errors, conv_recovers_from_unreadable_cache, .init = cr_redirect_stderr)
{
    cr_assert_eq(setenv("MINUET_TUNE_CACHE", "/tmp", 1), 0);
    enum { N = 64, CI = 4, CO = 4 };
    int32_t rows[N][4];
    for (int i = 0; i < N; i++) {
        rows[i][0] = 0;
        rows[i][1] = i / 16;
        rows[i][2] = (i / 4) % 4;
        rows[i][3] = i % 4;
    }
    mn_coords c = {&rows[0][0], N};
    mn_kmap m = {0};
    assert_succeeded_clean(mn_kmap_build(&c, &c, 3, 1, 1, MN_SORT, 1, &m));
    float *in = calloc((size_t)N * CI, sizeof *in), *out = calloc((size_t)N * CO, sizeof *out);
    float *W = calloc((size_t)m.nk * CI * CO, sizeof *W);
    cr_assert(in && out && W);
    for (int i = 0; i < N * CI; i++)
        in[i] = (float)(i % 7) - 3.0f;
    for (int i = 0; i < m.nk * CI * CO; i++)
        W[i] = (float)(i % 5) - 2.0f;
    mn_conv_opts o = {.group_threshold = MN_DEFAULT_GROUP_THRESHOLD, .threads = 1};
    o.autotune = false;
    assert_failed_with(mn_conv(&m, in, N, CI, W, NULL, 0, out, N, &o), MN_EINVAL, "");
    o.autotune = true;
    assert_succeeded_clean(mn_conv(&m, in, N, CI, W, NULL, CO, out, N, &o));
    fflush(stderr);
    char err[1024] = {0};
    size_t got = fread(err, 1, sizeof err - 1, cr_get_redirected_stderr());
    cr_assert_gt(got, 0, "the unreadable cache was not reported");
    cr_assert(strstr(err, "MINUET_TUNE_CACHE"), "stderr: %s", err);
    free(in);
    free(out);
    free(W);
    mn_kmap_free(&m);
}

Test(errors, status_names)
{
    static const char *const want[] = {"MN_OK",      "MN_EINVAL", "MN_EDUP",   "MN_ERANGE",
                                       "MN_ENAN",    "MN_EEMPTY", "MN_ENOMEM", "MN_EIO",
                                       "MN_EFORMAT", "MN_ENODEV"};
    for (int s = 0; s < (int)(sizeof want / sizeof want[0]); s++)
        cr_assert_str_eq(mn_status_name((mn_status)s), want[s]);
    cr_assert_str_eq(mn_status_name((mn_status)(MN_ENODEV + 1)), "MN_UNKNOWN");
    cr_assert_str_eq(mn_status_name((mn_status)-1), "MN_UNKNOWN");
}
