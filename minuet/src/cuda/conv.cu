// conv.cu: sparse convolution on the device, forward and backward, in Minuet's dataflow:
// gather every pair's input row into A, one grouped GEMM over all offsets into P, and a
// scatter that sums each output row's terms without atomics.
//
// Determinism: every output element is computed by one thread in an order fixed by the code,
// whatever the launch shape or the autotuned tile: the GEMM's element is one fmaf chain over
// the input channels in ascending order; the scatter starts from the bias (or 0) and adds the
// offsets' terms in offset order k = 0 .. nk-1; the weight gradient is, per fixed block of
// DW_CHUNK pairs, one fmaf chain over the block's pairs in order, the blocks summed in order
// in double; the bias gradient sums fixed blocks of rows in order, in double. No atomics
// anywhere, so the same inputs give the same bits run to run. The channel tile (floats per
// thread) of gather and scatter only changes which thread handles which columns.
//
// Sections: launch helpers, gather, grouped GEMM, scatter, autotuning, weight and bias
// gradients, mn_cuda_conv, mn_cuda_conv_backward.
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <vector>

#include "common.cuh"

// ---- launch helpers --------------------------------------------------------------------------

#define THREADS 256 // every elementwise kernel: grid-stride loops over size_t indices

// Grid for n items of grid-stride work: enough blocks to fill the device, never more than
// needed (at least 1; callers launch only when n > 0).
static unsigned grid_for(size_t n)
{
    unsigned b = mn_blocks(n, THREADS);
    return b > 65535u * 8u ? 65535u * 8u : b;
}

static inline bool aligned(const void *p, size_t bytes)
{
    return p == nullptr || (uintptr_t)p % bytes == 0;
}

// The map's row counts on each side of a convolution: the gathered side (rows of `in`) and
// the target side (rows of `out`); transposed swaps them.
static size_t src_rows(const mn_cuda_kmap *m, bool tr) { return tr ? m->n_out : m->n_in; }
static size_t tgt_rows(const mn_cuda_kmap *m, bool tr) { return tr ? m->n_in : m->n_out; }

// ---- gather ----------------------------------------------------------------------------------

// T consecutive floats per thread; VEC: one float2/float4 load and store (c % T == 0 and the
// arrays aligned to T floats, checked on the host), else T scalar copies guarded by c. A row
// outside the source (a bad map) gives NaN rather than a read out of bounds.
template <int T, bool VEC>
__global__ void __launch_bounds__(THREADS)
    gather_k(const float *__restrict__ src, int c, size_t n_src, const int32_t *__restrict__ rows,
             size_t n, float *__restrict__ dst)
{
    const size_t groups = (size_t)((c + T - 1) / T), items = n * groups;
    for (size_t it = blockIdx.x * (size_t)blockDim.x + threadIdx.x; it < items;
         it += (size_t)gridDim.x * blockDim.x) {
        const size_t p = it / groups;
        const int col = (int)(it % groups) * T;
        const int32_t r = rows[p];
        float *d = dst + p * (size_t)c + col;
        if (r < 0 || (size_t)r >= n_src) {
            for (int t = 0; t < T; t++)
                if (col + t < c)
                    d[t] = __int_as_float(0x7fc00000);
            continue;
        }
        const float *s = src + (size_t)r * (size_t)c + col;
        if constexpr (VEC && T == 4) {
            *reinterpret_cast<float4 *>(d) = *reinterpret_cast<const float4 *>(s);
        } else if constexpr (VEC && T == 2) {
            *reinterpret_cast<float2 *>(d) = *reinterpret_cast<const float2 *>(s);
        } else {
            for (int t = 0; t < T; t++)
                if (col + t < c)
                    d[t] = s[t];
        }
    }
}

template <int T>
static void launch_gather(bool vec, const float *src, int c, size_t n_src, const int32_t *rows,
                          size_t n, float *dst, cudaStream_t s)
{
    size_t items = n * (size_t)((c + T - 1) / T);
    if (vec)
        gather_k<T, true><<<grid_for(items), THREADS, 0, s>>>(src, c, n_src, rows, n, dst);
    else
        gather_k<T, false><<<grid_for(items), THREADS, 0, s>>>(src, c, n_src, rows, n, dst);
}

extern "C" mn_status mn_cuda_gather(const float *src, int c, size_t n_src, const int32_t *rows,
                                    size_t n, float *dst, int tile_c, void *stream)
{
    if (c < 1 || (tile_c != 1 && tile_c != 2 && tile_c != 4)) {
        mn_set_error("mn_cuda_gather: %d channels, tile %d: accepted c >= 1, tile 1, 2 or 4", c,
                     tile_c);
        return MN_EINVAL;
    }
    if (n == 0)
        return mn_cuda_done(MN_OK);
    cudaStream_t s = (cudaStream_t)stream;
    size_t vb = (size_t)tile_c * sizeof(float);
    bool vec = c % tile_c == 0 && aligned(src, vb) && aligned(dst, vb);
    if (tile_c == 1)
        launch_gather<1>(false, src, c, n_src, rows, n, dst, s);
    else if (tile_c == 2)
        launch_gather<2>(vec, src, c, n_src, rows, n, dst, s);
    else
        launch_gather<4>(vec, src, c, n_src, rows, n, dst, s);
    CU_LAUNCHED();
    return mn_cuda_done(MN_OK);
}

