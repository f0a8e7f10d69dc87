/* minuet.h: Minuet, 3-D sparse convolution with sort-based kernel maps (C API).
 *
 * Coordinates are int32 (batch, x, y, z) rows; features float32 [N, C] row-major; weights
 * float32 [K^3, C_in, C_out]. Offset index k = (i*K + j)*K + l for the offset
 * delta = (o_i, o_j, o_l) * t_in * dilation, with o in [-(K/2), K/2] for odd K and
 * {0, ..., K-1} for even K (MinkowskiEngine's convention). The kernel map of offset k holds
 * the pairs (input i, output o) with coord(o) + delta_k = coord(i).
 *
 * Sections: errors, coordinates, kernel maps, convolution, configuration, networks, files,
 * the CUDA backend.
 */
#ifndef MINUET_H
#define MINUET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors -------------------------------------------------------------------------- */

/* A status added here is added to MN_STATUSES (src/internal.h) too, for mn_status_name. */
typedef enum mn_status {
    MN_OK = 0,
    MN_EINVAL, /* bad argument: sizes, kernel, stride, shapes that do not match */
    MN_EDUP,   /* duplicate coordinates */
    MN_ERANGE, /* coordinates outside what the packed key can hold */
    MN_ENAN,   /* NaN or infinite feature */
    MN_EEMPTY, /* empty input where it makes no sense */
    MN_ENOMEM,
    MN_EIO,     /* cannot read or write a file */
    MN_EFORMAT, /* malformed or truncated file */
    MN_ENODEV,  /* the CUDA backend cannot run: no device, no driver, or built without nvcc */
} mn_status;

/* The message of the last error in this thread (names the cause: "duplicate coordinate
 * (0, 4, 5, 6) at rows 17 and 90"); "" after a call that succeeds. */
const char *mn_last_error(void);
const char *mn_status_name(mn_status s);

/* ---- coordinates ----------------------------------------------------------------------- */

typedef struct mn_coords {
    int32_t *c; /* n rows of (batch, x, y, z) */
    size_t n;
} mn_coords;

/* Sort rows by (batch, x, y, z) with a radix sort on a packed key (the layout derived from
 * the coordinate ranges; a comparison sort when they do not fit 64 bits). perm[i] = original
 * row of sorted row i (may be NULL). Duplicates are refused (MN_EDUP). */
mn_status mn_sort(mn_coords *co, uint32_t *perm);
/* The same with a thread count for the radix passes (<= 0: all cores, as mn_sort). */
mn_status mn_sort_threads(mn_coords *co, uint32_t *perm, int threads);

/* Output coordinates of a strided convolution: unique(floor(p / (t_in*s)) * t_in*s), sorted.
 * out->c is malloc'd. */
mn_status mn_downsample(const mn_coords *in, int t_in, int stride, mn_coords *out);

/* Output coordinates of a strided or padded convolution in the grid convention of spconv and
 * PyTorch, in output-grid units: every (b, o) with 0 <= o < out_shape such that
 * o * stride - padding + k * dilation is an input coordinate for some k in [0, K), in each
 * dimension; unique and sorted. out->c is malloc'd. */
mn_status mn_conv_outputs(const mn_coords *in, int K, int stride, int padding, int dilation,
                          const int out_shape[3], int threads, mn_coords *out);

/* ---- kernel maps ------------------------------------------------------------------------ */

typedef enum mn_method { MN_SORT = 0, MN_HASH = 1 } mn_method;

typedef struct mn_kmap {
    int K, nk;           /* kernel size and K^3 offsets */
    size_t *count;       /* pairs per offset [nk] */
    int32_t **in, **out; /* per offset: input and output row of each pair, by output row
                          * (read-only: offsets may share arrays; mn_kmap_free frees them) */
    size_t total;        /* all pairs */
    /* The input and output row counts mn_kmap_build built it for (0 in a map made another
     * way). mn_conv trusts such a map's pairs and checks only these counts; other maps are
     * checked pair by pair. */
    size_t n_in, n_out;
} mn_kmap;

/* Pairs for every offset between sorted inputs and sorted outputs (both mn_sort'ed):
 * offsets of t_in*dilation spacing (the inputs' tensor stride times the dilation). K odd
 * or even, 1..15. threads <= 0: all cores. */
mn_status mn_kmap_build(const mn_coords *in, const mn_coords *out, int K, int t_in, int dilation,
                        mn_method method, int threads, mn_kmap *map);
void mn_kmap_free(mn_kmap *map);

/* ---- convolution ------------------------------------------------------------------------ */

