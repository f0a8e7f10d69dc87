// kmap.cu: sorting and kernel maps on the device: mn_cuda_sort, mn_cuda_kmap_build, and the
// helpers the twin checks call directly (mn_cuda_pack_keys, mn_cuda_dtbs, mn_cuda_hash_map).
//
// Keys are packed as keys.h's mn_layout / mn_keys64 pack them (batch highest, z lowest, each
// field's value minus its base), so key order is (batch, x, y, z) order and adding an offset's
// key delta to a key moves it by exactly that offset (the layout's margin keeps every field in
// range, so no carry crosses fields). The layout comes from the rows' ranges, reduced on the
// device and read back once; layouts over 64 bits are refused (MN_ERANGE) rather than sorted by
// comparison as on the CPU.
//
// Both map builders write a dense match array [nk][n_out] (the input row of each offset and
// output, or -1); one compaction turns it into the pairs, ordered by offset and then output row,
// exactly the order of the CPU's map.
//
// Sections: keys, sorting, the double-traversed binary search, the hash table, compaction, the
// kernel map.
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include "common.cuh"

typedef unsigned long long u64; // what CUB and atomicCAS take (uint64_t is unsigned long)

// Threads per block of the element-wise kernels (grid-stride loops: any size is covered).
#define EW_THREADS 256

// A malloc'd host buffer freed when it goes out of scope.
struct hbuf {
    void *p = nullptr;
    hbuf() = default;
    hbuf(const hbuf &) = delete;
    hbuf &operator=(const hbuf &) = delete;
    ~hbuf() { free(p); }
};

// Forget an error an earlier call left behind and already reported (a failed cudaMalloc stays
// the runtime's last error until read), so that this call's CU_LAUNCHED checks see only its own
// launches. Sticky errors (a faulted context) come back from every later call regardless.
static void forget_old_error(void) { (void)cudaGetLastError(); }

// ---- keys -------------------------------------------------------------------------------------

// keys.h's mn_layout_t without the wide case.
struct layout {
    long long base[4];
    int bits[4], shift[4];
};

__global__ void k_range_init(int *r)
{
    if (threadIdx.x < 4) {
        r[threadIdx.x] = INT_MAX;
        r[4 + threadIdx.x] = INT_MIN;
    }
}

// r[0..4) := min over the rows of each field, r[4..8) := max (combined with what r holds).
__global__ void k_ranges(const int32_t *c, size_t n, int *r)
{
    __shared__ int smin[4], smax[4];
    if (threadIdx.x < 4) {
        smin[threadIdx.x] = INT_MAX;
        smax[threadIdx.x] = INT_MIN;
    }
    __syncthreads();
    int lmin[4] = {INT_MAX, INT_MAX, INT_MAX, INT_MAX};
    int lmax[4] = {INT_MIN, INT_MIN, INT_MIN, INT_MIN};
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
#pragma unroll
        for (int f = 0; f < 4; f++) {
            int v = c[4 * i + f];
            lmin[f] = v < lmin[f] ? v : lmin[f];
            lmax[f] = v > lmax[f] ? v : lmax[f];
        }
    }
#pragma unroll
    for (int f = 0; f < 4; f++) {
        atomicMin(&smin[f], lmin[f]);
        atomicMax(&smax[f], lmax[f]);
    }
    __syncthreads();
    if (threadIdx.x < 4) {
        atomicMin(&r[threadIdx.x], smin[threadIdx.x]);
        atomicMax(&r[4 + threadIdx.x], smax[threadIdx.x]);
    }
}

__global__ void k_pack(const int32_t *c, size_t n, layout L, u64 *keys)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        u64 v = 0;
#pragma unroll
        for (int f = 0; f < 4; f++)
            if (L.bits[f]) // a 0-bit field may sit at shift 64: nothing to add (keys64_part)
                v |= (u64)((long long)c[4 * i + f] - L.base[f]) << L.shift[f];
        keys[i] = v;
    }
}

// *bad := 1 when keys[0..n) are not strictly ascending.
__global__ void k_ascending(const u64 *keys, size_t n, int *bad)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x + 1; i < n; i += stride)
        if (keys[i] <= keys[i - 1])
            *bad = 1;
}

static int bits_for(u64 span)
{
    int b = 0;
    while (b < 64 && (span >> b) != 0)
        b++;
    return b;
}