// ---- grouped GEMM ----------------------------------------------------------------------------
//
// Why a table of tiles rather than cuBLAS: a strided-batched cuBLAS call needs every matrix of
// the batch to have the same shape, so offsets with different pair counts (a submanifold map's
// centre has every row, its corners a fraction) must be zero-padded to the group's largest
// (Minuet's grouping bounds that waste with a threshold) or issued one call per offset. Here a
// block is one 64-row tile of one offset, listed in a table built on the host from start[]:
// one launch covers all offsets, and the only rows computed in vain are those past the end
// of each offset's last tile (fewer than 64 per offset), whatever the spread of sizes. And the
// kernel's arithmetic order is written here, not picked by a library heuristic (split-K,
// per-shape kernels, per-version changes): each output element is one fmaf chain over the
// input channels in ascending order, whatever tile, offset or launch it falls in.

#define BM 64 // output rows per tile
#define BN 64 // output columns per tile
#define BK 16 // depth of one shared-memory slice

struct mn_tile {
    long long r0, r1; // rows [r0, r1) of A and C (at most BM); for d_W: pairs, at most DW_CHUNK
    int k;            // the offset
    int pad;
};

// One BK-deep slice of the 64 x 64 tile: thread (ty, tx) owns rows ty + 16 i and columns
// tx + 16 j (i, j < 4), so a warp reads one As value per row (broadcast) and 16 consecutive
// Bs values. Only the first kmax of the slice's depth are real: the chain has no padding terms.
__device__ __forceinline__ void mma_slice(const float (&As)[BK][BM + 1], const float (&Bs)[BK][BN],
                                          float (&acc)[4][4], int ty, int tx, int kmax)
{
#pragma unroll
    for (int kk = 0; kk < BK; kk++) {
        if (kk < kmax) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++)
                a[i] = As[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; j++)
                b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
    }
}

// Block (tile t, column block y): C[r, n] = sum over q < c_in of A[r, q] W_k[q, n] for the
// tile's rows r and columns n in [64 y, 64 y + 64). 256 threads, 4 x 4 outputs each.
__global__ void __launch_bounds__(256)
    gemm_tiles_k(const float *__restrict__ A, const float *__restrict__ W, int c_in, int c_out,
                 const mn_tile *__restrict__ tiles, float *__restrict__ C)
{
    __shared__ float As[BK][BM + 1]; // [depth][row]; +1: the transposing store spreads banks
    __shared__ float Bs[BK][BN];
    const mn_tile t = tiles[blockIdx.x];
    const int tid = (int)threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int n0 = (int)blockIdx.y * BN;
    const float *B = W + (size_t)t.k * (size_t)c_in * (size_t)c_out;
    float acc[4][4] = {};
    for (int q0 = 0; q0 < c_in; q0 += BK) {
        for (int e = tid; e < BM * BK; e += 256) {
            const int r = e / BK, kk = e % BK, q = q0 + kk;
            const long long m = t.r0 + r;
            As[kk][r] = m < t.r1 && q < c_in ? A[(size_t)m * (size_t)c_in + q] : 0.0f;
        }
        for (int e = tid; e < BK * BN; e += 256) {
            const int kk = e / BN, n = n0 + e % BN, q = q0 + kk;
            Bs[kk][e % BN] = q < c_in && n < c_out ? B[(size_t)q * (size_t)c_out + n] : 0.0f;
        }
        __syncthreads();
        mma_slice(As, Bs, acc, ty, tx, c_in - q0 < BK ? c_in - q0 : BK);
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const long long m = t.r0 + ty + 16 * i;
        if (m >= t.r1)
            continue;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int n = n0 + tx + 16 * j;
            if (n < c_out)
                C[(size_t)m * (size_t)c_out + n] = acc[i][j];
        }
    }
}

static bool check_start(const size_t *start, int nk, const char *who)
{
    if (!start || nk < 1) {
        mn_set_error("%s: no offsets (start %p, nk %d)", who, (const void *)start, nk);
        return false;
    }
    for (int k = 0; k < nk; k++)
        if (start[k + 1] < start[k]) {
            mn_set_error("%s: start[%d] = %zu > start[%d] = %zu: offsets must not overlap", who, k,
                         start[k], k + 1, start[k + 1]);
            return false;
        }
    return true;
}