/* Seconds spent in each stage, added up over calls (optional). */
typedef struct mn_conv_times {
    double gather, gemm, scatter;
    double tune; /* autotuning: timing the candidates, once per layer shape */
} mn_conv_times;

/* Scratch memory for the gathered rows and GEMM results, kept across convolutions so a
 * network does not map and fault in fresh pages for every layer. Zero-initialise; grown as
 * needed; mn_workspace_free releases it. Not shared between threads calling mn_conv. */
typedef struct mn_workspace {
    void *buf;
    size_t size;
} mn_workspace;
void mn_workspace_free(mn_workspace *ws);

#define MN_DEFAULT_GROUP_THRESHOLD 0.25
#define MN_DEFAULT_TILE_ROWS       256

/* How a convolution moves its data. MN_GROUPED: gather each offset's input rows into a
 * workspace, GEMMs grouped by pair count, scatter the results (Minuet's dataflow).
 * MN_FUSED: no workspace: each tile of output rows takes every offset in turn, the GEMM
 * reading its input rows through the map and adding into the tile's rows (gather and scatter
 * fused into the GEMM). Both give the same bits; the autotuner times both. */
typedef enum mn_dataflow { MN_GROUPED = 0, MN_FUSED = 1 } mn_dataflow;

typedef struct mn_conv_opts {
    double group_threshold; /* padding overhead allowed when grouping GEMMs (default 0.25) */
    int threads;            /* <= 0: all cores */
    bool transposed;        /* use the map the other way: outputs gather, inputs receive */
    mn_conv_times *times;   /* NULL, or where to add the stage times */
    mn_workspace *ws;       /* NULL (allocate per call), or scratch reused across calls */
    /* A group whose largest GEMM has at most batch_rows rows deals the GEMM blocks of all
     * its offsets out to the threads at once (the CPU form of a batched GEMM); otherwise,
     * and with 0, one offset's blocks after another. The same bits either way. */
    size_t batch_rows;
    /* The scatter tile (MN_FUSED: the tile of output rows): rows (0: MN_DEFAULT_TILE_ROWS)
     * x channels (0: all; MN_GROUPED only). */
    size_t tile_rows;
    int tile_channels;
    /* Pick group_threshold, batch_rows and the tile by timing candidates on a sample of this
     * layer, once per layer shape and device (the fields above are then ignored). Off when
     * MINUET_TUNE=off; kept across runs in MINUET_TUNE_CACHE. The result is the same bits
     * whatever is picked. */
    bool autotune;
    mn_dataflow dataflow; /* MN_GROUPED (default) or MN_FUSED; picked too when autotuned */
    /* Rows of the arrays in another order than the map's (NULL: the same): the map's input
     * row r is row in_rows[r] of the input-side array (in, or out when transposed), its
     * output row r row out_rows[r] of the output-side array; each a permutation of that
     * array's rows. So features kept in a caller's unsorted order need no copy into the
     * sorted order the map was built on. */
    const int32_t *in_rows, *out_rows;
} mn_conv_opts;

/* out[o] += sum over pairs (i, o) of offset k: in[i] * W[k]  (out zeroed first; bias may be
 * NULL). in: [n_in, c_in], W: [nk, c_in, c_out], out: [n_out, c_out]. With transposed, the
 * pairs are used as (o, i). Gather, grouped GEMM, scatter, or the fused dataflow; the GEMM
 * is Minuet's own (AVX-512, AVX2 + FMA, or portable), each output element a fused
 * multiply-add chain in a fixed order, the offsets added in a fixed order. So the same bits
 * for any dataflow, group_threshold, batch_rows, tile, autotuner choice and thread count,
 * and on any CPU (minuet/README.md, Determinism). */
mn_status mn_conv(const mn_kmap *map, const float *in, size_t n_in, int c_in, const float *W,
                  const float *bias, int c_out, float *out, size_t n_out, const mn_conv_opts *o);

/* The backward pass of mn_conv with the same map, inputs, weights and options (transposed
 * included), given d_out [n_out, c_out] = dL/d(out). Each output may be NULL (not wanted):
 *   d_in [n_in, c_in]     the gradient through the transposed map: mn_conv with the map used
 *                         the other way and each offset's weights transposed (same grouping,
 *                         tiles, autotuning and determinism);
 *   d_W [nk, c_in, c_out] per offset, the gathered input rows^T x the gathered d_out rows,
 *                         summed over fixed blocks of pairs in order;
 *   d_bias [c_out]        the column sums of d_out.
 * The same bits whatever the threshold, tile, batching and thread count. in is needed for
 * d_W, W for d_in. */