// The layout of mn_layout_threads (coords.c) for these ranges, or MN_ERANGE past 64 bits.
static mn_status make_layout(const long long lo[4], const long long hi[4], long long margin,
                             layout *L)
{
    int total = 0;
    for (int f = 3; f >= 0; f--) {
        long long m = f == 0 ? 0 : margin; // offsets never cross batches
        L->base[f] = lo[f] - m;
        u64 span = (u64)(hi[f] - lo[f]) + 2 * (u64)m;
        L->bits[f] = bits_for(span);
        L->shift[f] = total;
        total += L->bits[f];
    }
    if (total > 64) {
        mn_set_error("coordinates span %d bits of key (batch %lld..%lld, x %lld..%lld, y "
                     "%lld..%lld, z %lld..%lld, margin %lld): the CUDA backend packs at most 64",
                     total, lo[0], hi[0], lo[1], hi[1], lo[2], hi[2], lo[3], hi[3], margin);
        return MN_ERANGE;
    }
    return MN_OK;
}

static unsigned ew_blocks(size_t n) { return mn_blocks(n, EW_THREADS); }

// Keys of the rows of a (and of b, when kb is not NULL) in one layout covering both with the
// margin: the ranges come to the host (waits for the stream), the packing is queued.
static mn_status pack2(const int32_t *a, size_t na, const int32_t *b, size_t nb, long long margin,
                       cudaStream_t s, u64 *ka, u64 *kb, layout *L)
{
    mn_dbuf r;
    CU_TRY(mn_dalloc(r, 8 * sizeof(int), s));
    k_range_init<<<1, 32, 0, s>>>(r.as<int>());
    CU_LAUNCHED();
    // At most 1024 blocks: each adds one atomic per field to the result.
    if (na) {
        unsigned g = ew_blocks(na) < 1024 ? ew_blocks(na) : 1024;
        k_ranges<<<g, EW_THREADS, 0, s>>>(a, na, r.as<int>());
        CU_LAUNCHED();
    }
    if (kb && nb) {
        unsigned g = ew_blocks(nb) < 1024 ? ew_blocks(nb) : 1024;
        k_ranges<<<g, EW_THREADS, 0, s>>>(b, nb, r.as<int>());
        CU_LAUNCHED();
    }
    int h[8];
    CU_TRY(cudaMemcpyAsync(h, r.p, sizeof h, cudaMemcpyDeviceToHost, s));
    CU_TRY(cudaStreamSynchronize(s));
    long long lo[4], hi[4];
    bool none = na == 0 && (!kb || nb == 0);
    for (int f = 0; f < 4; f++) {
        lo[f] = none ? 0 : h[f];
        hi[f] = none ? 0 : h[4 + f];
    }
    mn_status st = make_layout(lo, hi, margin, L);
    if (st != MN_OK)
        return st;
    if (na) {
        k_pack<<<ew_blocks(na), EW_THREADS, 0, s>>>(a, na, *L, ka);
        CU_LAUNCHED();
    }
    if (kb && nb) {
        k_pack<<<ew_blocks(nb), EW_THREADS, 0, s>>>(b, nb, *L, kb);
        CU_LAUNCHED();
    }
    return MN_OK;
}

extern "C" mn_status mn_cuda_pack_keys(const int32_t *coords, size_t n, int64_t margin,
                                       void *stream, uint64_t *keys, int64_t base[4], int shift[4],
                                       int bits[4])
{
    if ((n && (!coords || !keys)) || margin < 0 || margin > (1LL << 40)) {
        mn_set_error("mn_cuda_pack_keys: %zu rows, margin %lld: coordinates and keys must be "
                     "non-NULL, margin 0..2^40",
                     n, (long long)margin);
        return MN_EINVAL;
    }
    forget_old_error();
    layout L;
    mn_status st =
        pack2(coords, n, nullptr, 0, margin, (cudaStream_t)stream, (u64 *)keys, nullptr, &L);
    if (st != MN_OK)
        return st;
    for (int f = 0; f < 4; f++) {
        base[f] = L.base[f];
        shift[f] = L.shift[f];
        bits[f] = L.bits[f];
    }
    return mn_cuda_done(MN_OK);
}

// ---- sorting -----------------------------------------------------------------------------------

__global__ void k_iota(uint32_t *v, size_t n)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        v[i] = (uint32_t)i;
}

// *first := the smallest i with keys[i] == keys[i - 1] (it starts at all ones: none).
__global__ void k_first_dup(const u64 *keys, size_t n, u64 *first)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x + 1; i < n; i += stride)
        if (keys[i] == keys[i - 1])
            atomicMin(first, (u64)i);
}

