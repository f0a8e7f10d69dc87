/* shim.h: what the files of liborion.so, Orion's libcuda interposer, share; nothing here is
 * exported (the exported wrappers are declared in driver.h).
 *
 *   config.c    ORION_* variables (any problem: pass-through plus one log line), the logger,
 *               the library's constructor and destructor
 *   binding.c   the driver table of driver.h and its loaders, a real dlsym found with dlvsym,
 *               wrappers bound to the exact pointer cuGetProcAddress or dlsym returned, the
 *               exported cuGetProcAddress, cuGetProcAddress_v2 and dlsym
 *   tracking.c  launch shapes (SM need, profile, duration) and in-flight tracking: an event
 *               after each gated launch, the monitor thread, the board
 *   gating.c    classes (process, thread and stream priority), the launch path (gate, launch,
 *               track), the exported launch, copy and sync wrappers
 *   stats.c     the counters, ORION_STATS at exit, learned durations (ORION_LEARN)
 */
#ifndef ORION_SHIM_H
#define ORION_SHIM_H

#include "driver.h" /* first: it sets the CUDA API version of cuda.h */

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "board.h"
#include "profile.h"
#include "rt/env.h"
#include "rt/log.h"
#include "rt/stats.h"

#define EXPORT __attribute__((visibility("default")))

enum { CLS_PASS = -1, CLS_BE = 0, CLS_HP = 1 };

#define DEFAULT_DUR_US  100 /* a kernel with no known duration counts this much */
#define FALLBACK_BUDGET 250 /* µs of BE work in flight before an HP latency is measured */

#pragma GCC visibility push(hidden)

/* ---- config.c ---------------------------------------------------------------------------- */

typedef struct orion_config {
    bool active;  /* false: pass everything through */
    int priority; /* CLS_BE or CLS_HP */
    char group[RT_HOST_MAX];
    long long sm_threshold, dur_threshold_us;
    char profile_db[PATH_MAX], stats[PATH_MAX];
    bool learn;
    bool counting; /* ORION_STATS is set: the launch path bumps the counters below */
    orion_pdb db;
    orion_board_handle board;
} orion_config;

extern orion_config cfg;
extern rt_logger lg;

/* ---- binding.c --------------------------------------------------------------------------- */

/* The shim's own driver calls (driver.h), looked up once, at the first launch classified:
 * false when the driver lacks one it needs (then everything passes through). */
extern pthread_once_t driver_once;
void load_driver(void);
static inline bool driver_ready(void)
{
    pthread_once(&driver_once, load_driver);
    return orion_driver.ok;
}

/* ---- tracking.c -------------------------------------------------------------------------- */

/* What the policy needs about one launch shape, computed once (names and occupancy are
 * driver calls) and kept in an insert-only table read without locks. */
typedef struct shape {
    CUfunction f;
    uint32_t grid[3], block[3], smem;
    uint32_t sm_need;
    orion_profile profile;
    _Atomic uint64_t dur_us;    /* estimate: database, learned, or DEFAULT_DUR_US */
    _Atomic uint64_t learned_n; /* ORION_LEARN: runs measured */
    _Atomic uint64_t learned_sum_ns;
    char name[200];
} shape;

#define SHAPES 4096
extern shape *_Atomic shapes[SHAPES];
extern shape graph_shape; /* every graph launch: unknown profile, the whole device */

uint32_t device_sms(void);
/* The shape of a launch, NULL when the table has no room for it (the launch is untracked). */
shape *shape_of(CUfunction f, const uint32_t g[3], const uint32_t b[3], uint32_t m);
/* ORION_LEARN's event before a launch on stream eff of context ctx, or NULL. */
CUevent start_event(CUstream eff, CUcontext ctx);
/* After a gated launch that went: record its event on eff (of context ctx, current) and put
 * its claim on the board. */
void track(int cls, shape *sh, CUstream eff, CUcontext ctx, CUevent start);
/* After a gated launch that failed: its start event back to the pool. */
void drop_start_event(CUevent start, CUcontext ctx);
/* A BE caller waiting long: drop this process's BE claim when none of its groups is in
 * flight (a stale claim blocks every BE client). */
void tracking_repair_drift(void);
/* At exit: stop the monitor thread (waiting at most 100 ms for it). */
void monitor_stop(void);

/* ---- gating.c ---------------------------------------------------------------------------- */

enum { K_LAUNCH, K_COOP };

/* Bound and exported wrappers alike call these with the real function and whether it is a
 * per-thread-default-stream variant. */
CUresult launch_impl(void *real, bool ptsz, CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                     unsigned bx, unsigned by, unsigned bz, unsigned smem, CUstream s,
                     void **params, void **extra, int kind);
CUresult launchex_impl(void *real, bool ptsz, const CUlaunchConfig *c, CUfunction f, void **params,
                       void **extra);
CUresult graph_impl(void *real, bool ptsz, CUgraphExec g, CUstream s);

/* ---- stats.c ----------------------------------------------------------------------------- */

typedef struct orion_counters {
    _Atomic uint64_t hp, be, pass, captured, graph, untracked, copies, syncs, waits, hp_alone,
        admission_retries, drift_repairs;
    _Atomic uint64_t reason[4];
    rt_hist wait_ns, hp_kernel_ns;
} orion_counters;

extern orion_counters st;

/* Counters cost a shared cache line per launch: bumped only when ORION_STATS will show them. */
#define COUNT(field)                                                                               \
    do {                                                                                           \
        if (cfg.counting)                                                                          \
            atomic_fetch_add_explicit(&st.field, 1, memory_order_relaxed);                         \
    } while (0)

void write_stats(void);   /* ORION_STATS */
void write_learned(void); /* ORION_LEARN */

#pragma GCC visibility pop

#endif