mn_status mn_conv_backward(const mn_kmap *map, const float *in, size_t n_in, int c_in,
                           const float *W, int c_out, const float *d_out, size_t n_out, float *d_in,
                           float *d_W, float *d_bias, const mn_conv_opts *o);

/* ---- configuration and autotuning ------------------------------------------------------ */

/* Read MINUET_DEVICE (cpu|cuda|auto, default auto), MINUET_TUNE (on|off, default on),
 * MINUET_TUNE_CACHE (a JSON file; unset: tuning kept in this process) and MINUET_ISA once.
 * MN_EINVAL with a message naming the variable on a malformed value; MN_ENODEV for
 * MINUET_DEVICE=cuda where the CUDA backend cannot run, naming the reason (no driver, no
 * device, a build without nvcc). mn_conv, mn_conv_backward and mn_net_forward call it. */
mn_status mn_config(void);
/* The backend MINUET_DEVICE picks for the spconv hook and the minuet command: "cpu", or
 * "cuda" (MINUET_DEVICE=cuda, or auto where a CUDA device is usable). The C calls do not
 * depend on it: host pointers go to the CPU backend, device pointers to mn_cuda_*. */
const char *mn_device(void);
/* The CPU backend's GEMM kernel: "avx512", "avx2" (with FMA) or "generic" (portable C): the
 * best this CPU has, or the one MINUET_ISA names (auto|avx512|avx2|generic; mn_config fails
 * on a kernel the CPU lacks). All three give the same bits. */
const char *mn_cpu_kernel(void);
/* Whether convolutions asking for autotune get it (MINUET_TUNE, default on). */
bool mn_tune_enabled(void);

/* One tuned layer shape: what was picked, and the sample's time with it and with the
 * defaults (threshold 0.25, no batching, 256-row tiles). */
typedef struct mn_tune_entry {
    double group_threshold;
    size_t batch_rows, tile_rows;
    double tuned_ms, default_ms;
    int tile_channels;
    bool from_cache; /* loaded from MINUET_TUNE_CACHE rather than timed by this process */
    mn_dataflow dataflow;
    char device[160], shape[160];
} mn_tune_entry;
/* The choices this process holds (tuned or loaded): copies up to max, returns how many. */
size_t mn_tune_entries(mn_tune_entry *e, size_t max);

/* ---- networks --------------------------------------------------------------------------- */

/* Benchmark networks with random weights (fixed seed): a ResNet-21-style encoder (a stem
 * convolution, then 4 stages of a stride-2 K=2 convolution and 2 residual blocks of two K=3
 * convolutions: 21 convolutions) and a UNet-42-style encoder-decoder like MinkUNet (2 stem
 * convolutions, 4 encoder stages as above, 4 decoder stages of a transposed K=2 convolution,
 * the skip connection concatenated and merged by a K=3 convolution, a residual block and a
 * closing K=3 convolution: 42 convolutions). Widths: the stem and the 4 stage widths (5
 * numbers). ReLU between convolutions. */
typedef enum mn_net_kind { MN_RESNET21 = 0, MN_UNET42 = 1 } mn_net_kind;

typedef struct mn_net mn_net;

typedef struct mn_net_stats {
    double map_s, gather_s, gemm_s, scatter_s, total_s;
    double tune_s;  /* autotuning the layer shapes not tuned yet (0 once they all are) */
    double other_s; /* the rest of total_s: ReLU, skips, concatenation, checks, allocation */
    size_t convs, pairs;
} mn_net_stats;

mn_status mn_net_create(mn_net_kind kind, int in_channels, const int widths[5], uint64_t seed,
                        mn_net **net);
void mn_net_free(mn_net *net);
/* Forward pass on sorted coordinates (tensor stride 1) and features [n, in_channels]. The
 * output (the last stage for ResNet-21, full resolution for UNet-42) is malloc'd:
 * *out [*n_out, *c_out]. Maps are built once per level with `method`. Convolutions are
 * autotuned (mn_conv_opts.autotune) unless MINUET_TUNE=off. */
mn_status mn_net_forward(mn_net *net, const mn_coords *in, const float *feats, mn_method method,
                         int threads, float **out, size_t *n_out, int *c_out, mn_net_stats *st);

/* ---- files ------------------------------------------------------------------------------ */

/* A .npy array: int32 or float32, C order, 1-D, 2-D or 3-D (read as [A * B, C], e.g.
 * weights [K^3, Cin, Cout]). data malloc'd. */
typedef struct mn_array {
    char dtype;        /* 'i' int32, 'f' float32 */
    size_t rows, cols; /* a 1-D array has cols 1 */
    void *data;
} mn_array;

