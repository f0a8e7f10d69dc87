/* dynapipe: the DynaPipe command: plan one global batch (micro-batches, schedule, simulated
 * iteration time and tokens/s against the baselines), print a pipeline rank's instruction
 * stream, and run the throughput benchmark over models, data, stage counts and batch sizes.
 *
 * Sections: usage and options, inputs, plan, instructions, bench, main.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dynapipe.h"
#include "rt/env.h"

/* ---- usage and options -------------------------------------------------------------------- */

static const char usage[] =
    "usage: dynapipe COMMAND [options]      (dynapipe COMMAND --help: this text too)\n"
    "\n"
    "  plan [--lengths FILE | --mixture] --model gpt|t5 [--cost-model DIR] [--stages S]\n"
    "       [--tokens-per-batch N] [--memory-mb M] [--json] [planner options]\n"
    "        cut one global batch into micro-batches, schedule them, simulate the iteration;\n"
    "        the same for the baselines (padding, packing, token budget)\n"
    "  instructions ... --rank R [--replica D] [--format json|binary] [--out FILE]\n"
    "        the instruction stream of pipeline rank R (checked with every other rank's first)\n"
    "  bench [--models gpt,t5] [--stage-list 1,2,4,8] [--token-list 16384,...]\n"
    "        [--data mixture,FILE,...] [--csv FILE] [--md FILE] [--repeat R] [planner options]\n"
    "        tokens/s of DynaPipe and the baselines, and planning time, over every combination\n"
    "\n"
    "Inputs: --lengths FILE: rows 'input_len,target_len', or a histogram 'length,count' /\n"
    "  'input_len,output_len,count' (sampled with --seed up to --tokens-per-batch); without it\n"
    "  the built-in multi-task mixture (--mixture) is sampled.\n"
    "Planner options (defaults in brackets):\n"
    "  --cost-model DIR [$DYNAPIPE_COST_MODEL, else dynapipe/data/costmodels]  --tp N [1]\n"
    "  --stages S [4]  --dp D [1]  --tokens-per-batch N [65536]  --memory-mb M [36000]\n"
    "  --pad-multiple K [8]  --seed N [1]  --layers E[,D] [gpt 32; t5 12,12]  --hidden H\n"
    "  [gpt 4096; t5 1024]  --param-factor F [8]  --p2p-gbps G [25]  --p2p-latency-ms L [0.02]\n"
    "  --tmax-tol T [0: exact]  --recompute none,selective,full [all]  --recompute-per-microbatch\n"
    "  [off: one mode per iteration]  --schedule 1f1b,cyclic\n"
    "  [both]  --pack-len L [2048]  --pack-target-len L [t5 2048]  --token-budget N [8192]\n"
    "  --max-len L --max-target L [the cost model's grid]  --target-len L [0: 1-D histograms]\n"
    "Environment: DYNAPIPE_COST_MODEL, DYNAPIPE_MEMORY_MB, DYNAPIPE_PAD_MULTIPLE, DYNAPIPE_SEED\n"
    "  (options override them).\n"
    "Exit status: 0 ok, 1 error in the data (a message names the sample, file or limit), 2 "
    "usage.\n";

typedef struct opts {
    const char *cmd, *lengths, *model, *cost_model, *format, *out, *csv, *md;
    const char *models, *stage_list, *token_list, *data, *layers;
    char cm_env[PATH_MAX]; /* $DYNAPIPE_COST_MODEL, or empty */
    char cm_dir[PATH_MAX]; /* scratch for the path next to the binary */
    long tokens;
    long long seed;
    int tp, rank, replica, repeat, target_len;
    bool json, has_layers, has_hidden;
    dp_config cfg; /* filled after the cost model is known; explicit values kept here */
    dp_config set; /* the values given on the command line; 0 / NAN when not given */
} opts;

static int usage_err(const char *fmt, const char *arg)
{
    fprintf(stderr, "dynapipe: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see dynapipe --help)\n");
    return 2;
}

static int fail(void)
{
    fprintf(stderr, "dynapipe: %s\n", dp_last_error());
    return 1;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* A number option; -1 (after a usage message) when malformed. */
static int num(const char *name, const char *s, double lo, double hi, double *v)
{
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (end == s || *end || errno || !(d >= lo && d <= hi)) {
        fprintf(stderr,
                "dynapipe: --%s '%s': expected a number from %g to %g\n(see dynapipe "
                "--help)\n",
                name, s, lo, hi);
        return -1;
    }
    *v = d;
    return 0;
}

/* A comma list of names, each one of `names`, into a bit mask; -1 when bad. */
static int name_mask(const char *s, const char *const *names, int n, unsigned *mask)
{
    *mask = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *p = buf, *tok; (tok = strsep(&p, ",")) != NULL;) {
        int k = 0;
        while (k < n && strcmp(tok, names[k]) != 0)
            k++;
        if (k == n)
            return -1;
        *mask |= 1u << k;
    }
    return 0;
}

