/* keys.h: packed coordinate keys shared by the sort, the kernel maps and the tests. */
#ifndef MN_KEYS_H
#define MN_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "minuet.h"

#pragma GCC visibility push(hidden) /* shared by libminuet's sources, not exported */

typedef unsigned __int128 mn_u128;

/* How (batch, x, y, z) is packed: field f holds (value - base[f]) in bits [shift[f],
 * shift[f] + bits[f]); batch highest, z lowest, so key order is (batch, x, y, z) order. */
typedef struct mn_layout_t {
    int64_t base[4];
    int bits[4], shift[4];
    bool wide; /* more than 64 bits: 128-bit keys */
} mn_layout_t;

/* The layout covering the rows of a and b (b may be NULL), with room for offsets of up to
 * `margin` in x, y and z. The _threads form reads the rows with up to `threads` threads. */
mn_status mn_layout(const mn_coords *a, const mn_coords *b, int64_t margin, mn_layout_t *L);
mn_status mn_layout_threads(const mn_coords *a, const mn_coords *b, int64_t margin, int threads,
                            mn_layout_t *L);
/* The packed keys of co's rows, computed by up to `threads` threads; whether they are
 * strictly ascending (64-bit keys only). */
bool mn_keys64(const mn_coords *co, const mn_layout_t *L, uint64_t *k, int threads);
void mn_keys128(const mn_coords *co, const mn_layout_t *L, mn_u128 *k, int threads);
/* What adding (dx, dy, dz) adds to a key, modulo 2^128 (two's complement, exact within the
 * margin); its low 64 bits are the delta of a 64-bit key. */
mn_u128 mn_key_delta(const mn_layout_t *L, int64_t dx, int64_t dy, int64_t dz);
/* idx[0..n) := the rows of co in (batch, x, y, z) order (stable; duplicates kept). */
mn_status mn_sort_index(const mn_coords *co, uint32_t *idx, int threads);
/* Threads to use: want, or every online core when want <= 0. */
int mn_threads(int want);

/* Parallel loops over n items: fewer than MN_PAR_BELOW items run on one thread, more on
 * mn_threads(threads) threads, at most MN_PAR_THREADS. mn_par_for calls fn(ctx, lo, hi,
 * part) for mn_par_parts(n, threads) contiguous ranges [lo, hi) of about equal size, part 0
 * on the calling thread, and returns when all are done. */
#define MN_PAR_THREADS 8
/* fn(part) on nt parts laid out `size` bytes apart from P (nt <= MN_RUN_MAX), part 0 on the
 * calling thread; a part whose thread cannot be created runs on the caller afterwards. */
#define MN_RUN_MAX 64
void mn_parts_run(void *P, size_t size, int nt, void *(*fn)(void *));
#define MN_PAR_BELOW 65536
int mn_par_parts(size_t n, int threads);
void mn_par_for(size_t n, int threads, void (*fn)(void *ctx, size_t lo, size_t hi, int part),
                void *ctx);

#pragma GCC visibility pop

#endif