extern "C" mn_status mn_cuda_gemm_grouped(const float *A, const float *W, int c_in, int c_out,
                                          const size_t *start, int nk, float *C, void *stream)
{
    if (c_in < 1 || c_out < 1 || !A || !W || !C) {
        mn_set_error("mn_cuda_gemm_grouped: channels %d -> %d (both >= 1), A, W and C non-NULL",
                     c_in, c_out);
        return MN_EINVAL;
    }
    if (!check_start(start, nk, "mn_cuda_gemm_grouped"))
        return MN_EINVAL;
    if ((c_out + BN - 1) / BN > 65535) {
        mn_set_error("mn_cuda_gemm_grouped: %d output channels: at most %d", c_out, 65535 * BN);
        return MN_EINVAL;
    }
    std::vector<mn_tile> tiles;
    for (int k = 0; k < nk; k++)
        for (size_t r = start[k]; r < start[k + 1]; r += BM) {
            size_t e = start[k + 1] - r < BM ? start[k + 1] : r + BM;
            tiles.push_back(mn_tile{(long long)r, (long long)e, k, 0});
        }
    if (tiles.empty())
        return mn_cuda_done(MN_OK);
    if (tiles.size() > 2147483647u) {
        mn_set_error("mn_cuda_gemm_grouped: %zu row tiles: too many for one launch", tiles.size());
        return MN_EINVAL;
    }
    cudaStream_t s = (cudaStream_t)stream;
    mn_dbuf dt;
    size_t bytes = tiles.size() * sizeof(mn_tile);
    CU_TRY(mn_dalloc(dt, bytes, s));
    // Pageable source: the call returns once the bytes are staged, so `tiles` may go.
    CU_TRY(cudaMemcpyAsync(dt.p, tiles.data(), bytes, cudaMemcpyHostToDevice, s));
    dim3 grid((unsigned)tiles.size(), (unsigned)((c_out + BN - 1) / BN));
    gemm_tiles_k<<<grid, 256, 0, s>>>(A, W, c_in, c_out, dt.as<mn_tile>(), C);
    CU_LAUNCHED();
    return mn_cuda_done(MN_OK);
}

// ---- scatter ---------------------------------------------------------------------------------
//
// No atomics: a dense inverse index inv[k - k0][o] (the pair of offset k whose target is row
// o, or -1; a map has at most one per offset and row) lets each thread own T columns of one
// target row and add the offsets' terms in offset order. The index of all offsets at once
// would take nk x n_tgt int32s (3375 offsets at K = 15): offsets go in chunks whose index fits
// INV_CAP entries; a later chunk starts from what the previous one stored, which is the same
// float the thread would have held, so the bits do not depend on the chunking.

#define INV_CAP ((size_t)64 << 20) // int32 entries: 256 MiB

// inv[(k - k0) * n_tgt + tgt[p]] = p for the pairs p of offsets [k0, k1): [p0, p1). The
// offset of p: the last k in [k0, k1) with start[k] <= p (empty offsets share a start).
__global__ void __launch_bounds__(THREADS)
    inverse_k(const int32_t *__restrict__ tgt, const long long *__restrict__ start, int k0, int k1,
              long long p0, long long p1, size_t n_tgt, int32_t *__restrict__ inv)
{
    for (long long p = p0 + (long long)(blockIdx.x * (size_t)blockDim.x + threadIdx.x); p < p1;
         p += (long long)gridDim.x * blockDim.x) {
        int lo = k0, hi = k1 - 1;
        while (lo < hi) {
            int mid = lo + (hi - lo + 1) / 2;
            if (start[mid] <= p)
                lo = mid;
            else
                hi = mid - 1;
        }
        const int32_t t = tgt[p];
        if (t >= 0 && (size_t)t < n_tgt) // a bad map must not write out of bounds
            inv[(size_t)(lo - k0) * n_tgt + (size_t)t] = (int32_t)p;
    }
}

