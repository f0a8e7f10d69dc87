/* plan.c: planning one global batch end to end, for DynaPipe and for the baselines on the
 * same cost model: sample checks, micro-batches (the DP, or a baseline's fixed rule), the
 * recompute mode, the split over data-parallel replicas, the schedule with the shortest
 * simulated makespan that fits, and the throughput.
 *
 * Sections: checks, micro-batch lists, the baselines, schedules and replicas, dp_plan.
 *
 * Baselines (each with the recompute mode and micro-batch size that minimise the same
 * objective (S - 1) * T_max + sum / D, so each is at its best):
 *  - padding: samples in arrival order, every one padded to the batch's maxima, b per
 *    micro-batch;
 *  - packing (Megatron-style): GPT documents are concatenated and cut into rows of pack_len
 *    tokens; T5 (input, target) pairs go first-fit into rows of pack_len x pack_target_len;
 *    b rows per micro-batch, each computed at the full row length;
 *  - token budget: the DP's order, cut greedily when the padded tokens of the micro-batch
 *    would pass token_budget (or it would not fit). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

const char *dp_method_name(dp_method m)
{
    static const char *const n[] = {"dynapipe", "padding", "packing", "token_budget"};
    return (unsigned)m < DP_METHOD_COUNT ? n[m] : "?";
}

/* ---- checks ---------------------------------------------------------------------------- */

static int max_len(const dp_cost_model *cm, const dp_config *cfg, int *max_tgt)
{
    int gt, g = dp_cost_model_max_len(cm, &gt);
    *max_tgt = cfg->max_target > 0 && cfg->max_target < gt ? cfg->max_target : gt;
    return cfg->max_len > 0 && cfg->max_len < g ? cfg->max_len : g;
}

static dp_status check_sample(const dp_cost_model *cm, const dp_config *cfg, const dp_sample *x,
                              size_t i)
{
    bool t5 = dp_cost_model_encdec(cm);
    int mt, m = max_len(cm, cfg, &mt);
    if (x->input_len <= 0)
        return dp_fail(DP_ERANGE, "sample %zu: input length %d (lengths must be > 0)", i,
                       x->input_len);
    if (t5 && x->target_len <= 0)
        return dp_fail(
            DP_ERANGE,
            "sample %zu: target length %d (an encoder-decoder sample needs a target > 0)", i,
            x->target_len);
    if (x->target_len < 0)
        return dp_fail(DP_ERANGE, "sample %zu: target length %d < 0", i, x->target_len);
    long seq = t5 ? x->input_len : (long)x->input_len + x->target_len;
    if (seq > m)
        return dp_fail(DP_ERANGE,
                       "sample %zu (input %d, target %d): %s %ld exceeds the model maximum %d", i,
                       x->input_len, x->target_len, t5 ? "input" : "sequence", seq, m);
    if (t5 && x->target_len > mt)
        return dp_fail(DP_ERANGE,
                       "sample %zu (input %d, target %d): target exceeds the model maximum %d", i,
                       x->input_len, x->target_len, mt);
    return DP_OK;
}

/* The model state must leave room on every stage under some recompute mode. */
static dp_status check_state(const dp_cost_model *cm, const dp_config *cfg)
{
    double worst = INFINITY;
    int at = 0;
    for (int rc = 0; rc < DP_RC_COUNT; rc++) {
        if (!(cfg->rc_mask & (1u << rc)) || !dp_cost_model_has_rc(cm, (dp_rc)rc))
            continue;
        double w = 0;
        int ws = 0;
        for (int s = 0; s < cfg->stages; s++) {
            double st = dp_stage_state_mb(cm, cfg, (dp_rc)rc, s);
            if (st > w) {
                w = st;
                ws = s;
            }
        }
        if (w < worst) {
            worst = w;
            at = ws;
        }
    }
    if (!(worst < cfg->memory_mb))
        return dp_fail(
            DP_EINFEASIBLE,
            "--memory-mb %.0f is below the model state of stage %d (%.0f MB: parameters x param factor %g); more stages or more memory needed",
            cfg->memory_mb, at, worst, cfg->param_factor);
    return DP_OK;
}