__global__ void k_gather_rows(const int32_t *src, const uint32_t *idx, size_t n, int32_t *dst)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        size_t r = idx[i];
#pragma unroll
        for (int f = 0; f < 4; f++)
            dst[4 * i + f] = src[4 * r + f];
    }
}

// The rows stay as they were until the duplicate check has passed: on failure nothing is
// written (perm included). CUB's radix sort is stable, so equal keys keep their original
// order and the rows a duplicate names are those the CPU's stable sort names.
MN_CUDA_API mn_status mn_cuda_sort(int32_t *coords, size_t n, uint32_t *perm, void *stream)
{
    mn_status st = mn_cuda_init();
    if (st != MN_OK)
        return st;
    forget_old_error();
    if (n > UINT32_MAX) {
        mn_set_error("%zu coordinates: at most 2^32 - 1", n);
        return MN_EINVAL;
    }
    if (n == 0)
        return mn_cuda_done(MN_OK);
    if (!coords) {
        mn_set_error("mn_cuda_sort: %zu rows at NULL", n);
        return MN_EINVAL;
    }
    cudaStream_t s = (cudaStream_t)stream;
    mn_dbuf keys, keys2, idx, idx2, first;
    CU_TRY(mn_dalloc(keys, n * sizeof(u64), s));
    CU_TRY(mn_dalloc(keys2, n * sizeof(u64), s));
    CU_TRY(mn_dalloc(idx, n * sizeof(uint32_t), s));
    CU_TRY(mn_dalloc(idx2, n * sizeof(uint32_t), s));
    CU_TRY(mn_dalloc(first, sizeof(u64), s));
    layout L;
    st = pack2(coords, n, nullptr, 0, 0, s, keys.as<u64>(), nullptr, &L);
    if (st != MN_OK)
        return st;
    int end_bit = L.bits[0] + L.bits[1] + L.bits[2] + L.bits[3];
    end_bit = end_bit > 0 ? end_bit : 1; // every row alike: any non-empty bit range sorts
    k_iota<<<ew_blocks(n), EW_THREADS, 0, s>>>(idx.as<uint32_t>(), n);
    CU_LAUNCHED();
    size_t tb = 0;
    CU_TRY(cub::DeviceRadixSort::SortPairs(nullptr, tb, keys.as<u64>(), keys2.as<u64>(),
                                           idx.as<uint32_t>(), idx2.as<uint32_t>(), (uint32_t)n, 0,
                                           end_bit, s));
    mn_dbuf tmp;
    CU_TRY(mn_dalloc(tmp, tb, s));
    CU_TRY(cub::DeviceRadixSort::SortPairs(tmp.p, tb, keys.as<u64>(), keys2.as<u64>(),
                                           idx.as<uint32_t>(), idx2.as<uint32_t>(), (uint32_t)n, 0,
                                           end_bit, s));
    CU_TRY(cudaMemsetAsync(first.p, 0xFF, sizeof(u64), s));
    k_first_dup<<<ew_blocks(n), EW_THREADS, 0, s>>>(keys2.as<u64>(), n, first.as<u64>());
    CU_LAUNCHED();
    u64 dup = 0;
    CU_TRY(cudaMemcpyAsync(&dup, first.p, sizeof dup, cudaMemcpyDeviceToHost, s));
    CU_TRY(cudaStreamSynchronize(s));
    if (dup != ~0ULL) {
        uint32_t rows[2];
        int32_t r[4];
        CU_TRY(cudaMemcpyAsync(rows, idx2.as<uint32_t>() + dup - 1, sizeof rows,
                               cudaMemcpyDeviceToHost, s));
        CU_TRY(cudaStreamSynchronize(s));
        CU_TRY(
            cudaMemcpyAsync(r, coords + 4 * (size_t)rows[1], sizeof r, cudaMemcpyDeviceToHost, s));
        CU_TRY(cudaStreamSynchronize(s));
        mn_set_error("duplicate coordinate (%d, %d, %d, %d) at rows %u and %u", r[0], r[1], r[2],
                     r[3], rows[0], rows[1]);
        return MN_EDUP;
    }
    // The sorted rows go through scratch (the keys' buffers are free again: n * 16 bytes).
    mn_dbuf rows;
    CU_TRY(mn_dalloc(rows, n * 4 * sizeof(int32_t), s));
    k_gather_rows<<<ew_blocks(n), EW_THREADS, 0, s>>>(coords, idx2.as<uint32_t>(), n,
                                                      rows.as<int32_t>());
    CU_LAUNCHED();
    CU_TRY(cudaMemcpyAsync(coords, rows.p, n * 4 * sizeof(int32_t), cudaMemcpyDeviceToDevice, s));
    if (perm)
        CU_TRY(cudaMemcpyAsync(perm, idx2.p, n * sizeof(uint32_t), cudaMemcpyDeviceToDevice, s));
    return mn_cuda_done(MN_OK);
}

