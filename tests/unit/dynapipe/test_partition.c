/* test_partition.c: the micro-batch DP against brute force. On random batches of up to 14
 * samples, for the real GPT and T5 cost models, 1, 2 and 4 stages, 1 and 2 data-parallel
 * replicas, loose and tight memory limits and every recompute mode, the DP's objective
 * (S - 1) * T_max + f(N) / D equals the minimum over all 2^(n-1) contiguous partitions (one
 * recompute mode for the batch, or each micro-batch its cheapest feasible mode), its
 * reported partition has that objective, and the tight limit really cuts partitions out.
 * Also: the ordering (by length for GPT; never worse than the sort for T5), the stage split
 * of layers, and an infeasible single sample named in the error.
 *
 * Sections: brute force, DP versus brute force, ordering and stages. */
#include <math.h>
#include <string.h>

#include "dp_test.h"

/* ---- brute force ----------------------------------------------------------------------- */

typedef struct brute {
    double best;
    size_t infeasible_mbs; /* micro-batches refused (memory or grid) over all partitions */
} brute;

/* The cost of micro-batch [a, b): its cheapest feasible mode among `modes`. */
static bool mb_cost(const dp_cost_model *cm, const dp_config *cfg, unsigned modes,
                    const dp_sample *s, size_t a, size_t b, double *c)
{
    bool t5 = dp_cost_model_encdec(cm);
    int mi = 0, mt = 0; /* GPT: the longest whole sequence */
    for (size_t k = a; k < b; k++) {
        int in = t5 ? s[k].input_len : s[k].input_len + s[k].target_len;
        mi = in > mi ? in : mi;
        mt = s[k].target_len > mt ? s[k].target_len : mt;
    }
    int pin = dp_pad(mi, cfg->pad_multiple);
    int ptgt = dp_cost_model_encdec(cm) ? dp_pad(mt, cfg->pad_multiple) : 0;
    dp_mb_eval ev;
    *c = INFINITY;
    for (int rc = 0; rc < DP_RC_COUNT; rc++) {
        if (!(modes & (1u << rc)))
            continue;
        dp_mb_evaluate(cm, cfg, (dp_rc)rc, (int)(b - a), pin, ptgt, &ev);
        if (ev.feasible && ev.cost_ms < *c)
            *c = ev.cost_ms;
    }
    return *c < INFINITY;
}

static brute brute_force(const dp_cost_model *cm, const dp_config *cfg, unsigned modes,
                         const dp_sample *s, size_t n)
{
    brute r = {INFINITY, 0};
    for (unsigned long mask = 0; mask < (1ul << (n - 1)); mask++) {
        double sum = 0, mx = 0;
        bool ok = true;
        size_t a = 0;
        for (size_t b = 1; b <= n && ok; b++) {
            if (b < n && !(mask & (1ul << (b - 1))))
                continue;
            double c;
            if (!mb_cost(cm, cfg, modes, s, a, b, &c)) {
                ok = false;
                r.infeasible_mbs++;
            }
            sum += c;
            mx = fmax(mx, c);
            a = b;
        }
        if (ok)
            r.best = fmin(r.best, (cfg->stages - 1) * mx + sum / cfg->dp_size);
    }
    return r;
}

/* The objective of the DP's own partition, recomputed. */
static double objective_of(const dp_cost_model *cm, const dp_config *cfg, const dp_partition *p,
                           const dp_sample *s, size_t n)
{
    double sum = 0, mx = 0;
    for (size_t k = 0; k < p->n_mb; k++) {
        double c;
        cr_assert(mb_cost(cm, cfg, 1u << p->mb_rc[k], s, p->cut[k], p->cut[k + 1], &c),
                  "the DP chose an infeasible micro-batch");
        sum += c;
        mx = fmax(mx, c);
    }
    cr_assert_eq(p->cut[0], 0);
    cr_assert_eq(p->cut[p->n_mb], n, "the cuts do not cover the batch");
    return (cfg->stages - 1) * mx + sum / cfg->dp_size;
}

/* ---- DP versus brute force ---------------------------------------------------------------- */

static unsigned long long rng_state = 12345;
static int rnd(int lo, int hi)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (int)((rng_state >> 33) % (unsigned long long)(hi - lo + 1));
}