/* The environment knobs: defaults that options override. */
static int load_env(opts *o)
{
    long long memory = 36000, pad = 8, seed = 1;
    rt_env_spec spec[] = {
        {.name = "DYNAPIPE_COST_MODEL",
         .def = NULL,
         .help = "cost-model directory",
         .dest = o->cm_env,
         .type = RT_ENV_PATH,
         .flags = RT_PATH_DIR},
        {.name = "DYNAPIPE_MEMORY_MB",
         .def = "36000",
         .help = "device memory (MB)",
         .min = 1,
         .max = 10000000,
         .dest = &memory,
         .type = RT_ENV_INT},
        {.name = "DYNAPIPE_PAD_MULTIPLE",
         .def = "8",
         .help = "pad lengths to a multiple of",
         .min = 1,
         .max = 4096,
         .dest = &pad,
         .type = RT_ENV_INT},
        {.name = "DYNAPIPE_SEED",
         .def = "1",
         .help = "sampling seed",
         .min = 0,
         .max = LLONG_MAX,
         .dest = &seed,
         .type = RT_ENV_INT},
    };
    rt_err err;
    if (rt_env_load(spec, sizeof spec / sizeof spec[0], &err) < 0) {
        fprintf(stderr, "dynapipe: %s\n", err.msg);
        return 2;
    }
    o->set.memory_mb = (double)memory;
    o->set.pad_multiple = (int)pad;
    o->seed = seed;
    return 0;
}

enum {
    O_LENGTHS = 256,
    O_MIXTURE,
    O_MODEL,
    O_CM,
    O_TP,
    O_STAGES,
    O_DP,
    O_TOKENS,
    O_MEMORY,
    O_PAD,
    O_SEED,
    O_LAYERS,
    O_HIDDEN,
    O_PF,
    O_GBPS,
    O_LAT,
    O_TOL,
    O_RC,
    O_SCHED,
    O_PACK,
    O_PACKT,
    O_BUDGET,
    O_MAXLEN,
    O_MAXT,
    O_TLEN,
    O_JSON,
    O_RANK,
    O_REPLICA,
    O_FORMAT,
    O_OUT,
    O_MODELS,
    O_STAGELIST,
    O_TOKENLIST,
    O_DATA,
    O_CSV,
    O_MD,
    O_REPEAT,
    O_RCMB,
};

static const struct option long_opts[] = {
    {"lengths", 1, 0, O_LENGTHS},
    {"mixture", 0, 0, O_MIXTURE},
    {"model", 1, 0, O_MODEL},
    {"cost-model", 1, 0, O_CM},
    {"tp", 1, 0, O_TP},
    {"stages", 1, 0, O_STAGES},
    {"dp", 1, 0, O_DP},
    {"tokens-per-batch", 1, 0, O_TOKENS},
    {"memory-mb", 1, 0, O_MEMORY},
    {"pad-multiple", 1, 0, O_PAD},
    {"seed", 1, 0, O_SEED},
    {"layers", 1, 0, O_LAYERS},
    {"hidden", 1, 0, O_HIDDEN},
    {"param-factor", 1, 0, O_PF},
    {"p2p-gbps", 1, 0, O_GBPS},
    {"p2p-latency-ms", 1, 0, O_LAT},
    {"tmax-tol", 1, 0, O_TOL},
    {"recompute", 1, 0, O_RC},
    {"schedule", 1, 0, O_SCHED},
    {"pack-len", 1, 0, O_PACK},
    {"pack-target-len", 1, 0, O_PACKT},
    {"token-budget", 1, 0, O_BUDGET},
    {"max-len", 1, 0, O_MAXLEN},
    {"max-target", 1, 0, O_MAXT},
    {"target-len", 1, 0, O_TLEN},
    {"json", 0, 0, O_JSON},
    {"rank", 1, 0, O_RANK},
    {"replica", 1, 0, O_REPLICA},
    {"format", 1, 0, O_FORMAT},
    {"out", 1, 0, O_OUT},
    {"models", 1, 0, O_MODELS},
    {"stage-list", 1, 0, O_STAGELIST},
    {"token-list", 1, 0, O_TOKENLIST},
    {"data", 1, 0, O_DATA},
    {"csv", 1, 0, O_CSV},
    {"md", 1, 0, O_MD},
    {"repeat", 1, 0, O_REPEAT},
    {"recompute-per-microbatch", 0, 0, O_RCMB},
    {"help", 0, 0, 'h'},
    {0, 0, 0, 0},
};