// ---- the double-traversed binary search ---------------------------------------------------------
//
// For a fixed offset the targets out_key[o] + delta are ascending in o, so the inputs that can
// match a block of B consecutive outputs lie in [lower_bound(first target), upper_bound(last
// target)) of the sorted input keys. Pass 1 finds these borders for every (offset, block) by
// binary search in global memory; pass 2 gives each (offset, block) a thread block that brings
// the bordered inputs into shared memory a chunk at a time, each thread binary-searching its
// own target in every chunk (the range is usually about B keys long, so one chunk).

// Input keys in shared memory per chunk of pass 2: 16 KiB.
#define DTBS_CHUNK 2048

__device__ __forceinline__ size_t lower_bound(const u64 *a, size_t n, u64 t)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

__device__ __forceinline__ size_t upper_bound(const u64 *a, size_t n, u64 t)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

// Pass 1: borders lo/hi [nk][nb] of block b (outputs [b*B, min((b+1)*B, n_out))) and offset k.
// hi is kept >= lo, so that unsorted keys (refused afterwards) cannot make pass 2 read out of
// bounds.
__global__ void k_dtbs_borders(const u64 *ik, size_t n_in, const u64 *ok, size_t n_out,
                               const u64 *delta, int nk, unsigned B, size_t nb, long long *lo,
                               long long *hi)
{
    size_t total = (size_t)nk * nb, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t x = (size_t)blockIdx.x * blockDim.x + threadIdx.x; x < total; x += stride) {
        size_t k = x / nb, b = x - k * nb;
        size_t o0 = b * B, o1 = o0 + B < n_out ? o0 + B : n_out;
        u64 d = delta[k];
        size_t l = lower_bound(ik, n_in, ok[o0] + d);
        size_t h = upper_bound(ik, n_in, ok[o1 - 1] + d);
        lo[x] = (long long)l;
        hi[x] = (long long)(h > l ? h : l);
    }
}

// Pass 2: block (b, k) of blockDim.x == B threads; match[k][o] := the input row whose key is
// out_key[o] + delta[k], or -1.
__global__ void k_dtbs_search(const u64 *ik, const u64 *ok, size_t n_out, const u64 *delta,
                              size_t nb, const long long *lo, const long long *hi, int32_t *match)
{
    __shared__ u64 sk[DTBS_CHUNK];
    size_t b = blockIdx.x, k = blockIdx.y;
    size_t o = b * blockDim.x + threadIdx.x;
    bool valid = o < n_out;
    u64 t = valid ? ok[o] + delta[k] : 0;
    long long found = -1;
    long long l = lo[k * nb + b], h = hi[k * nb + b]; // the same for the whole block
    for (long long c0 = l; c0 < h; c0 += DTBS_CHUNK) {
        int len = h - c0 < DTBS_CHUNK ? (int)(h - c0) : DTBS_CHUNK;
        __syncthreads(); // every search in the previous chunk is done before it is overwritten
        for (int i = threadIdx.x; i < len; i += blockDim.x)
            sk[i] = ik[c0 + i];
        __syncthreads();
        if (valid && found < 0) {
            int a = 0, z = len;
            while (a < z) {
                int m = (a + z) >> 1;
                if (sk[m] < t)
                    a = m + 1;
                else
                    z = m;
            }
            if (a < len && sk[a] == t)
                found = c0 + a;
        }
    }
    if (valid)
        match[k * n_out + o] = (int32_t)found;
}

// ---- the hash table -----------------------------------------------------------------------------
//
// Open addressing with linear probing, capacity a power of two >= 2 n_in (load at most 1/2), the
// CPU's hash of the 64-bit key; a slot is claimed by atomicCAS of its key from EMPTY. A key equal
// to EMPTY itself (possible only when a layout fills all 64 bits) cannot live in the table: its
// row is kept aside in `special`.

#define EMPTY (~0ULL)

__device__ __forceinline__ u64 hash64(u64 k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
}

__global__ void k_hash_insert(const u64 *ik, size_t n, u64 *tk, int32_t *tr, u64 mask,
                              int32_t *special)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        u64 key = ik[i];
        if (key == EMPTY) {
            *special = (int32_t)i;
            continue;
        }
        u64 h = hash64(key) & mask;
        // At most n keys in more than 2n slots: an empty slot is always found; the bound only
        // guards against a corrupted table.
        for (u64 p = 0; p <= mask; p++) {
            if (atomicCAS(&tk[h], EMPTY, key) == EMPTY) {
                tr[h] = (int32_t)i;
                break;
            }
            h = (h + 1) & mask;
        }
    }
}

