/* test_plan.c: whole plans on the real cost models: every method covers every sample, the
 * DP's objective is never above the token-budget baseline (same order, contiguous cuts), the
 * simulated iteration is reported with its throughput, data-parallel replicas split the
 * micro-batches, and bad input fails with a message naming the sample or the limit (empty
 * batch, non-positive lengths, a sample longer than the model maximum, an infeasible memory
 * limit).
 *
 * Sections: plans, bad input, length data. */
#include <math.h>
#include <string.h>

#include "dp_test.h"

/* ---- plans ------------------------------------------------------------------------------- */

static void covers(const dp_result *r, size_t n, bool exactly_once)
{
    int *seen = calloc(n, sizeof *seen);
    for (size_t k = 0; k < r->n_mb; k++)
        for (size_t i = 0; i < r->mb[k].n; i++) {
            cr_assert_lt(r->mb[k].samples[i], n);
            seen[r->mb[k].samples[i]]++;
        }
    for (size_t i = 0; i < n; i++)
        cr_assert(exactly_once ? seen[i] == 1 : seen[i] >= 1, "sample %zu in %d micro-batches", i,
                  seen[i]);
    free(seen);
}

static void plan_all(const char *model, int stages, int dp)
{
    dp_cost_model *cm = dp_test_model(model);
    dp_samples s;
    cr_assert_eq(dp_mixture_batch(NULL, 0, 32768, 3, &s, NULL), DP_OK);
    dp_config cfg;
    dp_config_default(&cfg, cm);
    cfg.stages = stages;
    cfg.dp_size = dp;
    double obj[DP_METHOD_COUNT];
    for (int m = 0; m < DP_METHOD_COUNT; m++) {
        dp_result r;
        cr_assert_eq(dp_plan(cm, &cfg, s.v, s.n, (dp_method)m, &r), DP_OK, "%s %s: %s", model,
                     dp_method_name((dp_method)m), dp_last_error());
        covers(&r, s.n, m != DP_METHOD_PACKING || dp_cost_model_encdec(cm));
        cr_assert_gt(r.iteration_ms, 0);
        cr_assert_float_eq(r.tokens_per_s, r.real_tokens / (r.iteration_ms / 1e3), 1e-6);
        cr_assert_geq(r.padded_tokens, m == DP_METHOD_PACKING ? 0 : r.real_tokens);
        cr_assert_eq(r.replicas, dp);
        size_t total = 0;
        for (int d = 0; d < dp; d++)
            total += r.replica_n[d];
        cr_assert_eq(total, r.n_mb);
        obj[m] = r.objective_ms;
        dp_result_free(&r);
    }
    cr_assert_leq(obj[DP_METHOD_DYNAPIPE], obj[DP_METHOD_TOKEN_BUDGET] * (1 + 1e-12));
    cr_assert_leq(obj[DP_METHOD_DYNAPIPE], obj[DP_METHOD_PADDING] * (1 + 1e-12));
    dp_samples_free(&s);
    dp_cost_model_free(cm);
}

Test(plan, gpt_4_stages) { plan_all("gpt", 4, 1); }
Test(plan, t5_4_stages_2_replicas) { plan_all("t5", 4, 2); }
Test(plan, t5_8_stages) { plan_all("t5", 8, 1); }

/* On one batch: T5 on the mixture plans at least 2x packing's tokens/s. */
Test(plan, t5_mixture_beats_packing_twice)
{
    dp_cost_model *cm = dp_test_model("t5");
    dp_samples s;
    cr_assert_eq(dp_mixture_batch(NULL, 0, 65536, 1, &s, NULL), DP_OK);
    dp_config cfg;
    dp_config_default(&cfg, cm);
    dp_result a, b;
    cr_assert_eq(dp_plan(cm, &cfg, s.v, s.n, DP_METHOD_DYNAPIPE, &a), DP_OK, "%s", dp_last_error());
    cr_assert_eq(dp_plan(cm, &cfg, s.v, s.n, DP_METHOD_PACKING, &b), DP_OK, "%s", dp_last_error());
    cr_assert_geq(a.tokens_per_s, 2 * b.tokens_per_s, "dynapipe %.0f, packing %.0f tokens/s",
                  a.tokens_per_s, b.tokens_per_s);
    dp_result_free(&a);
    dp_result_free(&b);
    dp_samples_free(&s);
    dp_cost_model_free(cm);
}