/* Every sample alone fits under some allowed mode. */
static dp_status check_alone(const dp_cost_model *cm, const dp_config *cfg, const dp_sample *x,
                             size_t i)
{
    bool t5 = dp_cost_model_encdec(cm);
    int pin = dp_pad(t5 ? x->input_len : x->input_len + x->target_len, cfg->pad_multiple);
    int ptgt = t5 ? dp_pad(x->target_len, cfg->pad_multiple) : 0;
    dp_mb_eval ev;
    char why[160] = "no recompute mode selected";
    for (int rc = 0; rc < DP_RC_COUNT; rc++) {
        if (!(cfg->rc_mask & (1u << rc)) || !dp_cost_model_has_rc(cm, (dp_rc)rc))
            continue;
        dp_mb_evaluate(cm, cfg, (dp_rc)rc, 1, pin, ptgt, &ev);
        if (ev.feasible)
            return DP_OK;
        memcpy(why, ev.why, sizeof why);
    }
    return dp_fail(DP_EINFEASIBLE, "sample %zu (input %d, target %d) does not fit alone: %s", i,
                   x->input_len, x->target_len, why);
}

dp_status dp_validate(const dp_cost_model *cm, const dp_config *cfg, const dp_sample *s, size_t n)
{
    dp_status st = dp_config_check(cfg);
    if (st != DP_OK)
        return dp_done(st);
    if (n == 0 || !s)
        return dp_fail(DP_EEMPTY, "empty batch: no samples to plan");
    for (size_t i = 0; i < n; i++)
        if ((st = check_sample(cm, cfg, &s[i], i)) != DP_OK)
            return dp_done(st);
    if ((st = check_state(cm, cfg)) != DP_OK)
        return dp_done(st);
    for (size_t i = 0; i < n; i++)
        if ((st = check_alone(cm, cfg, &s[i], i)) != DP_OK)
            return dp_done(st);
    return dp_done(DP_OK);
}

/* ---- micro-batch lists ------------------------------------------------------------------- */

/* A micro-batch list under construction: shapes and sample indices. */
typedef struct mb_list {
    dp_microbatch *v;
    size_t n, cap;
} mb_list;

static void list_free(mb_list *l)
{
    for (size_t k = 0; k < l->n; k++)
        free(l->v[k].samples);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static dp_status list_add(mb_list *l, const size_t *idx, size_t n, int mbs, int pin, int ptgt,
                          dp_rc rc)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        dp_microbatch *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return dp_fail(DP_ENOMEM, "out of memory planning");
        l->v = v;
        l->cap = cap;
    }
    dp_microbatch *m = &l->v[l->n];
    memset(m, 0, sizeof *m);
    m->samples = malloc((n ? n : 1) * sizeof *m->samples);
    if (!m->samples)
        return dp_fail(DP_ENOMEM, "out of memory planning");
    if (n)
        memcpy(m->samples, idx, n * sizeof *idx);
    m->n = n;
    m->mbs = mbs;
    m->rc = rc;
    m->padded_input = pin;
    m->padded_target = ptgt;
    l->n++;
    return DP_OK;
}

/* The padded shape of samples idx[0..n). */
static void shape_of(const dp_cost_model *cm, const dp_config *cfg, const dp_sample *s,
                     const size_t *idx, size_t n, int *pin, int *ptgt)
{
    bool t5 = dp_cost_model_encdec(cm);
    int mi = 0, mt = 0; /* GPT: the longest input + target, one sequence */
    for (size_t k = 0; k < n; k++) {
        const dp_sample *x = &s[idx[k]];
        int in = t5 ? x->input_len : x->input_len + x->target_len;
        mi = in > mi ? in : mi;
        mt = x->target_len > mt ? x->target_len : mt;
    }
    *pin = dp_pad(mi, cfg->pad_multiple);
    *ptgt = t5 ? dp_pad(mt, cfg->pad_multiple) : 0;
}

/* Evaluate every micro-batch under its mode; objective (S - 1) * T_max + sum / D, or
 * INFINITY. */