// Grid (x, nk): blockIdx.y is the offset, the x blocks stride over the outputs.
__global__ void k_hash_probe(const u64 *ok, size_t n_out, const u64 *delta, const u64 *tk,
                             const int32_t *tr, u64 mask, const int32_t *special, int32_t *match)
{
    size_t k = blockIdx.y, stride = (size_t)gridDim.x * blockDim.x;
    u64 d = delta[k];
    for (size_t o = (size_t)blockIdx.x * blockDim.x + threadIdx.x; o < n_out; o += stride) {
        u64 t = ok[o] + d;
        int32_t r = -1;
        if (t == EMPTY) {
            r = *special;
        } else {
            u64 h = hash64(t) & mask;
            for (u64 p = 0; p <= mask; p++) {
                u64 key = tk[h];
                if (key == t) {
                    r = tr[h];
                    break;
                }
                if (key == EMPTY)
                    break;
                h = (h + 1) & mask;
            }
        }
        match[k * n_out + o] = r;
    }
}

// ---- compaction -----------------------------------------------------------------------------------
//
// The dense match array [nk][n_out] in chunks of CT outputs per offset: each chunk's matches are
// counted (one block each), the counts scanned (CUB) into each chunk's first pair, and each chunk
// writes its pairs there in output order (a block scan). So offset k's pairs are by output row
// and start at its first chunk's position. The start of every offset (and the total) and the
// unsorted-input flag come to the host in one copy: the one wait.

#define CT 256

__global__ void k_count(const int32_t *match, size_t n_out, size_t nc, long long *cnt)
{
    typedef cub::BlockReduce<int, CT> reduce;
    __shared__ typename reduce::TempStorage tmp;
    size_t c = blockIdx.x, k = blockIdx.y;
    size_t o = c * CT + threadIdx.x;
    int f = o < n_out && match[k * n_out + o] >= 0;
    int sum = reduce(tmp).Sum(f);
    if (threadIdx.x == 0)
        cnt[k * nc + c] = sum;
}

// res[k] := offset k's first pair (k < nk), res[nk] := the total, res[nk + 1] := *bad (or 0).
__global__ void k_starts(const long long *cnt, const long long *pos, int nk, size_t nc,
                         const int *bad, long long *res)
{
    for (int k = blockIdx.x * blockDim.x + threadIdx.x; k <= nk + 1; k += gridDim.x * blockDim.x) {
        long long v;
        if (k == nk + 1)
            v = bad ? *bad : 0;
        else if (nc == 0)
            v = 0;
        else if (k < nk)
            v = pos[(size_t)k * nc];
        else
            v = pos[(size_t)nk * nc - 1] + cnt[(size_t)nk * nc - 1];
        res[k] = v;
    }
}

__global__ void k_write(const int32_t *match, size_t n_out, size_t nc, const long long *pos,
                        int32_t *in, int32_t *out)
{
    typedef cub::BlockScan<int, CT> scan;
    __shared__ typename scan::TempStorage tmp;
    size_t c = blockIdx.x, k = blockIdx.y;
    size_t o = c * CT + threadIdx.x;
    int32_t m = o < n_out ? match[k * n_out + o] : -1;
    int f = m >= 0, p = 0;
    scan(tmp).ExclusiveSum(f, p);
    if (f) {
        size_t d = (size_t)pos[k * nc + c] + (size_t)p;
        in[d] = m;
        out[d] = (int32_t)o;
    }
}

static int cube_root(int nk)
{
    for (int K = 1; K * K * K <= nk; K++)
        if (K * K * K == nk)
            return K;
    return 0;
}

