/* keys.h: packed coordinate keys shared by the sort, the kernel maps and the tests. */
#ifndef MN_KEYS_H
#define MN_KEYS_H

#include <stdbool.h>
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
 * `margin` in x, y and z. */
mn_status mn_layout(const mn_coords *a, const mn_coords *b, int64_t margin, mn_layout_t *L);
void mn_keys64(const mn_coords *co, const mn_layout_t *L, uint64_t *k);
void mn_keys128(const mn_coords *co, const mn_layout_t *L, mn_u128 *k);
/* What adding (dx, dy, dz) adds to a key, modulo 2^128 (two's complement, exact within the
 * margin); its low 64 bits are the delta of a 64-bit key. */
mn_u128 mn_key_delta(const mn_layout_t *L, int64_t dx, int64_t dy, int64_t dz);
/* idx[0..n) := the rows of co in (batch, x, y, z) order (stable; duplicates kept). */
mn_status mn_sort_index(const mn_coords *co, uint32_t *idx, int threads);
/* Threads to use: want, or every online core when want <= 0. */
int mn_threads(int want);

#pragma GCC visibility pop

#endif
