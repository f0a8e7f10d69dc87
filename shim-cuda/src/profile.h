/* profile.h: Orion's profile database (ORION_PROFILE_DB): per kernel name and launch shape,
 * whether it is compute- or memory-bound and how long it runs. A text file, one kernel per
 * line, tab-separated:
 *   # orion-profile 1
 *   NAME <TAB> GX,GY,GZ <TAB> BX,BY,BZ <TAB> compute|memory|unknown <TAB> DURATION_US
 * with `*` for a grid or block that matches any shape (an exact shape wins). orion-profile
 * writes it from an Nsight Compute CSV export and merges learned durations into it.
 * profile.c. */
#ifndef ORION_PROFILE_H
#define ORION_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"
#include "rt/err.h"

#pragma GCC visibility push(hidden)

#define ORION_ANY 0u /* a grid or block of 0 in an entry: any shape */

typedef struct orion_pentry {
    char *name;
    uint32_t grid[3], block[3]; /* ORION_ANY in [0]: any */
    orion_profile profile;
    double dur_us; /* < 0: unknown */
} orion_pentry;

typedef struct orion_pdb {
    orion_pentry *e;
    size_t n, cap; /* e[0..n) in order of name, grid, block */
} orion_pdb;

/* Parse a database image; -EINVAL with "PATH:LINE: why" on a malformed line. */
int orion_pdb_parse(orion_pdb *db, const char *text, size_t len, const char *path, rt_err *err);
int orion_pdb_load(orion_pdb *db, const char *path, rt_err *err);
/* Write the database (sorted by name, then shape) atomically. */
int orion_pdb_save(const orion_pdb *db, const char *path, rt_err *err);
void orion_pdb_free(orion_pdb *db);

/* Add or replace the entry of (name, grid, block). */
int orion_pdb_put(orion_pdb *db, const char *name, const uint32_t grid[3], const uint32_t block[3],
                  orion_profile p, double dur_us);
/* The entry for this launch: the exact shape, else the name's any-shape entry, else NULL. */
const orion_pentry *orion_pdb_find(const orion_pdb *db, const char *name, const uint32_t grid[3],
                                   const uint32_t block[3]);

/* An Nsight Compute CSV export (`ncu --csv --page details`: one row per metric; or `--page
 * raw`: one row per kernel) into the database: duration, and the class by the roofline rule
 * (arithmetic intensity above the ridge point: compute-bound) when the FLOP and DRAM-byte
 * metrics are there and ridge > 0, else compute % against DRAM %. Returns kernels added. */
int orion_pdb_from_ncu(orion_pdb *db, const char *text, size_t len, double ridge_flop_per_byte,
                       rt_err *err);

#pragma GCC visibility pop

#endif
