/* schedule.c: pipeline schedules for unequal micro-batches and their event-driven simulation.
 *
 * Sections: the op orders (1F1B, memory-aware cyclic), the simulation, building a schedule.
 *
 * A schedule is, per stage, the order of its forward (F) and backward (B) ops. The simulation
 * starts each op when its stage is free and its input is there: F(j, s) after F(j, s - 1)
 * plus one transfer, B(j, s) after B(j, s + 1) plus one transfer (on the last stage, after
 * its own F). Memory on a stage follows its own order: F(j) needs what is stored plus
 * stored(j) + peak(j); B(j) frees stored(j).
 *
 * 1F1B: stage s runs min(S - s - 1, M) forwards, then alternates one forward and one
 * backward, then drains the backwards. The cyclic schedule of the paper: micro-batch j is
 * injected at cycle c_j; F(j, s) belongs to cycle c_j + s and B(j, s) to c_j + 2S - 1 - s, a
 * backward before a forward within a cycle. It is memory-aware: c_j is the first cycle after
 * c_{j-1} at which j's activations fit on every stage over its whole lifetime next to those
 * already in flight. The cycles only fix each stage's order; the ops are then replayed by the
 * simulation without cycle barriers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

const char *dp_sched_name(dp_sched_kind k)
{
    return k == DP_SCHED_1F1B ? "1f1b" : k == DP_SCHED_CYCLIC ? "cyclic" : "?";
}

void dp_schedule_free(dp_schedule *s)
{
    for (int k = 0; k < DP_MAX_STAGES; k++)
        free(s->ops[k]);
    memset(s, 0, sizeof *s);
}

/* ---- the op orders ------------------------------------------------------------------------ */

static void order_1f1b(int M, int S, dp_schedule *out)
{
    for (int s = 0; s < S; s++) {
        dp_op *o = out->ops[s];
        int w = S - s - 1 < M ? S - s - 1 : M, k = 0;
        for (int j = 0; j < w; j++)
            o[k++] = (dp_op){j, false, 0, 0};
        for (int i = 0; w + i < M; i++) {
            o[k++] = (dp_op){w + i, false, 0, 0};
            o[k++] = (dp_op){i, true, 0, 0};
        }
        for (int i = M - w; i < M; i++)
            o[k++] = (dp_op){i, true, 0, 0};
    }
}

/* Does micro-batch j injected at cycle x fit next to the ones before it? */
static bool cyclic_fits(const dp_mb_times *t, const long *inj, int j, long x, int S,
                        const double *limit)
{
    for (int s = 0; s < S; s++) {
        long from = x + s, to = x + 2L * S - 1 - s;
        for (long c = from; c <= to; c++) {
            double used = t[j].stored_mb[s] + (c == from ? t[j].peak_mb[s] : 0);
            for (int i = j - 1; i >= 0 && inj[i] + 2L * S - 1 >= from - S; i--)
                if (inj[i] + s <= c && c <= inj[i] + 2L * S - 1 - s)
                    used += t[i].stored_mb[s];
            if (used > limit[s])
                return false;
        }
    }
    return true;
}

typedef struct cyc_op {
    long cycle;
    int mb;
    bool backward;
} cyc_op;

static int cmp_cyc(const void *a, const void *b)
{
    const cyc_op *x = a, *y = b;
    if (x->cycle != y->cycle)
        return x->cycle < y->cycle ? -1 : 1;
    if (x->backward != y->backward)
        return x->backward ? -1 : 1; /* free memory first */
    return (x->mb > y->mb) - (x->mb < y->mb);
}

static dp_status order_cyclic(const dp_mb_times *t, int M, int S, const double *limit,
                              dp_schedule *out)
{
    long *inj = malloc((size_t)M * sizeof *inj);
    cyc_op *tmp = malloc(2 * (size_t)M * sizeof *tmp);
    if (!inj || !tmp) {
        free(inj);
        free(tmp);
        return dp_fail(DP_ENOMEM, "out of memory building the cyclic schedule");
    }
    for (int j = 0; j < M; j++) {
        long x = j ? inj[j - 1] + 1 : 0;
        /* Past inj[j-1] + 2S nothing is in flight: the loop ends (if j alone does not fit,
         * the schedule is reported as not fitting by the simulation). */
        while (x < (j ? inj[j - 1] : 0) + 2L * S && !cyclic_fits(t, inj, j, x, S, limit))
            x++;
        inj[j] = x;
    }
    for (int s = 0; s < S; s++) {
        for (int j = 0; j < M; j++) {
            tmp[2 * (size_t)j] = (cyc_op){inj[j] + s, j, false};
            tmp[2 * (size_t)j + 1] = (cyc_op){inj[j] + 2L * S - 1 - s, j, true};
        }
        qsort(tmp, 2 * (size_t)M, sizeof *tmp, cmp_cyc);
        for (int k = 0; k < 2 * M; k++)
            out->ops[s][k] = (dp_op){tmp[k].mb, tmp[k].backward, 0, 0};
    }
    free(inj);
    free(tmp);
    return DP_OK;
}

/* ---- the simulation ---------------------------------------------------------------------- */

