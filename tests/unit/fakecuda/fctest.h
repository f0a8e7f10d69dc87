/* fctest.h: helpers of the virtual GPU's unit tests: a private device per test, manifests,
 * streams, events, the "gate" that lines work up behind a kernel holding every SM, and
 * exact model-time checks.
 *
 * Timing assertions use event times, which are exact model instants (the fake replays the
 * model at the instants things happen, whatever the machine's load): work queued behind a
 * gate starts at the gate's end, so its ElapsedTime from the gate is exact. The only
 * load-dependent step, queueing the work before the gate ends, is checked and the scenario
 * retried (gate_run). Wall-clock checks are lower bounds plus generous upper bounds.
 */
#ifndef FCTEST_H
#define FCTEST_H

#define __CUDA_API_VERSION_INTERNAL 1 /* every versioned and per-thread name */
#include <criterion/criterion.h>
#include <cuda.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "fakecuda.h"

#define CU_OK(call)                                                                                \
    do {                                                                                           \
        CUresult rc_ = (call);                                                                     \
        cr_assert_eq(rc_, CUDA_SUCCESS, "%s: %d (%s)", #call, rc_, fakecuda_last_error());         \
    } while (0)

#define CU_IS(call, want)                                                                          \
    do {                                                                                           \
        CUresult rc_ = (call);                                                                     \
        cr_assert_eq(rc_, (want), "%s: %d, expected %d (%s)", #call, rc_, (want),                  \
                     fakecuda_last_error());                                                       \
    } while (0)

/* Model times are exact to the nanosecond; this allows float rounding only. */
#define MS_EQ(got, want)                                                                           \
    cr_assert(fabs((double)(got) - (double)(want)) < 0.05, "%s = %.4f ms, expected %.4f ms", #got, \
              (double)(got), (double)(want))

static inline double wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Kernels every test may use (name duration_us sm_need profile), on a 132-SM device. */
static const char fc_manifest[] = "# the unit tests' kernels\n"
                                  "gate 60000 132 compute\n"
                                  "c30 30000 10 compute\n"
                                  "c20 20000 10 compute\n"
                                  "c10 10000 10 compute\n"
                                  "wide60 50000 60 compute\n"
                                  "wide100 50000 100 compute\n"
                                  "full30 30000 132 compute\n"
                                  "mem40 40000 10 memory\n"
                                  "any40 40000 10 unknown\n";

static CUcontext fc_ctx;
static CUmodule fc_mod;

/* A device of this test alone (its own shm segment), initialised, with a context and the
 * module above. Extra environment first: pairs of name, value, then NULL. */
static inline void fc_setup_env(const char *name, ...)
{
    char dev[64];
    snprintf(dev, sizeof dev, "ut.%d.%ld", (int)getpid(), (long)time(NULL));
    setenv("FAKECUDA_DEVICE", dev, 1);
    unsetenv("FAKECUDA_SMS");
    unsetenv("FAKECUDA_TIME_PCT");
    va_list ap;
    va_start(ap, name);
    for (const char *n = name; n; n = va_arg(ap, const char *))
        setenv(n, va_arg(ap, const char *), 1);
    va_end(ap);
    CU_OK(cuInit(0));
    CU_OK(cuCtxCreate_v2(&fc_ctx, 0, 0));
    CU_OK(cuModuleLoadData(&fc_mod, fc_manifest));
}

static inline void fc_setup(void) { fc_setup_env(NULL); }

static inline void fc_teardown(void)
{
    const char *seg = fakecuda_segment();
    if (seg) {
        char path[300];
        snprintf(path, sizeof path, "/%s", seg);
        shm_unlink(path);
    }
}

static inline CUfunction fn(const char *name)
{
    CUfunction f;
    CU_OK(cuModuleGetFunction(&f, fc_mod, name));
    return f;
}

static inline CUstream stream_prio(int prio)
{
    CUstream s;
    CU_OK(cuStreamCreateWithPriority(&s, CU_STREAM_NON_BLOCKING, prio));
    return s;
}

static inline CUevent event(void)
{
    CUevent e;
    CU_OK(cuEventCreate(&e, 0));
    return e;
}

static inline void launch(const char *kernel, CUstream s)
{
    CU_OK(cuLaunchKernel(fn(kernel), 64, 1, 1, 128, 1, 1, 0, s, NULL, NULL));
}

static inline CUevent record(CUstream s)
{
    CUevent e = event();
    CU_OK(cuEventRecord(e, s));
    return e;
}

static inline float elapsed(CUevent a, CUevent b)
{
    float ms = -1;
    CU_OK(cuEventElapsedTime_v2(&ms, a, b));
    return ms;
}

/* A kernel holding every SM for 60 ms on its own stream; returns the event at its end. */
static inline CUevent gate(void)
{
    CUstream g = stream_prio(0);
    launch("gate", g);
    return record(g);
}

/* Has the gate not ended yet? (then everything queued so far starts at its end) */
static inline int gate_held(CUevent g) { return cuEventQuery(g) == CUDA_ERROR_NOT_READY; }

/* After queueing work behind gate g: was it all queued before the gate ended? Waits for
 * everything, then returns 1, or 0 to retry the scenario (a machine too loaded to queue a few
 * launches within 60 ms five times running fails the test):
 *     for (int tries = 0;; tries++) { CUevent g = gate(); ...queue...; if (gate_settle(g, tries)) break; }
 */
static inline int gate_settle(CUevent g, int tries)
{
    int held = gate_held(g);
    CU_OK(cuCtxSynchronize());
    cr_assert(held || tries < 4, "the work could not be queued within a 60 ms gate in 5 tries");
    return held;
}

#endif
