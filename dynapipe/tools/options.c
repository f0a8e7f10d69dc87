/* options.c: the dynapipe command's usage text, environment knobs and command-line options. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "rt/env.h"

/* ---- usage and options -------------------------------------------------------------------- */

const char usage[] =
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
    "Exit status: 0 ok, 1 error in the data (a message names the sample, file or limit), 2 usage.\n";

/* A number option; -1 (after a usage message) when malformed. */
static int num(const char *name, const char *s, double lo, double hi, double *v)
{
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (end == s || *end || errno || !(d >= lo && d <= hi)) {
        fprintf(stderr,
                "dynapipe: --%s '%s': expected a number from %g to %g\n(see dynapipe --help)\n",
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
int load_env(opts *o)
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

int parse(int argc, char **argv, opts *o)
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