// out[o, col .. col + T) = (first ? bias or 0 : out) + the terms of offsets k0 .. k1 - 1 in
// order. T and VEC as gather_k.
template <int T, bool VEC>
__global__ void __launch_bounds__(THREADS)
    scatter_k(const float *__restrict__ prod, const int32_t *__restrict__ inv, int nkc, int c,
              const float *__restrict__ bias, float *__restrict__ out, size_t n_tgt, bool first)
{
    const size_t groups = (size_t)((c + T - 1) / T), items = n_tgt * groups;
    for (size_t it = blockIdx.x * (size_t)blockDim.x + threadIdx.x; it < items;
         it += (size_t)gridDim.x * blockDim.x) {
        const size_t o = it / groups;
        const int col = (int)(it % groups) * T;
        float *d = out + o * (size_t)c + col;
        float acc[T];
#pragma unroll
        for (int t = 0; t < T; t++)
            acc[t] = col + t >= c ? 0.0f : !first ? d[t] : bias ? bias[col + t] : 0.0f;
        for (int kk = 0; kk < nkc; kk++) {
            const int32_t q = inv[(size_t)kk * n_tgt + o];
            if (q < 0)
                continue;
            const float *sp = prod + (size_t)q * (size_t)c + col;
            if constexpr (VEC && T == 4) {
                const float4 v = *reinterpret_cast<const float4 *>(sp);
                acc[0] += v.x;
                acc[1] += v.y;
                acc[2] += v.z;
                acc[3] += v.w;
            } else if constexpr (VEC && T == 2) {
                const float2 v = *reinterpret_cast<const float2 *>(sp);
                acc[0] += v.x;
                acc[1] += v.y;
            } else {
#pragma unroll
                for (int t = 0; t < T; t++)
                    if (col + t < c)
                        acc[t] += sp[t];
            }
        }
        if constexpr (VEC && T == 4) {
            *reinterpret_cast<float4 *>(d) = make_float4(acc[0], acc[1], acc[2], acc[3]);
        } else if constexpr (VEC && T == 2) {
            *reinterpret_cast<float2 *>(d) = make_float2(acc[0], acc[1]);
        } else {
#pragma unroll
            for (int t = 0; t < T; t++)
                if (col + t < c)
                    d[t] = acc[t];
        }
    }
}

template <int T>
static void launch_scatter(bool vec, const float *prod, const int32_t *inv, int nkc, int c,
                           const float *bias, float *out, size_t n_tgt, bool first, cudaStream_t s)
{
    size_t items = n_tgt * (size_t)((c + T - 1) / T);
    if (vec)
        scatter_k<T, true>
            <<<grid_for(items), THREADS, 0, s>>>(prod, inv, nkc, c, bias, out, n_tgt, first);
    else
        scatter_k<T, false>
            <<<grid_for(items), THREADS, 0, s>>>(prod, inv, nkc, c, bias, out, n_tgt, first);
}

extern "C" mn_status mn_cuda_scatter(const float *prod, const mn_cuda_kmap *map, bool transposed,
                                     int c, const float *bias, float *out, size_t n_tgt, int tile_c,
                                     void *stream)
{
    if (c < 1 || (tile_c != 1 && tile_c != 2 && tile_c != 4) || !map || !out) {
        mn_set_error("mn_cuda_scatter: %d channels, tile %d: accepted c >= 1, tile 1, 2 or 4, "
                     "a map and an output",
                     c, tile_c);
        return MN_EINVAL;
    }
    if (!check_start(map->start, map->nk, "mn_cuda_scatter"))
        return MN_EINVAL;
    if (map->start[map->nk] > 2147483647u) {
        mn_set_error("mn_cuda_scatter: %zu pairs: at most 2^31 - 1", map->start[map->nk]);
        return MN_EINVAL;
    }
    if (n_tgt == 0)
        return mn_cuda_done(MN_OK);
    cudaStream_t s = (cudaStream_t)stream;
    const int nk = map->nk;
    const int32_t *tgt = transposed ? map->in : map->out;
    int kc = INV_CAP / n_tgt < (size_t)nk ? (int)(INV_CAP / n_tgt) : nk;
    kc = kc < 1 ? 1 : kc;
    std::vector<long long> hs((size_t)nk + 1);
    for (int k = 0; k <= nk; k++)
        hs[(size_t)k] = (long long)map->start[k];
    mn_dbuf ds, inv;
    CU_TRY(mn_dalloc(ds, hs.size() * sizeof(long long), s));
    CU_TRY(
        cudaMemcpyAsync(ds.p, hs.data(), hs.size() * sizeof(long long), cudaMemcpyHostToDevice, s));
    CU_TRY(mn_dalloc(inv, (size_t)kc * n_tgt * sizeof(int32_t), s));
    size_t vb = (size_t)tile_c * sizeof(float);
    bool vec = c % tile_c == 0 && aligned(prod, vb) && aligned(out, vb) && aligned(bias, vb);
    for (int k0 = 0; k0 < nk; k0 += kc) {
        int k1 = k0 + kc < nk ? k0 + kc : nk;
        CU_TRY(cudaMemsetAsync(inv.p, 0xFF, (size_t)(k1 - k0) * n_tgt * sizeof(int32_t), s));
        long long p0 = hs[(size_t)k0], p1 = hs[(size_t)k1];
        if (p1 > p0) {
            if (!tgt || !prod) {
                mn_set_error("mn_cuda_scatter: a map with pairs needs its rows and the products");
                return MN_EINVAL;
            }
            inverse_k<<<grid_for((size_t)(p1 - p0)), THREADS, 0, s>>>(
                tgt, ds.as<long long>(), k0, k1, p0, p1, n_tgt, inv.as<int32_t>());
            CU_LAUNCHED();
        }
        bool first = k0 == 0;
        if (tile_c == 1)
            launch_scatter<1>(false, prod, inv.as<int32_t>(), k1 - k0, c, bias, out, n_tgt, first,
                              s);
        else if (tile_c == 2)
            launch_scatter<2>(vec, prod, inv.as<int32_t>(), k1 - k0, c, bias, out, n_tgt, first, s);
        else
            launch_scatter<4>(vec, prod, inv.as<int32_t>(), k1 - k0, c, bias, out, n_tgt, first, s);
        CU_LAUNCHED();
    }
    return mn_cuda_done(MN_OK);
}

