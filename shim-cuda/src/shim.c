/* shim.c: liborion.so, Orion's libcuda interposer: every kernel launch of a best-effort (BE)
 * client is gated, in the caller's own thread, on what high-priority (HP) clients have in
 * flight on the GPU; HP launches go straight through and are tracked.
 *
 * Sections:
 *   configuration      ORION_* variables; any problem means pass-through plus one log line
 *   real entry points  the table of driver.h and its loaders; a real dlsym found with dlvsym
 *   bindings           wrappers bound to the exact pointer cuGetProcAddress / dlsym returned
 *   launch shapes      per (function, grid, block, shared memory): SM need, profile, duration
 *   classes            process, thread and stream priority
 *   in-flight tracking an event after each gated launch, a monitor thread, the board
 *   the launch path    gate, launch, track
 *   exported wrappers  launches, copies and syncs (counted), cuGetProcAddress, dlsym
 *   statistics         ORION_STATS at exit, learned durations (ORION_LEARN)
 *
 * Launches are never queued or deferred: a BE caller waits (spin, then a futex on the board)
 * and then issues its launch on its own stream, so stream order, argument lifetimes and
 * graph capture are those of the program. A capturing stream passes straight through (an
 * event recorded into a capture would become a graph node).
 */
#include "driver.h" /* first: it sets the CUDA API version of cuda.h */

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "board.h"
#include "orion.h"
#include "policy.h"
#include "profile.h"
#include "rt/env.h"
#include "rt/log.h"
#include "rt/stats.h"

#define EXPORT __attribute__((visibility("default")))

/* ---- configuration ----------------------------------------------------------------------- */

enum { CLS_PASS = -1, CLS_BE = 0, CLS_HP = 1 };

static const char *const prio_names[] = {"be", "hp", NULL};
#define DEFAULT_DUR_US  100 /* a kernel with no known duration counts this much */
#define FALLBACK_BUDGET 250 /* µs of BE work in flight before an HP latency is measured */

static struct {
    bool active;  /* false: pass everything through */
    int priority; /* CLS_BE or CLS_HP */
    char group[RT_HOST_MAX];
    long long sm_threshold, dur_threshold_us;
    char profile_db[PATH_MAX], stats[PATH_MAX];
    bool learn;
    orion_pdb db;
    orion_board_handle board;
} cfg;

static rt_logger lg = RT_LOGGER_INIT("orion");

static void load_config(void)
{
    rt_err err = {0};
    if (rt_log_configure(&lg, "ORION", &err) != 0)
        rt_log(&lg, RT_LOG_WARN, "%s", err.msg);
    const char *prio = getenv("ORION_PRIORITY");
    if (!prio || !*prio)
        return; /* not under orion-run: pass-through */
    int p = 0;
    snprintf(cfg.group, sizeof cfg.group, "default");
    rt_env_spec spec[] = {
        {.name = "ORION_PRIORITY",
         .def = NULL,
         .names = prio_names,
         .dest = &p,
         .type = RT_ENV_ENUM,
         .help = "hp or be"},
        {.name = "ORION_GROUP",
         .def = NULL,
         .dest = cfg.group,
         .type = RT_ENV_STRING,
         .help = "clients sharing one GPU"},
        {.name = "ORION_SM_THRESHOLD",
         .def = "0",
         .min = 0,
         .max = 1 << 20,
         .dest = &cfg.sm_threshold,
         .type = RT_ENV_INT,
         .help = "0: the device's SM count"},
        {.name = "ORION_DUR_THRESHOLD_US",
         .def = "0",
         .min = 0,
         .max = 1000000000,
         .dest = &cfg.dur_threshold_us,
         .type = RT_ENV_INT,
         .help = "0: 2.5 % of the HP request latency"},
        {.name = "ORION_PROFILE_DB",
         .def = NULL,
         .dest = cfg.profile_db,
         .type = RT_ENV_PATH,
         .flags = RT_PATH_EXISTS,
         .help = "profile database"},
        {.name = "ORION_LEARN",
         .def = "0",
         .dest = &cfg.learn,
         .type = RT_ENV_BOOL,
         .help = "learn durations"},
        {.name = "ORION_STATS",
         .def = NULL,
         .dest = cfg.stats,
         .type = RT_ENV_PATH,
         .help = "JSON statistics at exit"},
    };
    if (rt_env_load(spec, sizeof spec / sizeof spec[0], &err) != 0) {
        rt_log(&lg, RT_LOG_ERROR, "%s; passing every call through", err.msg);
        return;
    }
    for (const char *c = cfg.group; *c; c++)
        if (*c == '/') {
            rt_log(&lg, RT_LOG_ERROR,
                   "ORION_GROUP='%s': no '/' allowed; passing every call "
                   "through",
                   cfg.group);
            return;
        }
    if (cfg.profile_db[0] && orion_pdb_load(&cfg.db, cfg.profile_db, &err) != 0) {
        rt_log(&lg, RT_LOG_ERROR, "%s; passing every call through", err.msg);
        orion_pdb_free(&cfg.db);
        return;
    }
    if (cfg.learn && !cfg.profile_db[0])
        rt_log(&lg, RT_LOG_WARN,
               "ORION_LEARN=1 without ORION_PROFILE_DB: learned durations "
               "are used in this process only");
    cfg.priority = p == 1 ? CLS_HP : CLS_BE;
    if (orion_board_attach(&cfg.board, cfg.group, cfg.priority, &err) != 0) {
        rt_log(&lg, RT_LOG_ERROR, "%s; passing every call through", err.msg);
        return;
    }
    cfg.active = true;
}