static double list_objective(const dp_cost_model *cm, const dp_config *cfg, mb_list *l, bool keep)
{
    double sum = 0, mx = 0;
    dp_mb_eval ev;
    for (size_t k = 0; k < l->n; k++) {
        dp_microbatch *m = &l->v[k];
        dp_mb_evaluate(cm, cfg, m->rc, m->mbs, m->padded_input, m->padded_target, &ev);
        if (!ev.feasible)
            return INFINITY;
        sum += ev.cost_ms;
        mx = fmax(mx, ev.cost_ms);
        if (keep) {
            m->cost_ms = ev.cost_ms;
            memcpy(m->times.fwd_ms, ev.fwd_ms, sizeof ev.fwd_ms);
            memcpy(m->times.bwd_ms, ev.bwd_ms, sizeof ev.bwd_ms);
            memcpy(m->times.stored_mb, ev.stored_mb, sizeof ev.stored_mb);
            memcpy(m->times.peak_mb, ev.peak_mb, sizeof ev.peak_mb);
            m->times.comm_ms = ev.comm_ms;
        }
    }
    return (cfg->stages - 1) * mx + sum / cfg->dp_size;
}

/* ---- DynaPipe and the baselines ------------------------------------------------------------ */

static dp_status plan_dynapipe(const dp_cost_model *cm, const dp_config *cfg, const dp_sample *s,
                               size_t n, mb_list *l, dp_rc *rc, bool *mixed)
{
    size_t *order = malloc(n * sizeof *order);
    dp_sample *os = malloc(n * sizeof *os);
    dp_status st = order && os ? dp_order(s, n, dp_cost_model_encdec(cm), order)
                               : dp_fail(DP_ENOMEM, "out of memory planning");
    for (size_t i = 0; st == DP_OK && i < n; i++)
        os[i] = s[order[i]];
    dp_partition p = {0};
    if (st == DP_OK)
        st = dp_partition_best(cm, cfg, os, n, &p);
    for (size_t k = 0; st == DP_OK && k < p.n_mb; k++) {
        int pin, ptgt;
        size_t a = p.cut[k], cnt = p.cut[k + 1] - a;
        shape_of(cm, cfg, s, order + a, cnt, &pin, &ptgt);
        st = list_add(l, order + a, cnt, (int)cnt, pin, ptgt, p.mb_rc[k]);
    }
    *rc = p.rc;
    *mixed = p.rc_mixed;
    dp_partition_free(&p);
    free(order);
    free(os);
    return st;
}

/* Groups of b consecutive units (samples or rows) out of n; the best (rc, b) by objective.
 * unit_samples(u) lists the samples of unit u. */
typedef struct grouping {
    size_t units;
    size_t *first, *count; /* per unit: its samples in idx[first .. first + count) */
    size_t *idx;
    int pin, ptgt;
} grouping;

static double group_objective(const dp_cost_model *cm, const dp_config *cfg, dp_rc rc,
                              const grouping *g, size_t b)
{
    dp_mb_eval full, rest;
    dp_mb_evaluate(cm, cfg, rc, (int)b, g->pin, g->ptgt, &full);
    size_t nfull = g->units / b, r = g->units % b;
    if (!full.feasible || nfull == 0)
        return INFINITY;
    double mx = full.cost_ms, sum = (double)nfull * full.cost_ms;
    if (r) {
        dp_mb_evaluate(cm, cfg, rc, (int)r, g->pin, g->ptgt, &rest);
        sum += rest.cost_ms; /* feasible: fewer units than a feasible group */
        mx = fmax(mx, rest.cost_ms);
    }
    return (cfg->stages - 1) * mx + sum / cfg->dp_size;
}