mn_status mn_npy_read(const char *path, mn_array *a);
mn_status mn_npy_write(const char *path, const mn_array *a);
/* Parse a whole .npy image from memory (for fuzzing; data copied). */
mn_status mn_npy_parse(const void *buf, size_t len, mn_array *a);

/* A point cloud: n points of x, y, z (float64). */
typedef struct mn_cloud {
    double *xyz;
    size_t n;
} mn_cloud;

/* PLY (ascii, binary_little_endian; vertex x, y, z; other properties and elements skipped)
 * and XYZ text (one "x y z [anything]" per line, # comments). By the file's extension. */
mn_status mn_cloud_read(const char *path, mn_cloud *cl);
mn_status mn_ply_parse(const void *buf, size_t len, mn_cloud *cl);
mn_status mn_xyz_parse(const void *buf, size_t len, mn_cloud *cl);
void mn_cloud_free(mn_cloud *cl);

/* A synthetic LiDAR-like scene of n points (ground rings, box objects, clutter; about
 * 100 m across), the same for the same seed. */
mn_status mn_scene(size_t n, uint64_t seed, mn_cloud *cl);

/* Voxelize: coordinates floor(p / voxel), duplicates merged, batch `batch`, sorted. */
mn_status mn_voxelize(const mn_cloud *cl, double voxel, int batch, mn_coords *out);

/* ---- the CUDA backend ------------------------------------------------------------------- */

/* The device-pointer forms of sorting, kernel maps and convolution, for data already on a
 * CUDA device (PyTorch's tensors: no copies). `stream` is a cudaStream_t (NULL: the legacy
 * default stream); the work is queued on it. Compiled with nvcc for sm_80 and sm_90 when the
 * build finds nvcc. Without a device or a driver, or in a build without nvcc, every call
 * returns MN_ENODEV with the reason. Same conventions as the CPU calls (coordinates, offsets,
 * weights [nk, c_in, c_out], pairs by output row). */

/* Find the device (the current one of this thread; device 0 if none was made current):
 * MN_ENODEV naming the reason ("no CUDA driver", "no CUDA device", "built without nvcc"). */
mn_status mn_cuda_init(void);
/* The device's name ("NVIDIA H200"), or "" before mn_cuda_init succeeded. */
const char *mn_cuda_device_name(void);

typedef struct mn_cuda_kmap {
    int K, nk;
    size_t n_in, n_out, total;
    size_t *start;     /* host [nk + 1]: offset k's pairs are [start[k], start[k + 1]) */
    int32_t *in, *out; /* device [total]: input and output row of each pair; each offset's
                        * pairs by output row, ascending */
} mn_cuda_kmap;

/* Sort n rows of (batch, x, y, z) (device memory) in place: CUB's radix sort of packed
 * 64-bit keys. perm (device, may be NULL): perm[i] = original row of sorted row i. MN_EDUP on
 * a duplicate, MN_ERANGE when the coordinates do not fit a 64-bit key. Waits for the stream
 * (it reports those errors). */
mn_status mn_cuda_sort(int32_t *coords, size_t n, uint32_t *perm, void *stream);

/* The kernel map between sorted inputs and sorted outputs (device memory), as
 * mn_kmap_build: MN_SORT is Minuet's double-traversed binary search, MN_HASH a hash table on
 * the device (the baseline). Waits for the stream twice: the coordinate ranges (for the key
 * layout) and the pair counts come to the host. */
mn_status mn_cuda_kmap_build(const int32_t *in, size_t n_in, const int32_t *out, size_t n_out,
                             int K, int t_in, int dilation, mn_method method, void *stream,
                             mn_cuda_kmap *map);
void mn_cuda_kmap_free(mn_cuda_kmap *map);

/* mn_conv on the device: out [n_out, c_out] = bias + sum over pairs of in rows x W[k]
 * (transposed: the map used the other way, n_in and n_out swapped). Gather, GEMMs grouped
 * with little padding, and a scatter without atomics, whose channel tile is autotuned per
 * layer shape (kept in this process). Deterministic: the same bits run to run. */
mn_status mn_cuda_conv(const mn_cuda_kmap *map, const float *in, int c_in, const float *W,
                       const float *bias, int c_out, float *out, bool transposed, void *stream);
/* mn_conv_backward on the device: d_in (through the transposed map), d_W, d_bias; each may be
 * NULL. */
mn_status mn_cuda_conv_backward(const mn_cuda_kmap *map, const float *in, int c_in, const float *W,
                                int c_out, const float *d_out, float *d_in, float *d_W,
                                float *d_bias, bool transposed, void *stream);

#ifdef __cplusplus
}
#endif

#endif
