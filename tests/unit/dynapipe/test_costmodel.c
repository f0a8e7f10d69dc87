/* test_costmodel.c: the cost model against its own files: every profiled grid point of both
 * real profiles is reproduced exactly (duplicates at their maximum), interpolation is linear,
 * monotone between monotone grid points and infeasible outside the profiled region, and bad
 * files (missing columns, an absent grid region, bad numbers, empty) fail naming the file.
 *
 * Sections: grid points, interpolation, bad files. */
#include <math.h>
#include <string.h>

#include "dp_test.h"

/* ---- grid points ----------------------------------------------------------------------- */

static dp_rc rc_of(const char *s)
{
    return strcmp(s, "none") == 0        ? DP_RC_NONE
           : strcmp(s, "selective") == 0 ? DP_RC_SELECTIVE
                                         : DP_RC_FULL;
}

static dp_component comp_of(const char *s)
{
    return strcmp(s, "encoder") == 0   ? DP_ENCODER
           : strcmp(s, "decoder") == 0 ? DP_DECODER
                                       : DP_POSTPROCESS;
}

/* Read the time file independently (sscanf) and check each tp-1 row: the model's value at the
 * point is the maximum of the row values with the same key. */
static void check_time_points(const char *model)
{
    dp_cost_model *cm = dp_test_model(model);
    char rel[256];
    snprintf(rel, sizeof rel, "dynapipe/data/costmodels/%s_time.csv", model);
    FILE *f = fopen(dp_test_path(rel), "r");
    cr_assert_not_null(f);
    char line[512];
    size_t rows = 0, exact = 0;
    cr_assert_not_null(fgets(line, sizeof line, f));
    while (fgets(line, sizeof line, f)) {
        char name[32], rc[16], comp[16], dir[16];
        int tp, mbs, enc = 0, dec = 0, dup;
        double t;
        char *fields[10];
        int nf = 0;
        for (char *p = line, *tok; nf < 10 && (tok = strsep(&p, ",\n")) != NULL;)
            fields[nf++] = tok;
        cr_assert_eq(nf, 10);
        snprintf(name, sizeof name, "%s", fields[0]);
        tp = (int)strtol(fields[1], NULL, 10);
        snprintf(rc, sizeof rc, "%s", fields[2]);
        snprintf(comp, sizeof comp, "%s", fields[3]);
        snprintf(dir, sizeof dir, "%s", fields[4]);
        mbs = (int)strtol(fields[5], NULL, 10);
        if (*fields[6])
            enc = (int)strtol(fields[6], NULL, 10);
        if (*fields[7])
            dec = (int)strtol(fields[7], NULL, 10);
        dup = (int)strtol(fields[8], NULL, 10);
        t = strtod(fields[9], NULL);
        (void)dup;
        if (tp != 1)
            continue;
        rows++;
        double v = dp_cm_time(cm, rc_of(rc), comp_of(comp), strcmp(dir, "backward") == 0, mbs,
                              enc ? enc : dec, dec);
        cr_assert(v >= t, "%s: %s %s %s mbs %d enc %d dec %d: %g below the row's %g", model, rc,
                  comp, dir, mbs, enc, dec, v, t);
        if (v == t)
            exact++;
    }
    fclose(f);
    cr_assert_gt(rows, 800, "%s: only %zu tp-1 rows", model, rows);
    /* Every key has at least one row equal to its value (the maximum); distinct keys are at
     * least rows / 10 (at most 10 duplicates per key). */
    cr_assert_geq(exact * 10, rows, "%s: %zu exact of %zu rows", model, exact, rows);
    dp_cost_model_free(cm);
}

Test(grid, gpt_time_points_exact) { check_time_points("gpt_6.7b"); }
Test(grid, t5_time_points_exact) { check_time_points("t5_11b"); }

