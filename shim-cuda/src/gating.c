/* gating.c: the launch path of liborion.so. Every launch is classified (the process's
 * ORION_PRIORITY, the thread's orion_set_thread_priority, a stream of the context's greatest
 * priority); a best-effort (BE) one waits in the caller's own thread until the policy lets it
 * go, then goes on the caller's own stream and is tracked.
 *
 *   classes            process, thread and stream priority
 *   the launch path    gate, launch, track
 *   exported wrappers  launches (gated and tracked), copies and syncs (counted)
 *
 * Launches are never queued or deferred: stream order, argument lifetimes and graph capture
 * are those of the program. A capturing stream passes straight through (an event recorded
 * into a capture would become a graph node).
 */
#include "shim.h" /* first: driver.h sets the CUDA API version of cuda.h */

#include <sched.h>
#include <stdatomic.h>

#include "orion.h"
#include "policy.h"
#include "rt/stats.h"

/* ---- classes ----------------------------------------------------------------------------- */

static __thread int thread_prio = ORION_UNSET;

EXPORT int orion_set_thread_priority(int priority)
{
    if (priority != ORION_UNSET && priority != ORION_BE && priority != ORION_HP)
        return -1;
    thread_prio = priority;
    return 0;
}

/* Streams created with the context's greatest priority count as HP: a cache of stream ->
 * priority (handles reused after cuStreamDestroy are dropped by the wrapper below). */
#define STREAMS 256
static struct {
    CUstream _Atomic s;
    _Atomic int prio;
} stream_prio[STREAMS];
static _Atomic int greatest = 1; /* 1: not read yet (the greatest priority is <= 0) */

static bool greatest_priority(CUstream s)
{
    if (!DRV(cuStreamGetPriority) || !DRV(cuCtxGetStreamPriorityRange))
        return false;
    int g = atomic_load(&greatest), least;
    if (g == 1) {
        if (DRV(cuCtxGetStreamPriorityRange)(&least, &g) != CUDA_SUCCESS)
            return false;
        if (g == least)
            g = 2; /* one priority level only: no stream is "greatest" */
        atomic_store(&greatest, g);
    }
    size_t i = ((uintptr_t)s >> 4) % STREAMS;
    if (atomic_load(&stream_prio[i].s) == s)
        return atomic_load(&stream_prio[i].prio) == g;
    int p;
    if (DRV(cuStreamGetPriority)(s, &p) != CUDA_SUCCESS)
        return false;
    atomic_store(&stream_prio[i].s, NULL);
    atomic_store(&stream_prio[i].prio, p);
    atomic_store(&stream_prio[i].s, s);
    return p == g;
}

static void forget_stream(CUstream s)
{
    size_t i = ((uintptr_t)s >> 4) % STREAMS;
    CUstream expect = s;
    atomic_compare_exchange_strong(&stream_prio[i].s, &expect, NULL);
}

static int classify(CUstream s)
{
    if (!cfg.active || !driver_ready())
        return CLS_PASS;
    if (thread_prio != ORION_UNSET)
        return thread_prio == ORION_HP ? CLS_HP : CLS_BE;
    if (cfg.priority == CLS_BE && s && s != CU_STREAM_LEGACY && s != CU_STREAM_PER_THREAD &&
        greatest_priority(s))
        return CLS_HP;
    return cfg.priority;
}

/* ---- the launch path --------------------------------------------------------------------- */

static bool capturing(CUstream eff)
{
    CUstreamCaptureStatus cs = CU_STREAM_CAPTURE_STATUS_NONE;
    /* An error (an invalid stream, say) is the launch's to report: pass it through. */
    return DRV(cuStreamIsCapturing)(eff, &cs) != CUDA_SUCCESS ||
           cs != CU_STREAM_CAPTURE_STATUS_NONE;
}

/* A BE launch waits here until the policy lets it go. Each look reads the board once (the
 * view and the duration budget in one pass).
 *
 * Admission. The kernel's claim reaches the board only after the launch (track), so two BE
 * callers woken by the same completion would both find the board idle and both launch. A
 * caller the policy lets go therefore first announces the kernel in its slot's be_pending_us,
 * then looks again, leaving its own announcement out: of two callers that announce at once,
 * at least one sees the other (the announcement and the second look are ordered by a full
 * fence) and backs off. One that backs off withdraws and tries again after a few yields, more
 * of them the higher its slot, so that two do not keep meeting. Returns the microseconds
 * announced, which after_launch withdraws once the claim is on the board. */