static dp_status group_into(const dp_cost_model *cm, const dp_config *cfg, const grouping *g,
                            mb_list *l, dp_rc *rc_out, const char *what)
{
    double best = INFINITY;
    size_t bb = 0;
    for (int rc = 0; rc < DP_RC_COUNT; rc++) {
        if (!(cfg->rc_mask & (1u << rc)) || !dp_cost_model_has_rc(cm, (dp_rc)rc))
            continue;
        for (size_t b = 1; b <= g->units; b++) {
            double o = group_objective(cm, cfg, (dp_rc)rc, g, b);
            if (o == INFINITY && b > 1)
                break; /* larger groups only grow */
            if (o < best) {
                best = o;
                bb = b;
                *rc_out = (dp_rc)rc;
            }
        }
    }
    if (bb == 0)
        return dp_fail(
            DP_EINFEASIBLE,
            "%s: one %s of shape (%d, %d) does not fit any recompute mode under --memory-mb %.0f",
            what, strcmp(what, "packing") == 0 ? "row" : "sample", g->pin, g->ptgt, cfg->memory_mb);
    dp_status st = DP_OK;
    for (size_t u = 0; st == DP_OK && u < g->units; u += bb) {
        size_t e = u + bb < g->units ? u + bb : g->units;
        size_t a = g->first[u], z = g->first[e - 1] + g->count[e - 1];
        st = list_add(l, g->idx + a, z - a, (int)(e - u), g->pin, g->ptgt, *rc_out);
    }
    return st;
}

static void grouping_free(grouping *g)
{
    free(g->first);
    free(g->count);
    free(g->idx);
}

static dp_status plan_padding(const dp_cost_model *cm, const dp_config *cfg, const dp_sample *s,
                              size_t n, mb_list *l, dp_rc *rc)
{
    grouping g = {0};
    g.units = n;
    g.first = malloc(n * sizeof(size_t));
    g.count = malloc(n * sizeof(size_t));
    g.idx = malloc(n * sizeof(size_t));
    if (!g.first || !g.count || !g.idx) {
        grouping_free(&g);
        return dp_fail(DP_ENOMEM, "out of memory planning");
    }
    for (size_t i = 0; i < n; i++) {
        g.first[i] = g.idx[i] = i;
        g.count[i] = 1;
    }
    shape_of(cm, cfg, s, g.idx, n, &g.pin, &g.ptgt);
    dp_status st = group_into(cm, cfg, &g, l, rc, "padding");
    grouping_free(&g);
    return st;
}

/* GPT: concatenate and cut into rows of pack_len tokens. Sample indices may repeat across
 * rows (a document split over two rows). */
static dp_status pack_gpt(const dp_config *cfg, const dp_sample *s, size_t n, grouping *g)
{
    long total = 0;
    for (size_t i = 0; i < n; i++)
        total += (long)s[i].input_len + s[i].target_len;
    g->units = (size_t)((total + cfg->pack_len - 1) / cfg->pack_len);
    g->first = malloc(g->units * sizeof(size_t));
    g->count = calloc(g->units, sizeof(size_t));
    g->idx = malloc((n + g->units) * sizeof(size_t));
    if (!g->first || !g->count || !g->idx)
        return dp_fail(DP_ENOMEM, "out of memory packing");
    size_t k = 0, row = 0;
    long pos = 0; /* start of sample i in the concatenation */
    g->first[0] = 0;
    for (size_t i = 0; i < n; i++) {
        long len = (long)s[i].input_len + s[i].target_len, end = pos + len;
        for (;;) {
            g->idx[k++] = i;
            g->count[row]++;
            long row_end = (long)(row + 1) * cfg->pack_len;
            if (end <= row_end || row + 1 == g->units)
                break;
            g->first[++row] = k;
        }
        pos = end;
        if (pos == (long)(row + 1) * cfg->pack_len && row + 1 < g->units)
            g->first[++row] = k;
    }
    g->pin = cfg->pack_len;
    g->ptgt = 0;
    return DP_OK;
}

