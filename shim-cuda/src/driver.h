/* driver.h: every driver entry point liborion.so calls, in one list, and what is generated
 * from it: the table of real functions (orion_driver, loaded in binding.c), DRV() and NEXT()
 * to reach them, and a declaration of each wrapper liborion exports.
 *
 * ORION_DRIVER(X) calls X(how, symbol, type) once per entry point:
 *   how     NEED  a call the shim makes for itself; a driver without it means pass-through
 *           OPT   a call the shim makes for itself and can do without
 *           ALT   the older name of the OPT entry just above: looked up only when that one is
 *                 missing from the driver
 *           NEXT  a symbol liborion exports: its wrapper's real function
 *   symbol  the name looked up, exactly as the driver exports it (_v2, _ptsz: the ABI version)
 *   type    that symbol's pointer type in the toolkit's cudaTypedefs.h: PFN_<name without
 *           _vN>_v<the CUDA version that introduced this ABI>[_ptsz]
 *
 * DRV(symbol) is a NEED, OPT or ALT entry, from the driver the program uses (the library its
 * own dlsym or cuGetProcAddress lookups went to, else RTLD_NEXT), all looked up together
 * when the first launch is classified (driver_ready(): then every NEED entry is set).
 * NEXT(symbol) is a NEXT entry, looked up in RTLD_NEXT (the next definition after
 * liborion) on its wrapper's first call and again on each call while not found: NULL then.
 *
 * Adding a hook: one NEXT line in the list, and its wrapper (gating.c; PASS_COUNTED for a
 * counted pass-through) calling NEXT(symbol). The declaration generated below makes a
 * wrapper whose parameters differ from the driver's type a compile error.
 */
#ifndef ORION_DRIVER_H
#define ORION_DRIVER_H

#define __CUDA_API_VERSION_INTERNAL 1 /* the unversioned declarations, as the driver exports */
#include <cuda.h>
#include <cudaTypedefs.h>
#include <stdatomic.h>
#include <stdbool.h>

/* clang-format off */
#define ORION_DRIVER(X) \
    X(OPT,  cuOccupancyMaxActiveBlocksPerMultiprocessor, \
                                        PFN_cuOccupancyMaxActiveBlocksPerMultiprocessor_v6050) \
    X(OPT,  cuFuncGetName,              PFN_cuFuncGetName_v12030) \
    X(NEED, cuEventCreate,              PFN_cuEventCreate_v2000) \
    X(NEED, cuEventRecord,              PFN_cuEventRecord_v2000) \
    X(NEED, cuEventQuery,               PFN_cuEventQuery_v2000) \
    X(OPT,  cuEventElapsedTime_v2,      PFN_cuEventElapsedTime_v12080) \
    X(ALT,  cuEventElapsedTime,         PFN_cuEventElapsedTime_v2000) \
    X(NEED, cuStreamIsCapturing,        PFN_cuStreamIsCapturing_v10000) \
    X(OPT,  cuStreamGetPriority,        PFN_cuStreamGetPriority_v5050) \
    X(OPT,  cuCtxGetStreamPriorityRange, PFN_cuCtxGetStreamPriorityRange_v5050) \
    X(NEED, cuCtxGetCurrent,            PFN_cuCtxGetCurrent_v4000) \
    X(NEED, cuCtxGetDevice,             PFN_cuCtxGetDevice_v2000) \
    X(NEED, cuDeviceGetAttribute,       PFN_cuDeviceGetAttribute_v2000) \
    X(NEED, cuCtxSetCurrent,            PFN_cuCtxSetCurrent_v4000) \
    X(OPT,  cuEventDestroy_v2,          PFN_cuEventDestroy_v4000) \
    \
    X(NEXT, cuLaunchKernel,             PFN_cuLaunchKernel_v4000) \
    X(NEXT, cuLaunchKernel_ptsz,        PFN_cuLaunchKernel_v7000_ptsz) \
    X(NEXT, cuLaunchCooperativeKernel,  PFN_cuLaunchCooperativeKernel_v9000) \
    X(NEXT, cuLaunchCooperativeKernel_ptsz, PFN_cuLaunchCooperativeKernel_v9000_ptsz) \
    X(NEXT, cuLaunchKernelEx,           PFN_cuLaunchKernelEx_v11060) \
    X(NEXT, cuLaunchKernelEx_ptsz,      PFN_cuLaunchKernelEx_v11060_ptsz) \
    X(NEXT, cuGraphLaunch,              PFN_cuGraphLaunch_v10000) \
    X(NEXT, cuGraphLaunch_ptsz,         PFN_cuGraphLaunch_v10000_ptsz) \
    X(NEXT, cuMemcpyHtoDAsync_v2,       PFN_cuMemcpyHtoDAsync_v3020) \
    X(NEXT, cuMemcpyHtoDAsync_v2_ptsz,  PFN_cuMemcpyHtoDAsync_v7000_ptsz) \
    X(NEXT, cuMemcpyDtoHAsync_v2,       PFN_cuMemcpyDtoHAsync_v3020) \
    X(NEXT, cuMemcpyDtoHAsync_v2_ptsz,  PFN_cuMemcpyDtoHAsync_v7000_ptsz) \
    X(NEXT, cuMemcpyDtoDAsync_v2,       PFN_cuMemcpyDtoDAsync_v3020) \
    X(NEXT, cuMemcpyAsync,              PFN_cuMemcpyAsync_v4000) \
    X(NEXT, cuMemsetD8Async,            PFN_cuMemsetD8Async_v3020) \
    X(NEXT, cuMemsetD32Async,           PFN_cuMemsetD32Async_v3020) \
    X(NEXT, cuStreamSynchronize,        PFN_cuStreamSynchronize_v2000) \
    X(NEXT, cuStreamSynchronize_ptsz,   PFN_cuStreamSynchronize_v7000_ptsz) \
    X(NEXT, cuCtxSynchronize,           PFN_cuCtxSynchronize_v2000) \
    X(NEXT, cuEventSynchronize,         PFN_cuEventSynchronize_v2000) \
    X(NEXT, cuStreamQuery,              PFN_cuStreamQuery_v2000) \
    X(NEXT, cuStreamQuery_ptsz,         PFN_cuStreamQuery_v7000_ptsz) \
    X(NEXT, cuEventRecord,              PFN_cuEventRecord_v2000) \
    X(NEXT, cuEventRecord_ptsz,         PFN_cuEventRecord_v7000_ptsz) \
    X(NEXT, cuStreamDestroy_v2,         PFN_cuStreamDestroy_v4000) \
    X(NEXT, cuGetProcAddress,           PFN_cuGetProcAddress_v11030) \
    X(NEXT, cuGetProcAddress_v2,        PFN_cuGetProcAddress_v12000)

