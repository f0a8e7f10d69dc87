/* test_schedule.c: the pipeline schedules and their simulation on random unequal
 * micro-batches: every op waits for its input and its stage, the makespan lies between the
 * critical path (the longest micro-batch chain, the busiest stage) and the serial sum, memory
 * recomputed from the op order never exceeds the limit when the schedule says it fits, the
 * memory-aware cyclic schedule fits a limit that 1F1B overruns, and broken op orders are
 * refused.
 *
 * Sections: random micro-batches, invariants, cases. */
#include <math.h>
#include <string.h>

#include "dp_test.h"

/* ---- random micro-batches ---------------------------------------------------------------- */

static unsigned long long seed = 7;
static double urand(double lo, double hi)
{
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * (double)(seed >> 11) / 9007199254740992.0;
}

static void random_times(dp_mb_times *t, int M, int S)
{
    for (int j = 0; j < M; j++) {
        double size = urand(0.2, 5);
        for (int s = 0; s < S; s++) {
            t[j].fwd_ms[s] = size * urand(0.8, 1.2);
            t[j].bwd_ms[s] = 2 * size * urand(0.8, 1.2);
            t[j].stored_mb[s] = 100 * size;
            t[j].peak_mb[s] = 30 * size;
        }
        t[j].comm_ms = urand(0, 0.5);
    }
}

/* ---- invariants ------------------------------------------------------------------------- */

static const dp_op *find(const dp_schedule *s, int stage, int mb, bool bwd)
{
    for (int k = 0; k < 2 * s->n_mb; k++)
        if (s->ops[stage][k].mb == mb && s->ops[stage][k].backward == bwd)
            return &s->ops[stage][k];
    cr_assert_fail("op missing");
    return NULL;
}

static void check(const dp_schedule *s, const dp_mb_times *t, int M, int S, const double *limit)
{
    double crit = 0, serial = 0;
    for (int j = 0; j < M; j++) {
        double chain = 2 * (S - 1) * t[j].comm_ms;
        for (int g = 0; g < S; g++)
            chain += t[j].fwd_ms[g] + t[j].bwd_ms[g];
        crit = fmax(crit, chain);
        serial += chain;
    }
    for (int g = 0; g < S; g++) {
        double busy = 0;
        for (int j = 0; j < M; j++)
            busy += t[j].fwd_ms[g] + t[j].bwd_ms[g];
        crit = fmax(crit, busy);
    }
    cr_assert_geq(s->makespan_ms, crit * (1 - 1e-12), "makespan %g below critical path %g",
                  s->makespan_ms, crit);
    cr_assert_leq(s->makespan_ms, serial * (1 + 1e-12), "makespan %g above serial sum %g",
                  s->makespan_ms, serial);
    for (int g = 0; g < S; g++) {
        double cur = 0, prev_end = 0;
        bool over = false;
        for (int k = 0; k < 2 * M; k++) {
            const dp_op *o = &s->ops[g][k];
            cr_assert_geq(o->start_ms, prev_end - 1e-9, "ops overlap on stage %d", g);
            prev_end = o->end_ms;
            if (!o->backward) {
                if (g > 0)
                    cr_assert_geq(o->start_ms,
                                  find(s, g - 1, o->mb, false)->end_ms + t[o->mb].comm_ms - 1e-9);
                over |= cur + t[o->mb].stored_mb[g] + t[o->mb].peak_mb[g] > limit[g] + 1e-9;
                cur += t[o->mb].stored_mb[g];
            } else {
                cr_assert_geq(o->start_ms, find(s, g, o->mb, false)->end_ms - 1e-9);
                if (g < S - 1)
                    cr_assert_geq(o->start_ms,
                                  find(s, g + 1, o->mb, true)->end_ms + t[o->mb].comm_ms - 1e-9);
                cur -= t[o->mb].stored_mb[g];
            }
        }
        cr_assert_eq(over, over && !s->fits,
                     "stage %d: memory over the limit in a fitting "
                     "schedule",
                     g);
    }
}

/* ---- cases ---------------------------------------------------------------------------------- */

