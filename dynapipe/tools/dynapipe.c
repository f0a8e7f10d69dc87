/* dynapipe: the DynaPipe command: plan one global batch (micro-batches, schedule, simulated
 * iteration time and tokens/s against the baselines), print a pipeline rank's instruction
 * stream, and run the throughput benchmark over models, data, stage counts and batch sizes.
 *
 * Sections: inputs, plan, instructions, bench, main; the options are in options.c.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "rt/env.h"

/* ---- inputs ------------------------------------------------------------------------------ */

/* The cost-model directory: --cost-model, $DYNAPIPE_COST_MODEL, the repository copy next to
 * this binary (BUILD/bin/../../dynapipe/data/costmodels), or the one below the working
 * directory. */
static const char *cost_model_dir(opts *o)
{
    if (o->cost_model)
        return o->cost_model;
    if (o->cm_env[0])
        return o->cm_env;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(o->cm_dir, sizeof o->cm_dir, "%.3000s/../../dynapipe/data/costmodels", exe);
            if (access(o->cm_dir, R_OK) == 0)
                return o->cm_dir;
        }
    }
    return "dynapipe/data/costmodels";
}

static void apply(const opts *o, const dp_cost_model *cm, dp_config *c)
{
    const dp_config *s = &o->set;
    dp_config_default(c, cm);
    if (s->stages > 0)
        c->stages = s->stages;
    if (s->dp_size > 0)
        c->dp_size = s->dp_size;
    c->pad_multiple = s->pad_multiple;
    c->memory_mb = s->memory_mb;
    if (o->has_hidden)
        c->hidden = s->hidden;
    if (s->param_factor >= 0)
        c->param_factor = s->param_factor;
    if (s->p2p_gbps > 0)
        c->p2p_gbps = s->p2p_gbps;
    if (s->p2p_latency_ms >= 0)
        c->p2p_latency_ms = s->p2p_latency_ms;
    if (s->tmax_tol >= 0)
        c->tmax_tol = s->tmax_tol;
    if (s->rc_mask)
        c->rc_mask = s->rc_mask;
    c->rc_per_microbatch = s->rc_per_microbatch;
    if (s->sched_mask)
        c->sched_mask = s->sched_mask;
    if (s->pack_len > 0)
        c->pack_len = s->pack_len;
    if (s->pack_target_len >= 0)
        c->pack_target_len = s->pack_target_len;
    if (s->token_budget > 0)
        c->token_budget = s->token_budget;
    c->max_len = s->max_len > 0 ? s->max_len : 0;
    c->max_target = s->max_target > 0 ? s->max_target : 0;
    if (o->has_layers) {
        char *end;
        c->layers_enc = (int)strtol(o->layers, &end, 10);
        c->layers_dec = *end == ',' ? (int)strtol(end + 1, NULL, 10) : 0;
    }
}

static int load_model(opts *o, const char *model, dp_cost_model **cm)
{
    if (!model)
        return usage_err("%s needs --model gpt|t5 (or a cost-model file prefix)", o->cmd);
    if (dp_cost_model_load(cost_model_dir(o), model, o->tp, cm) != DP_OK)
        return fail();
    apply(o, *cm, &o->cfg);
    return 0;
}

/* The batch of about `tokens` tokens: from --lengths (rows in order, or a histogram sampled)
 * or the mixture. Histogram samples longer than the model's maximum are left out of the
 * sampling. */
static int load_batch(const opts *o, const char *lengths, const dp_cost_model *cm, long tokens,
                      dp_samples *s)
{
    if (!lengths || strcmp(lengths, "mixture") == 0)
        return dp_mixture_batch(NULL, 0, tokens, (uint64_t)o->seed, s, NULL) == DP_OK ? 0 : fail();
    dp_length_source src;
    if (dp_lengths_load(lengths, &src) != DP_OK)
        return fail();
    if (src.histogram && src.dims == 1 && dp_cost_model_encdec(cm) && o->target_len <= 0) {
        fprintf(
            stderr,
            "dynapipe: %s is a histogram of single lengths; an encoder-decoder model also needs targets: give --target-len\n",
            lengths);
        dp_lengths_free(&src);
        return 1;
    }
    int mt, m = dp_cost_model_max_len(cm, &mt);
    if (o->cfg.max_len > 0 && o->cfg.max_len < m)
        m = o->cfg.max_len;
    dp_status st = dp_lengths_batch(&src, tokens, (uint64_t)o->seed, o->target_len, m, s);
    dp_lengths_free(&src);
    if (st != DP_OK)
        return fail();
    if (s->left_out)
        fprintf(
            stderr,
            "dynapipe: %s: --tokens-per-batch %ld took the first %zu samples; %zu samples (%ld tokens) left out\n",
            lengths, tokens, s->n, s->left_out, s->left_out_tokens);
    return 0;
}