/* T5: first fit of (input, target) pairs into rows of pack_len x pack_target_len. */
static dp_status pack_t5(const dp_config *cfg, const dp_sample *s, size_t n, grouping *g)
{
    int *used = calloc(2 * n, sizeof *used);
    size_t *row_of = malloc(n * sizeof *row_of);
    g->first = calloc(n, sizeof(size_t));
    g->count = calloc(n, sizeof(size_t));
    g->idx = malloc(n * sizeof(size_t));
    dp_status st = used && row_of && g->first && g->count && g->idx
                       ? DP_OK
                       : dp_fail(DP_ENOMEM, "out of memory packing");
    size_t rows = 0;
    for (size_t i = 0; st == DP_OK && i < n; i++) {
        if (s[i].input_len > cfg->pack_len || s[i].target_len > cfg->pack_target_len) {
            st = dp_fail(
                DP_ERANGE,
                "packing: sample %zu (input %d, target %d) is longer than a row (--pack-len %d, --pack-target-len %d)",
                i, s[i].input_len, s[i].target_len, cfg->pack_len, cfg->pack_target_len);
            break;
        }
        size_t r = 0;
        while (r < rows && (used[2 * r] + s[i].input_len > cfg->pack_len ||
                            used[2 * r + 1] + s[i].target_len > cfg->pack_target_len))
            r++;
        rows += r == rows;
        used[2 * r] += s[i].input_len;
        used[2 * r + 1] += s[i].target_len;
        row_of[i] = r;
        g->count[r]++;
    }
    g->units = rows;
    for (size_t r = 1; st == DP_OK && r < rows; r++)
        g->first[r] = g->first[r - 1] + g->count[r - 1];
    if (st == DP_OK) { /* used[] now counts the samples placed in each row */
        memset(used, 0, 2 * n * sizeof *used);
        for (size_t i = 0; i < n; i++)
            g->idx[g->first[row_of[i]] + (size_t)used[row_of[i]]++] = i;
    }
    g->pin = dp_pad(cfg->pack_len, cfg->pad_multiple);
    g->ptgt = dp_pad(cfg->pack_target_len, cfg->pad_multiple);
    free(used);
    free(row_of);
    return st;
}

static dp_status plan_packing(const dp_cost_model *cm, const dp_config *cfg, const dp_sample *s,
                              size_t n, mb_list *l, dp_rc *rc)
{
    grouping g = {0};
    dp_status st = dp_cost_model_encdec(cm) ? pack_t5(cfg, s, n, &g) : pack_gpt(cfg, s, n, &g);
    if (st == DP_OK)
        st = group_into(cm, cfg, &g, l, rc, "packing");
    grouping_free(&g);
    return st;
}

/* The DP's order, cut greedily at the budget (or where the micro-batch would not fit). */
static dp_status budget_list(const dp_cost_model *cm, const dp_config *cfg, dp_rc rc,
                             const dp_sample *s, const size_t *order, size_t n, mb_list *l)
{
    dp_status st = DP_OK;
    dp_mb_eval ev;
    for (size_t a = 0; st == DP_OK && a < n;) {
        size_t b = a + 1;
        int pin, ptgt;
        while (b < n) {
            shape_of(cm, cfg, s, order + a, b + 1 - a, &pin, &ptgt);
            if ((long)(b + 1 - a) * (pin + ptgt) > cfg->token_budget)
                break;
            dp_mb_evaluate(cm, cfg, rc, (int)(b + 1 - a), pin, ptgt, &ev);
            if (!ev.feasible)
                break;
            b++;
        }
        shape_of(cm, cfg, s, order + a, b - a, &pin, &ptgt);
        st = list_add(l, order + a, b - a, (int)(b - a), pin, ptgt, rc);
        a = b;
    }
    return st;
}

static dp_status plan_budget(const dp_cost_model *cm, const dp_config *cfg, const dp_sample *s,
                             size_t n, mb_list *l, dp_rc *rc)
{
    size_t *order = malloc(n * sizeof *order);
    dp_status st = order ? dp_order(s, n, dp_cost_model_encdec(cm), order)
                         : dp_fail(DP_ENOMEM, "out of memory planning");
    double best = INFINITY;
    for (int r = 0; st == DP_OK && r < DP_RC_COUNT; r++) {
        if (!(cfg->rc_mask & (1u << r)) || !dp_cost_model_has_rc(cm, (dp_rc)r))
            continue;
        mb_list t = {0};
        st = budget_list(cm, cfg, (dp_rc)r, s, order, n, &t);
        double o = st == DP_OK ? list_objective(cm, cfg, &t, false) : INFINITY;
        if (o < best) {
            best = o;
            *rc = (dp_rc)r;
            list_free(l);
            *l = t;
        } else {
            list_free(&t);
        }
    }
    free(order);
    if (st == DP_OK && best == INFINITY)
        st = dp_fail(DP_EINFEASIBLE, "token budget: no recompute mode fits every micro-batch");
    return st;
}

