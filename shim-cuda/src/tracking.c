/* tracking.c: what liborion.so knows about the launches it gates.
 *
 *   launch shapes       per (function, grid, block, shared memory): SM need, profile,
 *                       duration, in an insert-only table read without locks
 *   in-flight tracking  an event recorded after each gated launch on its stream, a pool of
 *                       events, the monitor thread that sees them complete and releases
 *                       their claims on the board
 */
#include "shim.h" /* first: driver.h sets the CUDA API version of cuda.h */

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rt/log.h"
#include "rt/stats.h"

/* ---- launch shapes ----------------------------------------------------------------------- */

shape *_Atomic shapes[SHAPES];
shape graph_shape = {.profile = ORION_UNKNOWN, .dur_us = DEFAULT_DUR_US};

uint32_t device_sms(void)
{
    static _Atomic uint32_t sms;
    uint32_t v = atomic_load(&sms);
    CUdevice dev;
    int n = 0;
    if (v == 0 && DRV(cuCtxGetDevice)(&dev) == CUDA_SUCCESS &&
        DRV(cuDeviceGetAttribute)(&n, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev) ==
            CUDA_SUCCESS &&
        n > 0)
        atomic_store(&sms, v = (uint32_t)n);
    return v ? v : 1;
}

static uint64_t hash_shape(CUfunction f, const uint32_t g[3], const uint32_t b[3], uint32_t m)
{
    uint64_t h = (uint64_t)(uintptr_t)f * 0x9E3779B97F4A7C15ULL;
    uint32_t v[7] = {g[0], g[1], g[2], b[0], b[1], b[2], m};
    for (int i = 0; i < 7; i++)
        h = (h ^ v[i]) * 0x100000001B3ULL;
    return h ^ (h >> 29);
}

static bool same_shape(const shape *s, CUfunction f, const uint32_t g[3], const uint32_t b[3],
                       uint32_t m)
{
    return s->f == f && !memcmp(s->grid, g, sizeof s->grid) &&
           !memcmp(s->block, b, sizeof s->block) && s->smem == m;
}

static void fill_shape(shape *s)
{
    uint32_t sms = device_sms();
    uint64_t blocks = (uint64_t)s->grid[0] * s->grid[1] * s->grid[2];
    int per_sm = 0;
    int threads = (int)(s->block[0] * s->block[1] * s->block[2]);
    PFN_cuOccupancyMaxActiveBlocksPerMultiprocessor_v6050 occupancy =
        DRV(cuOccupancyMaxActiveBlocksPerMultiprocessor);
    if (!occupancy || occupancy(&per_sm, s->f, threads, s->smem) != CUDA_SUCCESS || per_sm < 1)
        s->sm_need = sms; /* unknown: assume it fills the device */
    else
        s->sm_need = (uint32_t)(blocks / (uint64_t)per_sm + (blocks % (uint64_t)per_sm != 0));
    if (s->sm_need > sms)
        s->sm_need = sms;
    const char *name = NULL;
    if (DRV(cuFuncGetName) && DRV(cuFuncGetName)(&name, s->f) == CUDA_SUCCESS && name)
        snprintf(s->name, sizeof s->name, "%s", name);
    s->profile = ORION_UNKNOWN;
    atomic_store(&s->dur_us, DEFAULT_DUR_US);
    const orion_pentry *e = s->name[0] ? orion_pdb_find(&cfg.db, s->name, s->grid, s->block) : NULL;
    if (e) {
        s->profile = e->profile;
        if (e->dur_us >= 0)
            atomic_store(&s->dur_us, (uint64_t)(e->dur_us + 0.5));
    }
}

shape *shape_of(CUfunction f, const uint32_t g[3], const uint32_t b[3], uint32_t m)
{
    uint64_t h = hash_shape(f, g, b, m);
    for (uint64_t i = 0; i < 16; i++) {
        _Atomic(shape *) *slot = &shapes[(h + i) & (SHAPES - 1)];
        shape *s = atomic_load_explicit(slot, memory_order_acquire);
        if (s && same_shape(s, f, g, b, m))
            return s;
        if (s)
            continue;
        shape *n = calloc(1, sizeof *n);
        if (!n)
            return NULL;
        n->f = f;
        memcpy(n->grid, g, sizeof n->grid);
        memcpy(n->block, b, sizeof n->block);
        n->smem = m;
        fill_shape(n);
        shape *expect = NULL;
        if (atomic_compare_exchange_strong(slot, &expect, n))
            return n;
        free(n); /* another thread took the slot: look again */
        if (same_shape(expect, f, g, b, m))
            return expect;
    }
    return NULL; /* the neighbourhood is full: the caller treats the launch as untracked */
}