Test(schedule, invariants_on_random_micro_batches)
{
    static dp_mb_times t[40];
    double loose[DP_MAX_STAGES];
    for (int g = 0; g < DP_MAX_STAGES; g++)
        loose[g] = 1e12;
    for (int trial = 0; trial < 60; trial++) {
        int S = 1 + trial % 8, M = 1 + (int)urand(0, 39.99);
        random_times(t, M, S);
        for (int kind = 0; kind < DP_SCHED_COUNT; kind++) {
            dp_schedule s;
            cr_assert_eq(dp_schedule_build((dp_sched_kind)kind, t, M, S, loose, &s), DP_OK, "%s",
                         dp_last_error());
            cr_assert(s.fits);
            check(&s, t, M, S, loose);
            dp_schedule_free(&s);
        }
    }
}

Test(schedule, cyclic_fits_a_tight_limit_1f1b_overruns)
{
    static dp_mb_times t[24];
    int S = 4, M = 24, overruns = 0;
    for (int trial = 0; trial < 20; trial++) {
        random_times(t, M, S);
        double limit[DP_MAX_STAGES], one = 0;
        for (int j = 0; j < M; j++)
            one = fmax(one, t[j].stored_mb[0] + t[j].peak_mb[0]);
        for (int g = 0; g < S; g++)
            limit[g] = 1.6 * one; /* one big micro-batch and a bit */
        dp_schedule c, f;
        cr_assert_eq(dp_schedule_build(DP_SCHED_CYCLIC, t, M, S, limit, &c), DP_OK);
        cr_assert(c.fits, "the memory-aware schedule must fit when each micro-batch does");
        check(&c, t, M, S, limit);
        for (int g = 0; g < S; g++)
            cr_assert_leq(c.peak_mb[g], limit[g] + 1e-9);
        cr_assert_eq(dp_schedule_build(DP_SCHED_1F1B, t, M, S, limit, &f), DP_OK);
        check(&f, t, M, S, limit);
        overruns += !f.fits;
        dp_schedule_free(&c);
        dp_schedule_free(&f);
    }
    cr_assert_gt(overruns, 0, "the tight limit never bit 1F1B");
}

Test(schedule, one_stage_is_the_serial_sum)
{
    dp_mb_times t[5];
    random_times(t, 5, 1);
    double sum = 0, limit[1] = {1e12};
    for (int j = 0; j < 5; j++)
        sum += t[j].fwd_ms[0] + t[j].bwd_ms[0];
    dp_schedule s;
    cr_assert_eq(dp_schedule_build(DP_SCHED_1F1B, t, 5, 1, limit, &s), DP_OK);
    cr_assert_float_eq(s.makespan_ms, sum, 1e-9);
    dp_schedule_free(&s);
}

Test(schedule, broken_orders_are_refused)
{
    dp_mb_times t[3];
    random_times(t, 3, 2);
    double limit[2] = {1e12, 1e12};
    dp_schedule s;
    cr_assert_eq(dp_schedule_build(DP_SCHED_1F1B, t, 3, 2, limit, &s), DP_OK);
    /* A backward before its forward on stage 1. */
    dp_op save = s.ops[1][0];
    s.ops[1][0] = s.ops[1][1];
    s.ops[1][1] = save;
    if (!s.ops[1][0].backward) { /* make sure the first op is now a backward */
        s.ops[1][0].backward = true;
        s.ops[1][1].backward = false;
    }
    cr_assert_eq(dp_simulate(t, 3, 2, limit, &s), DP_EINVAL);
    cr_assert(strstr(dp_last_error(), "out of order"), "%s", dp_last_error());
    dp_schedule_free(&s);
    /* Stage 0 waits for micro-batch 1's gradient before sending micro-batch 0 forward while
     * stage 1 waits for micro-batch 0: the orders deadlock. */
    cr_assert_eq(dp_schedule_build(DP_SCHED_1F1B, t, 2, 2, limit, &s), DP_OK);
    dp_op o0[4] = {{1, false, 0, 0}, {1, true, 0, 0}, {0, false, 0, 0}, {0, true, 0, 0}};
    dp_op o1[4] = {{0, false, 0, 0}, {0, true, 0, 0}, {1, false, 0, 0}, {1, true, 0, 0}};
    memcpy(s.ops[0], o0, sizeof o0);
    memcpy(s.ops[1], o1, sizeof o1);
    cr_assert_eq(dp_simulate(t, 2, 2, limit, &s), DP_EINVAL);
    cr_assert(strstr(dp_last_error(), "deadlock"), "%s", dp_last_error());
    dp_schedule_free(&s);
}