/* ---- plan ------------------------------------------------------------------------------- */

typedef struct planned {
    dp_result r[DP_METHOD_COUNT];
    bool ok[DP_METHOD_COUNT];
    char why[DP_METHOD_COUNT][256];
    double plan_s;
} planned;

/* DynaPipe must succeed; a baseline that cannot plan the batch is reported, not fatal. */
static int plan_all(const dp_cost_model *cm, const dp_config *cfg, const dp_samples *s, planned *p)
{
    memset(p, 0, sizeof *p);
    double t0 = now();
    if (dp_plan(cm, cfg, s->v, s->n, DP_METHOD_DYNAPIPE, &p->r[0]) != DP_OK)
        return fail();
    p->plan_s = now() - t0;
    p->ok[0] = true;
    for (int m = 1; m < DP_METHOD_COUNT; m++) {
        p->ok[m] = dp_plan(cm, cfg, s->v, s->n, (dp_method)m, &p->r[m]) == DP_OK;
        if (!p->ok[m])
            snprintf(p->why[m], sizeof p->why[m], "%s", dp_last_error());
    }
    return 0;
}

static void planned_free(planned *p)
{
    for (int m = 0; m < DP_METHOD_COUNT; m++)
        if (p->ok[m])
            dp_result_free(&p->r[m]);
}

static const char *rc_label(const dp_result *r)
{
    return r->rc_mixed ? "per-microbatch" : dp_rc_name(r->rc);
}

static void json_result(const dp_result *r)
{
    printf(
        "\"n_microbatches\":%zu,\"t_max_ms\":%.4f,\"objective_ms\":%.4f,\"iteration_ms\":%.4f,\"tokens_per_s\":%.2f,\"recompute\":\"%s\",\"schedule\":\"%s\",\"real_tokens\":%ld,\"padded_tokens\":%ld",
        r->n_mb, r->t_max_ms, r->objective_ms, r->iteration_ms, r->tokens_per_s, rc_label(r),
        dp_sched_name(r->schedule), r->real_tokens, r->padded_tokens);
}

static void print_json(const opts *o, const dp_cost_model *cm, const dp_samples *s,
                       const planned *p)
{
    const dp_result *r = &p->r[0];
    printf(
        "{\"model\":\"%s\",\"stages\":%d,\"dp\":%d,\"memory_mb\":%.0f,\"samples\":%zu,\"left_out\":{\"samples\":%zu,\"tokens\":%ld},",
        dp_cost_model_name(cm), o->cfg.stages, o->cfg.dp_size, o->cfg.memory_mb, s->n, s->left_out,
        s->left_out_tokens);
    printf("\"microbatches\":[");
    for (size_t k = 0; k < r->n_mb; k++) {
        const dp_microbatch *m = &r->mb[k];
        printf("%s\n{\"samples\":[", k ? "," : "");
        for (size_t i = 0; i < m->n; i++)
            printf("%s%zu", i ? "," : "", m->samples[i]);
        printf(
            "],\"padded_input\":%d,\"padded_target\":%d,\"cost_ms\":%.4f,\"replica\":%d,\"recompute\":\"%s\"}",
            m->padded_input, m->padded_target, m->cost_ms, m->replica, dp_rc_name(m->rc));
    }
    printf("],\n");
    json_result(r);
    printf(",\n\"baselines\":{");
    for (int m = 1; m < DP_METHOD_COUNT; m++) {
        printf("%s\n\"%s\":{", m > 1 ? "," : "", dp_method_name((dp_method)m));
        if (p->ok[m])
            json_result(&p->r[m]);
        else
            printf("\"error\":\"%s\"", p->why[m]);
        printf("}");
    }
    printf("},\n\"plan_seconds\":%.6f}\n", p->plan_s);
}

