/* binding.c: how liborion.so reaches the real driver and hands its wrappers out.
 *
 *   the driver table   the entry points of driver.h: the shim's own calls from the driver the
 *                      program uses, the next definitions of the exported symbols; dlsym
 *                      itself found with dlvsym
 *   bindings           wrappers bound to the exact pointer cuGetProcAddress or dlsym returned
 *                      (version and per-thread-default-stream variant preserved)
 *   lookups            the exported cuGetProcAddress, cuGetProcAddress_v2 and dlsym
 */
#include "shim.h" /* first: driver.h sets the CUDA API version of cuda.h */

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "rt/log.h"

/* ---- the driver table -------------------------------------------------------------------- */

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
pthread_once_t driver_once = PTHREAD_ONCE_INIT;

/* The NEED, OPT and ALT entries of driver.h, in its order; an ALT entry only when the entry
 * above it was not found. */
void load_driver(void)
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
        rt_log(
            &lg, RT_LOG_ERROR,
            "the driver lacks entry points the shim needs (events, capture status, contexts); passing every call through");
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

/* Is p inside this library (one of our own exported wrappers, found by a lookup through
 * RTLD_DEFAULT)? Then it must not be wrapped again. */
static bool ours(const void *p)
{
    Dl_info a, b;
    return dladdr(p, &a) && dladdr((const void *)ours, &b) && a.dli_fbase == b.dli_fbase;
}

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
               "%s: more than %d distinct entry points; further ones are not intercepted", f->name,
               NSLOT);
    }
    pthread_mutex_unlock(&bind_lock);
    return w;
}

static CUresult gpa_impl(void *real, bool v2, const char *sym, void **pfn, int ver,
                         cuuint64_t flags, CUdriverProcAddressQueryResult *status);

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

/* ---- lookups ----------------------------------------------------------------------------- */

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