/* ---- real entry points ------------------------------------------------------------------- */

typedef void *(*dlsym_fn)(void *, const char *);
static dlsym_fn real_dlsym_fn;

static dlsym_fn real_dlsym(void)
{
    if (!real_dlsym_fn) {
        dlsym_fn f = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
        if (!f)
            f = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
        real_dlsym_fn = f;
    }
    return real_dlsym_fn;
}

/* The next definition of `name` after this library (the real driver when the program links
 * libcuda), looked up into *slot on the first call and again while not found: the NEXT
 * entries of driver.h. */
void *orion_next_sym(void *_Atomic *slot, const char *name)
{
    void *p = atomic_load_explicit(slot, memory_order_acquire);
    if (!p && real_dlsym()) {
        p = real_dlsym()(RTLD_NEXT, name);
        atomic_store_explicit(slot, p, memory_order_release);
    }
    return p;
}

/* The driver the program uses: the one cuGetProcAddress/dlsym handed out when the program
 * dlopen'ed it privately (RTLD_NEXT cannot see such a copy), else RTLD_NEXT's. */
static void *_Atomic driver_handle;

static void *drv(const char *name)
{
    void *h = atomic_load(&driver_handle);
    if (h && real_dlsym())
        return real_dlsym()(h, name);
    return real_dlsym() ? real_dlsym()(RTLD_NEXT, name) : NULL;
}

orion_driver_table orion_driver;
static pthread_once_t drv_once = PTHREAD_ONCE_INIT;

/* The NEED, OPT and ALT entries of driver.h, in its order; an ALT entry only when the entry
 * above it was not found. */
static void load_driver(void)
{
    void *found = NULL; /* the entry just looked up */
    bool ok = true;
/* clang-format off */
#define LOAD(how, sym, type) LOAD_##how(sym, type)
#define LOAD_OWN(sym, type)  found = drv(#sym); orion_driver.own.sym = (type)found;
#define LOAD_NEED(sym, type) LOAD_OWN(sym, type) ok = ok && found;
#define LOAD_OPT(sym, type)  LOAD_OWN(sym, type)
#define LOAD_ALT(sym, type)  if (!found) orion_driver.own.sym = (type)drv(#sym);
#define LOAD_NEXT(sym, type)
    /* clang-format on */
    ORION_DRIVER(LOAD)
#undef LOAD
#undef LOAD_OWN
#undef LOAD_NEED
#undef LOAD_OPT
#undef LOAD_ALT
#undef LOAD_NEXT
    orion_driver.ok = ok;
    if (!ok)
        rt_log(&lg, RT_LOG_ERROR,
               "the driver lacks entry points the shim needs (events, "
               "capture status, contexts); passing every call through");
}

static bool driver_ready(void)
{
    pthread_once(&drv_once, load_driver);
    return orion_driver.ok;
}

/* ---- bindings ---------------------------------------------------------------------------- */