static void print_text(const opts *o, const dp_cost_model *cm, const dp_samples *s,
                       const planned *p)
{
    const dp_result *r = &p->r[0];
    printf("%s, %d stages x %d replica(s), %.0f MB per GPU: %zu samples, %ld tokens",
           dp_cost_model_name(cm), o->cfg.stages, o->cfg.dp_size, o->cfg.memory_mb, s->n,
           r->real_tokens);
    if (s->left_out)
        printf(" (%zu samples, %ld tokens of the file left out by --tokens-per-batch)", s->left_out,
               s->left_out_tokens);
    printf("\n");
    printf("%zu micro-batches (recompute %s, schedule %s):\n", r->n_mb, rc_label(r),
           dp_sched_name(r->schedule));
    for (size_t k = 0; k < r->n_mb; k++) {
        const dp_microbatch *m = &r->mb[k];
        printf("  #%-3zu %3zu samples padded to (%4d, %4d)  %8.2f ms  replica %d  %s\n", k, m->n,
               m->padded_input, m->padded_target, m->cost_ms, m->replica, dp_rc_name(m->rc));
    }
    printf(
        "DynaPipe: T_max %.1f ms, objective %.1f ms, simulated iteration %.1f ms, %.0f tokens/s, %.1f%% padding; planned in %.2f ms\n",
        r->t_max_ms, r->objective_ms, r->iteration_ms, r->tokens_per_s,
        100.0 * (double)(r->padded_tokens - r->real_tokens) / (double)r->padded_tokens,
        p->plan_s * 1e3);
    printf("%-13s %6s %-9s %-6s %12s %10s %12s\n", "method", "mbs", "recompute", "sched",
           "iteration_ms", "tokens/s", "DynaPipe_x");
    for (int m = 0; m < DP_METHOD_COUNT; m++) {
        const dp_result *b = &p->r[m];
        if (!p->ok[m]) {
            printf("%-13s cannot plan: %s\n", dp_method_name((dp_method)m), p->why[m]);
            continue;
        }
        printf("%-13s %6zu %-9s %-6s %12.1f %10.0f %12.2f\n", dp_method_name((dp_method)m), b->n_mb,
               rc_label(b), dp_sched_name(b->schedule), b->iteration_ms, b->tokens_per_s,
               r->tokens_per_s / b->tokens_per_s);
    }
}

static int cmd_plan(opts *o)
{
    dp_cost_model *cm;
    int rc = load_model(o, o->model, &cm);
    if (rc)
        return rc;
    dp_samples s = {0};
    planned p;
    if (!(rc = load_batch(o, o->lengths, cm, o->tokens, &s)) &&
        !(rc = plan_all(cm, &o->cfg, &s, &p))) {
        if (o->json)
            print_json(o, cm, &s, &p);
        else
            print_text(o, cm, &s, &p);
        planned_free(&p);
    }
    dp_samples_free(&s);
    dp_cost_model_free(cm);
    return rc;
}

/* ---- instructions ----------------------------------------------------------------------- */

static int write_stream(const opts *o, const dp_stream *st)
{
    bool binary = o->format && strcmp(o->format, "binary") == 0;
    if (o->format && !binary && strcmp(o->format, "json") != 0)
        return usage_err("--format '%s': accepted json or binary", o->format);
    FILE *f = o->out ? fopen(o->out, binary ? "wb" : "w") : stdout;
    if (!f) {
        fprintf(stderr, "dynapipe: %s: %s\n", o->out, strerror(errno));
        return 1;
    }
    int rc = 0;
    if (binary) {
        uint8_t *buf;
        size_t len;
        if (dp_stream_encode(st, &buf, &len) != DP_OK)
            rc = fail();
        else if (fwrite(buf, 1, len, f) != len)
            rc = 1;
        if (rc == 0)
            free(buf);
    } else if (dp_stream_json(st, f) != DP_OK) {
        rc = fail();
    }
    if (o->out && fclose(f) != 0)
        rc = 1;
    return rc;
}

/* Every rank of the replica is built and checked; the one asked for is printed. */
static int emit_rank(const opts *o, const dp_result *r)
{
    dp_stream st[DP_MAX_STAGES];
    memset(st, 0, sizeof st);
    int rc = 0;
    for (int s = 0; s < r->stages && !rc; s++)
        if (dp_instructions(r, o->replica, s, &st[s]) != DP_OK)
            rc = fail();
    if (!rc && dp_check_streams(st, r->stages) != DP_OK)
        rc = fail();
    if (!rc)
        rc = write_stream(o, &st[o->rank]);
    for (int s = 0; s < r->stages; s++)
        dp_stream_free(&st[s]);
    return rc;
}