/* Log-uniform-ish lengths: many short, some long. */
static int rnd_len(int max)
{
    int bits = rnd(0, 30);
    int hi = 1 << (bits / 3 + 1);
    return rnd(1, hi < max ? hi : max);
}

static void compare(const char *model, bool tight)
{
    dp_cost_model *cm = dp_test_model(model);
    bool t5 = dp_cost_model_encdec(cm);
    int cases = 0, binding = 0;
    for (int trial = 0; trial < 24; trial++) {
        size_t n = (size_t)rnd(1, 14);
        dp_sample raw[14], s[14];
        size_t order[14];
        for (size_t i = 0; i < n; i++) {
            raw[i].input_len = rnd_len(t5 ? 2000 : 1600);
            raw[i].target_len = t5 ? rnd_len(600) : rnd(0, 1) * rnd_len(400);
        }
        cr_assert_eq(dp_order(raw, n, t5, order), DP_OK);
        for (size_t i = 0; i < n; i++)
            s[i] = raw[order[i]];
        static const int stages[] = {1, 2, 4};
        dp_config cfg;
        dp_config_default(&cfg, cm);
        cfg.stages = stages[trial % 3];
        cfg.dp_size = 1 + trial % 2;
        cfg.pad_multiple = trial % 4 == 0 ? 1 : 8;
        cfg.param_factor = 2; /* ZeRO-style: the model fits on 1 and 2 stages too */
        /* rc = DP_RC_COUNT: a mode per micro-batch, each its cheapest feasible one. */
        for (int rc = 0; rc <= DP_RC_COUNT; rc++) {
            if (tight) /* a little above what the state needs: big micro-batches are refused */
                cfg.memory_mb = dp_stage_state_mb(cm, &cfg, DP_RC_NONE, 0) + (t5 ? 9000 : 4000);
            bool mixed = rc == DP_RC_COUNT;
            cfg.rc_per_microbatch = mixed;
            brute b = brute_force(cm, &cfg, mixed ? 7u : 1u << rc, s, n);
            dp_partition p;
            dp_status st = mixed ? dp_partition_best(cm, &cfg, s, n, &p)
                                 : dp_partition_rc(cm, &cfg, (dp_rc)rc, s, n, &p);
            if (b.best == INFINITY) {
                cr_assert_eq(st, DP_EINFEASIBLE, "%s", dp_last_error());
                continue;
            }
            cr_assert_eq(st, DP_OK, "%s", dp_last_error());
            cr_assert_float_eq(p.objective_ms, b.best, 1e-9 * b.best,
                               "%s rc %d n %zu S %d D %d: DP %.6f, brute force %.6f", model, rc, n,
                               cfg.stages, cfg.dp_size, p.objective_ms, b.best);
            cr_assert_float_eq(objective_of(cm, &cfg, &p, s, n), p.objective_ms, 1e-9 * b.best);
            cases++;
            binding += b.infeasible_mbs > 0;
            dp_partition_free(&p);
        }
    }
    cr_assert_geq(cases, 40, "%s: only %d feasible cases", model, cases);
    if (tight)
        cr_assert_geq(binding, 5, "%s: the tight limit bound in only %d cases", model, binding);
    dp_cost_model_free(cm);
}

Test(dp, gpt_loose_memory_equals_brute_force) { compare("gpt", false); }
Test(dp, gpt_tight_memory_equals_brute_force) { compare("gpt", true); }
Test(dp, t5_loose_memory_equals_brute_force) { compare("t5", false); }
Test(dp, t5_tight_memory_equals_brute_force) { compare("t5", true); }

Test(dp, best_mode_is_the_minimum_of_the_modes)
{
    dp_cost_model *cm = dp_test_model("t5");
    dp_config cfg;
    dp_config_default(&cfg, cm);
    dp_sample s[12];
    for (int i = 0; i < 12; i++)
        s[i] = (dp_sample){100 + 150 * i, 20 + 30 * i};
    double lo = INFINITY;
    for (int rc = 0; rc < DP_RC_COUNT; rc++) {
        dp_partition p;
        if (dp_partition_rc(cm, &cfg, (dp_rc)rc, s, 12, &p) == DP_OK) {
            lo = fmin(lo, p.objective_ms);
            dp_partition_free(&p);
        }
    }
    dp_partition best;
    cr_assert_eq(dp_partition_best(cm, &cfg, s, 12, &best), DP_OK, "%s", dp_last_error());
    cr_assert_eq(best.objective_ms, lo);
    dp_partition_free(&best);
    dp_cost_model_free(cm);
}

