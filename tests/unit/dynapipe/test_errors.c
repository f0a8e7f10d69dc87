/* test_errors.c: DynaPipe's error convention: a call that fails names the cause in
 * dp_last_error; a call that succeeds leaves it empty, after a failure of the same entry point,
 * of another one, or of a step the call recovered from (a recompute mode that does not fit,
 * when another does); dp_clear_error empties it; every status has its name. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dp_test.h"
#include "dynapipe.h"

#define assert_failed_with(call, want, needle)                                                     \
    do {                                                                                           \
        dp_status got_ = (call);                                                                   \
        cr_assert_eq(got_, (want), "%s: %s, want %s", #call, dp_status_name(got_),                 \
                     dp_status_name(want));                                                        \
        cr_assert(strstr(dp_last_error(), (needle)), "%s: message '%s' lacks '%s'", #call,         \
                  dp_last_error(), (needle));                                                      \
    } while (0)

#define assert_succeeded_clean(call)                                                               \
    do {                                                                                           \
        dp_status got_ = (call);                                                                   \
        cr_assert_eq(got_, DP_OK, "%s: %s (%s)", #call, dp_status_name(got_), dp_last_error());    \
        cr_assert_str_eq(dp_last_error(), "", "%s succeeded but left '%s'", #call,                 \
                         dp_last_error());                                                         \
    } while (0)

Test(errors, config_check_failure_then_success)
{
    dp_cost_model *cm = dp_test_model("gpt");
    dp_config cfg;
    dp_config_default(&cfg, cm);
    cfg.stages = 0;
    assert_failed_with(dp_config_check(&cfg), DP_EINVAL, "--stages 0");
    cfg.stages = 4;
    assert_succeeded_clean(dp_config_check(&cfg));
    dp_cost_model_free(cm);
}

Test(errors, lengths_failure_then_other_calls_succeed)
{
    dp_length_source src;
    const char *bad = "input_len,target_len\n12,x\n";
    assert_failed_with(dp_lengths_parse(bad, strlen(bad), "bad.csv", &src), DP_EFORMAT, "bad.csv");
    const char *hist = "length,count\n12,3\n40,5\n";
    assert_succeeded_clean(dp_lengths_parse(hist, strlen(hist), "hist.csv", &src));
    dp_samples s;
    assert_failed_with(dp_lengths_batch(&src, 0, 1, 0, 0, &s), DP_EINVAL, "hist.csv: a histogram");
    assert_succeeded_clean(dp_lengths_batch(&src, 200, 1, 0, 0, &s));
    cr_assert_gt(s.n, 1);
    /* A failure of one entry point, then a success of another. */
    uint8_t junk[8] = "NOTDPIS";
    dp_stream st;
    assert_failed_with(dp_stream_decode(junk, sizeof junk, &st), DP_EFORMAT, "'DPIS'");
    size_t *order = malloc(s.n * sizeof *order);
    cr_assert_not_null(order);
    assert_succeeded_clean(dp_order(s.v, s.n, false, order));
    free(order);
    dp_samples_free(&s);
    dp_lengths_free(&src);
}

Test(errors, plan_failure_then_success)
{
    dp_cost_model *cm = dp_test_model("gpt");
    dp_config cfg;
    dp_config_default(&cfg, cm);
    dp_sample s[3] = {{100, 0}, {900, 0}, {50, 0}};
    dp_result r;
    assert_failed_with(dp_plan(cm, &cfg, s, 0, DP_METHOD_DYNAPIPE, &r), DP_EEMPTY, "empty batch");
    assert_succeeded_clean(dp_plan(cm, &cfg, s, 3, DP_METHOD_DYNAPIPE, &r));
    dp_stream st;
    assert_failed_with(dp_instructions(&r, 0, 99, &st), DP_EINVAL, "");
    cr_assert_neq(dp_last_error()[0], '\0', "a DP_EINVAL without a message");
    assert_succeeded_clean(dp_instructions(&r, 0, 0, &st));
    dp_stream_free(&st);
    dp_result_free(&r);
    dp_cost_model_free(cm);
}

/* A memory limit at which no partition fits without recomputation but one fits with full
 * recomputation: dp_partition_best tries the modes in order, the first fails and sets its
 * message, the last succeeds; the failure it recovered from is not left behind. */
Test(errors, partition_recovers_from_an_infeasible_mode)
{
    dp_cost_model *cm = dp_test_model("gpt");
    cr_assert(dp_cost_model_has_rc(cm, DP_RC_NONE) && dp_cost_model_has_rc(cm, DP_RC_FULL));
    dp_config cfg;
    dp_config_default(&cfg, cm);
    cfg.rc_mask = 1u << DP_RC_NONE | 1u << DP_RC_FULL;
    dp_sample s[3] = {{100, 0}, {4000, 0}, {50, 0}};
    double state = dp_stage_state_mb(cm, &cfg, DP_RC_NONE, 0);
    dp_partition p;
    bool found = false;
    for (int step = 0; step < 40 && !found; step++) {
        cfg.memory_mb = state + 100 * pow(1.25, step); /* MB above the model state */
        if (dp_partition_rc(cm, &cfg, DP_RC_NONE, s, 3, &p) == DP_OK) {
            dp_partition_free(&p);
            break; /* past the window: no recomputation fits already */
        }
        if (dp_partition_rc(cm, &cfg, DP_RC_FULL, s, 3, &p) == DP_OK) {
            dp_partition_free(&p);
            found = true;
        }
    }
    cr_assert(found, "no memory limit where only full recomputation fits");
    assert_failed_with(dp_partition_rc(cm, &cfg, DP_RC_NONE, s, 3, &p), DP_EINFEASIBLE, "");
    cr_assert_neq(dp_last_error()[0], '\0');
    assert_succeeded_clean(dp_partition_best(cm, &cfg, s, 3, &p));
    cr_assert_eq(p.rc, DP_RC_FULL);
    dp_partition_free(&p);
    dp_cost_model_free(cm);
}

Test(errors, clear_error)
{
    dp_config cfg = {0};
    cr_assert_neq(dp_config_check(&cfg), DP_OK);
    cr_assert_neq(dp_last_error()[0], '\0');
    dp_clear_error();
    cr_assert_str_eq(dp_last_error(), "");
}

Test(errors, status_names)
{
    static const char *const want[] = {"DP_OK",          "DP_EINVAL", "DP_EEMPTY",  "DP_ERANGE",
                                       "DP_ENOMEM",      "DP_EIO",    "DP_EFORMAT", "DP_EGRID",
                                       "DP_EINFEASIBLE", "DP_ECHECK"};
    for (int s = 0; s < (int)(sizeof want / sizeof want[0]); s++)
        cr_assert_str_eq(dp_status_name((dp_status)s), want[s]);
    cr_assert_str_eq(dp_status_name((dp_status)(DP_ECHECK + 1)), "DP_UNKNOWN");
    cr_assert_str_eq(dp_status_name((dp_status)-1), "DP_UNKNOWN");
}