/* Integer-valued options: where each goes and its range. */
static int int_opt(opts *o, int ch, double v)
{
    switch (ch) {
    case O_TP:
        o->tp = (int)v;
        break;
    case O_STAGES:
        o->set.stages = (int)v;
        break;
    case O_DP:
        o->set.dp_size = (int)v;
        break;
    case O_TOKENS:
        o->tokens = (long)v;
        break;
    case O_PAD:
        o->set.pad_multiple = (int)v;
        break;
    case O_SEED:
        o->seed = (long long)v;
        break;
    case O_HIDDEN:
        o->set.hidden = (int)v;
        o->has_hidden = true;
        break;
    case O_PACK:
        o->set.pack_len = (int)v;
        break;
    case O_PACKT:
        o->set.pack_target_len = (int)v;
        break;
    case O_BUDGET:
        o->set.token_budget = (long)v;
        break;
    case O_MAXLEN:
        o->set.max_len = (int)v;
        break;
    case O_MAXT:
        o->set.max_target = (int)v;
        break;
    case O_TLEN:
        o->target_len = (int)v;
        break;
    case O_RANK:
        o->rank = (int)v;
        break;
    case O_REPLICA:
        o->replica = (int)v;
        break;
    case O_REPEAT:
        o->repeat = (int)v;
        break;
    default:
        return -1;
    }
    return 0;
}

static int real_opt(opts *o, int ch, double v)
{
    switch (ch) {
    case O_MEMORY:
        o->set.memory_mb = v;
        break;
    case O_PF:
        o->set.param_factor = v;
        break;
    case O_GBPS:
        o->set.p2p_gbps = v;
        break;
    case O_LAT:
        o->set.p2p_latency_ms = v;
        break;
    case O_TOL:
        o->set.tmax_tol = v;
        break;
    default:
        return -1;
    }
    return 0;
}

static int text_opt(opts *o, int ch, const char *a)
{
    static const char *const rcs[] = {"none", "selective", "full"};
    static const char *const scheds[] = {"1f1b", "cyclic"};
    switch (ch) {
    case O_LENGTHS:
        o->lengths = a;
        break;
    case O_MIXTURE:
        o->lengths = NULL;
        break;
    case O_MODEL:
        o->model = a;
        break;
    case O_CM:
        o->cost_model = a;
        break;
    case O_LAYERS:
        o->layers = a;
        o->has_layers = true;
        break;
    case O_JSON:
        o->json = true;
        break;
    case O_RCMB:
        o->set.rc_per_microbatch = true;
        break;
    case O_FORMAT:
        o->format = a;
        break;
    case O_OUT:
        o->out = a;
        break;
    case O_MODELS:
        o->models = a;
        break;
    case O_STAGELIST:
        o->stage_list = a;
        break;
    case O_TOKENLIST:
        o->token_list = a;
        break;
    case O_DATA:
        o->data = a;
        break;
    case O_CSV:
        o->csv = a;
        break;
    case O_MD:
        o->md = a;
        break;
    case O_RC:
        if (name_mask(a, rcs, 3, &o->set.rc_mask) < 0)
            return usage_err("--recompute '%s': accepted a list of none, selective, full", a);
        break;
    case O_SCHED:
        if (name_mask(a, scheds, 2, &o->set.sched_mask) < 0)
            return usage_err("--schedule '%s': accepted a list of 1f1b, cyclic", a);
        break;
    default:
        return usage_err("unknown option (%s)", "see the list");
    }
    return 0;
}

static const char *opt_name(int ch)
{
    for (const struct option *p = long_opts; p->name; p++)
        if (p->val == ch)
            return p->name;
    return "?";
}

/* A comma list of whole numbers, each from lo to hi, at most `most` of them. */
static bool int_list_ok(const char *s, long lo, long hi, int most)
{
    int n = 0;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < lo || v > hi || ++n > most)
            return false;
        if (*end == '\0')
            return true;
        if (*end != ',')
            return false;
        s = end + 1;
    }
}

static bool is_real_opt(int ch)
{
    return ch == O_MEMORY || ch == O_PF || ch == O_GBPS || ch == O_LAT || ch == O_TOL;
}