static int cmd_instructions(opts *o)
{
    dp_cost_model *cm;
    int rc = load_model(o, o->model, &cm);
    if (rc)
        return rc;
    if (o->rank >= o->cfg.stages || o->replica >= o->cfg.dp_size) {
        dp_cost_model_free(cm);
        return usage_err("--rank / --replica: beyond --stages / --dp (%s)", "see --help");
    }
    dp_samples s = {0};
    dp_result r;
    if (!(rc = load_batch(o, o->lengths, cm, o->tokens, &s))) {
        if (dp_plan(cm, &o->cfg, s.v, s.n, DP_METHOD_DYNAPIPE, &r) != DP_OK) {
            rc = fail();
        } else {
            rc = emit_rank(o, &r);
            dp_result_free(&r);
        }
    }
    dp_samples_free(&s);
    dp_cost_model_free(cm);
    return rc;
}

/* ---- bench ---------------------------------------------------------------------------------- */

typedef struct bench_out {
    FILE *csv, *md;
} bench_out;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Adjacency cost of the planner's order and of the plain sort by (input, target). */
static void order_costs(const dp_samples *s, bool encdec, double *ours, double *sorted)
{
    size_t *o = malloc(s->n * sizeof *o);
    dp_sample *c = malloc(s->n * sizeof *c);
    *ours = *sorted = 0;
    if (!o || !c || dp_order(s->v, s->n, encdec, o) != DP_OK) {
        free(o);
        free(c);
        return;
    }
    *ours = dp_adjacency_cost(s->v, o, s->n);
    /* The sort by (input, target) is the decoder-only ordering applied to (input, 0) keys,
     * ties by target through the index order of a stable pass. */
    for (size_t i = 0; i < s->n; i++)
        c[i] = (dp_sample){s->v[i].input_len * 65536 + s->v[i].target_len, 0};
    dp_order(c, s->n, false, o);
    *sorted = dp_adjacency_cost(s->v, o, s->n);
    free(o);
    free(c);
}

static double median_plan_ms(const dp_cost_model *cm, const dp_config *cfg, const dp_samples *s,
                             int repeat, double first_ms)
{
    double t[1000];
    t[0] = first_ms;
    for (int k = 1; k < repeat; k++) {
        dp_result r;
        double t0 = now();
        if (dp_plan(cm, cfg, s->v, s->n, DP_METHOD_DYNAPIPE, &r) == DP_OK)
            dp_result_free(&r);
        t[k] = (now() - t0) * 1e3;
    }
    qsort(t, (size_t)repeat, sizeof t[0], cmp_double);
    return t[repeat / 2];
}

/* DynaPipe's tokens/s with a recompute mode per micro-batch (0 when it cannot plan). */
static double per_microbatch_tps(const dp_cost_model *cm, const dp_config *cfg, const dp_samples *s)
{
    dp_config c = *cfg;
    c.rc_per_microbatch = true;
    dp_result r;
    if (dp_plan(cm, &c, s->v, s->n, DP_METHOD_DYNAPIPE, &r) != DP_OK)
        return 0;
    double tps = r.tokens_per_s;
    dp_result_free(&r);
    return tps;
}

static void bench_row(const opts *o, const dp_cost_model *cm, const char *data, long tokens,
                      bench_out *out)
{
    dp_samples s = {0};
    const char *dname = strrchr(data, '/') ? strrchr(data, '/') + 1 : data;
    planned p;
    if (load_batch(o, data, cm, tokens, &s) || plan_all(cm, &o->cfg, &s, &p)) {
        fprintf(out->csv, "%s,%s,%d,%ld,error,,,,,,,,,,,,,,\n", dp_cost_model_name(cm), dname,
                o->cfg.stages, tokens);
        dp_samples_free(&s);
        return;
    }
    double plan_ms = median_plan_ms(cm, &o->cfg, &s, o->repeat, p.plan_s * 1e3), ord, srt;
    order_costs(&s, dp_cost_model_encdec(cm), &ord, &srt);
    double tps[DP_METHOD_COUNT];
    for (int m = 0; m < DP_METHOD_COUNT; m++)
        tps[m] = p.ok[m] ? p.r[m].tokens_per_s : 0;
    const dp_result *r = &p.r[0];
    double per_mb = per_microbatch_tps(cm, &o->cfg, &s);
    fprintf(out->csv,
            "%s,%s,%d,%ld,%zu,%ld,%.1f,%.1f,%.1f,%.1f,%zu,%s,%s,%.3f,%.3f,%.0f,%.0f,%.1f\n",
            dp_cost_model_name(cm), dname, o->cfg.stages, tokens, s.n, r->real_tokens, tps[0],
            tps[1], tps[2], tps[3], r->n_mb, rc_label(r), dp_sched_name(r->schedule),
            p.plan_s * 1e3, plan_ms, ord, srt, per_mb);
    if (out->md) {
        fprintf(out->md, "| %s | %s | %d | %ld | %zu | %.0f |", dp_cost_model_name(cm), dname,
                o->cfg.stages, tokens, s.n, tps[0]);
        for (int m = 1; m < DP_METHOD_COUNT; m++)
            fprintf(out->md, tps[m] > 0 ? " %.2f |" : " n/a |", tps[m] > 0 ? tps[0] / tps[m] : 0);
        fprintf(out->md, " %zu %s %s | %.2f |\n", r->n_mb, rc_label(r), dp_sched_name(r->schedule),
                plan_ms);
    }
    planned_free(&p);
    dp_samples_free(&s);
}