/* ---- in-flight tracking ------------------------------------------------------------------ */

/* One gated launch in flight: the event recorded after it on its stream, and what it holds
 * on the board until the monitor thread sees the event complete. */
typedef struct pending {
    CUevent ev, start; /* start: ORION_LEARN's event before the launch, or NULL */
    CUcontext ctx;
    CUstream stream; /* with ctx (and owner, for CU_STREAM_PER_THREAD): the stream it is on */
    uintptr_t owner;
    shape *sh;
    int cls;
    uint32_t sms;
    orion_profile profile;
    uint64_t dur_us, t0;
} pending;

/* Streams are FIFO: once an event is not done, later ones on its stream are not either.
 * The monitor queries only the oldest outstanding event of each stream per round. */
#define BLOCKED_MAX 64
typedef struct blocked_set {
    const pending *v[BLOCKED_MAX];
    int n;
} blocked_set;

static bool same_stream(const pending *a, const pending *b)
{
    return a->ctx == b->ctx && a->stream == b->stream && a->owner == b->owner;
}

static bool is_blocked(const blocked_set *bs, const pending *p)
{
    for (int i = 0; i < bs->n; i++)
        if (same_stream(bs->v[i], p))
            return true;
    return false;
}

typedef struct pooled {
    CUevent ev;
    CUcontext ctx;
    bool timing;
} pooled;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pending *in;
    size_t n_in, cap_in;
    pooled *pool;
    size_t n_pool, cap_pool;
    bool stopping, stopped, started, sleeping;
    pthread_t thread;
} mon = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static _Atomic uint32_t local_hp; /* this process's HP kernels in flight */
static _Atomic uint64_t request_t0;

/* An event of context ctx from the pool (lock held), or NULL. */
static CUevent pool_take(CUcontext ctx, bool timing)
{
    for (size_t i = mon.n_pool; i-- > 0;)
        if (mon.pool[i].ctx == ctx && mon.pool[i].timing == timing) {
            CUevent e = mon.pool[i].ev;
            mon.pool[i] = mon.pool[--mon.n_pool];
            return e;
        }
    return NULL;
}

static void pool_give(CUevent e, CUcontext ctx, bool timing)
{
    if (!e)
        return;
    if (mon.n_pool == mon.cap_pool) {
        size_t cap = mon.cap_pool ? 2 * mon.cap_pool : 256;
        pooled *np = realloc(mon.pool, cap * sizeof *np);
        if (!np) {
            if (DRV(cuEventDestroy_v2))
                DRV(cuEventDestroy_v2)(e);
            return;
        }
        mon.pool = np;
        mon.cap_pool = cap;
    }
    mon.pool[mon.n_pool++] = (pooled){e, ctx, timing};
}

/* Each launching thread keeps a few untimed events of its context, refilled from the pool
 * 16 at a time, so the launch path seldom takes the monitor's lock for them. (A thread that
 * exits leaves its few cached events unused.) */
#define TL_EVENTS 16
static __thread struct {
    CUcontext ctx;
    CUevent ev[TL_EVENTS];
    int n;
} tl;

static CUevent event_for(CUcontext ctx, bool timing)
{
    CUevent e = NULL;
    if (!timing && tl.ctx == ctx && tl.n > 0)
        return tl.ev[--tl.n];
    pthread_mutex_lock(&mon.lock);
    if (!timing && tl.n == 0) {
        tl.ctx = ctx;
        while (tl.n < TL_EVENTS && (e = pool_take(ctx, false)))
            tl.ev[tl.n++] = e;
        e = tl.n ? tl.ev[--tl.n] : NULL;
    } else {
        e = pool_take(ctx, timing);
    }
    pthread_mutex_unlock(&mon.lock);
    if (!e &&
        DRV(cuEventCreate)(&e, timing ? CU_EVENT_DEFAULT : CU_EVENT_DISABLE_TIMING) != CUDA_SUCCESS)
        e = NULL;
    return e;
}

static void hp_sub(orion_slot *me, const pending *p)
{
    atomic_fetch_sub(&me->hp_inflight, 1);
    atomic_fetch_sub(&me->hp_sms, p->sms);
    atomic_fetch_sub(p->profile == ORION_COMPUTE  ? &me->hp_compute
                     : p->profile == ORION_MEMORY ? &me->hp_memory
                                                  : &me->hp_unknown,
                     1);
}

