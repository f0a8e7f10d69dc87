/* partition.c: the exact micro-batch DP (docs/dynapipe.md). The ordered samples are cut into
 * contiguous micro-batches minimising (S - 1) * T_max + f_T(N) / D, where f_T(n) =
 * min_i f_T(i) + c(i, n) over micro-batches [i, n) with c(i, n) <= T_max that fit the memory
 * limit, and c is the slowest stage's forward + backward time of the padded micro-batch.
 *
 * Sections: the cost table, one DP for a bound T, the walk over T_max candidates.
 *
 * Why the walk is exact: T_max candidates are the finite c(i, n). Starting from T = infinity,
 * each DP returns f_T(N) and the largest cost T_u on its optimal path; every bound in
 * [T_u, T] gives the same f, so the next bound tried is the largest candidate below T_u.
 * The walk stops when (S - 1) * T_min + f_T(N) / D cannot beat the best objective (f only
 * grows as T shrinks; T_min is the smallest feasible bottleneck, from a min-max DP). For the
 * optimal partition P* with bottleneck M*, the last bound tried that is >= M* has f <= cost
 * of P* and T_u <= M* (else M* itself would have been tried next), so its objective is
 * optimal; a stop by the bound means the best found already is <= P*'s. The walk also jumps
 * over bounds T' with (S - 1) * T' + f_T(N) / D >= best: f only grows below T, so none of them
 * can win. Recompute modes share the best objective found so far, so a mode that cannot beat
 * it stops early. tmax_tol > 0 steps to the largest candidate below T_u * (1 - tol) instead:
 * faster, within that factor. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- the cost table ---------------------------------------------------------------------- */

/* c(e - k, e) for k = 1..w[e] at c[off[e] + k - 1] (INFINITY where infeasible), and the
 * recompute mode that gives it at r[off[e] + k - 1]. */
typedef struct cost_table {
    size_t n;
    size_t *off, *w;
    double *c;
    unsigned char *r;
    size_t used, cap;
    size_t first_bad; /* a sample that is infeasible alone, or n */
    char why[160];
} cost_table;

static dp_status table_push(cost_table *t, double c, int rc)
{
    if (t->used == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        double *nc = realloc(t->c, cap * sizeof *nc);
        if (nc)
            t->c = nc;
        unsigned char *nr = realloc(t->r, cap);
        if (nr)
            t->r = nr;
        if (!nc || !nr)
            return dp_fail(DP_ENOMEM, "out of memory in the micro-batch DP");
        t->cap = cap;
    }
    t->c[t->used] = c;
    t->r[t->used++] = (unsigned char)rc;
    return DP_OK;
}

/* The cheapest feasible mode of `modes` for one micro-batch; INFINITY (with why) if none. */
static double cheapest(const dp_cost_model *cm, const dp_config *cfg, unsigned modes, int k,
                       int pin, int ptgt, int *rc, char *why, size_t whylen)
{
    double best = INFINITY;
    dp_mb_eval ev;
    for (int m = 0; m < DP_RC_COUNT; m++) {
        if (!(modes & (1u << m)))
            continue;
        dp_mb_evaluate(cm, cfg, (dp_rc)m, k, pin, ptgt, &ev);
        if (ev.feasible && ev.cost_ms < best) {
            best = ev.cost_ms;
            *rc = m;
        } else if (!ev.feasible && best == INFINITY) {
            snprintf(why, whylen, "%s", ev.why);
        }
    }
    return best;
}

/* The padded shape of a micro-batch from its maxima: a T5 micro-batch pads inputs and targets
 * separately; a GPT sample is one sequence, so max_in is already the longest input + target. */
static void padded(const dp_cost_model *cm, const dp_config *cfg, int max_in, int max_tgt, int *pin,
                   int *ptgt)
{
    *pin = dp_pad(max_in, cfg->pad_multiple);
    *ptgt = dp_cost_model_encdec(cm) ? dp_pad(max_tgt, cfg->pad_multiple) : 0;
}

/* Extending a micro-batch to the left only adds a sample and raises maxima, so with a
 * monotone cost model the first infeasible extension ends the row. */
static dp_status table_build(const dp_cost_model *cm, const dp_config *cfg, unsigned modes,
                             const dp_sample *s, size_t n, cost_table *t)
{
    memset(t, 0, sizeof *t);
    t->n = n;
    t->first_bad = n;
    t->off = calloc(n + 1, sizeof *t->off);
    t->w = calloc(n + 1, sizeof *t->w);
    if (!t->off || !t->w)
        return dp_fail(DP_ENOMEM, "out of memory in the micro-batch DP");
    bool stop_early = dp_cost_model_monotone(cm), t5 = dp_cost_model_encdec(cm);
    char why[160] = "";
    for (size_t e = 1; e <= n; e++) {
        t->off[e] = t->used;
        int max_in = 0, max_tgt = 0;
        for (size_t k = 1; k <= e; k++) {
            const dp_sample *x = &s[e - k];
            int in = t5 ? x->input_len : x->input_len + x->target_len, pin, ptgt, rc = 0;
            max_in = in > max_in ? in : max_in;
            max_tgt = x->target_len > max_tgt ? x->target_len : max_tgt;
            padded(cm, cfg, max_in, max_tgt, &pin, &ptgt);
            double c = cheapest(cm, cfg, modes, (int)k, pin, ptgt, &rc, why, sizeof why);
            if (c == INFINITY && k == 1 && t->first_bad == n) {
                t->first_bad = e - 1;
                memcpy(t->why, why, sizeof t->why);
            }
            if (c == INFINITY && stop_early)
                break;
            dp_status st = table_push(t, c, rc);
            if (st != DP_OK)
                return st;
            t->w[e] = k;
        }
    }
    return DP_OK;
}