/* ---- schedules and replicas ----------------------------------------------------------------- */

/* Longest processing time first: each micro-batch to the least loaded replica; a replica's
 * micro-batches keep the list's order. */
static dp_status split_replicas(const dp_config *cfg, dp_result *r)
{
    int D = cfg->dp_size;
    r->replicas = D;
    r->replica_mb = calloc((size_t)D, sizeof *r->replica_mb);
    r->replica_n = calloc((size_t)D, sizeof *r->replica_n);
    double *load = calloc((size_t)D, sizeof *load);
    size_t *by_cost = malloc((r->n_mb ? r->n_mb : 1) * sizeof *by_cost);
    dp_status st = r->replica_mb && r->replica_n && load && by_cost
                       ? DP_OK
                       : dp_fail(DP_ENOMEM, "out of memory planning");
    for (size_t k = 0; st == DP_OK && k < r->n_mb; k++)
        by_cost[k] = k;
    for (size_t k = 1; st == DP_OK && k < r->n_mb; k++) /* insertion sort, descending */
        for (size_t j = k; j > 0 && r->mb[by_cost[j]].cost_ms > r->mb[by_cost[j - 1]].cost_ms;
             j--) {
            size_t t = by_cost[j];
            by_cost[j] = by_cost[j - 1];
            by_cost[j - 1] = t;
        }
    for (size_t k = 0; st == DP_OK && k < r->n_mb; k++) {
        int best = 0;
        for (int d = 1; d < D; d++)
            if (load[d] < load[best])
                best = d;
        load[best] += r->mb[by_cost[k]].cost_ms;
        r->mb[by_cost[k]].replica = best;
    }
    for (int d = 0; st == DP_OK && d < D; d++) {
        r->replica_mb[d] = malloc((r->n_mb ? r->n_mb : 1) * sizeof(size_t));
        if (!r->replica_mb[d]) {
            st = dp_fail(DP_ENOMEM, "out of memory planning");
            break;
        }
        for (size_t k = 0; k < r->n_mb; k++)
            if (r->mb[k].replica == d)
                r->replica_mb[d][r->replica_n[d]++] = k;
    }
    free(load);
    free(by_cost);
    return st;
}

/* The shortest makespan that fits, among the selected schedules, for one replica. */
static dp_status schedule_replica(const dp_config *cfg, dp_result *r, int d, const double *limit)
{
    size_t m = r->replica_n[d];
    if (m == 0)
        return DP_OK;
    dp_mb_times *t = malloc(m * sizeof *t);
    if (!t)
        return dp_fail(DP_ENOMEM, "out of memory scheduling");
    for (size_t k = 0; k < m; k++)
        t[k] = r->mb[r->replica_mb[d][k]].times;
    dp_status st = DP_OK;
    bool have = false;
    for (int kind = 0; st == DP_OK && kind < DP_SCHED_COUNT; kind++) {
        if (!(cfg->sched_mask & (1u << kind)))
            continue;
        dp_schedule s;
        st = dp_schedule_build((dp_sched_kind)kind, t, (int)m, cfg->stages, limit, &s);
        if (st != DP_OK)
            break;
        if (s.fits && (!have || s.makespan_ms < r->sched[d].makespan_ms)) {
            if (have)
                dp_schedule_free(&r->sched[d]);
            r->sched[d] = s;
            have = true;
        } else {
            dp_schedule_free(&s);
        }
    }
    free(t);
    if (st == DP_OK && !have)
        st = dp_fail(
            DP_EINFEASIBLE,
            "replica %d: no selected schedule keeps the activations of its %zu micro-batches within --memory-mb %.0f",
            d, m, cfg->memory_mb);
    return st;
}