// ---- autotuning ------------------------------------------------------------------------------
//
// The channel tile of gather ('g') and scatter ('s') per layer shape: the channels, the pair
// count rounded up to a power of two and the device. Timed with events on the first call for
// a shape (each candidate twice, the faster kept: the first run may pay for cold caches or
// the pool growing), then kept for the process. Timing runs the real kernel on the real
// buffers: any tile writes the same bits, so the run left behind is as good as any other.

struct tune_entry {
    char kind;
    int c, lg;
    char device[160];
    int tile;
};

#define TUNE_MAX 512
static pthread_mutex_t tune_lock = PTHREAD_MUTEX_INITIALIZER;
static tune_entry tune_tab[TUNE_MAX];
static int tune_n;

static int default_tile(int c) { return c % 4 == 0 ? 4 : c % 2 == 0 ? 2 : 1; }

static int log2_ceil(size_t n)
{
    int lg = 0;
    while (lg < 63 && ((size_t)1 << lg) < n)
        lg++;
    return lg;
}

static bool tune_find(char kind, int c, int lg, const char *dev, int *tile)
{
    bool found = false;
    pthread_mutex_lock(&tune_lock);
    for (int i = 0; i < tune_n && !found; i++)
        if (tune_tab[i].kind == kind && tune_tab[i].c == c && tune_tab[i].lg == lg &&
            strcmp(tune_tab[i].device, dev) == 0) {
            *tile = tune_tab[i].tile;
            found = true;
        }
    pthread_mutex_unlock(&tune_lock);
    return found;
}

// Keep the first result for a shape (two threads may time the same one; either is right).
static void tune_add(char kind, int c, int lg, const char *dev, int tile)
{
    int have = 0;
    if (tune_find(kind, c, lg, dev, &have))
        return;
    pthread_mutex_lock(&tune_lock);
    if (tune_n < TUNE_MAX) {
        tune_entry &e = tune_tab[tune_n++];
        e.kind = kind;
        e.c = c;
        e.lg = lg;
        snprintf(e.device, sizeof e.device, "%s", dev);
        e.tile = tile;
    }
    pthread_mutex_unlock(&tune_lock);
}

struct mn_events {
    cudaEvent_t a = nullptr, b = nullptr;
    ~mn_events()
    {
        if (a)
            cudaEventDestroy(a);
        if (b)
            cudaEventDestroy(b);
    }
};

// The tile for this shape: the table's, the default when MINUET_TUNE=off, else timed by
// running run(tile) (a function returning mn_status) for each candidate.
template <class F>
static mn_status pick_tile(char kind, int c, size_t pairs, cudaStream_t s, F run, int *tile)
{
    *tile = default_tile(c);
    if (!mn_tune_enabled())
        return MN_OK;
    const char *dev = mn_cuda_device_name();
    int lg = log2_ceil(pairs);
    if (tune_find(kind, c, lg, dev, tile))
        return MN_OK;
    mn_events ev;
    CU_TRY(cudaEventCreate(&ev.a));
    CU_TRY(cudaEventCreate(&ev.b));
    static const int cand[3] = {1, 2, 4};
    float best = 0;
    for (int i = 0; i < 3; i++)
        for (int rep = 0; rep < 2; rep++) {
            CU_TRY(cudaEventRecord(ev.a, s));
            mn_status st = run(cand[i]);
            if (st != MN_OK)
                return st;
            CU_TRY(cudaEventRecord(ev.b, s));
            CU_TRY(cudaEventSynchronize(ev.b));
            float ms = 0;
            CU_TRY(cudaEventElapsedTime(&ms, ev.a, ev.b));
            if ((i == 0 && rep == 0) || ms < best) {
                best = ms;
                *tile = cand[i];
            }
        }
    tune_add(kind, c, lg, dev, *tile);
    return MN_OK;
}

// Gather n rows with this shape's tile.
static mn_status gather_tuned(const float *src, int c, size_t n_src, const int32_t *rows, size_t n,
                              float *dst, cudaStream_t s)
{
    if (n == 0)
        return MN_OK;
    int tile = 0;
    mn_status st = pick_tile(
        'g', c, n, s,
        [&](int t) { return mn_cuda_gather(src, c, n_src, rows, n, dst, t, (void *)s); }, &tile);
    if (st != MN_OK)
        return st;
    return mn_cuda_gather(src, c, n_src, rows, n, dst, tile, (void *)s);
}

