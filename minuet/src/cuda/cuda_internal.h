/* cuda_internal.h: the CUDA backend's internal entry points, callable from C (the twin
 * checks of minuet-cuda-check) and C++ (the backend's own sources). Device pointers; stream
 * is a cudaStream_t. Not exported from libminuet.so. */
#ifndef MN_CUDA_INTERNAL_H
#define MN_CUDA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "minuet.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(hidden)

/* error.c and internal.h, for the C++ sources */
void mn_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
mn_status mn_cuda_done(mn_status s); /* device.cu: mn_done */

/* ---- kmap.cu ---- */
/* Packed 64-bit keys of n device rows for a layout from the rows' ranges (margin for
 * offsets), as keys.h's mn_layout / mn_keys64 would pack them (batch highest, z lowest):
 * base[4], shift[4] and bits[4] are written to the host arrays. MN_ERANGE when they do not
 * fit 64 bits. Waits for the stream (the ranges come to the host). */
mn_status mn_cuda_pack_keys(const int32_t *coords, size_t n, int64_t margin, void *stream,
                            uint64_t *keys, int64_t base[4], int shift[4], int bits[4]);
/* The pairs of one kernel map by the double-traversed binary search on sorted unique keys:
 * for each offset delta[k] (added to an output key), the pairs (input i, output o) with
 * out_keys[o] + delta[k] == in_keys[i]; written as counts[k] and, after an exclusive scan,
 * in/out rows into [start[k], start[k+1]). The two passes and their block size are
 * exposed for the twin checks: block_targets outputs per block in the second pass. */
mn_status mn_cuda_dtbs(const uint64_t *in_keys, size_t n_in, const uint64_t *out_keys, size_t n_out,
                       const uint64_t *delta, int nk, int block_targets, void *stream,
                       mn_cuda_kmap *map);
/* The same pairs through a hash table of the input keys (open addressing, linear probing):
 * the baseline. */
mn_status mn_cuda_hash_map(const uint64_t *in_keys, size_t n_in, const uint64_t *out_keys,
                           size_t n_out, const uint64_t *delta, int nk, void *stream,
                           mn_cuda_kmap *map);

/* ---- conv.cu ---- */
/* gather: dst row p = src row rows[p] (all c channels), for p in [0, n); src has n_src rows
 * (a row outside them gives NaN, not a fault). tile_c: floats per thread, 1, 2 or 4 (the
 * autotuned knob; float2/float4 accesses where c and the pointers' alignment allow). The
 * same bits for every tile. */
mn_status mn_cuda_gather(const float *src, int c, size_t n_src, const int32_t *rows, size_t n,
                         float *dst, int tile_c, void *stream);
/* scatter without atomics: each target row o of out (n_tgt rows, c channels) is set to
 * bias (device [c], or 0 when NULL) + the sum, in offset order k = 0 .. nk-1, of prod row p
 * for the pair p of offset k (at most one) whose target is o. prod [map->total, c] holds the
 * pairs' rows in the map's flat order; the targets are the map's out rows, or its in rows
 * when transposed. Each element written once; tile_c as gather, the same bits for every
 * tile. */
mn_status mn_cuda_scatter(const float *prod, const mn_cuda_kmap *map, bool transposed, int c,
                          const float *bias, float *out, size_t n_tgt, int tile_c, void *stream);
/* The grouped GEMM: for each offset k, C_k [m_k, c_out] = A_k [m_k, c_in] x W_k (W
 * [nk, c_in, c_out]), A_k and C_k the rows [start[k], start[k + 1]) of A and C (start: host,
 * [nk + 1]). One launch over a table of (offset, 64-row tile), so offsets of different sizes
 * cost no padding; each element one fmaf chain over the input channels in ascending order. */
mn_status mn_cuda_gemm_grouped(const float *A, const float *W, int c_in, int c_out,
                               const size_t *start, int nk, float *C, void *stream);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif

#endif