/* A mode per micro-batch can only lower the objective: the per-iteration plans are among its
 * choices. On ShareGPT (a few long samples that need full recomputation) it does. */
Test(plan, recompute_per_micro_batch_is_never_worse)
{
    dp_cost_model *cm = dp_test_model("gpt");
    dp_length_source src;
    cr_assert_eq(dp_lengths_load(
                     dp_test_path("dynapipe/data/lengths/sharegpt_first_turn_opt_pairs.csv"), &src),
                 DP_OK);
    dp_samples s;
    cr_assert_eq(dp_lengths_batch(&src, 65536, 1, 0, 8192, &s), DP_OK);
    dp_config cfg;
    dp_config_default(&cfg, cm);
    cfg.param_factor = 2;
    dp_result one, per;
    cr_assert_eq(dp_plan(cm, &cfg, s.v, s.n, DP_METHOD_DYNAPIPE, &one), DP_OK, "%s",
                 dp_last_error());
    cfg.rc_per_microbatch = true;
    cr_assert_eq(dp_plan(cm, &cfg, s.v, s.n, DP_METHOD_DYNAPIPE, &per), DP_OK, "%s",
                 dp_last_error());
    cr_assert(per.rc_mixed && !one.rc_mixed);
    cr_assert_lt(per.objective_ms, one.objective_ms);
    int modes = 0;
    for (size_t k = 0; k < per.n_mb; k++)
        modes |= 1 << per.mb[k].rc;
    cr_assert_gt(modes & (modes - 1), 0, "one mode only (%d)", modes);
    for (size_t k = 0; k < one.n_mb; k++)
        cr_assert_eq(one.mb[k].rc, one.rc);
    dp_result_free(&one);
    dp_result_free(&per);
    dp_samples_free(&s);
    dp_lengths_free(&src);
    dp_cost_model_free(cm);
}

/* ---- bad input -------------------------------------------------------------------------- */

static void expect(dp_status got, dp_status want, const char *needle)
{
    cr_assert_eq(got, want, "status %s, want %s (%s)", dp_status_name(got), dp_status_name(want),
                 dp_last_error());
    cr_assert(strstr(dp_last_error(), needle), "message '%s' lacks '%s'", dp_last_error(), needle);
}

Test(bad, empty_batch)
{
    dp_cost_model *cm = dp_test_model("gpt");
    dp_config cfg;
    dp_config_default(&cfg, cm);
    dp_result r;
    dp_sample one = {10, 0};
    expect(dp_plan(cm, &cfg, &one, 0, DP_METHOD_DYNAPIPE, &r), DP_EEMPTY, "empty batch");
    cr_assert_null(r.mb);
    dp_cost_model_free(cm);
}

Test(bad, non_positive_lengths_name_the_sample)
{
    dp_cost_model *cm = dp_test_model("t5");
    dp_config cfg;
    dp_config_default(&cfg, cm);
    dp_result r;
    dp_sample s[3] = {{10, 5}, {0, 5}, {10, 5}};
    expect(dp_plan(cm, &cfg, s, 3, DP_METHOD_DYNAPIPE, &r), DP_ERANGE, "sample 1: input length 0");
    s[1] = (dp_sample){-4, 5};
    expect(dp_plan(cm, &cfg, s, 3, DP_METHOD_PACKING, &r), DP_ERANGE, "sample 1: input length -4");
    s[1] = (dp_sample){10, 0};
    expect(dp_plan(cm, &cfg, s, 3, DP_METHOD_DYNAPIPE, &r), DP_ERANGE, "sample 1: target length 0");
    dp_cost_model_free(cm);
}

Test(bad, longer_than_the_model_maximum)
{
    dp_cost_model *cm = dp_test_model("gpt");
    dp_config cfg;
    dp_config_default(&cfg, cm);
    dp_result r;
    dp_sample s[2] = {{10, 0}, {8000, 300}};
    expect(dp_plan(cm, &cfg, s, 2, DP_METHOD_DYNAPIPE, &r), DP_ERANGE,
           "sample 1 (input 8000, target 300): sequence 8300 exceeds the model maximum 8192");
    cfg.max_len = 2048;
    s[1] = (dp_sample){2000, 100};
    expect(dp_plan(cm, &cfg, s, 2, DP_METHOD_DYNAPIPE, &r), DP_ERANGE, "maximum 2048");
    dp_cost_model_free(cm);
    cm = dp_test_model("t5");
    dp_config_default(&cfg, cm);
    dp_sample t[1] = {{100, 5000}};
    expect(dp_plan(cm, &cfg, t, 1, DP_METHOD_DYNAPIPE, &r), DP_ERANGE,
           "target exceeds the model "
           "maximum 4096");
    dp_cost_model_free(cm);
}