/* Each stage's order holds every F(j) and B(j) once, F before B. */
static dp_status check_order(int M, int S, const dp_schedule *s, char *seen)
{
    for (int st = 0; st < S; st++) {
        memset(seen, 0, (size_t)M);
        for (int k = 0; k < 2 * M; k++) {
            const dp_op *o = &s->ops[st][k];
            if (o->mb < 0 || o->mb >= M)
                return dp_fail(DP_EINVAL, "stage %d op %d: micro-batch %d of %d", st, k, o->mb, M);
            int want = o->backward ? 1 : 0;
            if (seen[o->mb] != want)
                return dp_fail(DP_EINVAL, "stage %d op %d: %s of micro-batch %d out of order", st,
                               k, o->backward ? "backward" : "forward", o->mb);
            seen[o->mb]++;
        }
    }
    return DP_OK;
}

/* When op o of stage st can start as far as its input goes; -1 when not yet known. */
static double input_ready(const dp_mb_times *t, const dp_op *o, int st, int S, const double *fend,
                          const double *bend)
{
    size_t j = (size_t)o->mb * (size_t)S;
    if (!o->backward)
        return st == 0 ? 0 : fend[j + st - 1] < 0 ? -1 : fend[j + st - 1] + t[o->mb].comm_ms;
    if (st == S - 1)
        return fend[j + st];
    return bend[j + st + 1] < 0 ? -1 : bend[j + st + 1] + t[o->mb].comm_ms;
}

static void memory_walk(const dp_mb_times *t, int M, int S, const double *limit, dp_schedule *s)
{
    s->fits = true;
    for (int st = 0; st < S; st++) {
        double cur = 0, peak = 0;
        for (int k = 0; k < 2 * M; k++) {
            const dp_op *o = &s->ops[st][k];
            if (o->backward) {
                cur -= t[o->mb].stored_mb[st];
                continue;
            }
            peak = fmax(peak, cur + t[o->mb].stored_mb[st] + t[o->mb].peak_mb[st]);
            cur += t[o->mb].stored_mb[st];
        }
        s->peak_mb[st] = peak;
        if (limit && peak > limit[st] * (1 + 1e-12))
            s->fits = false;
    }
}

dp_status dp_simulate(const dp_mb_times *t, int M, int S, const double *limit, dp_schedule *s)
{
    if (M < 1 || S < 1 || S > DP_MAX_STAGES)
        return dp_fail(DP_EINVAL, "simulate: %d micro-batches, %d stages", M, S);
    size_t n = (size_t)M * (size_t)S;
    double *fend = malloc(n * sizeof *fend), *bend = malloc(n * sizeof *bend);
    char *seen = malloc((size_t)M);
    dp_status st = fend && bend && seen ? check_order(M, S, s, seen)
                                        : dp_fail(DP_ENOMEM, "out of memory simulating");
    int next[DP_MAX_STAGES] = {0};
    double free_at[DP_MAX_STAGES] = {0};
    for (size_t i = 0; st == DP_OK && i < n; i++)
        fend[i] = bend[i] = -1;
    size_t done = 0;
    s->makespan_ms = 0;
    while (st == DP_OK && done < 2 * n) {
        size_t before = done;
        for (int g = 0; g < S; g++)
            while (next[g] < 2 * M) {
                dp_op *o = &s->ops[g][next[g]];
                double ready = input_ready(t, o, g, S, fend, bend);
                if (ready < 0)
                    break;
                o->start_ms = fmax(ready, free_at[g]);
                o->end_ms = o->start_ms + (o->backward ? t[o->mb].bwd_ms[g] : t[o->mb].fwd_ms[g]);
                (o->backward ? bend : fend)[(size_t)o->mb * (size_t)S + (size_t)g] = o->end_ms;
                free_at[g] = o->end_ms;
                s->makespan_ms = fmax(s->makespan_ms, o->end_ms);
                next[g]++;
                done++;
            }
        if (done == before)
            st = dp_fail(DP_EINVAL, "simulate: the op orders wait on each other (deadlock)");
    }
    if (st == DP_OK) {
        s->stages = S;
        s->n_mb = M;
        memory_walk(t, M, S, limit, s);
    }
    free(fend);
    free(bend);
    free(seen);
    return dp_done(st);
}

/* ---- building a schedule ----------------------------------------------------------------- */

dp_status dp_schedule_build(dp_sched_kind kind, const dp_mb_times *t, int n_mb, int stages,
                            const double *limit_mb, dp_schedule *out)
{
    memset(out, 0, sizeof *out);
    if (n_mb < 1 || stages < 1 || stages > DP_MAX_STAGES || (unsigned)kind >= DP_SCHED_COUNT)
        return dp_fail(DP_EINVAL, "schedule: %d micro-batches, %d stages", n_mb, stages);
    out->kind = kind;
    for (int s = 0; s < stages; s++)
        if (!(out->ops[s] = malloc(2 * (size_t)n_mb * sizeof(dp_op)))) {
            dp_schedule_free(out);
            return dp_fail(DP_ENOMEM, "out of memory building a schedule");
        }
    dp_status st = DP_OK;
    if (kind == DP_SCHED_1F1B)
        order_1f1b(n_mb, stages, out);
    else
        st = order_cyclic(t, n_mb, stages, limit_mb, out);
    if (st == DP_OK)
        st = dp_simulate(t, n_mb, stages, limit_mb, out);
    if (st != DP_OK)
        dp_schedule_free(out);
    return dp_done(st);
}