/* A wrapper handed out by cuGetProcAddress or dlsym calls the exact real pointer it was
 * bound to, remembering whether that was a per-thread-default-stream variant (stream 0 then
 * means CU_STREAM_PER_THREAD for the event the shim records after the launch). Each family
 * has NSLOT wrappers; when they are all bound, the real pointer is handed out unwrapped
 * (pass-through) with one log line. */
#define NSLOT 8

typedef struct binding {
    void *_Atomic real;
    bool ptsz;
} binding;

typedef struct family {
    const char *name;
    binding b[NSLOT];
    void *wrapper[NSLOT];
    int n;
    bool warned;
} family;

static pthread_mutex_t bind_lock = PTHREAD_MUTEX_INITIALIZER;
static bool ours(const void *p);

static void *bind_real(family *f, void *real, bool ptsz)
{
    void *w = real;
    /* A driver that takes its own entry points' addresses through the GOT hands out this
     * library's exported wrappers: wrapping those again would gate and count twice. */
    if (ours(real))
        return real;
    pthread_mutex_lock(&bind_lock);
    int i = 0;
    while (i < f->n && !(atomic_load(&f->b[i].real) == real && f->b[i].ptsz == ptsz))
        i++;
    if (i == f->n && f->n < NSLOT) {
        f->b[i].ptsz = ptsz;
        atomic_store(&f->b[i].real, real);
        f->n++;
    }
    if (i < f->n)
        w = f->wrapper[i];
    else if (!f->warned) {
        f->warned = true;
        rt_log(&lg, RT_LOG_WARN,
               "%s: more than %d distinct entry points; further ones are "
               "not intercepted",
               f->name, NSLOT);
    }
    pthread_mutex_unlock(&bind_lock);
    return w;
}

/* Bound and exported wrappers alike call these with the real function and whether it is a
 * per-thread-default-stream variant. */
static CUresult launch_impl(void *real, bool ptsz, CUfunction f, unsigned gx, unsigned gy,
                            unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned smem,
                            CUstream s, void **params, void **extra, int kind);
static CUresult launchex_impl(void *real, bool ptsz, const CUlaunchConfig *c, CUfunction f,
                              void **params, void **extra);
static CUresult graph_impl(void *real, bool ptsz, CUgraphExec g, CUstream s);
static CUresult gpa_impl(void *real, bool v2, const char *sym, void **pfn, int ver,
                         cuuint64_t flags, CUdriverProcAddressQueryResult *status);

enum { K_LAUNCH, K_COOP };

#define LAUNCH_W(i)                                                                                \
    static CUresult launch_w##i(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,  \
                                unsigned by, unsigned bz, unsigned smem, CUstream s, void **p,     \
                                void **e)                                                          \
    {                                                                                              \
        binding *b = &fam_launch.b[i];                                                             \
        return launch_impl(atomic_load(&b->real), b->ptsz, f, gx, gy, gz, bx, by, bz, smem, s, p,  \
                           e, K_LAUNCH);                                                           \
    }
#define COOP_W(i)                                                                                  \
    static CUresult coop_w##i(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,    \
                              unsigned by, unsigned bz, unsigned smem, CUstream s, void **p)       \
    {                                                                                              \
        binding *b = &fam_coop.b[i];                                                               \
        return launch_impl(atomic_load(&b->real), b->ptsz, f, gx, gy, gz, bx, by, bz, smem, s, p,  \
                           NULL, K_COOP);                                                          \
    }
#define LAUNCHEX_W(i)                                                                              \
    static CUresult launchex_w##i(const CUlaunchConfig *c, CUfunction f, void **p, void **e)       \
    {                                                                                              \
        binding *b = &fam_launchex.b[i];                                                           \
        return launchex_impl(atomic_load(&b->real), b->ptsz, c, f, p, e);                          \
    }
#define GRAPH_W(i)                                                                                 \
    static CUresult graph_w##i(CUgraphExec g, CUstream s)                                          \
    {                                                                                              \
        binding *b = &fam_graph.b[i];                                                              \
        return graph_impl(atomic_load(&b->real), b->ptsz, g, s);                                   \
    }