static uint64_t gate(const shape *sh)
{
    orion_kernel k = {sh->profile, sh == &graph_shape ? device_sms() : sh->sm_need,
                      atomic_load(&sh->dur_us)};
    orion_board *bd = cfg.board.b;
    orion_limits l = {cfg.sm_threshold ? (uint32_t)cfg.sm_threshold : device_sms(), 0};
    uint64_t t0 = 0, last_reclaim = 0, now = 0;
    for (int spins = 0;; spins++) {
        uint32_t gen = atomic_load(&bd->generation);
        orion_view v;
        uint64_t budget = orion_board_view_budget(bd, &v, FALLBACK_BUDGET);
        l.dur_threshold_us = cfg.dur_threshold_us ? (uint64_t)cfg.dur_threshold_us : budget;
        orion_verdict vd = orion_policy(&v, &k, &l);
        if (vd == ORION_GO) {
            atomic_fetch_add(&cfg.board.mine->be_pending_us, k.dur_us);
            atomic_thread_fence(memory_order_seq_cst);
            orion_board_view_budget(bd, &v, FALLBACK_BUDGET);
            v.be_inflight_us -= k.dur_us;
            vd = orion_policy(&v, &k, &l);
            if (vd == ORION_GO)
                break;
            atomic_fetch_sub(&cfg.board.mine->be_pending_us, k.dur_us);
            COUNT(admission_retries);
            for (long n = 1 + (cfg.board.mine - bd->slot); n > 0; n--)
                sched_yield();
        }
        now = rt_now_ns();
        if (!t0) {
            t0 = last_reclaim = now;
            COUNT(waits);
            COUNT(reason[vd]);
        }
        if (now - last_reclaim > 100 * RT_MS) { /* a dead HP client may hold the board */
            orion_board_reclaim(&cfg.board);
            tracking_repair_drift();
            last_reclaim = now;
        }
        if (spins < 32)
            sched_yield();
        else
            orion_board_wait(bd, gen, RT_MS);
    }
    if (t0 && cfg.counting)
        rt_hist_record(&st.wait_ns, rt_now_ns() - t0);
    return k.dur_us;
}

/* What one tracked launch carries from before the launch to after it. */
typedef struct tracked {
    shape *sh;
    CUstream eff; /* the stream it goes on (CU_STREAM_PER_THREAD for a _ptsz NULL) */
    CUcontext ctx;
    CUevent start;       /* ORION_LEARN's event before it, or NULL */
    uint64_t pending_us; /* announced by the gate (BE), withdrawn after the claim */
} tracked;

/* Gate (BE) and prepare tracking of one launch; returns the class, or CLS_PASS when the
 * launch must simply go through (*t filled otherwise).
 *
 * The driver calls of a tracked launch, beyond the launch itself: cuCtxGetCurrent (the
 * event's context), cuStreamIsCapturing (an event recorded into a capture would become a
 * graph node) and, after the launch, one cuEventRecord; cuEventCreate only while the pool
 * of events grows, and a second cuEventRecord under ORION_LEARN. An HP launch with no BE
 * client on the board makes none. tests/integration/orion/test_launch_calls counts them. */
static int before_launch(CUstream s, bool ptsz, CUfunction f, const uint32_t g[3],
                         const uint32_t b[3], uint32_t smem, tracked *t)
{
    int cls = classify(s);
    if (cls == CLS_PASS) {
        COUNT(pass);
        return CLS_PASS;
    }
    if (cls == CLS_HP)
        COUNT(hp);
    else
        COUNT(be);
    if (!f)
        COUNT(graph);
    if (cls == CLS_HP &&
        atomic_load_explicit(&cfg.board.b->be_clients, memory_order_relaxed) == 0) {
        COUNT(hp_alone); /* nobody to protect: no event, no board update */
        return CLS_PASS;
    }
    t->eff = ptsz && !s ? CU_STREAM_PER_THREAD : s;
    if (capturing(t->eff)) {
        COUNT(captured);
        return CLS_PASS;
    }
    t->sh = f ? shape_of(f, g, b, smem) : &graph_shape;
    t->ctx = NULL;
    if (!t->sh || DRV(cuCtxGetCurrent)(&t->ctx) != CUDA_SUCCESS || !t->ctx) {
        COUNT(untracked);
        return CLS_PASS;
    }
    t->pending_us = 0;
    if (cls == CLS_BE) {
        orion_board_mark_be(&cfg.board);
        t->pending_us = gate(t->sh);
    }
    t->start = f ? start_event(t->eff, t->ctx) : NULL;
    return cls;
}