/* How each kind of entry expands: the field of the shim's own calls, the slot of a next
 * definition and its accessor, the declaration of an exported wrapper. (Fields and
 * declarations are named by the symbol, hence no parentheses around it.) */
#define ORION_OWN_FIELD(how, sym, type)   ORION_OWN_FIELD_##how(sym, type)
#define ORION_OWN_FIELD_NEED(sym, type)   type sym;
#define ORION_OWN_FIELD_OPT(sym, type)    type sym;
#define ORION_OWN_FIELD_ALT(sym, type)    type sym;
#define ORION_OWN_FIELD_NEXT(sym, type)
#define ORION_NEXT_SLOT(how, sym, type)   ORION_NEXT_SLOT_##how(sym)
#define ORION_NEXT_SLOT_NEED(sym)
#define ORION_NEXT_SLOT_OPT(sym)
#define ORION_NEXT_SLOT_ALT(sym)
/* NOLINTNEXTLINE(bugprone-macro-parentheses) */
#define ORION_NEXT_SLOT_NEXT(sym)         void *_Atomic sym;
#define ORION_NEXT_FN(how, sym, type)     ORION_NEXT_FN_##how(sym, type)
#define ORION_NEXT_FN_NEED(sym, type)
#define ORION_NEXT_FN_OPT(sym, type)
#define ORION_NEXT_FN_ALT(sym, type)
#define ORION_NEXT_FN_NEXT(sym, type) \
    static inline type orion_next_##sym(void) \
    { \
        void *p = atomic_load_explicit(&orion_driver.next.sym, memory_order_acquire); \
        return (type)(p ? p : orion_next_sym(&orion_driver.next.sym, #sym)); \
    }
#define ORION_WRAPPER_DECL(how, sym, type) ORION_WRAPPER_DECL_##how(sym, type)
#define ORION_WRAPPER_DECL_NEED(sym, type)
#define ORION_WRAPPER_DECL_OPT(sym, type)
#define ORION_WRAPPER_DECL_ALT(sym, type)
/* NOLINTNEXTLINE(bugprone-macro-parentheses) */
#define ORION_WRAPPER_DECL_NEXT(sym, type) extern __typeof__(*(type)0) sym;
/* clang-format on */

/* The exported wrappers, each of its driver type (declared without visibility: the
 * definitions carry EXPORT). */
ORION_DRIVER(ORION_WRAPPER_DECL)

#pragma GCC visibility push(hidden)

typedef struct orion_driver_table {
    struct {
        ORION_DRIVER(ORION_OWN_FIELD)
    } own; /* written once (driver_ready), then only read */
    struct {
        ORION_DRIVER(ORION_NEXT_SLOT)
    } next;  /* each written once found */
    bool ok; /* every NEED entry was found */
} orion_driver_table;

extern orion_driver_table orion_driver;

/* The next definition of `name` after this library, looked up into *slot (NULL: not found). */
void *orion_next_sym(void *_Atomic *slot, const char *name);

ORION_DRIVER(ORION_NEXT_FN)

#pragma GCC visibility pop

#define DRV(sym)  (orion_driver.own.sym)
#define NEXT(sym) orion_next_##sym()

#endif