#define GPA1_W(i)                                                                                  \
    static CUresult gpa1_w##i(const char *sym, void **pfn, int ver, cuuint64_t fl)                 \
    {                                                                                              \
        return gpa_impl(atomic_load(&fam_gpa1.b[i].real), false, sym, pfn, ver, fl, NULL);         \
    }
#define GPA2_W(i)                                                                                  \
    static CUresult gpa2_w##i(const char *sym, void **pfn, int ver, cuuint64_t fl,                 \
                              CUdriverProcAddressQueryResult *status)                              \
    {                                                                                              \
        return gpa_impl(atomic_load(&fam_gpa2.b[i].real), true, sym, pfn, ver, fl, status);        \
    }
#define EIGHT(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)
#define LIST8(p)                                                                                   \
    {                                                                                              \
        (void *)p##0, (void *)p##1, (void *)p##2, (void *)p##3, (void *)p##4, (void *)p##5,        \
            (void *)p##6, (void *)p##7                                                             \
    }

static family fam_launch, fam_coop, fam_launchex, fam_graph, fam_gpa1, fam_gpa2;
EIGHT(LAUNCH_W)
EIGHT(COOP_W)
EIGHT(LAUNCHEX_W)
EIGHT(GRAPH_W)
EIGHT(GPA1_W)
EIGHT(GPA2_W)
static family fam_launch = {.name = "cuLaunchKernel", .wrapper = LIST8(launch_w)};
static family fam_coop = {.name = "cuLaunchCooperativeKernel", .wrapper = LIST8(coop_w)};
static family fam_launchex = {.name = "cuLaunchKernelEx", .wrapper = LIST8(launchex_w)};
static family fam_graph = {.name = "cuGraphLaunch", .wrapper = LIST8(graph_w)};
static family fam_gpa1 = {.name = "cuGetProcAddress", .wrapper = LIST8(gpa1_w)};
static family fam_gpa2 = {.name = "cuGetProcAddress_v2", .wrapper = LIST8(gpa2_w)};

/* The family of a driver symbol the shim wraps, by its base name (no _ptsz/_ptds). */
static family *family_of(const char *base, int cuda_version)
{
    if (!strcmp(base, "cuLaunchKernel"))
        return &fam_launch;
    if (!strcmp(base, "cuLaunchKernelEx"))
        return &fam_launchex;
    if (!strcmp(base, "cuLaunchCooperativeKernel"))
        return &fam_coop;
    if (!strcmp(base, "cuGraphLaunch"))
        return &fam_graph;
    if (!strcmp(base, "cuGetProcAddress"))
        return cuda_version >= 12000 ? &fam_gpa2 : &fam_gpa1;
    if (!strcmp(base, "cuGetProcAddress_v2"))
        return &fam_gpa2;
    return NULL;
}

/* ---- statistics counters ----------------------------------------------------------------- */

static struct {
    _Atomic uint64_t hp, be, pass, captured, graph, untracked, copies, syncs, waits, hp_alone;
    _Atomic uint64_t reason[4];
    rt_hist wait_ns, hp_kernel_ns;
} st;

/* ---- launch shapes ----------------------------------------------------------------------- */

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
static shape *_Atomic shapes[SHAPES];
static shape graph_shape = {.profile = ORION_UNKNOWN, .dur_us = DEFAULT_DUR_US};

static uint32_t device_sms(void)
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

static shape *shape_of(CUfunction f, const uint32_t g[3], const uint32_t b[3], uint32_t m)
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
static void track(int cls, shape *sh, CUstream eff, CUevent start)
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

/* ---- the launch path --------------------------------------------------------------------- */

static bool capturing(CUstream eff)
{
    CUstreamCaptureStatus cs = CU_STREAM_CAPTURE_STATUS_NONE;
    /* An error (an invalid stream, say) is the launch's to report: pass it through. */
    return DRV(cuStreamIsCapturing)(eff, &cs) != CUDA_SUCCESS ||
           cs != CU_STREAM_CAPTURE_STATUS_NONE;
}