Test(grid, known_rows_and_duplicates)
{
    dp_cost_model *g = dp_test_model("gpt");
    cr_assert_eq(dp_cm_time(g, DP_RC_NONE, DP_ENCODER, false, 1, 2048, 0), 5.78);
    cr_assert_eq(dp_cm_stored(g, DP_RC_NONE, DP_ENCODER, 1, 16, 0), 2.47);
    cr_assert_eq(dp_cm_peak(g, DP_RC_NONE, DP_ENCODER, 1, 16, 0), 10.89);
    cr_assert_float_eq(dp_cm_param_mb(g, DP_RC_NONE, DP_ENCODER), 402.770556, 1e-9);
    cr_assert_not(dp_cost_model_encdec(g));
    /* Memory is made non-decreasing: the profiled peak at 8192 (15650.28) is below the one at
     * 6144 (15774.51) and is raised to it; the grids are downward closed. */
    cr_assert_eq(dp_cm_peak(g, DP_RC_NONE, DP_ENCODER, 1, 6144, 0), 15774.51);
    cr_assert_eq(dp_cm_peak(g, DP_RC_NONE, DP_ENCODER, 1, 8192, 0), 15774.51);
    cr_assert_eq(dp_cm_stored(g, DP_RC_NONE, DP_ENCODER, 1, 8192, 0), 12160.75);
    cr_assert(dp_cost_model_monotone(g));
    int mt;
    cr_assert_eq(dp_cost_model_max_len(g, &mt), 8192);
    dp_cost_model_free(g);

    dp_cost_model *t = dp_test_model("t5");
    cr_assert(dp_cost_model_encdec(t));
    cr_assert_eq(dp_cm_time(t, DP_RC_NONE, DP_DECODER, false, 4, 512, 128), 3.67);
    /* Encoder (4, 512) forward: 8 duplicates 7.67 ... 7.94; the maximum is kept. */
    cr_assert_eq(dp_cm_time(t, DP_RC_NONE, DP_ENCODER, false, 4, 512, 999), 7.94);
    /* Encoder (1, 512) has 9 duplicates: stored 375.63 x 8 and 376.92; peak up to 1219.45. */
    cr_assert_eq(dp_cm_stored(t, DP_RC_NONE, DP_ENCODER, 1, 512, 0), 376.92);
    cr_assert_eq(dp_cm_peak(t, DP_RC_NONE, DP_ENCODER, 1, 512, 0), 1219.45);
    cr_assert_eq(dp_cm_stored(t, DP_RC_NONE, DP_DECODER, 4, 512, 128), 586.69);
    cr_assert_eq(dp_cost_model_max_len(t, &mt), 4096);
    cr_assert_eq(mt, 4096);
    for (int rc = 0; rc < DP_RC_COUNT; rc++)
        cr_assert(dp_cost_model_has_rc(t, (dp_rc)rc));
    dp_cost_model_free(t);
}

/* ---- interpolation ------------------------------------------------------------------------ */

Test(interp, linear_between_points)
{
    dp_cost_model *g = dp_test_model("gpt");
    double a = dp_cm_time(g, DP_RC_NONE, DP_ENCODER, false, 1, 1024, 0);
    double b = dp_cm_time(g, DP_RC_NONE, DP_ENCODER, false, 1, 2048, 0);
    double m = dp_cm_time(g, DP_RC_NONE, DP_ENCODER, false, 1, 1280, 0);
    cr_assert_float_eq(m, a + (b - a) * 0.25, 1e-12);
    /* mbs 3 at 2048: between mbs 2 and 4. */
    double m2 = dp_cm_time(g, DP_RC_NONE, DP_ENCODER, true, 2, 2048, 0);
    double m4 = dp_cm_time(g, DP_RC_NONE, DP_ENCODER, true, 4, 2048, 0);
    cr_assert_float_eq(dp_cm_time(g, DP_RC_NONE, DP_ENCODER, true, 3, 2048, 0), (m2 + m4) / 2,
                       1e-12);
    dp_cost_model_free(g);
}

/* Along every length axis segment of the GPT encoder grids whose two ends are ordered, every
 * interpolated value between them lies between them and never decreases. */
Test(interp, monotone_where_the_grid_is)
{
    dp_cost_model *g = dp_test_model("gpt");
    static const int lens[] = {16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 6144, 8192};
    int segments = 0;
    for (int rc = 0; rc < DP_RC_COUNT; rc++)
        for (int mbs = 1; mbs <= 2048; mbs *= 2)
            for (size_t k = 0; k + 1 < sizeof lens / sizeof lens[0]; k++) {
                double lo = dp_cm_stored(g, (dp_rc)rc, DP_ENCODER, mbs, lens[k], 0);
                double hi = dp_cm_stored(g, (dp_rc)rc, DP_ENCODER, mbs, lens[k + 1], 0);
                double tlo = dp_cm_time(g, (dp_rc)rc, DP_ENCODER, true, mbs, lens[k], 0);
                double thi = dp_cm_time(g, (dp_rc)rc, DP_ENCODER, true, mbs, lens[k + 1], 0);
                if (isnan(hi) || isnan(thi) || lo > hi || tlo > thi)
                    continue;
                segments++;
                double prev = lo, tprev = tlo;
                for (int x = lens[k] + 1; x <= lens[k + 1]; x += 7) {
                    double v = dp_cm_stored(g, (dp_rc)rc, DP_ENCODER, mbs, x, 0);
                    double t = dp_cm_time(g, (dp_rc)rc, DP_ENCODER, true, mbs, x, 0);
                    cr_assert(v >= prev && v <= hi && t >= tprev && t <= thi, "rc %d mbs %d len %d",
                              rc, mbs, x);
                    prev = v;
                    tprev = t;
                }
            }
    cr_assert_gt(segments, 100);
    dp_cost_model_free(g);
}