static void table_free(cost_table *t)
{
    free(t->off);
    free(t->w);
    free(t->c);
    free(t->r);
}

/* ---- one DP for a bound T ---------------------------------------------------------------- */

typedef struct dp_state {
    double *f, *u; /* f_T(e) and the largest micro-batch cost on its path */
    size_t *arg;   /* the micro-batch length k that ends the path at e */
} dp_state;

static void run_dp(const cost_table *t, double T, dp_state *d)
{
    d->f[0] = 0;
    d->u[0] = 0;
    for (size_t e = 1; e <= t->n; e++) {
        double best = INFINITY, bu = INFINITY;
        size_t bk = 0;
        const double *row = t->c + t->off[e];
        for (size_t k = 1; k <= t->w[e]; k++) {
            double c = row[k - 1], prev = d->f[e - k];
            if (c > T || prev == INFINITY)
                continue;
            double v = prev + c, uu = fmax(d->u[e - k], c);
            if (v < best || (v == best && uu < bu)) {
                best = v;
                bu = uu;
                bk = k;
            }
        }
        d->f[e] = best;
        d->u[e] = bu;
        d->arg[e] = bk;
    }
}

/* The smallest achievable bottleneck: g(e) = min_k max(g(e - k), c(e - k, e)). */
static double min_bottleneck(const cost_table *t, double *g)
{
    g[0] = 0;
    for (size_t e = 1; e <= t->n; e++) {
        g[e] = INFINITY;
        const double *row = t->c + t->off[e];
        for (size_t k = 1; k <= t->w[e]; k++)
            g[e] = fmin(g[e], fmax(g[e - k], row[k - 1]));
    }
    return g[t->n];
}

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* Finite costs, sorted descending, unique. */
static double *candidates(const cost_table *t, size_t *m)
{
    double *v = malloc((t->used ? t->used : 1) * sizeof *v);
    if (!v)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < t->used; i++)
        if (t->c[i] != INFINITY)
            v[k++] = t->c[i];
    qsort(v, k, sizeof *v, cmp_desc);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (u == 0 || v[u - 1] != v[i])
            v[u++] = v[i];
    *m = u;
    return v;
}

/* The first index of the descending list with a value < x (m when none). */
static size_t first_below(const double *v, size_t m, double x)
{
    size_t lo = 0, hi = m;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v[mid] < x)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* ---- the walk over T_max candidates ---------------------------------------------------- */

static dp_status keep_cuts(const cost_table *t, const dp_state *d, dp_partition *out)
{
    size_t cnt = 0, n = t->n;
    for (size_t e = n; e > 0; e -= d->arg[e])
        cnt++;
    size_t *cut = malloc((cnt + 1) * sizeof *cut);
    dp_rc *rc = malloc(cnt * sizeof *rc);
    if (!cut || !rc) {
        free(cut);
        free(rc);
        return dp_fail(DP_ENOMEM, "out of memory in the micro-batch DP");
    }
    size_t k = cnt;
    cut[k] = n;
    for (size_t e = n; e > 0; e -= d->arg[e]) {
        size_t at = t->off[e] + d->arg[e] - 1;
        cut[--k] = e - d->arg[e];
        rc[k] = (dp_rc)t->r[at];
        if (t->c[at] == d->u[n])
            out->rc = rc[k]; /* the slowest micro-batch's mode */
    }
    free(out->cut);
    free(out->mb_rc);
    out->cut = cut;
    out->mb_rc = rc;
    out->n_mb = cnt;
    return DP_OK;
}

/* incumbent: an objective already reached (by another recompute mode): partitions that
 * cannot beat it are not looked for, and out->cut stays NULL when none does. */
static dp_status walk(const cost_table *t, const dp_config *cfg, dp_state *d, double t_min,
                      double incumbent, dp_partition *out)
{
    size_t m;
    double *cand = candidates(t, &m);
    if (!cand)
        return dp_fail(DP_ENOMEM, "out of memory in the micro-batch DP");
    double S1 = cfg->stages - 1, D = cfg->dp_size, best = incumbent, T = INFINITY;
    dp_status st = DP_OK;
    for (;;) {
        run_dp(t, T, d);
        out->candidates++;
        double f = d->f[t->n], tu = d->u[t->n];
        if (f == INFINITY)
            break;
        double obj = S1 * tu + f / D;
        if (obj < best) {
            best = obj;
            out->objective_ms = obj;
            out->t_max_ms = tu;
            out->sum_ms = f;
            if ((st = keep_cuts(t, d, out)) != DP_OK)
                break;
        }
        if (S1 * t_min + f / D >= best)
            break;
        /* f only grows as the bound shrinks, so a bound T' helps only if
         * (S - 1) * T' + f / D < best: jump below that too. */
        double below = tu * (1 - cfg->tmax_tol);
        if (S1 > 0)
            below = fmin(below, (best - f / D) / S1);
        size_t i = first_below(cand, m, below);
        if (i == m || cand[i] < t_min)
            break;
        T = cand[i];
    }
    free(cand);
    return st;
}