/* The monitor saw p's event complete: release what it held on the board. */
static void complete(const pending *p, uint64_t now)
{
    orion_slot *me = cfg.board.mine;
    if (p->cls == CLS_HP) {
        hp_sub(me, p);
        rt_hist_record(&st.hp_kernel_ns, now - p->t0);
        if (atomic_fetch_sub(&local_hp, 1) == 1) { /* the HP request is done */
            uint64_t lat = now - atomic_load(&request_t0);
            uint64_t old = atomic_load(&me->hp_request_ns);
            atomic_store(&me->hp_request_ns, old ? old - old / 8 + lat / 8 : lat);
        }
    } else {
        uint64_t cur = atomic_load(&me->be_inflight_us), next;
        do
            next = cur > p->dur_us ? cur - p->dur_us : 0;
        while (!atomic_compare_exchange_weak(&me->be_inflight_us, &cur, next));
    }
    float ms = 0;
    PFN_cuEventElapsedTime_v12080 elapsed =
        DRV(cuEventElapsedTime_v2) ? DRV(cuEventElapsedTime_v2) : DRV(cuEventElapsedTime);
    if (p->start && p->sh && elapsed && elapsed(&ms, p->start, p->ev) == CUDA_SUCCESS && ms >= 0) {
        shape *sh = p->sh;
        uint64_t n = atomic_fetch_add(&sh->learned_n, 1) + 1;
        uint64_t sum =
            atomic_fetch_add(&sh->learned_sum_ns, (uint64_t)(ms * 1e6)) + (uint64_t)(ms * 1e6);
        atomic_store(&sh->dur_us, sum / n / 1000 + 1);
    }
}

static void *monitor_main(void *arg)
{
    (void)arg;
    pending *mine = NULL, *fin = NULL; /* in flight; completed this round */
    size_t n = 0, cap = 0;
    CUcontext cur = NULL;
    for (;;) {
        pthread_mutex_lock(&mon.lock);
        while (!mon.n_in && !n && !mon.stopping) {
            mon.sleeping = true;
            pthread_cond_wait(&mon.cond, &mon.lock);
            mon.sleeping = false;
        }
        if (n + mon.n_in > cap) {
            size_t nc = (n + mon.n_in) * 2;
            pending *nm = realloc(mine, nc * sizeof *nm);
            if (nm)
                mine = nm;
            pending *nf = nm ? realloc(fin, nc * sizeof *nf) : NULL;
            if (nf) {
                fin = nf;
                cap = nc;
            }
        }
        if (mon.n_in && n + mon.n_in <= cap) {
            memcpy(mine + n, mon.in, mon.n_in * sizeof *mine);
            n += mon.n_in;
            mon.n_in = 0;
        }
        bool stop = mon.stopping;
        pthread_mutex_unlock(&mon.lock);
        if (stop)
            break;
        size_t kept = 0, done = 0;
        uint64_t now = rt_now_ns();
        blocked_set bs = {.n = 0};
        for (size_t i = 0; i < n; i++) {
            if (is_blocked(&bs, &mine[i])) { /* behind a pending event of its stream */
                mine[kept++] = mine[i];
                continue;
            }
            if (mine[i].ctx != cur && DRV(cuCtxSetCurrent)(mine[i].ctx) == CUDA_SUCCESS)
                cur = mine[i].ctx;
            if (DRV(cuEventQuery)(mine[i].ev) == CUDA_ERROR_NOT_READY) {
                mine[kept] = mine[i];
                if (bs.n < BLOCKED_MAX) /* (past 64 streams: simply query them all) */
                    bs.v[bs.n++] = &mine[kept];
                kept++;
                continue;
            }
            complete(&mine[i], now); /* done, or an error: it holds nothing any more */
            fin[done++] = mine[i];
        }
        bool any = done > 0;
        if (any) { /* give the events back under one lock */
            pthread_mutex_lock(&mon.lock);
            for (size_t i = 0; i < done; i++) {
                pool_give(fin[i].ev, fin[i].ctx, fin[i].start != NULL);
                pool_give(fin[i].start, fin[i].ctx, true);
            }
            pthread_mutex_unlock(&mon.lock);
        }
        n = kept;
        if (any)
            orion_board_bump(cfg.board.b);
        if (n) {
            struct timespec ts = {0, 20000}; /* poll the outstanding events every 20 µs */
            nanosleep(&ts, NULL);
        }
    }
    free(mine);
    free(fin);
    pthread_mutex_lock(&mon.lock);
    mon.stopped = true;
    pthread_cond_broadcast(&mon.cond);
    pthread_mutex_unlock(&mon.lock);
    return NULL;
}