// The map from the match array (device, [nk][n_out]); MN_EINVAL when *bad (device, may be NULL)
// is set. On failure *map is empty. Waits for the stream once.
static mn_status compact(const int32_t *match, int nk, size_t n_in, size_t n_out, const int *bad,
                         cudaStream_t s, mn_cuda_kmap *map)
{
    size_t nc = (n_out + CT - 1) / CT, nchunks = (size_t)nk * nc;
    if (nchunks > INT_MAX) {
        mn_set_error("kernel map of %d offsets x %zu outputs: too large", nk, n_out);
        return MN_EINVAL;
    }
    mn_dbuf cnt, pos, res;
    CU_TRY(mn_dalloc(cnt, nchunks * sizeof(long long), s));
    CU_TRY(mn_dalloc(pos, nchunks * sizeof(long long), s));
    CU_TRY(mn_dalloc(res, ((size_t)nk + 2) * sizeof(long long), s));
    if (nchunks) {
        k_count<<<dim3((unsigned)nc, (unsigned)nk), CT, 0, s>>>(match, n_out, nc,
                                                                cnt.as<long long>());
        CU_LAUNCHED();
        size_t tb = 0;
        CU_TRY(cub::DeviceScan::ExclusiveSum(nullptr, tb, cnt.as<long long>(), pos.as<long long>(),
                                             (int)nchunks, s));
        mn_dbuf tmp;
        CU_TRY(mn_dalloc(tmp, tb, s));
        CU_TRY(cub::DeviceScan::ExclusiveSum(tmp.p, tb, cnt.as<long long>(), pos.as<long long>(),
                                             (int)nchunks, s));
    }
    k_starts<<<mn_blocks((size_t)nk + 2, 256), 256, 0, s>>>(
        cnt.as<long long>(), pos.as<long long>(), nk, nc, bad, res.as<long long>());
    CU_LAUNCHED();
    hbuf h;
    h.p = malloc(((size_t)nk + 2) * sizeof(long long));
    if (!h.p) {
        mn_set_error("out of memory");
        return MN_ENOMEM;
    }
    long long *hr = (long long *)h.p;
    CU_TRY(cudaMemcpyAsync(hr, res.p, ((size_t)nk + 2) * sizeof(long long), cudaMemcpyDeviceToHost,
                           s));
    CU_TRY(cudaStreamSynchronize(s));
    if (hr[nk + 1]) {
        mn_set_error("coordinates not sorted or with duplicates: use mn_cuda_sort");
        return MN_EINVAL;
    }
    mn_cuda_kmap m = {};
    m.K = cube_root(nk);
    m.nk = nk;
    m.n_in = n_in;
    m.n_out = n_out;
    m.total = (size_t)hr[nk];
    m.start = (size_t *)malloc(((size_t)nk + 1) * sizeof(size_t));
    if (!m.start) {
        mn_set_error("out of memory");
        return MN_ENOMEM;
    }
    for (int k = 0; k <= nk; k++)
        m.start[k] = (size_t)hr[k];
    // cudaMalloc rather than the stream's pool: mn_cuda_kmap_free releases them with cudaFree.
    // At least one element each, so that the arrays are never NULL.
    size_t bytes = (m.total ? m.total : 1) * sizeof(int32_t);
    cudaError_t e = cudaMalloc((void **)&m.in, bytes);
    if (e == cudaSuccess)
        e = cudaMalloc((void **)&m.out, bytes);
    if (e == cudaSuccess && m.total) {
        k_write<<<dim3((unsigned)nc, (unsigned)nk), CT, 0, s>>>(match, n_out, nc,
                                                                pos.as<long long>(), m.in, m.out);
        e = cudaGetLastError();
    }
    if (e != cudaSuccess) {
        mn_set_error("CUDA: the kernel map's %zu pairs: %s (%s:%d)", m.total, cudaGetErrorString(e),
                     __FILE__, __LINE__);
        mn_cuda_kmap_free(&m);
        return mn_cuda_status(e);
    }
    *map = m;
    return MN_OK;
}

// ---- the kernel map -----------------------------------------------------------------------------

static mn_status check_sizes(const char *who, size_t n_in, size_t n_out, int nk)
{
    if (n_in > INT32_MAX || n_out > INT32_MAX || nk < 1 || nk > 65535) {
        mn_set_error("%s: %zu inputs, %zu outputs, %d offsets: accepted at most 2^31 - 1 rows, "
                     "1..65535 offsets",
                     who, n_in, n_out, nk);
        return MN_EINVAL;
    }
    return MN_OK;
}