static dp_status schedule_all(const dp_cost_model *cm, const dp_config *cfg, dp_result *r)
{
    double limit[DP_MAX_STAGES];
    for (int s = 0; s < cfg->stages; s++) {
        r->state_mb[s] = dp_stage_state_mb(cm, cfg, r->rc, s);
        limit[s] = cfg->memory_mb - r->state_mb[s];
    }
    dp_status st = split_replicas(cfg, r);
    r->sched = st == DP_OK ? calloc((size_t)cfg->dp_size, sizeof *r->sched) : NULL;
    if (st == DP_OK && !r->sched)
        st = dp_fail(DP_ENOMEM, "out of memory scheduling");
    double worst = -1;
    for (int d = 0; st == DP_OK && d < cfg->dp_size; d++) {
        st = schedule_replica(cfg, r, d, limit);
        if (st == DP_OK && r->replica_n[d] && r->sched[d].makespan_ms > worst) {
            worst = r->sched[d].makespan_ms;
            r->schedule = r->sched[d].kind;
        }
    }
    r->iteration_ms = worst;
    return st;
}

/* ---- dp_plan ------------------------------------------------------------------------------- */

void dp_result_free(dp_result *r)
{
    for (size_t k = 0; k < r->n_mb; k++)
        free(r->mb[k].samples);
    free(r->mb);
    for (int d = 0; d < r->replicas; d++) {
        if (r->sched)
            dp_schedule_free(&r->sched[d]);
        if (r->replica_mb)
            free(r->replica_mb[d]);
    }
    free(r->sched);
    free(r->replica_mb);
    free(r->replica_n);
    memset(r, 0, sizeof *r);
}

static void totals(const dp_cost_model *cm, const dp_sample *s, size_t n, dp_result *r)
{
    r->real_tokens = 0;
    for (size_t i = 0; i < n; i++)
        r->real_tokens += (long)s[i].input_len + s[i].target_len;
    r->padded_tokens = 0;
    r->t_max_ms = 0;
    double sum = 0;
    for (size_t k = 0; k < r->n_mb; k++) {
        const dp_microbatch *m = &r->mb[k];
        r->padded_tokens += (long)m->mbs * (m->padded_input + m->padded_target);
        r->t_max_ms = fmax(r->t_max_ms, m->cost_ms);
        sum += m->cost_ms;
    }
    (void)cm;
    r->objective_ms = (r->stages - 1) * r->t_max_ms + sum / r->replicas;
    r->tokens_per_s = r->iteration_ms > 0 ? (double)r->real_tokens / (r->iteration_ms / 1e3) : 0;
}

dp_status dp_plan(const dp_cost_model *cm, const dp_config *cfg, const dp_sample *s, size_t n,
                  dp_method method, dp_result *out)
{
    memset(out, 0, sizeof *out);
    dp_status st = dp_validate(cm, cfg, s, n);
    if (st != DP_OK)
        return dp_done(st);
    mb_list l = {0};
    dp_rc rc = DP_RC_NONE;
    bool mixed = false;
    switch (method) {
    case DP_METHOD_DYNAPIPE:
        st = plan_dynapipe(cm, cfg, s, n, &l, &rc, &mixed);
        break;
    case DP_METHOD_PADDING:
        st = plan_padding(cm, cfg, s, n, &l, &rc);
        break;
    case DP_METHOD_PACKING:
        st = plan_packing(cm, cfg, s, n, &l, &rc);
        break;
    case DP_METHOD_TOKEN_BUDGET:
        st = plan_budget(cm, cfg, s, n, &l, &rc);
        break;
    default:
        st = dp_fail(DP_EINVAL, "unknown planning method %d", (int)method);
    }
    if (st == DP_OK && list_objective(cm, cfg, &l, true) == INFINITY)
        st = dp_fail(DP_EINFEASIBLE, "%s: a micro-batch does not fit", dp_method_name(method));
    out->mb = l.v;
    out->n_mb = l.n;
    out->rc = rc;
    out->rc_mixed = mixed;
    out->stages = cfg->stages;
    out->hidden = cfg->hidden;
    out->replicas = cfg->dp_size;
    if (st == DP_OK)
        st = schedule_all(cm, cfg, out);
    if (st == DP_OK)
        totals(cm, s, n, out);
    if (st != DP_OK)
        dp_result_free(out);
    return dp_done(st);
}
