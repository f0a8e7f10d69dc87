// common.cuh: what the CUDA backend's sources share: the error convention of the C library
// (mn_set_error / mn_done, internal.h) for C++, checks on every CUDA call and launch, the
// stream-ordered scratch allocator, and the entry points the sources export to each other
// and to minuet-cuda-check (the kernels' twin checks).
#ifndef MN_CUDA_COMMON_CUH
#define MN_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "cuda_internal.h"

#define MN_CUDA_API extern "C" __attribute__((visibility("default")))

// The status a failed CUDA call maps to: out of memory is MN_ENOMEM; everything else (no
// driver, no device, a fault in a kernel) MN_ENODEV, with the runtime's message.
static inline mn_status mn_cuda_status(cudaError_t e)
{
    return e == cudaErrorMemoryAllocation ? MN_ENOMEM : MN_ENODEV;
}

// Every CUDA call in a function returning mn_status: on failure, the message names the call,
// the runtime's error and the place, and the function returns.
#define CU_TRY(call)                                                                               \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            mn_set_error("CUDA: %s: %s (%s:%d)", #call, cudaGetErrorString(e_), __FILE__,          \
                         __LINE__);                                                                \
            return mn_cuda_status(e_);                                                             \
        }                                                                                          \
    } while (0)

// After every kernel launch: the launch's own error (bad configuration, no device code for
// this GPU). Faults inside kernels come back from the next synchronising call's CU_TRY.
#define CU_LAUNCHED() CU_TRY(cudaGetLastError())

// A scratch buffer on the stream's pool, freed (stream-ordered) when it goes out of scope.
struct mn_dbuf {
    void *p = nullptr;
    cudaStream_t s = nullptr;
    mn_dbuf() = default;
    mn_dbuf(const mn_dbuf &) = delete;
    mn_dbuf &operator=(const mn_dbuf &) = delete;
    ~mn_dbuf()
    {
        if (p)
            cudaFreeAsync(p, s);
    }
    template <class T> T *as() const { return static_cast<T *>(p); }
};
// Allocate bytes (at least 1) on stream s into b: CU_TRY it.
static inline cudaError_t mn_dalloc(mn_dbuf &b, size_t bytes, cudaStream_t s)
{
    b.s = s;
    return cudaMallocAsync(&b.p, bytes ? bytes : 1, s);
}

static inline unsigned mn_blocks(size_t n, unsigned threads)
{
    size_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : (b > 2147483647u ? 2147483647u : b));
}

#endif