static mn_status dtbs_map(const u64 *ik, size_t n_in, const u64 *ok, size_t n_out, const u64 *delta,
                          int nk, int B, const int *bad, cudaStream_t s, mn_cuda_kmap *map)
{
    mn_status st = check_sizes("mn_cuda_dtbs", n_in, n_out, nk);
    if (st != MN_OK)
        return st;
    if (B < 32 || B > 1024) {
        mn_set_error("mn_cuda_dtbs: %d targets per block: accepted 32..1024", B);
        return MN_EINVAL;
    }
    mn_dbuf match, lo, hi;
    CU_TRY(mn_dalloc(match, (size_t)nk * n_out * sizeof(int32_t), s));
    if (n_out) {
        size_t nb = (n_out + (size_t)B - 1) / (size_t)B;
        CU_TRY(mn_dalloc(lo, (size_t)nk * nb * sizeof(long long), s));
        CU_TRY(mn_dalloc(hi, (size_t)nk * nb * sizeof(long long), s));
        k_dtbs_borders<<<ew_blocks((size_t)nk * nb), EW_THREADS, 0, s>>>(
            ik, n_in, ok, n_out, delta, nk, (unsigned)B, nb, lo.as<long long>(),
            hi.as<long long>());
        CU_LAUNCHED();
        k_dtbs_search<<<dim3((unsigned)nb, (unsigned)nk), (unsigned)B, 0, s>>>(
            ik, ok, n_out, delta, nb, lo.as<long long>(), hi.as<long long>(), match.as<int32_t>());
        CU_LAUNCHED();
    }
    return compact(match.as<int32_t>(), nk, n_in, n_out, bad, s, map);
}

static mn_status hash_map(const u64 *ik, size_t n_in, const u64 *ok, size_t n_out, const u64 *delta,
                          int nk, const int *bad, cudaStream_t s, mn_cuda_kmap *map)
{
    mn_status st = check_sizes("mn_cuda_hash_map", n_in, n_out, nk);
    if (st != MN_OK)
        return st;
    u64 cap = 16;
    while (cap < 2 * (u64)n_in)
        cap *= 2;
    mn_dbuf tk, tr, special, match;
    CU_TRY(mn_dalloc(tk, cap * sizeof(u64), s));
    CU_TRY(mn_dalloc(tr, cap * sizeof(int32_t), s));
    CU_TRY(mn_dalloc(special, sizeof(int32_t), s));
    CU_TRY(mn_dalloc(match, (size_t)nk * n_out * sizeof(int32_t), s));
    CU_TRY(cudaMemsetAsync(tk.p, 0xFF, cap * sizeof(u64), s));    // every key EMPTY
    CU_TRY(cudaMemsetAsync(special.p, 0xFF, sizeof(int32_t), s)); // -1: no EMPTY key
    if (n_in) {
        k_hash_insert<<<ew_blocks(n_in), EW_THREADS, 0, s>>>(
            ik, n_in, tk.as<u64>(), tr.as<int32_t>(), cap - 1, special.as<int32_t>());
        CU_LAUNCHED();
    }
    if (n_out) {
        unsigned bx = ew_blocks(n_out) < 65535 ? ew_blocks(n_out) : 65535;
        k_hash_probe<<<dim3(bx, (unsigned)nk), EW_THREADS, 0, s>>>(
            ok, n_out, delta, tk.as<u64>(), tr.as<int32_t>(), cap - 1, special.as<int32_t>(),
            match.as<int32_t>());
        CU_LAUNCHED();
    }
    return compact(match.as<int32_t>(), nk, n_in, n_out, bad, s, map);
}

extern "C" mn_status mn_cuda_dtbs(const uint64_t *in_keys, size_t n_in, const uint64_t *out_keys,
                                  size_t n_out, const uint64_t *delta, int nk, int block_targets,
                                  void *stream, mn_cuda_kmap *map)
{
    *map = mn_cuda_kmap{};
    forget_old_error();
    mn_status st =
        dtbs_map((const u64 *)in_keys, n_in, (const u64 *)out_keys, n_out, (const u64 *)delta, nk,
                 block_targets, nullptr, (cudaStream_t)stream, map);
    return st == MN_OK ? mn_cuda_done(MN_OK) : st;
}

extern "C" mn_status mn_cuda_hash_map(const uint64_t *in_keys, size_t n_in,
                                      const uint64_t *out_keys, size_t n_out, const uint64_t *delta,
                                      int nk, void *stream, mn_cuda_kmap *map)
{
    *map = mn_cuda_kmap{};
    forget_old_error();
    mn_status st = hash_map((const u64 *)in_keys, n_in, (const u64 *)out_keys, n_out,
                            (const u64 *)delta, nk, nullptr, (cudaStream_t)stream, map);
    return st == MN_OK ? mn_cuda_done(MN_OK) : st;
}

// What adding (dx, dy, dz) adds to a key, modulo 2^64 (mn_key_delta's low 64 bits).
static u64 key_delta(const layout *L, long long dx, long long dy, long long dz)
{
    long long d[4] = {0, dx, dy, dz};
    u64 v = 0;
    for (int f = 1; f < 4; f++)
        if (L->shift[f] < 64)
            v += (u64)d[f] << L->shift[f];
    return v;
}