/* A BE launch waits here until the policy lets it go. */
static void gate(const shape *sh)
{
    orion_kernel k = {sh->profile, sh == &graph_shape ? device_sms() : sh->sm_need,
                      atomic_load(&sh->dur_us)};
    orion_board *bd = cfg.board.b;
    uint64_t t0 = 0, last_reclaim = 0, now = 0;
    for (int spins = 0;; spins++) {
        uint32_t gen = atomic_load(&bd->generation);
        orion_view v;
        orion_board_view(bd, &v);
        orion_limits l = {cfg.sm_threshold ? (uint32_t)cfg.sm_threshold : device_sms(),
                          cfg.dur_threshold_us ? (uint64_t)cfg.dur_threshold_us
                                               : orion_board_dur_budget_us(bd, FALLBACK_BUDGET)};
        orion_verdict vd = orion_policy(&v, &k, &l);
        if (vd == ORION_GO)
            break;
        now = rt_now_ns();
        if (!t0) {
            t0 = last_reclaim = now;
            atomic_fetch_add(&st.waits, 1);
            atomic_fetch_add(&st.reason[vd], 1);
        }
        if (now - last_reclaim > 100 * RT_MS) { /* a dead HP client may hold the board */
            orion_board_reclaim(&cfg.board);
            last_reclaim = now;
        }
        if (spins < 32)
            sched_yield();
        else
            orion_board_wait(bd, gen, RT_MS);
    }
    if (t0)
        rt_hist_record(&st.wait_ns, rt_now_ns() - t0);
}

static CUevent start_event(CUstream eff)
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

/* Gate (BE) and prepare tracking of one launch; returns the class, or CLS_PASS when the
 * launch must simply go through (*sh and *start set otherwise). */
static int before_launch(CUstream s, bool ptsz, CUfunction f, const uint32_t g[3],
                         const uint32_t b[3], uint32_t smem, shape **sh, CUstream *eff,
                         CUevent *start)
{
    int cls = classify(s);
    if (cls == CLS_PASS) {
        atomic_fetch_add(&st.pass, 1);
        return CLS_PASS;
    }
    atomic_fetch_add(cls == CLS_HP ? &st.hp : &st.be, 1);
    if (!f)
        atomic_fetch_add(&st.graph, 1);
    if (cls == CLS_HP &&
        atomic_load_explicit(&cfg.board.b->be_clients, memory_order_relaxed) == 0) {
        atomic_fetch_add(&st.hp_alone, 1); /* nobody to protect: no event, no board update */
        return CLS_PASS;
    }
    *eff = ptsz && !s ? CU_STREAM_PER_THREAD : s;
    if (capturing(*eff)) {
        atomic_fetch_add(&st.captured, 1);
        return CLS_PASS;
    }
    *sh = f ? shape_of(f, g, b, smem) : &graph_shape;
    if (!*sh) {
        atomic_fetch_add(&st.untracked, 1);
        return CLS_PASS;
    }
    if (cls == CLS_BE) {
        orion_board_mark_be(&cfg.board);
        gate(*sh);
    }
    *start = f ? start_event(*eff) : NULL;
    return cls;
}

static void after_launch(CUresult r, int cls, shape *sh, CUstream eff, CUevent start)
{
    if (cls == CLS_PASS)
        return;
    if (r == CUDA_SUCCESS) {
        track(cls, sh, eff, start);
    } else if (start) {
        CUcontext ctx = NULL;
        DRV(cuCtxGetCurrent)(&ctx);
        pthread_mutex_lock(&mon.lock);
        pool_give(start, ctx, true);
        pthread_mutex_unlock(&mon.lock);
    }
}

/* The real function of a launch is of its family's plain type (a _ptsz variant has the same
 * parameters). */
static CUresult launch_impl(void *real, bool ptsz, CUfunction f, unsigned gx, unsigned gy,
                            unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned smem,
                            CUstream s, void **params, void **extra, int kind)
{
    uint32_t g[3] = {gx, gy, gz}, bl[3] = {bx, by, bz};
    shape *sh = NULL;
    CUstream eff = s;
    CUevent start = NULL;
    int cls = before_launch(s, ptsz, f, g, bl, smem, &sh, &eff, &start);
    CUresult r = kind == K_COOP ? ((PFN_cuLaunchCooperativeKernel_v9000)real)(f, gx, gy, gz, bx, by,
                                                                              bz, smem, s, params)
                                : ((PFN_cuLaunchKernel_v4000)real)(f, gx, gy, gz, bx, by, bz, smem,
                                                                   s, params, extra);
    after_launch(r, cls, sh, eff, start);
    return r;
}