Test(dp, an_infeasible_sample_is_named)
{
    dp_cost_model *cm = dp_test_model("gpt");
    dp_config cfg;
    dp_config_default(&cfg, cm);
    dp_sample s[3] = {{100, 0}, {9000, 0}, {50, 0}};
    dp_partition p;
    cr_assert_eq(dp_partition_rc(cm, &cfg, DP_RC_NONE, s, 3, &p), DP_EINFEASIBLE);
    cr_assert(strstr(dp_last_error(), "position 1 (input 9000"), "%s", dp_last_error());
    cr_assert(strstr(dp_last_error(), "outside the profiled"), "%s", dp_last_error());
    cfg.memory_mb = dp_stage_state_mb(cm, &cfg, DP_RC_NONE, 0) + 100;
    s[1].input_len = 4000;
    cr_assert_eq(dp_partition_rc(cm, &cfg, DP_RC_NONE, s, 3, &p), DP_EINFEASIBLE);
    cr_assert(strstr(dp_last_error(), "--memory-mb"), "%s", dp_last_error());
    cr_assert_eq(dp_partition_rc(cm, &cfg, DP_RC_NONE, s, 0, &p), DP_EEMPTY);
    dp_cost_model_free(cm);
}

/* ---- ordering and stages ------------------------------------------------------------------- */

Test(order, gpt_by_total_length)
{
    dp_sample s[5] = {{30, 5}, {10, 0}, {20, 30}, {5, 4}, {35, 0}};
    size_t o[5];
    cr_assert_eq(dp_order(s, 5, false, o), DP_OK);
    size_t want[5] = {3, 1, 0, 4, 2};
    cr_assert_arr_eq(o, want, sizeof want);
}

Test(order, t5_never_worse_than_the_sort)
{
    for (int trial = 0; trial < 20; trial++) {
        size_t n = (size_t)rnd(2, 300);
        dp_sample *s = malloc(n * sizeof *s);
        size_t *o = malloc(n * sizeof *o), *sorted = malloc(n * sizeof *sorted);
        for (size_t i = 0; i < n; i++)
            s[i] = (dp_sample){rnd_len(2000), rnd_len(500)};
        cr_assert_eq(dp_order(s, n, true, o), DP_OK);
        /* A permutation... */
        bool *seen = calloc(n, 1);
        for (size_t i = 0; i < n; i++) {
            cr_assert(o[i] < n && !seen[o[i]]);
            seen[o[i]] = true;
        }
        /* ...no longer than the sort by (input, target). */
        for (size_t i = 0; i < n; i++)
            sorted[i] = i;
        for (size_t i = 1; i < n; i++)
            for (size_t j = i; j > 0; j--) {
                const dp_sample *a = &s[sorted[j - 1]], *b = &s[sorted[j]];
                if (a->input_len < b->input_len ||
                    (a->input_len == b->input_len && a->target_len <= b->target_len))
                    break;
                size_t t = sorted[j];
                sorted[j] = sorted[j - 1];
                sorted[j - 1] = t;
            }
        cr_assert_leq(dp_adjacency_cost(s, o, n), dp_adjacency_cost(s, sorted, n));
        free(seen);
        free(s);
        free(o);
        free(sorted);
    }
}

Test(stages, layers_split_evenly_encoder_first)
{
    dp_config cfg;
    dp_config_default(&cfg, NULL);
    cfg.layers_enc = 12;
    cfg.layers_dec = 12;
    cfg.stages = 4;
    int e, d, te = 0, td = 0;
    for (int s = 0; s < 4; s++) {
        dp_stage_layers(&cfg, s, &e, &d);
        cr_assert_eq(e + d, 6);
        te += e;
        td += d;
    }
    dp_stage_layers(&cfg, 1, &e, &d);
    cr_assert_eq(e, 6);
    dp_stage_layers(&cfg, 2, &e, &d);
    cr_assert_eq(d, 6);
    cr_assert_eq(te, 12);
    cr_assert_eq(td, 12);
    cfg.stages = 5;
    te = td = 0;
    for (int s = 0; s < 5; s++) {
        dp_stage_layers(&cfg, s, &e, &d);
        cr_assert(e + d == 4 || e + d == 5);
        te += e;
        td += d;
    }
    cr_assert_eq(te + td, 24);
}