/* After a gated launch: record its event and put its claim on the board. */
void track(int cls, shape *sh, CUstream eff, CUevent start)
{
    CUcontext ctx = NULL;
    if (DRV(cuCtxGetCurrent)(&ctx) != CUDA_SUCCESS || !ctx) {
        atomic_fetch_add(&st.untracked, 1);
        return;
    }
    CUevent ev = event_for(ctx, start != NULL);
    if (!ev || DRV(cuEventRecord)(ev, eff) != CUDA_SUCCESS) {
        atomic_fetch_add(&st.untracked, 1);
        pthread_mutex_lock(&mon.lock);
        pool_give(ev, ctx, start != NULL);
        pool_give(start, ctx, true);
        pthread_mutex_unlock(&mon.lock);
        return;
    }
    pending p = {.ev = ev,
                 .start = start,
                 .ctx = ctx,
                 .stream = eff,
                 .owner = eff == CU_STREAM_PER_THREAD ? (uintptr_t)pthread_self() : 0,
                 .sh = sh == &graph_shape ? NULL : sh,
                 .cls = cls,
                 .sms = sh == &graph_shape ? device_sms() : sh->sm_need,
                 .profile = sh->profile,
                 .dur_us = atomic_load(&sh->dur_us),
                 .t0 = rt_now_ns()};
    orion_slot *me = cfg.board.mine;
    if (cls == CLS_HP) {
        if (atomic_fetch_add(&local_hp, 1) == 0)
            atomic_store(&request_t0, p.t0);
        atomic_fetch_add(&me->hp_inflight, 1);
        atomic_fetch_add(&me->hp_sms, p.sms);
        atomic_fetch_add(p.profile == ORION_COMPUTE  ? &me->hp_compute
                         : p.profile == ORION_MEMORY ? &me->hp_memory
                                                     : &me->hp_unknown,
                         1);
    } else {
        atomic_fetch_add(&me->be_inflight_us, p.dur_us);
    }
    pthread_mutex_lock(&mon.lock);
    if (!mon.started && !mon.stopping) {
        mon.started = pthread_create(&mon.thread, NULL, monitor_main, NULL) == 0;
        if (!mon.started)
            rt_log(&lg, RT_LOG_ERROR, "cannot start the monitor thread: %s", strerror(errno));
    }
    bool queued = false;
    if (mon.started && mon.n_in == mon.cap_in) {
        size_t cap = mon.cap_in ? 2 * mon.cap_in : 1024;
        pending *ni = realloc(mon.in, cap * sizeof *ni);
        if (ni) {
            mon.in = ni;
            mon.cap_in = cap;
        }
    }
    if (mon.started && mon.n_in < mon.cap_in) {
        mon.in[mon.n_in++] = p;
        queued = true;
        if (mon.sleeping) /* else it is polling and finds it within 20 µs */
            pthread_cond_signal(&mon.cond);
    }
    pthread_mutex_unlock(&mon.lock);
    if (!queued) { /* nobody would ever release it: take the claim back */
        atomic_fetch_add(&st.untracked, 1);
        complete(&p, p.t0);
    }
}

/* ORION_LEARN: an event recorded before the launch too; the monitor measures the time from
 * it to the event after. */
CUevent start_event(CUstream eff)
{
    CUcontext ctx = NULL;
    if (!cfg.learn || DRV(cuCtxGetCurrent)(&ctx) != CUDA_SUCCESS || !ctx)
        return NULL;
    CUevent e = event_for(ctx, true);
    if (e && DRV(cuEventRecord)(e, eff) != CUDA_SUCCESS) {
        pthread_mutex_lock(&mon.lock);
        pool_give(e, ctx, true);
        pthread_mutex_unlock(&mon.lock);
        e = NULL;
    }
    return e;
}

/* The launch failed: nothing to measure. */
void drop_start_event(CUevent start)
{
    CUcontext ctx = NULL;
    DRV(cuCtxGetCurrent)(&ctx);
    pthread_mutex_lock(&mon.lock);
    pool_give(start, ctx, true);
    pthread_mutex_unlock(&mon.lock);
}

/* At exit, before the driver goes away; wait at most 100 ms for the monitor. */
void monitor_stop(void)
{
    pthread_mutex_lock(&mon.lock);
    mon.stopping = true;
    pthread_cond_broadcast(&mon.cond);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 100000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    while (mon.started && !mon.stopped)
        if (pthread_cond_timedwait(&mon.cond, &mon.lock, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&mon.lock);
}
