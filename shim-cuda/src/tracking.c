/* tracking.c: what liborion.so knows about the launches it gates.
 *
 *   launch shapes       per (function, grid, block, shared memory): SM need, profile,
 *                       duration, in an insert-only table read without locks
 *   in-flight tracking  per burst: one event per group of back-to-back launches of a thread
 *                       on a stream, a pool of events, the monitor thread that sees them
 *                       complete and releases their claims on the board
 */
#include "shim.h" /* first: driver.h sets the CUDA API version of cuda.h */

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

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

/* A group: launches of one class that one thread made back to back on one stream, and the one
 * event that marks the stream after the latest of them. Each launch re-records the group's
 * event after itself (an event's state is that of its latest record), so a burst of launches
 * costs one event, and the group holds the claims of all of them on the board until the event
 * completes: a claim is released when a later kernel of its stream completes, never before its
 * own. The monitor closes a group while it queries it and reopens it when the event is not
 * done; a launch that finds its group closed starts a new one. Under ORION_LEARN every launch
 * is a group of its own (its two events time that one kernel).
 *
 * `word` is the group's generation (bumped when it is freed) and its state, so a thread that
 * remembers an older generation of a reused group cannot extend it. */
enum { G_FREE = 0, G_OPEN, G_BUSY, G_CLOSED };
#define G_WORD(gen, state) ((gen) << 2 | (uint32_t)(state))
#define G_GEN(word)        ((word) >> 2)

typedef struct group {
    _Atomic uint32_t word;
    CUevent ev, start; /* start: ORION_LEARN's event before the launch, or NULL */
    CUcontext ctx;
    CUstream stream; /* with ctx and owner: the stream its launches went on */
    uintptr_t owner; /* the launching thread */
    shape *sh;       /* the timed shape under ORION_LEARN, else NULL */
    int cls;
    uint32_t n, sms, compute, memory, unknown; /* HP launches claimed, by profile */
    uint64_t dur_us;                           /* BE work claimed */
    uint64_t t0;                               /* the first launch */
} group;

#define GROUPS 8192
static group groups[GROUPS];

/* The launch path hands a new group to the monitor through a bounded lock-free queue (many
 * producers, one consumer; D. Vyukov's sequence-numbered ring). It holds group indices and has
 * a cell per group, so it is never full. A cell's `seq` is stored relative to its index, so
 * the zeroed array is the empty ring. */
#define RING GROUPS
static struct cell {
    _Atomic size_t seq;
    uint32_t idx;
} ring[RING];
static _Atomic size_t ring_head; /* next position a producer claims */
static size_t ring_tail;         /* next position the monitor reads (the monitor's own) */

static void ring_push(uint32_t idx)
{
    size_t pos = atomic_load_explicit(&ring_head, memory_order_relaxed);
    struct cell *c;
    for (;;) {
        c = &ring[pos % RING];
        size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire) + pos % RING;
        if (seq == pos) {
            if (atomic_compare_exchange_weak_explicit(&ring_head, &pos, pos + 1,
                                                      memory_order_relaxed, memory_order_relaxed))
                break;
        } else {
            pos = atomic_load_explicit(&ring_head, memory_order_relaxed);
        }
    }
    c->idx = idx;
    atomic_store_explicit(&c->seq, pos + 1 - pos % RING, memory_order_seq_cst);
}

static bool ring_ready(void)
{
    const struct cell *c = &ring[ring_tail % RING];
    return atomic_load_explicit(&c->seq, memory_order_seq_cst) + ring_tail % RING == ring_tail + 1;
}

static uint32_t ring_pop(void) /* after ring_ready() */
{
    struct cell *c = &ring[ring_tail % RING];
    uint32_t idx = c->idx;
    atomic_store_explicit(&c->seq, ring_tail + RING - ring_tail % RING, memory_order_release);
    ring_tail++;
    return idx;
}

typedef struct pooled {
    CUevent ev;
    CUcontext ctx;
    bool timing;
} pooled;