Test(interp, infeasible_outside_the_grid)
{
    dp_cost_model *g = dp_test_model("gpt");
    cr_assert(isnan(dp_cm_time(g, DP_RC_NONE, DP_ENCODER, false, 1, 8193, 0)), "longer than 8192");
    cr_assert(isnan(dp_cm_time(g, DP_RC_NONE, DP_ENCODER, false, 4096, 16, 0)), "mbs 4096");
    /* mbs 5 at 2056: the corner (8, 4096) was never profiled (out of memory). */
    cr_assert(isnan(dp_cm_stored(g, DP_RC_NONE, DP_ENCODER, 5, 2056, 0)));
    /* ... while (4, 2048) and (8, 2048) exist, so mbs 5 at 2048 is inside. */
    cr_assert_not(isnan(dp_cm_stored(g, DP_RC_NONE, DP_ENCODER, 5, 2048, 0)));
    /* Below the first length: evaluated at it. */
    cr_assert_eq(dp_cm_time(g, DP_RC_NONE, DP_ENCODER, false, 1, 8, 0),
                 dp_cm_time(g, DP_RC_NONE, DP_ENCODER, false, 1, 16, 0));
    dp_cost_model_free(g);
    dp_cost_model *t = dp_test_model("t5");
    cr_assert(isnan(dp_cm_time(t, DP_RC_NONE, DP_DECODER, false, 1, 512, 5000)));
    cr_assert(isnan(dp_cm_time(t, DP_RC_NONE, DP_POSTPROCESS, false, 1, 16, 4097)));
    dp_cost_model_free(t);
}

/* ---- bad files ------------------------------------------------------------------------------ */

static const char *names[3] = {"T.csv", "M.csv", "S.csv"};

static const char good_time[] =
    "model,tp,recompute,component,direction,mbs,enc_seqlen,dec_seqlen,dup_idx,time_ms\n"
    "m,1,none,encoder,forward,1,16,,0,1.0\nm,1,none,encoder,backward,1,16,,0,2.0\n"
    "m,1,none,encoder,forward,2,16,,0,1.5\nm,1,none,encoder,backward,2,16,,0,2.5\n"
    "m,1,none,postprocess,forward,1,16,,0,0.5\nm,1,none,postprocess,backward,1,16,,0,0.5\n";
static const char good_mem[] = "model,tp,recompute,component,mbs,enc_seqlen,dec_seqlen,dup_idx,"
                               "stored_activation_mb,peak_activation_mb\n"
                               "m,1,none,encoder,1,16,,0,3,5\nm,1,none,encoder,2,16,,0,6,9\n";
static const char good_state[] = "model,tp,recompute,component,param_mb\n"
                                 "m,1,none,encoder,10\nm,1,none,embedding,20\n";

static dp_status parse3(const char *t, const char *m, const char *s, dp_cost_model **cm)
{
    return dp_cost_model_parse("m", 1, t, strlen(t), m, strlen(m), s, strlen(s), names, cm);
}

Test(bad, a_small_good_model_loads)
{
    dp_cost_model *cm;
    cr_assert_eq(parse3(good_time, good_mem, good_state, &cm), DP_OK, "%s", dp_last_error());
    cr_assert_eq(dp_cm_time(cm, DP_RC_NONE, DP_ENCODER, false, 2, 16, 0), 1.5);
    cr_assert_not(dp_cost_model_has_rc(cm, DP_RC_FULL));
    dp_cost_model_free(cm);
}

static void expect(dp_status got, dp_status want, const char *needle)
{
    cr_assert_eq(got, want, "status %s, want %s (%s)", dp_status_name(got), dp_status_name(want),
                 dp_last_error());
    cr_assert(strstr(dp_last_error(), needle), "message '%s' lacks '%s'", dp_last_error(), needle);
}

Test(bad, missing_column_names_the_file_and_column)
{
    dp_cost_model *cm = (dp_cost_model *)1;
    const char *t = "model,tp,recompute,component,direction,mbs,enc_seqlen,dec_seqlen,dup_idx\n";
    expect(parse3(t, good_mem, good_state, &cm), DP_EFORMAT, "T.csv");
    cr_assert_null(cm);
    expect(parse3(t, good_mem, good_state, &cm), DP_EFORMAT, "time_ms");
    const char *m = "model,tp,recompute,component,mbs,enc_seqlen,dec_seqlen,dup_idx,"
                    "stored_activation_mb\n";
    expect(parse3(good_time, m, good_state, &cm), DP_EFORMAT, "M.csv");
    expect(parse3(good_time, good_mem, "model,tp,recompute,component\n", &cm), DP_EFORMAT,
           "param_mb");
}

