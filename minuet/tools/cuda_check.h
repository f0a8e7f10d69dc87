/* cuda_check.h: what the parts of minuet-cuda-check share. Each part checks the CUDA
 * kernels of one source against their CPU twins (libminuet's CPU backend, or plain C loops)
 * on fresh random inputs, at every launch configuration the backend may use, with every
 * output poisoned (NaN bits) before the kernel runs, and reports each check through
 * ck_report. Nothing is timed before every check passed. */
#ifndef MN_CUDA_CHECK_H
#define MN_CUDA_CHECK_H

#include <cuda_runtime.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cuda/cuda_internal.h"
#include "minuet.h"

/* Exit with the message when a CUDA runtime call fails (the checks' own set-up calls). */
#define CK_CUDA(call)                                                                              \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "minuet-cuda-check: %s: %s (%s:%d)\n", #call, cudaGetErrorString(e_),  \
                    __FILE__, __LINE__);                                                           \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
/* Exit with libminuet's message when an mn_* call fails where it must not. */
#define CK_MN(call)                                                                                \
    do {                                                                                           \
        mn_status s_ = (call);                                                                     \
        if (s_ != MN_OK) {                                                                         \
            fprintf(stderr, "minuet-cuda-check: %s: %s: %s (%s:%d)\n", #call, mn_status_name(s_),  \
                    mn_last_error(), __FILE__, __LINE__);                                          \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* One check's outcome: printed as "check NAME [CONFIG]: ok|FAILED (DETAIL)" and counted. */
void ck_report(const char *name, const char *config, bool ok, const char *detail_fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A random generator per check (xorshift64*), seeded from the clock at start-up and printed,
 * so that every run draws fresh inputs and a failure can be replayed (MINUET_CHECK_SEED). */
uint64_t ck_rand(void);
double ck_uniform(void); /* [0, 1) */
float ck_normal(void);   /* N(0, 1) */

/* Device buffers: allocated and filled with NaN bits (0xFF bytes) before a kernel writes
 * them, copied back, freed. */
void *ck_dalloc_poisoned(size_t bytes);
void *ck_dup_to_device(const void *host, size_t bytes);
void ck_to_host(void *host, const void *dev, size_t bytes);
void ck_dfree(void *dev);

/* ||a - b|| / ||b|| over n floats (NaN anywhere in a: returns NaN, which fails every bound) */
double ck_rel_err(const float *a, const float *b, size_t n);

/* Random sorted unique coordinates: n rows (batch 0..batches-1) in a cube of side `extent`
 * (about a third occupied), malloc'd, sorted with mn_sort. */
mn_coords ck_random_coords(size_t n, int batches, int extent);

/* The parts: each returns how many checks failed. */
int ck_kmap(void); /* cuda_check_kmap.c: sort, keys, DTBS, hash, compaction, kmap_build */
int ck_conv(void); /* cuda_check_conv.c: gather, scatter, grouped GEMM, conv, backward */

#endif