static int parse(int argc, char **argv, opts *o)
{
    static const struct {
        int ch;
        double lo, hi;
    } ranges[] = {
        {O_TP, 1, 64},        {O_STAGES, 1, DP_MAX_STAGES},
        {O_DP, 1, 4096},      {O_TOKENS, 1, 1e9},
        {O_PAD, 1, 4096},     {O_SEED, 0, 1e15},
        {O_HIDDEN, 1, 1e6},   {O_PACK, 1, 1e6},
        {O_PACKT, 0, 1e6},    {O_BUDGET, 1, 1e9},
        {O_MAXLEN, 0, 1e7},   {O_MAXT, 0, 1e7},
        {O_TLEN, 0, 1e7},     {O_RANK, 0, DP_MAX_STAGES - 1},
        {O_REPLICA, 0, 4095}, {O_REPEAT, 1, 1000},
        {O_MEMORY, 1, 1e9},   {O_PF, 0, 1000},
        {O_GBPS, 1e-6, 1e6},  {O_LAT, 0, 1e6},
        {O_TOL, 0, 0.999},
    };
    int ch;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        if (ch == 'h')
            return -1;
        if (ch == '?')
            return 2;
        size_t k = 0;
        while (k < sizeof ranges / sizeof ranges[0] && ranges[k].ch != ch)
            k++;
        if (k == sizeof ranges / sizeof ranges[0]) {
            int r = text_opt(o, ch, optarg);
            if (r)
                return r;
            continue;
        }
        double v;
        if (num(opt_name(ch), optarg, ranges[k].lo, ranges[k].hi, &v) < 0)
            return 2;
        if (!is_real_opt(ch) && v != (double)(long long)v) {
            fprintf(stderr, "dynapipe: --%s '%s': expected a whole number\n(see dynapipe --help)\n",
                    opt_name(ch), optarg);
            return 2;
        }
        if (int_opt(o, ch, v) < 0)
            real_opt(o, ch, v);
    }
    if (optind < argc)
        return usage_err("unexpected argument '%s'", argv[optind]);
    if (o->layers && !int_list_ok(o->layers, 1, 100000, 2))
        return usage_err("--layers '%s': accepted E or E,D, whole numbers from 1", o->layers);
    if (o->stage_list && !int_list_ok(o->stage_list, 1, DP_MAX_STAGES, 64))
        return usage_err("--stage-list '%s': accepted a comma list of stage counts", o->stage_list);
    if (o->token_list && !int_list_ok(o->token_list, 1, 1000000000, 64))
        return usage_err("--token-list '%s': accepted a comma list of token counts", o->token_list);
    return 0;
}

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
        fprintf(stderr,
                "dynapipe: %s is a histogram of single lengths; an encoder-decoder model "
                "also needs targets: give --target-len\n",
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
        fprintf(stderr,
                "dynapipe: %s: --tokens-per-batch %ld took the first %zu samples; %zu samples "
                "(%ld tokens) left out\n",
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
    printf("\"n_microbatches\":%zu,\"t_max_ms\":%.4f,\"objective_ms\":%.4f,\"iteration_ms\":%.4f,"
           "\"tokens_per_s\":%.2f,\"recompute\":\"%s\",\"schedule\":\"%s\",\"real_tokens\":%ld,"
           "\"padded_tokens\":%ld",
           r->n_mb, r->t_max_ms, r->objective_ms, r->iteration_ms, r->tokens_per_s, rc_label(r),
           dp_sched_name(r->schedule), r->real_tokens, r->padded_tokens);
}

static void print_json(const opts *o, const dp_cost_model *cm, const dp_samples *s,
                       const planned *p)
{
    const dp_result *r = &p->r[0];
    printf("{\"model\":\"%s\",\"stages\":%d,\"dp\":%d,\"memory_mb\":%.0f,\"samples\":%zu,"
           "\"left_out\":{\"samples\":%zu,\"tokens\":%ld},",
           dp_cost_model_name(cm), o->cfg.stages, o->cfg.dp_size, o->cfg.memory_mb, s->n,
           s->left_out, s->left_out_tokens);
    printf("\"microbatches\":[");
    for (size_t k = 0; k < r->n_mb; k++) {
        const dp_microbatch *m = &r->mb[k];
        printf("%s\n{\"samples\":[", k ? "," : "");
        for (size_t i = 0; i < m->n; i++)
            printf("%s%zu", i ? "," : "", m->samples[i]);
        printf("],\"padded_input\":%d,\"padded_target\":%d,\"cost_ms\":%.4f,\"replica\":%d,"
               "\"recompute\":\"%s\"}",
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
    printf("DynaPipe: T_max %.1f ms, objective %.1f ms, simulated iteration %.1f ms, %.0f "
           "tokens/s, %.1f%% padding; planned in %.2f ms\n",
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
    fprintf(out.csv, "model,data,stages,tokens_per_batch,samples,real_tokens,dynapipe_tps,"
                     "padding_tps,packing_tps,token_budget_tps,micro_batches,recompute,schedule,"
                     "plan_ms_first,plan_ms_median,order_adjacency,sorted_adjacency,"
                     "dynapipe_rc_per_microbatch_tps\n");
    if (out.md)
        fprintf(out.md, "| model | data | stages | tokens/batch | samples | DynaPipe tokens/s | "
                        "x padding | x packing | x token budget | micro-batches, recompute, "
                        "schedule | plan ms (median) |\n|---|---|---|---|---|---|---|---|---|---"
                        "|---|\n");
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