// Waits for the stream twice: the coordinate ranges (for the layout), then the pair counts
// (with the sortedness flag).
MN_CUDA_API mn_status mn_cuda_kmap_build(const int32_t *in, size_t n_in, const int32_t *out,
                                         size_t n_out, int K, int t_in, int dilation,
                                         mn_method method, void *stream, mn_cuda_kmap *map)
{
    if (map)
        *map = mn_cuda_kmap{};
    mn_status st = mn_cuda_init();
    if (st != MN_OK)
        return st;
    forget_old_error();
    if (!map) {
        mn_set_error("mn_cuda_kmap_build: no map to fill (NULL)");
        return MN_EINVAL;
    }
    if (K < 1 || K > 15 || t_in < 1 || dilation < 1 || (int64_t)t_in * dilation > (1 << 24)) {
        mn_set_error("kernel %d, tensor stride %d, dilation %d: accepted kernel 1..15, strides "
                     "and dilation >= 1",
                     K, t_in, dilation);
        return MN_EINVAL;
    }
    if (method != MN_SORT && method != MN_HASH) {
        mn_set_error("unknown map method %d", (int)method);
        return MN_EINVAL;
    }
    if (n_in > INT32_MAX || n_out > INT32_MAX) {
        mn_set_error("at most 2^31 - 1 rows");
        return MN_EINVAL;
    }
    if (n_in == 0 || n_out == 0) {
        mn_set_error("no %s coordinates", n_in == 0 ? "input" : "output");
        return MN_EEMPTY;
    }
    if (!in || !out) {
        mn_set_error("mn_cuda_kmap_build: %s coordinates at NULL", !in ? "input" : "output");
        return MN_EINVAL;
    }
    cudaStream_t s = (cudaStream_t)stream;
    int nk = K * K * K;
    long long step = (long long)t_in * dilation;
    long long margin = (K % 2 ? K / 2 : K - 1) * step;
    // The same rows in and out (a submanifold map): one set of keys.
    bool same = in == out && n_in == n_out;
    mn_dbuf ik, okb, dd, bad;
    CU_TRY(mn_dalloc(ik, n_in * sizeof(u64), s));
    if (!same)
        CU_TRY(mn_dalloc(okb, n_out * sizeof(u64), s));
    CU_TRY(mn_dalloc(dd, (size_t)nk * sizeof(u64), s));
    CU_TRY(mn_dalloc(bad, sizeof(int), s));
    u64 *ok = same ? ik.as<u64>() : okb.as<u64>();
    layout L;
    st = pack2(in, n_in, out, same ? 0 : n_out, margin, s, ik.as<u64>(), same ? nullptr : ok, &L);
    if (st != MN_OK)
        return st;
    // The offsets of kmap.c's offsets(), in offset-index order k = (i*K + j)*K + l. The host
    // array lives until the function returns, past the wait in compact.
    hbuf hd;
    hd.p = malloc((size_t)nk * sizeof(u64));
    if (!hd.p) {
        mn_set_error("out of memory");
        return MN_ENOMEM;
    }
    u64 *delta = (u64 *)hd.p;
    int lo = K % 2 ? -(K / 2) : 0;
    for (int i = 0, k = 0; i < K; i++)
        for (int j = 0; j < K; j++)
            for (int l = 0; l < K; l++, k++)
                delta[k] = key_delta(&L, (lo + i) * step, (lo + j) * step, (lo + l) * step);
    CU_TRY(cudaMemcpyAsync(dd.p, delta, (size_t)nk * sizeof(u64), cudaMemcpyHostToDevice, s));
    CU_TRY(cudaMemsetAsync(bad.p, 0, sizeof(int), s));
    k_ascending<<<ew_blocks(n_in), EW_THREADS, 0, s>>>(ik.as<u64>(), n_in, bad.as<int>());
    CU_LAUNCHED();
    if (!same) {
        k_ascending<<<ew_blocks(n_out), EW_THREADS, 0, s>>>(ok, n_out, bad.as<int>());
        CU_LAUNCHED();
    }
    st = method == MN_SORT
             ? dtbs_map(ik.as<u64>(), n_in, ok, n_out, dd.as<u64>(), nk, 256, bad.as<int>(), s, map)
             : hash_map(ik.as<u64>(), n_in, ok, n_out, dd.as<u64>(), nk, bad.as<int>(), s, map);
    if (st != MN_OK) {
        mn_cuda_kmap_free(map);
        return st;
    }
    map->K = K;
    return mn_cuda_done(MN_OK);
}