Test(bad, infeasible_memory_limit_is_named)
{
    dp_cost_model *cm = dp_test_model("gpt");
    dp_config cfg;
    dp_config_default(&cfg, cm);
    dp_result r;
    dp_sample s[2] = {{100, 10}, {4000, 90}};
    cfg.stages = 1; /* 32 layers x 403 MB x 8 do not fit 36000 MB */
    expect(dp_plan(cm, &cfg, s, 2, DP_METHOD_DYNAPIPE, &r), DP_EINFEASIBLE, "--memory-mb 36000");
    cfg.stages = 4;
    cfg.memory_mb = dp_stage_state_mb(cm, &cfg, DP_RC_FULL, 0) + 200;
    expect(dp_plan(cm, &cfg, s, 2, DP_METHOD_DYNAPIPE, &r), DP_EINFEASIBLE,
           "sample 1 (input 4000, target 90) does not fit alone");
    cr_assert(strstr(dp_last_error(), "--memory-mb"), "%s", dp_last_error());
    dp_cost_model_free(cm);
}

Test(bad, config_values_are_named)
{
    dp_cost_model *cm = dp_test_model("gpt");
    dp_config cfg;
    dp_config_default(&cfg, cm);
    dp_result r;
    dp_sample s[1] = {{100, 10}};
    cfg.stages = 0;
    expect(dp_plan(cm, &cfg, s, 1, DP_METHOD_DYNAPIPE, &r), DP_EINVAL, "--stages 0");
    cfg.stages = 4;
    cfg.pad_multiple = 0;
    expect(dp_plan(cm, &cfg, s, 1, DP_METHOD_DYNAPIPE, &r), DP_EINVAL, "--pad-multiple 0");
    dp_cost_model_free(cm);
}

/* ---- length data ---------------------------------------------------------------------------- */

Test(lengths, per_sample_rows_and_histograms)
{
    dp_length_source src;
    const char *rows = "input_len,target_len\n10,2\n# a comment\n\n30,4\r\n5,1\n";
    cr_assert_eq(dp_lengths_parse(rows, strlen(rows), "r.csv", &src), DP_OK, "%s", dp_last_error());
    cr_assert_not(src.histogram);
    cr_assert_eq(src.n, 3);
    dp_samples b;
    cr_assert_eq(dp_lengths_batch(&src, 40, 1, 0, 0, &b), DP_OK);
    cr_assert_eq(b.n, 1, "12 + 34 tokens pass 40: only the first");
    dp_samples_free(&b);
    cr_assert_eq(dp_lengths_batch(&src, 0, 1, 0, 0, &b), DP_OK);
    cr_assert_eq(b.n, 3);
    cr_assert_eq(b.v[1].input_len, 30);
    dp_samples_free(&b);
    dp_lengths_free(&src);
    const char *bad = "input_len,target_len\n10,2\n7,x\n";
    expect(dp_lengths_parse(bad, strlen(bad), "bad.csv", &src), DP_EFORMAT, "bad.csv:3");
    expect(dp_lengths_parse("", 0, "e.csv", &src), DP_EEMPTY, "e.csv");
    expect(dp_lengths_parse("a,b\n1,2\n", 8, "h.csv", &src), DP_EFORMAT, "h.csv:1");
}