// ---- weight and bias gradients ---------------------------------------------------------------

// Pairs per block of the weight gradient's chains: a constant, so the summation order is too.
#define DW_CHUNK 2048
#define DB_ROWS  1024 // rows per first-level block of the bias gradient

// Block (chunk e, row block y, column block z): part[e][a, n] = sum over the chunk's pairs p
// in order of A[p, a] G[p, n], for a in [64 y, 64 y + 64) and n in [64 z, 64 z + 64).
__global__ void __launch_bounds__(256)
    gemm_at_k(const float *__restrict__ A, const float *__restrict__ G, int c_in, int c_out,
              const mn_tile *__restrict__ chunks, float *__restrict__ part)
{
    __shared__ float As[BK][BM + 1]; // [pair][input channel]
    __shared__ float Bs[BK][BN];     // [pair][output channel]
    const mn_tile t = chunks[blockIdx.x];
    const int tid = (int)threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int a0 = (int)blockIdx.y * BM, n0 = (int)blockIdx.z * BN;
    float acc[4][4] = {};
    for (long long p0 = t.r0; p0 < t.r1; p0 += BK) {
        for (int e = tid; e < BK * BM; e += 256) {
            const int kk = e / BM, a = a0 + e % BM;
            const long long p = p0 + kk;
            As[kk][e % BM] = p < t.r1 && a < c_in ? A[(size_t)p * (size_t)c_in + a] : 0.0f;
        }
        for (int e = tid; e < BK * BN; e += 256) {
            const int kk = e / BN, n = n0 + e % BN;
            const long long p = p0 + kk;
            Bs[kk][e % BN] = p < t.r1 && n < c_out ? G[(size_t)p * (size_t)c_out + n] : 0.0f;
        }
        __syncthreads();
        mma_slice(As, Bs, acc, ty, tx, t.r1 - p0 < BK ? (int)(t.r1 - p0) : BK);
        __syncthreads();
    }
    float *dst = part + (size_t)blockIdx.x * (size_t)c_in * (size_t)c_out;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int a = a0 + ty + 16 * i;
        if (a >= c_in)
            continue;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int n = n0 + tx + 16 * j;
            if (n < c_out)
                dst[(size_t)a * (size_t)c_out + n] = acc[i][j];
        }
    }
}

// d_W[k] = the sum of offset k's chunk results [cs[k], cs[k + 1]) in order, in double (0 for
// an offset without pairs).
__global__ void __launch_bounds__(THREADS)
    dw_sum_k(const float *__restrict__ part, const int *__restrict__ cs, int nk, size_t per,
             float *__restrict__ dW)
{
    const size_t n = (size_t)nk * per;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const int k = (int)(i / per);
        const size_t e = i % per;
        double acc = 0;
        for (int ch = cs[k]; ch < cs[k + 1]; ch++)
            acc += (double)part[(size_t)ch * per + e];
        dW[i] = (float)acc;
    }
}

// d_W [nk, c_in, c_out]: offset k's gathered input rows A_k^T x its gathered output-gradient
// rows G_k (both at row start[k] of A and G).
static mn_status dw_grouped(const float *A, const float *G, int c_in, int c_out,
                            const size_t *start, int nk, float *dW, cudaStream_t s)
{
    if ((c_in + BM - 1) / BM > 65535 || (c_out + BN - 1) / BN > 65535) {
        mn_set_error("mn_cuda_conv_backward: channels %d -> %d: at most %d", c_in, c_out,
                     65535 * BM);
        return MN_EINVAL;
    }
    std::vector<mn_tile> chunks;
    std::vector<int> cs((size_t)nk + 1);
    for (int k = 0; k < nk; k++) {
        cs[(size_t)k] = (int)chunks.size();
        for (size_t r = start[k]; r < start[k + 1]; r += DW_CHUNK) {
            size_t e = start[k + 1] - r < DW_CHUNK ? start[k + 1] : r + DW_CHUNK;
            chunks.push_back(mn_tile{(long long)r, (long long)e, k, 0});
        }
    }
    cs[(size_t)nk] = (int)chunks.size();
    const size_t per = (size_t)c_in * (size_t)c_out;
    mn_dbuf dch, dcs, part;
    CU_TRY(mn_dalloc(dch, chunks.size() * sizeof(mn_tile), s));
    CU_TRY(mn_dalloc(dcs, cs.size() * sizeof(int), s));
    CU_TRY(mn_dalloc(part, chunks.size() * per * sizeof(float), s));
    if (!chunks.empty())
        CU_TRY(cudaMemcpyAsync(dch.p, chunks.data(), chunks.size() * sizeof(mn_tile),
                               cudaMemcpyHostToDevice, s));
    CU_TRY(cudaMemcpyAsync(dcs.p, cs.data(), cs.size() * sizeof(int), cudaMemcpyHostToDevice, s));
    if (!chunks.empty()) {
        dim3 grid((unsigned)chunks.size(), (unsigned)((c_in + BM - 1) / BM),
                  (unsigned)((c_out + BN - 1) / BN));
        gemm_at_k<<<grid, 256, 0, s>>>(A, G, c_in, c_out, dch.as<mn_tile>(), part.as<float>());
        CU_LAUNCHED();
    }
    dw_sum_k<<<grid_for((size_t)nk * per), THREADS, 0, s>>>(part.as<float>(), dcs.as<int>(), nk,
                                                            per, dW);
    CU_LAUNCHED();
    return MN_OK;
}

