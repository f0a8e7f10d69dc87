/* internal.h: what libminuet's sources share and do not export: the error convention (every
 * failing call stores a message for mn_last_error, every public call that succeeds empties
 * it) and the file helpers of the readers.
 *
 * libminuet's objects build with -fvisibility=default so that the public API (minuet.h) is
 * exported from libminuet.so; what is declared here is hidden. */
#ifndef MINUET_INTERNAL_H
#define MINUET_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "minuet.h"
#include "rt/lasterr.h"

#pragma GCC visibility push(hidden)

/* Every mn_status of minuet.h, in code order: mn_status_name's table is made from this list
 * (error.c checks that it has no gap and no repeat). A new status is added here too. */
/* clang-format off */
#define MN_STATUSES(X) \
    X(MN_OK)           \
    X(MN_EINVAL)       \
    X(MN_EDUP)         \
    X(MN_ERANGE)       \
    X(MN_ENAN)         \
    X(MN_EEMPTY)       \
    X(MN_ENOMEM)       \
    X(MN_EIO)          \
    X(MN_EFORMAT)      \
    X(MN_ENODEV)
/* clang-format on */

/* This thread's last error (error.c; rt/lasterr.h). */
extern _Thread_local rt_lasterr mn_lasterr;

/* Store a printf-style message as this thread's last error (truncated to 511 bytes) and
 * return s, so that failures read `return mn_fail(MN_EINVAL, "voxel %g: must be > 0", v);`.
 * A macro, so that the static analyzer sees that the status returned is s. */
void mn_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define mn_fail(s, ...)                                                                            \
    ({                                                                                             \
        mn_set_error(__VA_ARGS__);                                                                 \
        (mn_status)(s);                                                                            \
    })

/* End a public call with status s: MN_OK empties this thread's last error, so that a message
 * left by an earlier failure (of another call, or one this call recovered from) is never read
 * after a success. Every return of a public function that returns mn_status is either
 * `return mn_fail(...)` or `return mn_done(s)`. */
static inline mn_status mn_done(mn_status s)
{
    return (mn_status)rt_lasterr_done(&mn_lasterr, (int)s);
}

/* mn_done for the CUDA backend's C++ sources (cuda/cuda_internal.h). */
mn_status mn_cuda_done(mn_status s);

/* Read a whole file into a malloc'd buffer with one spare byte, set to '\0' (*len excludes
 * it). MN_EIO with the path and strerror on failure. */
mn_status mn_read_file(const char *path, char **buf, size_t *len);

/* Parse one number token s[0..n) (not NUL-terminated) with strtod: 0 when the whole token is
 * a number, -1 otherwise. Non-finite values are returned; callers decide. */
int mn_parse_double(const char *s, size_t n, double *v);

/* Autotuning (tune.c): the choice for this layer's shape (tuned on a sample of it when no
 * choice is held yet) written into *tuned. */
mn_status mn_tune_lookup(const mn_kmap *map, const float *in, int c_in, const float *W, int c_out,
                         size_t n_out, const mn_conv_opts *o, mn_conv_opts *tuned);
/* Parse a tune-cache image into the table (*entries: how many new ones); MN_EFORMAT with
 * the reason on malformed text. mn_tune_forget empties the table. For fuzzing. */
mn_status mn_tune_parse(const char *buf, size_t len, size_t *entries);
void mn_tune_forget(void);
/* The first of rows[0..n) (ascending) at or after row r: how many are below r (conv.c). */
size_t mn_rows_below(const int32_t *rows, size_t n, size_t r);
/* mn_conv's argument checks: channels, options, the map against the shapes (rows inside the
 * arrays, scatter rows ascending), finite features (conv.c). */
mn_status mn_conv_check_args(const mn_kmap *map, const float *in, size_t n_in, int c_in, int c_out,
                             size_t n_out, const mn_conv_opts *o);
/* mn_conv after its argument checks, autotuning as o asks (mn_conv_backward's input
 * gradient: its arguments are checked once, there). */
mn_status mn_conv_tuned(const mn_kmap *map, const float *in, int c_in, const float *W,
                        const float *bias, int c_out, float *out, size_t n_out,
                        const mn_conv_opts *o);
/* Whether offset k pairs every one of the n_out rows with itself (a submanifold map's
 * centre), which needs no gather and no scatter (conv.c). */
bool mn_identity_offset(const mn_kmap *map, int k, size_t n_out);
/* mn_conv after its argument checks (o->autotune ignored): for the tuner's candidates. */
mn_status mn_conv_checked(const mn_kmap *map, const float *in, int c_in, const float *W,
                          const float *bias, int c_out, float *out, size_t n_out,
                          const mn_conv_opts *o);

/* fn(arg, t, nt) for t in [0, nt) on the worker pool, the caller taking t = 0 (conv.c). */
typedef void (*mn_region_fn)(void *arg, int t, int nt);
void mn_region(int nt, mn_region_fn fn, void *arg);

/* Kernel maps (kmap.c): whether submanifold maps of odd K (the same rows in and out) search
 * only the offsets below the centre and mirror the rest (default on). Returns the previous
 * setting. For the tests, which compare both. */
bool mn_kmap_symmetric(bool on);

/* Minuet's GEMM (gemm.c): for r in [0, m): C row r = (or +=, with add) A row r x W, W
 * [c_in, c_out] row-major; A row r is A + (ai ? ai[r] : r) * c_in, C row r likewise with ci
 * and c_out (an index fuses a gather or a scatter in). Each element is the same fused
 * multiply-add chain over k in order on every instruction set, so the bits do not depend on
 * m, the rows around it, the thread or the CPU. */
void mn_gemm(size_t m, const float *A, const int32_t *ai, const float *W, int c_in, int c_out,
             float *C, const int32_t *ci, bool add);
/* The weight gradient's product: D[a][j] = (or +=, with add) the chain over p in [0, m) of
 * X_p[a] * G[p][j], for a in [0, na), j in [0, c_out); X_p = X + (xi ? xi[p] : p) * ldx (X
 * pointing at the first column wanted), G contiguous [m, c_out], D [na, c_out]. m <= 512.
 * scratch: at least max(na, 14) x m floats. The same bits as mn_gemm on every kernel. */
void mn_gemm_at(size_t na, const float *X, const int32_t *xi, size_t ldx, size_t m, const float *G,
                int c_out, float *D, bool add, float *scratch);
/* Use the kernel `name` ("avx512", "avx2", "generic"; mn_cpu_kernel says which is in use):
 * -1 when the CPU lacks it or the name is unknown. MINUET_ISA (mn_config) and the tests. */
int mn_gemm_set_isa(const char *name);

/* Monotonic seconds, for the stage timings. */
static inline double mn_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#pragma GCC visibility pop

#endif