static void after_launch(CUresult r, int cls, const tracked *t)
{
    if (cls == CLS_PASS)
        return;
    if (r == CUDA_SUCCESS)
        track(cls, t->sh, t->eff, t->ctx, t->start);
    else if (t->start)
        drop_start_event(t->start, t->ctx);
    if (t->pending_us) /* the claim (if any) is on the board now */
        atomic_fetch_sub(&cfg.board.mine->be_pending_us, t->pending_us);
}

/* The real function of a launch is of its family's plain type (a _ptsz variant has the same
 * parameters). */
CUresult launch_impl(void *real, bool ptsz, CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                     unsigned bx, unsigned by, unsigned bz, unsigned smem, CUstream s,
                     void **params, void **extra, int kind)
{
    uint32_t g[3] = {gx, gy, gz}, bl[3] = {bx, by, bz};
    tracked t;
    int cls = before_launch(s, ptsz, f, g, bl, smem, &t);
    CUresult r;
    if (kind == K_COOP)
        r = ((PFN_cuLaunchCooperativeKernel_v9000)real)(f, gx, gy, gz, bx, by, bz, smem, s, params);
    else
        r = ((PFN_cuLaunchKernel_v4000)real)(f, gx, gy, gz, bx, by, bz, smem, s, params, extra);
    after_launch(r, cls, &t);
    return r;
}

CUresult launchex_impl(void *real_, bool ptsz, const CUlaunchConfig *c, CUfunction f, void **params,
                       void **extra)
{
    PFN_cuLaunchKernelEx_v11060 real = (PFN_cuLaunchKernelEx_v11060)real_;
    if (!c)
        return real(c, f, params, extra);
    uint32_t g[3] = {c->gridDimX, c->gridDimY, c->gridDimZ},
             bl[3] = {c->blockDimX, c->blockDimY, c->blockDimZ};
    tracked t;
    int cls = before_launch(c->hStream, ptsz, f, g, bl, c->sharedMemBytes, &t);
    CUresult r = real(c, f, params, extra);
    after_launch(r, cls, &t);
    return r;
}

CUresult graph_impl(void *real_, bool ptsz, CUgraphExec gexec, CUstream s)
{
    PFN_cuGraphLaunch_v10000 real = (PFN_cuGraphLaunch_v10000)real_;
    static const uint32_t none[3] = {0, 0, 0};
    tracked t;
    int cls = before_launch(s, ptsz, NULL, none, none, 0, &t);
    CUresult r = real(gexec, s);
    after_launch(r, cls, &t);
    return r;
}

/* ---- exported wrappers ------------------------------------------------------------------- */

/* The symbols a program linked with -lcuda reaches: each calls the next definition, its NEXT
 * entry in driver.h. */
#define EXPORT_LAUNCH(name, ptsz_)                                                                 \
    EXPORT CUresult name(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,         \
                         unsigned by, unsigned bz, unsigned smem, CUstream s, void **p, void **e)  \
    {                                                                                              \
        void *real = (void *)NEXT(name);                                                           \
        if (!real)                                                                                 \
            return CUDA_ERROR_NOT_INITIALIZED;                                                     \
        return launch_impl(real, ptsz_, f, gx, gy, gz, bx, by, bz, smem, s, p, e, K_LAUNCH);       \
    }
#define EXPORT_COOP(name, ptsz_)                                                                   \
    EXPORT CUresult name(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,         \
                         unsigned by, unsigned bz, unsigned smem, CUstream s, void **p)            \
    {                                                                                              \
        void *real = (void *)NEXT(name);                                                           \
        if (!real)                                                                                 \
            return CUDA_ERROR_NOT_INITIALIZED;                                                     \
        return launch_impl(real, ptsz_, f, gx, gy, gz, bx, by, bz, smem, s, p, NULL, K_COOP);      \
    }