/* Each comma-separated item of a list, in turn. */
static const char *next_item(const char **p, char *buf, size_t n)
{
    if (!*p || !**p)
        return NULL;
    const char *c = strchr(*p, ',');
    size_t len = c ? (size_t)(c - *p) : strlen(*p);
    snprintf(buf, n, "%.*s", (int)len, *p);
    *p = c ? c + 1 : NULL;
    return buf;
}

static int bench_model(opts *o, const char *model, bench_out *out)
{
    dp_cost_model *cm;
    int rc = load_model(o, model, &cm);
    if (rc)
        return rc;
    char d[PATH_MAX], sl[32], tl[32];
    for (const char *dp = o->data; next_item(&dp, d, sizeof d);) {
        for (const char *sp = o->stage_list; next_item(&sp, sl, sizeof sl);) {
            o->cfg.stages = atoi(sl); /* NOLINT(cert-err34-c): validated by dp_config_check */
            for (const char *tp = o->token_list; next_item(&tp, tl, sizeof tl);) {
                long tokens = strtol(tl, NULL, 10);
                bench_row(o, cm, d, tokens, out);
                fflush(out->csv);
            }
        }
    }
    dp_cost_model_free(cm);
    return 0;
}

static int cmd_bench(opts *o)
{
    if (!o->models)
        o->models = "gpt,t5";
    if (!o->stage_list)
        o->stage_list = "1,2,4,8";
    if (!o->token_list)
        o->token_list = "16384,32768,65536,131072";
    if (!o->data)
        o->data = "mixture";
    if (o->repeat < 1)
        o->repeat = 5;
    bench_out out = {o->csv ? fopen(o->csv, "w") : stdout, o->md ? fopen(o->md, "w") : NULL};
    if (!out.csv || (o->md && !out.md)) {
        fprintf(stderr, "dynapipe: cannot write %s: %s\n", !out.csv ? o->csv : o->md,
                strerror(errno));
        return 1;
    }
    fprintf(
        out.csv,
        "model,data,stages,tokens_per_batch,samples,real_tokens,dynapipe_tps,padding_tps,packing_tps,token_budget_tps,micro_batches,recompute,schedule,plan_ms_first,plan_ms_median,order_adjacency,sorted_adjacency,dynapipe_rc_per_microbatch_tps\n");
    if (out.md)
        fprintf(
            out.md,
            "| model | data | stages | tokens/batch | samples | DynaPipe tokens/s | x padding | x packing | x token budget | micro-batches, recompute, schedule | plan ms (median) |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    int rc = 0;
    char m[64];
    for (const char *mp = o->models; !rc && next_item(&mp, m, sizeof m);)
        rc = bench_model(o, m, &out);
    if (o->csv)
        fclose(out.csv);
    if (out.md)
        fclose(out.md);
    return rc;
}

/* ---- main ----------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    opts o;
    memset(&o, 0, sizeof o);
    o.cmd = argv[1];
    o.tp = 1;
    o.tokens = 65536;
    o.set = (dp_config){.stages = -1,
                        .dp_size = -1,
                        .param_factor = -1,
                        .p2p_gbps = -1,
                        .p2p_latency_ms = -1,
                        .tmax_tol = -1,
                        .pack_len = -1,
                        .pack_target_len = -1,
                        .token_budget = -1};
    int rc = load_env(&o);
    if (rc)
        return rc;
    rc = parse(argc, argv, &o);
    if (rc == -1) {
        fputs(usage, stdout);
        return 0;
    }
    if (rc)
        return rc;
    if (strcmp(o.cmd, "plan") == 0)
        return cmd_plan(&o);
    if (strcmp(o.cmd, "instructions") == 0)
        return cmd_instructions(&o);
    if (strcmp(o.cmd, "bench") == 0)
        return cmd_bench(&o);
    return usage_err("unknown command '%s'", o.cmd);
}