Test(lengths, json_lines_of_lengths_and_tokenised_samples)
{
    dp_length_source src;
    const char *j = "{\"input_len\": 12, \"target_len\": 3}\n"
                    "\n"
                    "{\"input_ids\": [5, 6, 7], \"target_ids\": [\"a\", \"b,]\"], \"x\": 1}\r\n"
                    "{\"inputs\": [], \"output_len\": 4}\n"
                    "  {\"input_len\":9}";
    cr_assert_eq(dp_lengths_parse(j, strlen(j), "s.jsonl", &src), DP_OK, "%s", dp_last_error());
    cr_assert_eq(src.n, 4);
    cr_assert_eq(src.dims, 2);
    cr_assert_not(src.histogram);
    dp_sample want[4] = {{12, 3}, {3, 2}, {0, 4}, {9, 0}};
    for (size_t i = 0; i < 4; i++)
        cr_assert(src.v[i].input_len == want[i].input_len &&
                      src.v[i].target_len == want[i].target_len,
                  "sample %zu: (%d, %d)", i, src.v[i].input_len, src.v[i].target_len);
    dp_lengths_free(&src);
    const char *nested = "{\"input_ids\": [[1, 2]], \"target_len\": 1}\n";
    expect(dp_lengths_parse(nested, strlen(nested), "n.jsonl", &src), DP_EFORMAT, "n.jsonl:1");
    const char *none = "{\"input_len\": 3}\n{\"target_len\": 1}\n";
    expect(dp_lengths_parse(none, strlen(none), "m.jsonl", &src), DP_EFORMAT, "m.jsonl:2");
    const char *mixed = "{\"input_len\": 3}\n4,5\n";
    expect(dp_lengths_parse(mixed, strlen(mixed), "x.jsonl", &src), DP_EFORMAT,
           "x.jsonl:2: expected a JSON object");
}

Test(lengths, real_histograms_sample_their_distribution)
{
    dp_length_source src;
    cr_assert_eq(
        dp_lengths_load(dp_test_path("dynapipe/data/lengths/wikipedia_bert_max512.csv"), &src),
        DP_OK, "%s", dp_last_error());
    cr_assert(src.histogram);
    cr_assert_eq(src.dims, 1);
    cr_assert_float_eq(src.total, 16279552, 0.5);
    dp_samples b;
    cr_assert_eq(dp_lengths_batch(&src, 1 << 20, 5, 0, 0, &b), DP_OK);
    double sum = 0;
    for (size_t i = 0; i < b.n; i++)
        sum += b.v[i].input_len;
    cr_assert_float_eq(sum / (double)b.n, 255.83, 8, "mean %.2f", sum / (double)b.n);
    dp_samples_free(&b);
    dp_lengths_free(&src);
    cr_assert_eq(dp_lengths_load(
                     dp_test_path("dynapipe/data/lengths/sharegpt_first_turn_opt_pairs.csv"), &src),
                 DP_OK, "%s", dp_last_error());
    cr_assert_eq(src.dims, 2);
    cr_assert_eq(dp_lengths_batch(&src, 1 << 20, 5, 0, 2048, &b), DP_OK);
    for (size_t i = 0; i < b.n; i++)
        cr_assert_leq(b.v[i].input_len + b.v[i].target_len, 2048);
    dp_samples_free(&b);
    dp_lengths_free(&src);
}

Test(lengths, mixture_is_seeded_and_sized)
{
    dp_samples a, b;
    int *task;
    cr_assert_eq(dp_mixture_batch(NULL, 0, 65536, 9, &a, &task), DP_OK);
    cr_assert_eq(dp_mixture_batch(NULL, 0, 65536, 9, &b, NULL), DP_OK);
    cr_assert_eq(a.n, b.n);
    cr_assert_arr_eq(a.v, b.v, a.n * sizeof *a.v);
    long tok = 0;
    size_t ntasks;
    const dp_task *tasks = dp_mixture_tasks(&ntasks);
    int used[16] = {0};
    for (size_t i = 0; i < a.n; i++) {
        tok += a.v[i].input_len + a.v[i].target_len;
        cr_assert_lt(task[i], (int)ntasks);
        used[task[i]]++;
        cr_assert_leq(a.v[i].input_len, tasks[task[i]].in_max);
        cr_assert_leq(a.v[i].target_len, tasks[task[i]].tgt_max);
        cr_assert_geq(a.v[i].target_len, 1);
    }
    cr_assert_leq(tok, 65536);
    cr_assert_gt(tok, 65536 - 2048 - 512);
    for (size_t k = 0; k < ntasks; k++)
        cr_assert_gt(used[k], 0, "task %s never drawn", tasks[k].name);
    free(task);
    dp_samples_free(&a);
    dp_samples_free(&b);
}