void dp_partition_free(dp_partition *p)
{
    free(p->cut);
    free(p->mb_rc);
    memset(p, 0, sizeof *p);
}

/* The DP over `modes` (one bit: a single recompute mode; several: each micro-batch its
 * cheapest feasible one). */
static dp_status partition_modes(const dp_cost_model *cm, const dp_config *cfg, unsigned modes,
                                 const dp_sample *ordered, size_t n, double incumbent,
                                 dp_partition *out)
{
    memset(out, 0, sizeof *out);
    out->rc_mixed = (modes & (modes - 1)) != 0;
    for (int m = DP_RC_COUNT - 1; m >= 0; m--)
        if (modes & (1u << m))
            out->rc = (dp_rc)m;
    if (n == 0)
        return dp_fail(DP_EEMPTY, "empty batch: nothing to partition");
    for (int m = 0; m < DP_RC_COUNT; m++)
        if ((modes & (1u << m)) && !dp_cost_model_has_rc(cm, (dp_rc)m))
            return dp_fail(DP_EGRID, "%s has no profile for recompute %s", dp_cost_model_name(cm),
                           dp_rc_name((dp_rc)m));
    cost_table t;
    dp_status st = table_build(cm, cfg, modes, ordered, n, &t);
    dp_state d = {calloc(n + 1, sizeof(double)), calloc(n + 1, sizeof(double)),
                  calloc(n + 1, sizeof(size_t))};
    if (st == DP_OK && (!d.f || !d.u || !d.arg))
        st = dp_fail(DP_ENOMEM, "out of memory in the micro-batch DP");
    if (st == DP_OK && t.first_bad < n)
        st = dp_fail(DP_EINFEASIBLE, "sample at position %zu (input %d, target %d) alone: %s",
                     t.first_bad, ordered[t.first_bad].input_len, ordered[t.first_bad].target_len,
                     t.why);
    if (st == DP_OK) {
        double t_min = min_bottleneck(&t, d.f);
        st = walk(&t, cfg, &d, t_min, incumbent, out);
        if (st == DP_OK && !out->cut && incumbent == INFINITY)
            st = dp_fail(DP_EINFEASIBLE, "no feasible partition (recompute %s)",
                         out->rc_mixed ? "per micro-batch" : dp_rc_name(out->rc));
    }
    free(d.f);
    free(d.u);
    free(d.arg);
    table_free(&t);
    if (st != DP_OK)
        dp_partition_free(out);
    return st;
}

dp_status dp_partition_rc(const dp_cost_model *cm, const dp_config *cfg, dp_rc rc,
                          const dp_sample *ordered, size_t n, dp_partition *out)
{
    if ((unsigned)rc >= DP_RC_COUNT) {
        memset(out, 0, sizeof *out);
        return dp_fail(DP_EINVAL, "recompute mode %d", (int)rc);
    }
    return dp_done(partition_modes(cm, cfg, 1u << rc, ordered, n, INFINITY, out));
}

dp_status dp_partition_best(const dp_cost_model *cm, const dp_config *cfg, const dp_sample *ordered,
                            size_t n, dp_partition *out)
{
    memset(out, 0, sizeof *out);
    unsigned modes = 0;
    for (int rc = 0; rc < DP_RC_COUNT; rc++)
        if ((cfg->rc_mask & (1u << rc)) && dp_cost_model_has_rc(cm, (dp_rc)rc))
            modes |= 1u << rc;
    if (!modes)
        return dp_fail(DP_EINVAL, "no recompute mode selected is profiled by %s",
                       dp_cost_model_name(cm));
    if (cfg->rc_per_microbatch)
        return dp_done(partition_modes(cm, cfg, modes, ordered, n, INFINITY, out));
    dp_status last = DP_EINFEASIBLE;
    for (int rc = 0; rc < DP_RC_COUNT; rc++) {
        if (!(cfg->rc_mask & (1u << rc)) || !dp_cost_model_has_rc(cm, (dp_rc)rc))
            continue;
        dp_partition p;
        double incumbent = out->cut ? out->objective_ms : INFINITY;
        dp_status st = partition_modes(cm, cfg, 1u << rc, ordered, n, incumbent, &p);
        if (st != DP_OK) {
            last = st;
            continue;
        }
        if (p.cut && (!out->cut || p.objective_ms < out->objective_ms)) {
            size_t cands = out->candidates + p.candidates;
            dp_partition_free(out);
            *out = p;
            out->candidates = cands;
        } else {
            out->candidates += p.candidates;
            dp_partition_free(&p);
        }
    }
    return dp_done(out->cut ? DP_OK : last);
}