static struct {
    pthread_mutex_t lock; /* the event pool, the free groups, starting and stopping */
    pthread_cond_t cond;
    pooled *pool;
    size_t n_pool, cap_pool;
    uint32_t free_groups[GROUPS], n_free, fresh; /* fresh: groups never used start here */
    bool stopping, stopped;
    _Atomic bool started, sleeping;
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

/* A free group's index (its word says G_FREE with its current generation), or -1. */
static int group_alloc(void)
{
    int idx = -1;
    pthread_mutex_lock(&mon.lock);
    if (mon.n_free)
        idx = (int)mon.free_groups[--mon.n_free];
    else if (mon.fresh < GROUPS)
        idx = (int)mon.fresh++;
    pthread_mutex_unlock(&mon.lock);
    return idx;
}

/* Lock held: the group's events back to the pool, the group to the free list. */
static void group_free_locked(group *g)
{
    pool_give(g->ev, g->ctx, g->start != NULL);
    pool_give(g->start, g->ctx, true);
    uint32_t w = atomic_load(&g->word);
    atomic_store(&g->word, G_WORD(G_GEN(w) + 1, G_FREE));
    mon.free_groups[mon.n_free++] = (uint32_t)(g - groups);
}

/* Each launching thread keeps a few untimed events of its context, refilled from the pool
 * up to TL_EVENTS at a time, so the launch path takes the pool's lock once per refill. (A
 * thread that exits leaves its cached events unused.) */
#define TL_EVENTS 64
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

/* The claims of one launch, on the board and in its group (the group is the caller's: new,
 * or held G_BUSY). */
static void claim(group *g, int cls, const shape *sh)
{
    orion_slot *me = cfg.board.mine;
    if (cls == CLS_HP) {
        uint32_t sms = sh == &graph_shape ? device_sms() : sh->sm_need;
        if (atomic_fetch_add(&local_hp, 1) == 0)
            atomic_store(&request_t0, rt_now_ns());
        atomic_fetch_add(&me->hp_inflight, 1);
        atomic_fetch_add(&me->hp_sms, sms);
        g->n++;
        g->sms += sms;
        if (sh->profile == ORION_COMPUTE) {
            atomic_fetch_add(&me->hp_compute, 1);
            g->compute++;
        } else if (sh->profile == ORION_MEMORY) {
            atomic_fetch_add(&me->hp_memory, 1);
            g->memory++;
        } else {
            atomic_fetch_add(&me->hp_unknown, 1);
            g->unknown++;
        }
    } else {
        uint64_t dur = atomic_load(&sh->dur_us);
        atomic_fetch_add(&me->be_inflight_us, dur);
        g->dur_us += dur;
    }
}

/* The group's event completed: release what its launches held on the board. */
static void complete(const group *g, uint64_t now)
{
    orion_slot *me = cfg.board.mine;
    if (g->cls == CLS_HP) {
        atomic_fetch_sub(&me->hp_inflight, g->n);
        atomic_fetch_sub(&me->hp_sms, g->sms);
        atomic_fetch_sub(&me->hp_compute, g->compute);
        atomic_fetch_sub(&me->hp_memory, g->memory);
        atomic_fetch_sub(&me->hp_unknown, g->unknown);
        if (cfg.counting)
            rt_hist_record(&st.hp_kernel_ns, now - g->t0);
        if (atomic_fetch_sub(&local_hp, g->n) == g->n) { /* the HP request is done */
            uint64_t lat = now - atomic_load(&request_t0);
            uint64_t old = atomic_load(&me->hp_request_ns);
            atomic_store(&me->hp_request_ns, old ? old - old / 8 + lat / 8 : lat);
        }
    } else {
        uint64_t cur = atomic_load(&me->be_inflight_us), next;
        do
            next = cur > g->dur_us ? cur - g->dur_us : 0;
        while (!atomic_compare_exchange_weak(&me->be_inflight_us, &cur, next));
    }
    float ms = 0;
    PFN_cuEventElapsedTime_v12080 elapsed =
        DRV(cuEventElapsedTime_v2) ? DRV(cuEventElapsedTime_v2) : DRV(cuEventElapsedTime);
    if (g->start && g->sh && elapsed && elapsed(&ms, g->start, g->ev) == CUDA_SUCCESS && ms >= 0) {
        shape *sh = g->sh;
        uint64_t n = atomic_fetch_add(&sh->learned_n, 1) + 1;
        uint64_t sum =
            atomic_fetch_add(&sh->learned_sum_ns, (uint64_t)(ms * 1e6)) + (uint64_t)(ms * 1e6);
        atomic_store(&sh->dur_us, sum / n / 1000 + 1);
    }
}

static bool same_stream(const group *a, const group *b)
{
    return a->ctx == b->ctx && a->stream == b->stream && a->owner == b->owner;
}

/* What one polling round knows about a stream (of one thread): streams are FIFO, so once a
 * group's event is not done, later groups' are not either (blocked), and once the newest
 * group's event is done, every earlier group's is (drained: its last record came before the
 * newest group's first). A round queries a stream's oldest group, and when that one is done
 * the newest: groups completed since the last round cost two queries, not one each. */
#define STREAMS_MAX 64
typedef struct stream_round {
    const group *key; /* a group of the stream */
    size_t newest;    /* index of its newest group this round */
    enum { S_OPEN, S_CHECKED, S_BLOCKED, S_DRAINED } state;
} stream_round;

/* The round's entry of g's stream, NULL past STREAMS_MAX streams (then: query them all). */
static stream_round *round_find(stream_round *r, int n, const group *g)
{
    for (int k = 0; k < n; k++)
        if (same_stream(r[k].key, g))
            return &r[k];
    return NULL;
}

/* The monitor sleeps once nothing has been in flight for LINGER_NS (so a thread launching
 * steadily finds it awake and wakes nobody): it sets `sleeping`, then looks at the ring once
 * more; a producer publishes, then looks at `sleeping` (both sequentially consistent), so one
 * of the two sees the other and the wake-up is not lost. */
#define POLL_NS   20000  /* between looks at the outstanding events */
#define LINGER_NS 500000 /* polling on after the last completion */
static bool nothing_queued(size_t n) { return !n && !mon.stopping && !ring_ready(); }

static void *monitor_main(void *arg)
{
    (void)arg;
    /* The monitor yields the CPU to the program's own threads: on a loaded machine an HP
     * thread preempted between the launches of a request stretches the request, while a
     * late look at the events only holds BE work back a little longer. */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
    uint32_t *mine = NULL; /* groups in flight, in the order they were handed over */
    size_t n = 0, cap = 0;
    CUcontext cur = NULL;
    static stream_round rounds[STREAMS_MAX];
    uint64_t busy_at = 0; /* the last round with something in flight */
    for (;;) {
        if (!n && !ring_ready() && rt_now_ns() - busy_at < LINGER_NS) {
            struct timespec ts = {0, POLL_NS};
            nanosleep(&ts, NULL);
            continue;
        }
        pthread_mutex_lock(&mon.lock);
        while (nothing_queued(n)) {
            atomic_store(&mon.sleeping, true);
            if (nothing_queued(n))
                pthread_cond_wait(&mon.cond, &mon.lock);
            atomic_store(&mon.sleeping, false);
        }
        bool stop = mon.stopping;
        pthread_mutex_unlock(&mon.lock);
        if (stop)
            break;
        while (ring_ready()) {
            if (n == cap) { /* at most GROUPS are in flight */
                size_t nc = cap ? 2 * cap : 1024;
                uint32_t *nm = realloc(mine, nc * sizeof *nm);
                if (!nm)
                    break; /* take them in a later round */
                mine = nm;
                cap = nc;
            }
            mine[n++] = ring_pop();
        }
        size_t kept = 0;
        bool any = false;
        uint64_t now = rt_now_ns();
        int nr = 0;
        for (size_t i = 0; i < n; i++) {
            stream_round *r = round_find(rounds, nr, &groups[mine[i]]);
            if (r)
                r->newest = i;
            else if (nr < STREAMS_MAX)
                rounds[nr++] = (stream_round){&groups[mine[i]], i, S_OPEN};
        }
        for (size_t i = 0; i < n; i++) {
            group *g = &groups[mine[i]];
            stream_round *r = round_find(rounds, nr, g);
            /* Only an open group is closed: a busy one is being extended (its event about to
             * be re-recorded, its claim about to be added), and closing it would let this
             * round see the old record complete and free the group under the launch, whose
             * claim would then stay on the board for good. */
            uint32_t w = atomic_load(&g->word);
            if ((r && r->state == S_BLOCKED) || (w & 3u) != G_OPEN ||
                !atomic_compare_exchange_strong(&g->word, &w, G_WORD(G_GEN(w), G_CLOSED))) {
                if (r) /* behind a pending event of its stream, or a launch extends it now */
                    r->state = S_BLOCKED;
                mine[kept++] = mine[i];
                continue;
            }
            if (!r || r->state != S_DRAINED || r->newest == i) {
                if (g->ctx != cur && DRV(cuCtxSetCurrent)(g->ctx) == CUDA_SUCCESS)
                    cur = g->ctx;
                if (DRV(cuEventQuery)(g->ev) == CUDA_ERROR_NOT_READY) {
                    atomic_store(&g->word, G_WORD(G_GEN(w), G_OPEN));
                    if (r)
                        r->state = S_BLOCKED;
                    mine[kept++] = mine[i];
                    continue;
                }
                if (r && r->state == S_OPEN) {
                    r->state = S_CHECKED;
                    if (r->newest != i &&
                        DRV(cuEventQuery)(groups[mine[r->newest]].ev) == CUDA_SUCCESS)
                        r->state = S_DRAINED;
                }
            }
            complete(g, now); /* done, or an error: it holds nothing any more */
            pthread_mutex_lock(&mon.lock);
            group_free_locked(g);
            pthread_mutex_unlock(&mon.lock);
            any = true;
        }
        n = kept;
        if (any)
            orion_board_bump(cfg.board.b);
        busy_at = now;
        if (n) {
            struct timespec ts = {0, POLL_NS};
            nanosleep(&ts, NULL);
        }
    }
    free(mine);
    pthread_mutex_lock(&mon.lock);
    mon.stopped = true;
    pthread_cond_broadcast(&mon.cond);
    pthread_mutex_unlock(&mon.lock);
    return NULL;
}

static bool monitor_running(void)
{
    if (atomic_load_explicit(&mon.started, memory_order_acquire))
        return true;
    pthread_mutex_lock(&mon.lock);
    if (!atomic_load(&mon.started) && !mon.stopping) {
        bool ok = pthread_create(&mon.thread, NULL, monitor_main, NULL) == 0;
        if (!ok)
            rt_log(&lg, RT_LOG_ERROR, "cannot start the monitor thread: %s", strerror(errno));
        atomic_store_explicit(&mon.started, ok, memory_order_release);
    }
    pthread_mutex_unlock(&mon.lock);
    return atomic_load(&mon.started);
}

/* The groups this thread may extend: the latest one per (context, stream, class). */
#define TL_GROUPS 4
static __thread struct {
    uint32_t word; /* 0: none */
    uint32_t idx;
    CUcontext ctx;
    CUstream stream;
    int cls;
} tl_group[TL_GROUPS];
static __thread unsigned tl_group_next;

/* Extend this thread's open group of (ctx, eff, cls) by one launch: re-record its event after
 * the launch and add the claim. 1: done; 0: no open group (start one); -1: the record failed. */
static int extend(int cls, const shape *sh, CUstream eff, CUcontext ctx)
{
    for (int k = 0; k < TL_GROUPS; k++) {
        if (!tl_group[k].word || tl_group[k].ctx != ctx || tl_group[k].stream != eff ||
            tl_group[k].cls != cls)
            continue;
        group *g = &groups[tl_group[k].idx];
        uint32_t open = tl_group[k].word;
        if (!atomic_compare_exchange_strong(&g->word, &open, G_WORD(G_GEN(open), G_BUSY))) {
            tl_group[k].word = 0; /* the monitor has it (or is done with it) */
            return 0;
        }
        int rc = DRV(cuEventRecord)(g->ev, eff) == CUDA_SUCCESS ? 1 : -1;
        if (rc == 1)
            claim(g, cls, sh);
        atomic_store(&g->word, tl_group[k].word); /* open again */
        return rc;
    }
    return 0;
}

/* After a gated launch: record its group's event and put its claim on the board. */
void track(int cls, shape *sh, CUstream eff, CUcontext ctx, CUevent start)
{
    if (!start) {
        int rc = extend(cls, sh, eff, ctx);
        if (rc != 0) {
            if (rc < 0)
                COUNT(untracked);
            return;
        }
    }
    int idx = monitor_running() ? group_alloc() : -1;
    CUevent ev = idx >= 0 ? event_for(ctx, start != NULL) : NULL;
    if (!ev || DRV(cuEventRecord)(ev, eff) != CUDA_SUCCESS) {
        COUNT(untracked);
        pthread_mutex_lock(&mon.lock);
        pool_give(ev, ctx, start != NULL);
        pool_give(start, ctx, true);
        if (idx >= 0) {
            groups[idx].ev = groups[idx].start = NULL;
            group_free_locked(&groups[idx]);
        }
        pthread_mutex_unlock(&mon.lock);
        return;
    }
    group *g = &groups[idx];
    uint32_t gen = G_GEN(atomic_load(&g->word));
    g->ev = ev;
    g->start = start;
    g->ctx = ctx;
    g->stream = eff;
    g->owner = (uintptr_t)pthread_self();
    g->sh = start && sh != &graph_shape ? sh : NULL;
    g->cls = cls;
    g->n = g->sms = g->compute = g->memory = g->unknown = 0;
    g->dur_us = 0;
    g->t0 = rt_now_ns();
    claim(g, cls, sh);
    atomic_store(&g->word, G_WORD(gen, G_OPEN));
    if (!start) {
        unsigned k = tl_group_next++ % TL_GROUPS;
        for (unsigned j = 0; j < TL_GROUPS; j++) /* replace this stream's older group */
            if (tl_group[j].word && tl_group[j].ctx == ctx && tl_group[j].stream == eff &&
                tl_group[j].cls == cls)
                k = j;
        tl_group[k].word = G_WORD(gen, G_OPEN);
        tl_group[k].idx = (uint32_t)idx;
        tl_group[k].ctx = ctx;
        tl_group[k].stream = eff;
        tl_group[k].cls = cls;
    }
    ring_push((uint32_t)idx);
    if (atomic_load(&mon.sleeping)) { /* else it is polling: found within POLL_NS */
        pthread_mutex_lock(&mon.lock);
        pthread_cond_signal(&mon.cond);
        pthread_mutex_unlock(&mon.lock);
    }
}

/* ORION_LEARN: an event recorded before the launch too; the monitor measures the time from
 * it to the event after. */
CUevent start_event(CUstream eff, CUcontext ctx)
{
    if (!cfg.learn)
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
void drop_start_event(CUevent start, CUcontext ctx)
{
    pthread_mutex_lock(&mon.lock);
    pool_give(start, ctx, true);
    pthread_mutex_unlock(&mon.lock);
}

/* A BE caller that has waited a while: if this process has no group allocated (so no launch
 * of it is in flight or being tracked) yet its slot still claims BE microseconds, the claim
 * is stale and would hold every BE client back for good (the policy sees it as work on the
 * GPU). The monitor closing a group that a launch was extending left such claims (fixed
 * above); this stays as a guard, loud when it fires: drop the claim, say so once, count it. */
void tracking_repair_drift(void)
{
    orion_slot *me = cfg.board.mine;
    if (!me)
        return;
    pthread_mutex_lock(&mon.lock);
    bool idle = mon.n_free == mon.fresh;
    uint64_t stale = idle ? atomic_exchange(&me->be_inflight_us, 0) : 0;
    pthread_mutex_unlock(&mon.lock);
    if (!stale)
        return;
    COUNT(drift_repairs);
    static atomic_bool said;
    if (!atomic_exchange(&said, true))
        rt_log(&lg, RT_LOG_WARN,
               "dropped a stale claim of %llu us of BE work with nothing in flight (once)",
               (unsigned long long)stale);
    orion_board_bump(cfg.board.b);
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
    while (atomic_load(&mon.started) && !mon.stopped)
        if (pthread_cond_timedwait(&mon.cond, &mon.lock, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&mon.lock);
}