// part[b][j] = the sum of d[r, j] over rows r of block b (DB_ROWS rows), in order, in double.
__global__ void __launch_bounds__(THREADS)
    colsum_blocks_k(const float *__restrict__ d, size_t n, int c, double *__restrict__ part)
{
    const size_t nb = (n + DB_ROWS - 1) / DB_ROWS, items = nb * (size_t)c;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < items;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t b = i / (size_t)c, j = i % (size_t)c;
        const size_t r1 = (b + 1) * DB_ROWS < n ? (b + 1) * DB_ROWS : n;
        double acc = 0;
        for (size_t r = b * DB_ROWS; r < r1; r++)
            acc += (double)d[r * (size_t)c + j];
        part[i] = acc;
    }
}

// out[j] = the blocks' sums in block order.
__global__ void __launch_bounds__(THREADS)
    colsum_total_k(const double *__restrict__ part, size_t nb, int c, float *__restrict__ out)
{
    for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < (size_t)c;
         j += (size_t)gridDim.x * blockDim.x) {
        double acc = 0;
        for (size_t b = 0; b < nb; b++)
            acc += part[b * (size_t)c + j];
        out[j] = (float)acc;
    }
}

// Wt[k][b][a] = W[k][a][b]: each offset's [c_in, c_out] block transposed.
__global__ void __launch_bounds__(THREADS)
    transpose_k(const float *__restrict__ W, int nk, int c_in, int c_out, float *__restrict__ Wt)
{
    const size_t per = (size_t)c_in * (size_t)c_out, n = (size_t)nk * per;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t k = i / per, e = i % per, b = e / (size_t)c_in, a = e % (size_t)c_in;
        Wt[i] = W[k * per + a * (size_t)c_out + b];
    }
}

// ---- mn_cuda_conv ----------------------------------------------------------------------------

// The map's own consistency, as far as the host can see it (its rows are on the device: a
// row outside the arrays gives NaN in the gather and is skipped by the scatter).
static mn_status check_map(const mn_cuda_kmap *m, int c_in, int c_out, const char *who)
{
    if (!m) {
        mn_set_error("%s: no kernel map", who);
        return MN_EINVAL;
    }
    if (c_in < 1 || c_out < 1) {
        mn_set_error("%s: channels %d -> %d: both must be at least 1", who, c_in, c_out);
        return MN_EINVAL;
    }
    if (m->K < 1 || m->K > 15 || m->nk != m->K * m->K * m->K) {
        mn_set_error("%s: kernel map with K = %d and %d offsets: accepted K 1..15 and K^3 offsets",
                     who, m->K, m->nk);
        return MN_EINVAL;
    }
    if (!check_start(m->start, m->nk, who))
        return MN_EINVAL;
    if (m->start[0] != 0 || m->start[m->nk] != m->total) {
        mn_set_error("%s: kernel map start[0] = %zu, start[%d] = %zu for %zu pairs: not filled",
                     who, m->start[0], m->nk, m->start[m->nk], m->total);
        return MN_EINVAL;
    }
    if (m->total && (!m->in || !m->out)) {
        mn_set_error("%s: kernel map of %zu pairs without its rows", who, m->total);
        return MN_EINVAL;
    }
    if (m->total > 2147483647u) {
        mn_set_error("%s: %zu pairs: at most 2^31 - 1", who, m->total);
        return MN_EINVAL;
    }
    return MN_OK;
}

