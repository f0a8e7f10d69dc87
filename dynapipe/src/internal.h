/* internal.h: what libdynapipe's sources share and do not export: the error convention (every
 * failing call stores a message for dp_last_error, every public call that succeeds empties
 * it), the file and CSV helpers, the seeded random numbers, and the cost model's grid layout.
 *
 * libdynapipe's objects build with -fvisibility=default so that dynapipe.h is exported from
 * libdynapipe.so; what is declared here is hidden. */
#ifndef DYNAPIPE_INTERNAL_H
#define DYNAPIPE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "dynapipe.h"
#include "rt/lasterr.h"

#pragma GCC visibility push(hidden)

/* Every dp_status of dynapipe.h, in code order: dp_status_name's table is made from this list
 * (error.c checks that it has no gap and no repeat). A new status is added here too. */
/* clang-format off */
#define DP_STATUSES(X) \
    X(DP_OK)           \
    X(DP_EINVAL)       \
    X(DP_EEMPTY)       \
    X(DP_ERANGE)       \
    X(DP_ENOMEM)       \
    X(DP_EIO)          \
    X(DP_EFORMAT)      \
    X(DP_EGRID)        \
    X(DP_EINFEASIBLE)  \
    X(DP_ECHECK)
/* clang-format on */

/* This thread's last error (error.c; rt/lasterr.h). */
extern _Thread_local rt_lasterr dp_lasterr;

/* Store a printf-style message as this thread's last error (truncated to 511 bytes) and
 * return s: `return dp_fail(DP_ERANGE, "sample %zu: input length %d <= 0", i, len);`
 * A macro, so that the static analyzer sees that the status returned is s. */
void dp_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define dp_fail(s, ...)                                                                            \
    ({                                                                                             \
        dp_set_error(__VA_ARGS__);                                                                 \
        (dp_status)(s);                                                                            \
    })

/* End a public call with status s: DP_OK empties this thread's last error, so that a message
 * left by an earlier failure (of another call, or one this call recovered from, such as a
 * recompute mode that does not fit) is never read after a success. Every return of a public
 * function that returns dp_status is either `return dp_fail(...)` or `return dp_done(s)`. */
static inline dp_status dp_done(dp_status s)
{
    return (dp_status)rt_lasterr_done(&dp_lasterr, (int)s);
}

/* Read a whole file into a malloc'd buffer (NUL-terminated; *len excludes the NUL). */
dp_status dp_read_file(const char *path, char **buf, size_t *len);

/* ---- CSV: comma-separated, no quoting, '#' comment lines and blank lines skipped ---- */

#define DP_CSV_MAX_FIELDS 16

typedef struct dp_csv {
    const char *p, *end; /* what is left of the text */
    const char *name;    /* for messages */
    int line;            /* 1-based number of the line last read */
    int nf;              /* fields on that line */
    const char *f[DP_CSV_MAX_FIELDS];
    size_t flen[DP_CSV_MAX_FIELDS];
} dp_csv;

void dp_csv_init(dp_csv *c, const char *text, size_t len, const char *name);
/* Next non-blank, non-comment line split into fields: 1, 0 at the end, -1 (DP_EFORMAT set)
 * when it has more than DP_CSV_MAX_FIELDS fields. */
int dp_csv_next(dp_csv *c);
/* Index of the header field `name` on the current line, or -1. */
int dp_csv_col(const dp_csv *c, const char *name);
/* Field i as a number: 0, or -1 when empty or not a whole number / finite double. */
int dp_csv_int(const dp_csv *c, int i, long *v);
int dp_csv_double(const dp_csv *c, int i, double *v);
/* True when field i is empty. */
int dp_csv_empty(const dp_csv *c, int i);

/* ---- random numbers (splitmix64): the same stream for the same seed on every machine ---- */

typedef struct dp_rng {
    uint64_t s;
} dp_rng;
uint64_t dp_rng_next(dp_rng *r);
double dp_rng_uniform(dp_rng *r); /* [0, 1) */
double dp_rng_normal(dp_rng *r);  /* standard normal (Box-Muller) */

/* ---- the cost model's grids ---- */

/* One profiled quantity on a grid of (mbs, x1[, x2]): dense, NAN where not profiled. */
typedef struct dp_grid {
    int n[3];    /* axis sizes: mbs, x1, x2 (n[2] = 1 for 2-D grids) */
    int *ax[3];  /* sorted axis values */
    double *v;   /* n[0] * n[1] * n[2] values, index (i0 * n[1] + i1) * n[2] + i2 */
    int present; /* profiled points */
} dp_grid;

enum { DP_Q_FWD = 0, DP_Q_BWD, DP_Q_STORED, DP_Q_PEAK, DP_QUANTITIES };

struct dp_cost_model {
    char name[64];
    char files[3][256]; /* time, memory, state: for messages */
    int tp;
    bool encdec;
    bool monotone;
    unsigned rc_avail; /* bit dp_rc */
    dp_grid g[DP_RC_COUNT][DP_COMPONENTS][DP_QUANTITIES];
    double param_mb[DP_RC_COUNT][DP_COMPONENTS]; /* [.][DP_POSTPROCESS] = embedding */
    int max_len, max_target;
};

double dp_grid_eval(const dp_grid *g, int mbs, int x1, int x2);

static inline double dp_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#pragma GCC visibility pop

#endif