Test(bad, absent_grid_region_names_the_file)
{
    dp_cost_model *cm;
    /* No encoder backward rows. */
    const char *t = "model,tp,recompute,component,direction,mbs,enc_seqlen,dec_seqlen,dup_idx,"
                    "time_ms\nm,1,none,encoder,forward,1,16,,0,1.0\n"
                    "m,1,none,postprocess,forward,1,16,,0,0.5\n"
                    "m,1,none,postprocess,backward,1,16,,0,0.5\n";
    expect(parse3(t, good_mem, good_state, &cm), DP_EGRID, "T.csv");
    expect(parse3(t, good_mem, good_state, &cm), DP_EGRID, "encoder backward");
    /* Memory rows of another mode only. */
    const char *m = "model,tp,recompute,component,mbs,enc_seqlen,dec_seqlen,dup_idx,"
                    "stored_activation_mb,peak_activation_mb\nm,1,full,encoder,1,16,,0,3,5\n";
    expect(parse3(good_time, m, good_state, &cm), DP_EGRID, "M.csv");
    /* No rows at all for this tp. */
    expect(dp_cost_model_parse("m", 2, good_time, strlen(good_time), good_mem, strlen(good_mem),
                               good_state, strlen(good_state), names, &cm),
           DP_EGRID, "tp 2");
    expect(parse3(good_time, good_mem, "model,tp,recompute,component,param_mb\n", &cm), DP_EGRID,
           "S.csv");
}

Test(bad, real_t5_without_decoder_backward)
{
    /* The real T5 file with its decoder backward rows removed. */
    char *t = NULL, *m = NULL, *s = NULL;
    size_t tl = 0, ml = 0, sl = 0;
    FILE *f = fopen(dp_test_path("dynapipe/data/costmodels/t5_11b_time.csv"), "r");
    cr_assert_not_null(f);
    FILE *o = open_memstream(&t, &tl);
    char line[512];
    while (fgets(line, sizeof line, f))
        if (!strstr(line, ",decoder,backward,"))
            fputs(line, o);
    fclose(o);
    fclose(f);
    f = fopen(dp_test_path("dynapipe/data/costmodels/t5_11b_memory.csv"), "r");
    o = open_memstream(&m, &ml);
    while (fgets(line, sizeof line, f))
        fputs(line, o);
    fclose(o);
    fclose(f);
    f = fopen(dp_test_path("dynapipe/data/costmodels/model_state.csv"), "r");
    o = open_memstream(&s, &sl);
    while (fgets(line, sizeof line, f))
        fputs(line, o);
    fclose(o);
    fclose(f);
    const char *nm[3] = {"t5_11b_time.csv", "t5_11b_memory.csv", "model_state.csv"};
    dp_cost_model *cm;
    expect(dp_cost_model_parse("t5", 1, t, tl, m, ml, s, sl, nm, &cm), DP_EGRID,
           "t5_11b_time.csv: no decoder backward rows");
    free(t);
    free(m);
    free(s);
}

Test(bad, numbers_lines_and_empty)
{
    dp_cost_model *cm;
    char t[2048];
    snprintf(t, sizeof t, "%sm,1,none,encoder,forward,1,16,,0,abc\n", good_time);
    expect(parse3(t, good_mem, good_state, &cm), DP_EFORMAT, "T.csv:8");
    snprintf(t, sizeof t, "%sm,1,none,encoder,forward,0,16,,0,1\n", good_time);
    expect(parse3(t, good_mem, good_state, &cm), DP_EFORMAT, "bad grid key");
    snprintf(t, sizeof t, "%sm,1,none,encoder,forward,1,,,0,1\n", good_time);
    expect(parse3(t, good_mem, good_state, &cm), DP_EFORMAT, "T.csv:8");
    snprintf(t, sizeof t, "%sm,1,none,encoder,sideways,1,16,,0,1\n", good_time);
    expect(parse3(t, good_mem, good_state, &cm), DP_EFORMAT, "direction");
    expect(parse3("", good_mem, good_state, &cm), DP_EEMPTY, "T.csv");
    expect(dp_cost_model_load("/nonexistent", "gpt", 1, &cm), DP_EIO,
           "/nonexistent/gpt_6.7b_time.csv");
}