// Gather, grouped GEMM, scatter: out [n_tgt, c_out] = bias + the offsets' terms.
static mn_status conv_run(const mn_cuda_kmap *map, const float *in, int c_in, const float *W,
                          const float *bias, int c_out, float *out, bool tr, cudaStream_t s)
{
    const size_t total = map->total, n_tgt = tgt_rows(map, tr);
    mn_dbuf A, P;
    CU_TRY(mn_dalloc(A, total * (size_t)c_in * sizeof(float), s));
    CU_TRY(mn_dalloc(P, total * (size_t)c_out * sizeof(float), s));
    mn_status st =
        gather_tuned(in, c_in, src_rows(map, tr), tr ? map->out : map->in, total, A.as<float>(), s);
    if (st == MN_OK && total)
        st = mn_cuda_gemm_grouped(A.as<float>(), W, c_in, c_out, map->start, map->nk, P.as<float>(),
                                  (void *)s);
    if (st != MN_OK || n_tgt == 0)
        return st;
    int tile = 0;
    st = pick_tile(
        's', c_out, total, s,
        [&](int t) {
            return mn_cuda_scatter(P.as<float>(), map, tr, c_out, bias, out, n_tgt, t, (void *)s);
        },
        &tile);
    if (st != MN_OK)
        return st;
    return mn_cuda_scatter(P.as<float>(), map, tr, c_out, bias, out, n_tgt, tile, (void *)s);
}

MN_CUDA_API mn_status mn_cuda_conv(const mn_cuda_kmap *map, const float *in, int c_in,
                                   const float *W, const float *bias, int c_out, float *out,
                                   bool transposed, void *stream)
{
    mn_status st = mn_cuda_init();
    if (st != MN_OK)
        return st;
    if ((st = check_map(map, c_in, c_out, "mn_cuda_conv")) != MN_OK)
        return st;
    if (!in || !W || !out) {
        mn_set_error("mn_cuda_conv: in, W and out must be device arrays (given %p, %p, %p)",
                     (const void *)in, (const void *)W, (const void *)out);
        return MN_EINVAL;
    }
    st = conv_run(map, in, c_in, W, bias, c_out, out, transposed, (cudaStream_t)stream);
    return st != MN_OK ? st : mn_cuda_done(MN_OK);
}

// ---- mn_cuda_conv_backward -------------------------------------------------------------------

MN_CUDA_API mn_status mn_cuda_conv_backward(const mn_cuda_kmap *map, const float *in, int c_in,
                                            const float *W, int c_out, const float *d_out,
                                            float *d_in, float *d_W, float *d_bias, bool transposed,
                                            void *stream)
{
    mn_status st = mn_cuda_init();
    if (st != MN_OK)
        return st;
    if ((st = check_map(map, c_in, c_out, "mn_cuda_conv_backward")) != MN_OK)
        return st;
    if (!d_out || (d_in && !W) || (d_W && !in)) {
        mn_set_error("mn_cuda_conv_backward: d_out, and W for d_in, in for d_W, are needed");
        return MN_EINVAL;
    }
    cudaStream_t s = (cudaStream_t)stream;
    const bool tr = transposed;
    const size_t total = map->total, ci = (size_t)c_in, co = (size_t)c_out;
    if (d_in) { // the map the other way, each offset's weights transposed
        mn_dbuf Wt;
        size_t n = (size_t)map->nk * ci * co;
        CU_TRY(mn_dalloc(Wt, n * sizeof(float), s));
        transpose_k<<<grid_for(n), THREADS, 0, s>>>(W, map->nk, c_in, c_out, Wt.as<float>());
        CU_LAUNCHED();
        st = conv_run(map, d_out, c_out, Wt.as<float>(), nullptr, c_in, d_in, !tr, s);
        if (st != MN_OK)
            return st;
    }
    if (d_W) { // forward gathers `in` by the gathered side, scatters d_out's rows by the other
        mn_dbuf A, G;
        CU_TRY(mn_dalloc(A, total * ci * sizeof(float), s));
        CU_TRY(mn_dalloc(G, total * co * sizeof(float), s));
        st = gather_tuned(in, c_in, src_rows(map, tr), tr ? map->out : map->in, total,
                          A.as<float>(), s);
        if (st == MN_OK)
            st = gather_tuned(d_out, c_out, tgt_rows(map, tr), tr ? map->in : map->out, total,
                              G.as<float>(), s);
        if (st == MN_OK)
            st = dw_grouped(A.as<float>(), G.as<float>(), c_in, c_out, map->start, map->nk, d_W, s);
        if (st != MN_OK)
            return st;
    }
    if (d_bias) {
        const size_t n = tgt_rows(map, tr), nb = (n + DB_ROWS - 1) / DB_ROWS;
        mn_dbuf part;
        CU_TRY(mn_dalloc(part, nb * co * sizeof(double), s));
        if (nb) {
            colsum_blocks_k<<<grid_for(nb * co), THREADS, 0, s>>>(d_out, n, c_out,
                                                                  part.as<double>());
            CU_LAUNCHED();
        }
        colsum_total_k<<<grid_for(co), THREADS, 0, s>>>(part.as<double>(), nb, c_out, d_bias);
        CU_LAUNCHED();
    }
    return mn_cuda_done(MN_OK);
}