static CUresult launchex_impl(void *real_, bool ptsz, const CUlaunchConfig *c, CUfunction f,
                              void **params, void **extra)
{
    PFN_cuLaunchKernelEx_v11060 real = (PFN_cuLaunchKernelEx_v11060)real_;
    if (!c)
        return real(c, f, params, extra);
    uint32_t g[3] = {c->gridDimX, c->gridDimY, c->gridDimZ},
             bl[3] = {c->blockDimX, c->blockDimY, c->blockDimZ};
    shape *sh = NULL;
    CUstream eff = c->hStream;
    CUevent start = NULL;
    int cls = before_launch(c->hStream, ptsz, f, g, bl, c->sharedMemBytes, &sh, &eff, &start);
    CUresult r = real(c, f, params, extra);
    after_launch(r, cls, sh, eff, start);
    return r;
}

static CUresult graph_impl(void *real_, bool ptsz, CUgraphExec gexec, CUstream s)
{
    PFN_cuGraphLaunch_v10000 real = (PFN_cuGraphLaunch_v10000)real_;
    static const uint32_t none[3] = {0, 0, 0};
    shape *sh = NULL;
    CUstream eff = s;
    CUevent start = NULL;
    int cls = before_launch(s, ptsz, NULL, none, none, 0, &sh, &eff, &start);
    CUresult r = real(gexec, s);
    after_launch(r, cls, sh, eff, start);
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
        atomic_fetch_add(&st.counter, 1);                                                          \
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

/* cuGetProcAddress: the real lookup first, then the wrapper bound to exactly what it gave. */
static CUresult gpa_impl(void *real, bool v2, const char *sym, void **pfn, int ver,
                         cuuint64_t flags, CUdriverProcAddressQueryResult *status)
{
    CUresult r = v2 ? ((PFN_cuGetProcAddress_v12000)real)(sym, pfn, ver, flags, status)
                    : ((PFN_cuGetProcAddress_v11030)real)(sym, pfn, ver, flags);
    if (r != CUDA_SUCCESS || !sym || !pfn || !*pfn)
        return r;
    family *f = family_of(sym, ver);
    if (f)
        *pfn = bind_real(f, *pfn, (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0);
    return r;
}

EXPORT CUresult cuGetProcAddress(const char *sym, void **pfn, int ver, cuuint64_t flags)
{
    void *real = (void *)NEXT(cuGetProcAddress);
    if (!real)
        return CUDA_ERROR_NOT_INITIALIZED;
    return gpa_impl(real, false, sym, pfn, ver, flags, NULL);
}

EXPORT CUresult cuGetProcAddress_v2(const char *sym, void **pfn, int ver, cuuint64_t flags,
                                    CUdriverProcAddressQueryResult *status)
{
    void *real = (void *)NEXT(cuGetProcAddress_v2);
    if (!real)
        return CUDA_ERROR_NOT_INITIALIZED;
    return gpa_impl(real, true, sym, pfn, ver, flags, status);
}

/* Is p inside this library (one of our own exported wrappers, found by a lookup through
 * RTLD_DEFAULT)? Then it must not be wrapped again. */
static bool ours(const void *p)
{
    Dl_info a, b;
    return dladdr(p, &a) && dladdr((const void *)ours, &b) && a.dli_fbase == b.dli_fbase;
}

static __thread int in_dlsym;

/* Programs that dlopen("libcuda.so.1") and look entry points up themselves (PyTorch's
 * lazy loader, Triton) get the same wrappers. RTLD_NEXT lookups, names not starting with
 * "cu", and lookups made while one is in progress pass straight through. */
EXPORT void *dlsym(void *handle, const char *name)
{
    dlsym_fn rd = real_dlsym();
    if (!rd)
        return NULL;
    if (in_dlsym || handle == RTLD_NEXT || name[0] != 'c' || name[1] != 'u')
        return rd(handle, name);
    in_dlsym = 1;
    void *r = rd(handle, name);
    if (r && handle != RTLD_DEFAULT &&
        (!strcmp(name, "cuGetProcAddress") || !strcmp(name, "cuGetProcAddress_v2") ||
         !strcmp(name, "cuInit")))
        atomic_store(&driver_handle, handle);
    if (r) {
        char base[64];
        snprintf(base, sizeof base, "%s", name);
        size_t n = strlen(base);
        bool ptsz = n > 5 && (!strcmp(base + n - 5, "_ptsz") || !strcmp(base + n - 5, "_ptds"));
        if (ptsz)
            base[n - 5] = '\0';
        family *f = family_of(base, 0);
        if (f)
            r = bind_real(f, r, ptsz);
    }
    in_dlsym = 0;
    return r;
}

/* ---- statistics -------------------------------------------------------------------------- */

static void write_stats(void)
{
    static char buf[16384];
    rt_json j;
    rt_json_init(&j, buf, sizeof buf);
    rt_json_begin(&j, NULL);
    rt_json_i64(&j, "pid", (int64_t)getpid());
    rt_json_str(&j, "priority", cfg.priority == CLS_HP ? "hp" : "be");
    rt_json_str(&j, "group", cfg.group);
    rt_json_begin(&j, "launches");
    rt_json_u64(&j, "hp", atomic_load(&st.hp));
    rt_json_u64(&j, "be", atomic_load(&st.be));
    rt_json_u64(&j, "passthrough", atomic_load(&st.pass));
    rt_json_u64(&j, "captured", atomic_load(&st.captured));
    rt_json_u64(&j, "graph", atomic_load(&st.graph));
    rt_json_u64(&j, "untracked", atomic_load(&st.untracked));
    rt_json_u64(&j, "hp_without_be", atomic_load(&st.hp_alone));
    rt_json_end(&j);
    rt_json_u64(&j, "copies", atomic_load(&st.copies));
    rt_json_u64(&j, "syncs", atomic_load(&st.syncs));
    rt_json_u64(&j, "be_waits", atomic_load(&st.waits));
    rt_json_begin(&j, "wait_reasons");
    for (int r = 1; r < 4; r++)
        rt_json_u64(&j, orion_verdict_name((orion_verdict)r), atomic_load(&st.reason[r]));
    rt_json_end(&j);
    rt_json_hist(&j, "be_wait", &st.wait_ns);
    rt_json_hist(&j, "hp_kernel", &st.hp_kernel_ns);
    rt_json_u64(&j, "board_reclaimed", cfg.board.b ? atomic_load(&cfg.board.b->reclaimed) : 0);
    rt_json_end(&j);
    const char *text = rt_json_text(&j);
    rt_err err = {0};
    if (!text || rt_stats_write_file(cfg.stats, text, &err) != 0)
        rt_log(&lg, RT_LOG_WARN, "ORION_STATS: %s", text ? err.msg : "statistics too long");
}

/* ORION_LEARN: the measured mean duration of each shape into PROFILE_DB.learned.PID, which
 * `orion-profile merge` folds into the database. */
static void write_learned(void)
{
    orion_pdb out = {0};
    for (size_t i = 0; i < SHAPES; i++) {
        shape *s = atomic_load(&shapes[i]);
        if (!s || !s->name[0] || atomic_load(&s->learned_n) == 0)
            continue;
        double us =
            (double)atomic_load(&s->learned_sum_ns) / 1e3 / (double)atomic_load(&s->learned_n);
        orion_pdb_put(&out, s->name, s->grid, s->block, s->profile, us);
    }
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s.learned.%ld", cfg.profile_db, (long)getpid());
    rt_err err = {0};
    if (out.n && orion_pdb_save(&out, path, &err) != 0)
        rt_log(&lg, RT_LOG_WARN, "ORION_LEARN: %s", err.msg);
    orion_pdb_free(&out);
}

static void in_child(void)
{
    cfg.active = false; /* a forked child has no monitor thread: it passes through */
}

__attribute__((constructor)) static void orion_init(void)
{
    rt_hist_init(&st.wait_ns);
    rt_hist_init(&st.hp_kernel_ns);
    load_config();
    pthread_atfork(NULL, NULL, in_child);
}

__attribute__((destructor)) static void orion_fini(void)
{
    if (!cfg.active)
        return;
    /* Stop the monitor before the driver goes away; wait at most 100 ms for it. */
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
    if (cfg.stats[0])
        write_stats();
    if (cfg.learn && cfg.profile_db[0])
        write_learned();
    cfg.active = false;
    orion_board_detach(&cfg.board);
}