#define EXPORT_LAUNCHEX(name, ptsz_)                                                               \
    EXPORT CUresult name(const CUlaunchConfig *c, CUfunction f, void **p, void **e)                \
    {                                                                                              \
        void *real = (void *)NEXT(name);                                                           \
        if (!real)                                                                                 \
            return CUDA_ERROR_NOT_INITIALIZED;                                                     \
        return launchex_impl(real, ptsz_, c, f, p, e);                                             \
    }
#define EXPORT_GRAPH(name, ptsz_)                                                                  \
    EXPORT CUresult name(CUgraphExec g, CUstream s)                                                \
    {                                                                                              \
        void *real = (void *)NEXT(name);                                                           \
        if (!real)                                                                                 \
            return CUDA_ERROR_NOT_INITIALIZED;                                                     \
        return graph_impl(real, ptsz_, g, s);                                                      \
    }

EXPORT_LAUNCH(cuLaunchKernel, false)
EXPORT_LAUNCH(cuLaunchKernel_ptsz, true)
EXPORT_COOP(cuLaunchCooperativeKernel, false)
EXPORT_COOP(cuLaunchCooperativeKernel_ptsz, true)
EXPORT_LAUNCHEX(cuLaunchKernelEx, false)
EXPORT_LAUNCHEX(cuLaunchKernelEx_ptsz, true)
EXPORT_GRAPH(cuGraphLaunch, false)
EXPORT_GRAPH(cuGraphLaunch_ptsz, true)

/* Copies and syncs: counted, never reordered. */
#define PASS_COUNTED(counter, name, params, args)                                                  \
    EXPORT CUresult name params                                                                    \
    {                                                                                              \
        __typeof__(&(name)) real = NEXT(name);                                                     \
        if (!real)                                                                                 \
            return CUDA_ERROR_NOT_INITIALIZED;                                                     \
        COUNT(counter);                                                                            \
        return real args;                                                                          \
    }

PASS_COUNTED(copies, cuMemcpyHtoDAsync_v2, (CUdeviceptr dst, const void *src, size_t n, CUstream s),
             (dst, src, n, s))
PASS_COUNTED(copies, cuMemcpyHtoDAsync_v2_ptsz,
             (CUdeviceptr dst, const void *src, size_t n, CUstream s), (dst, src, n, s))
PASS_COUNTED(copies, cuMemcpyDtoHAsync_v2, (void *dst, CUdeviceptr src, size_t n, CUstream s),
             (dst, src, n, s))
PASS_COUNTED(copies, cuMemcpyDtoHAsync_v2_ptsz, (void *dst, CUdeviceptr src, size_t n, CUstream s),
             (dst, src, n, s))
PASS_COUNTED(copies, cuMemcpyDtoDAsync_v2, (CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s),
             (dst, src, n, s))
PASS_COUNTED(copies, cuMemcpyAsync, (CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s),
             (dst, src, n, s))
PASS_COUNTED(copies, cuMemsetD8Async, (CUdeviceptr dst, unsigned char v, size_t n, CUstream s),
             (dst, v, n, s))
PASS_COUNTED(copies, cuMemsetD32Async, (CUdeviceptr dst, unsigned int v, size_t n, CUstream s),
             (dst, v, n, s))
PASS_COUNTED(syncs, cuStreamSynchronize, (CUstream s), (s))
PASS_COUNTED(syncs, cuStreamSynchronize_ptsz, (CUstream s), (s))
PASS_COUNTED(syncs, cuCtxSynchronize, (void), ())
PASS_COUNTED(syncs, cuEventSynchronize, (CUevent e), (e))
PASS_COUNTED(syncs, cuStreamQuery, (CUstream s), (s))
PASS_COUNTED(syncs, cuStreamQuery_ptsz, (CUstream s), (s))
PASS_COUNTED(syncs, cuEventRecord, (CUevent e, CUstream s), (e, s))
PASS_COUNTED(syncs, cuEventRecord_ptsz, (CUevent e, CUstream s), (e, s))

/* A destroyed stream's handle may come back for a new stream of another priority. */
EXPORT CUresult cuStreamDestroy_v2(CUstream s)
{
    PFN_cuStreamDestroy_v4000 real = NEXT(cuStreamDestroy_v2);
    if (!real)
        return CUDA_ERROR_NOT_INITIALIZED;
    forget_stream(s);
    return real(s);
}
