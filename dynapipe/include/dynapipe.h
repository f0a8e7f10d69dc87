/* dynapipe.h: DynaPipe's planner (C API): a profiled cost model, the ordering of samples, the
 * exact micro-batch DP, pipeline schedules for unequal micro-batches with their simulation,
 * per-rank instruction streams with a checker, the baselines, and the length data.
 *
 * Units: times in milliseconds, memory in MB (1e6 bytes), lengths in tokens. A decoder-only
 * (GPT) sample is one sequence of input_len + target_len tokens; an encoder-decoder (T5)
 * sample has an encoder input of input_len and a decoder target of target_len tokens.
 *
 * Sections: errors, cost model, samples and length data, configuration, micro-batch model,
 * ordering, partition (the DP), schedules, plans and baselines, instruction streams.
 */
#ifndef DYNAPIPE_H
#define DYNAPIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- errors -------------------------------------------------------------------------- */

/* A status added here is added to DP_STATUSES (src/internal.h) too, for dp_status_name. */
typedef enum dp_status {
    DP_OK = 0,
    DP_EINVAL,      /* bad argument or option value */
    DP_EEMPTY,      /* an empty batch or file */
    DP_ERANGE,      /* a sample length <= 0 or beyond the model's maximum */
    DP_ENOMEM,      /* allocation failed */
    DP_EIO,         /* a file cannot be read or written */
    DP_EFORMAT,     /* malformed file: missing column, bad number, wrong field count */
    DP_EGRID,       /* the cost model lacks the grid region that is needed */
    DP_EINFEASIBLE, /* the memory limit leaves no feasible plan */
    DP_ECHECK,      /* an instruction stream failed the checker */
} dp_status;

/* The message of the last error in this thread; it names the sample, file or limit
 * ("sample 17 (input 9000, target 0): sequence 9000 exceeds the model maximum 8192"); "" after
 * a call that succeeds. */
const char *dp_last_error(void);
/* Empty dp_last_error() (so a caller can tell that a later failure set it). */
void dp_clear_error(void);
const char *dp_status_name(dp_status s);

/* ---- cost model ------------------------------------------------------------------------ */

/* Recomputation (activation checkpointing) modes, as profiled. */
typedef enum dp_rc { DP_RC_NONE = 0, DP_RC_SELECTIVE, DP_RC_FULL, DP_RC_COUNT } dp_rc;
const char *dp_rc_name(dp_rc rc);

/* Profiled per-layer components. The encoder is the GPT layer for decoder-only models. */
typedef enum dp_component {
    DP_ENCODER = 0,
    DP_DECODER,
    DP_POSTPROCESS, /* output head + loss (time only) */
    DP_COMPONENTS
} dp_component;

typedef struct dp_cost_model dp_cost_model;

/* Load <dir>/<model>_time.csv, <dir>/<model>_memory.csv and <dir>/model_state.csv (the format
 * of dynapipe/data/costmodels/README.md) for one tensor-parallel degree. `model` is a file
 * prefix ("gpt_6.7b", "t5_11b") or the short names "gpt" and "t5". Duplicated grid points
 * (dup_idx) keep their maximum. Recompute modes with no rows at all are left unavailable; a
 * mode with rows but without a needed component (e.g. no decoder backward) is DP_EGRID naming
 * the file and the region. */
dp_status dp_cost_model_load(const char *dir, const char *model, int tp, dp_cost_model **cm);
/* The same from three in-memory CSV texts; names are used in messages (for fuzzing and tests).
 * The texts need not be NUL-terminated. */
dp_status dp_cost_model_parse(const char *model, int tp, const char *time_csv, size_t time_len,
                              const char *mem_csv, size_t mem_len, const char *state_csv,
                              size_t state_len, const char *const names[3], dp_cost_model **cm);
void dp_cost_model_free(dp_cost_model *cm);

const char *dp_cost_model_name(const dp_cost_model *cm);
bool dp_cost_model_encdec(const dp_cost_model *cm);
bool dp_cost_model_has_rc(const dp_cost_model *cm, dp_rc rc);
/* Largest profiled lengths: encoder (or GPT sequence) and decoder (0 for GPT). */
int dp_cost_model_max_len(const dp_cost_model *cm, int *max_target);
/* True when every profiled grid is downward closed (a point present implies every point with
 * smaller or equal coordinates is present). Memory grids are always made non-decreasing along
 * each axis at load (each point raised to the largest value below it: profiled memory is
 * noisy), so with closed grids feasibility only shrinks as a micro-batch grows and the DP
 * stops extending a micro-batch at the first infeasible one. */
bool dp_cost_model_monotone(const dp_cost_model *cm);

/* Per-layer values at (mbs, enc_len, dec_len) by linear interpolation between grid points;
 * NAN outside the profiled region (a length above the largest profiled one, an mbs above the
 * largest, or a needed neighbouring grid point that was not profiled: out of memory). A length
 * below the smallest profiled one is evaluated at the smallest (an upper bound, the grids
 * being monotone). dec_len is ignored for GPT and for the encoder; enc_len for postprocess of
 * T5. Grid points are reproduced exactly. */
double dp_cm_time(const dp_cost_model *cm, dp_rc rc, dp_component c, bool backward, int mbs,
                  int enc_len, int dec_len);
double dp_cm_stored(const dp_cost_model *cm, dp_rc rc, dp_component c, int mbs, int enc_len,
                    int dec_len);
double dp_cm_peak(const dp_cost_model *cm, dp_rc rc, dp_component c, int mbs, int enc_len,
                  int dec_len);
/* fp16 parameter MB of one layer of c (DP_ENCODER, DP_DECODER) or of the embedding
 * (DP_POSTPROCESS is read as the embedding), from model_state.csv. */
double dp_cm_param_mb(const dp_cost_model *cm, dp_rc rc, dp_component c);

/* ---- samples and length data ------------------------------------------------------------- */

typedef struct dp_sample {
    int input_len, target_len;
} dp_sample;

typedef struct dp_samples {
    dp_sample *v;
    size_t n;
    /* Per-sample rows of a lengths file that did not fit the batch's token limit, and their
     * tokens (0 for histograms and the mixture, which are sampled up to the limit). */
    size_t left_out;
    long left_out_tokens;
} dp_samples;
void dp_samples_free(dp_samples *s);

/* A length source: per-sample rows "input_len,target_len" (a header line optional), a
 * histogram "length,count" / "input_len,output_len,count" (header required) to be sampled, or
 * JSON lines, one flat object per sample: {"input_len": N, "target_len": M} or tokenised
 * {"input_ids": [...], "target_ids": [...]} (also output_len, inputs, targets). */
typedef struct dp_length_source {
    bool histogram;
    int dims;       /* 1 (lengths only) or 2 (input and target) */
    dp_sample *v;   /* per-sample rows, or the histogram's bins */
    double *weight; /* histogram counts (NULL for per-sample rows) */
    size_t n;
    double total; /* sum of counts */
    char name[256];
} dp_length_source;

dp_status dp_lengths_load(const char *path, dp_length_source *src);
dp_status dp_lengths_parse(const char *text, size_t len, const char *name, dp_length_source *src);
void dp_lengths_free(dp_length_source *src);

/* One global batch of about `tokens` tokens (input + target; 0: every per-sample row). Rows
 * are taken in file order; histograms are sampled with `seed`, 1-D histograms giving inputs
 * with target `target_len_1d`. Histogram bins whose input + target exceed max_total (> 0)
 * are left out of the sampling. Stops before the sample that would pass `tokens`; the rows
 * of a per-sample file not taken are counted in out->left_out / left_out_tokens. */
dp_status dp_lengths_batch(const dp_length_source *src, long tokens, uint64_t seed,
                           int target_len_1d, int max_total, dp_samples *out);

/* The multi-task mixture generator (documented in dynapipe/README.md): tasks with their own
 * log-normal input and target length distributions and mixture weights. */
typedef struct dp_task {
    const char *name;
    double weight;
    double in_median, in_sigma; /* log-normal input length: median and sigma of ln */
    double tgt_median, tgt_sigma;
    int in_max, tgt_max; /* truncation, as a data pipeline would */
} dp_task;
/* The built-in mixture: classification, QA, summarisation, translation, dialogue, code. */
const dp_task *dp_mixture_tasks(size_t *n);
/* About `tokens` tokens of samples drawn from `tasks` (NULL: the built-in) with `seed`; each
 * sample's task index in task_of (may be NULL; malloc'd). */
dp_status dp_mixture_batch(const dp_task *tasks, size_t ntasks, long tokens, uint64_t seed,
                           dp_samples *out, int **task_of);

/* ---- configuration ------------------------------------------------------------------------- */

#define DP_MAX_STAGES 64

typedef enum dp_sched_kind { DP_SCHED_1F1B = 0, DP_SCHED_CYCLIC, DP_SCHED_COUNT } dp_sched_kind;
const char *dp_sched_name(dp_sched_kind k);

typedef struct dp_config {
    int stages;          /* pipeline stages S (1..DP_MAX_STAGES) */
    int dp_size;         /* data-parallel replicas D; micro-batches split between them */
    int layers_enc;      /* GPT: transformer layers; T5: encoder layers */
    int layers_dec;      /* T5 decoder layers (0 for GPT) */
    int hidden;          /* hidden size (activation shape; p2p bytes) */
    int pad_multiple;    /* padded lengths are rounded up to this (default 8) */
    int max_len;         /* longest input (GPT: input + target); 0: the grid's maximum */
    int max_target;      /* longest T5 target; 0: the grid's maximum */
    double memory_mb;    /* device memory per GPU */
    double param_factor; /* model-state bytes per fp16 parameter byte (8: Adam, no ZeRO) */
    double p2p_gbps;     /* point-to-point bandwidth, GB/s */
    double p2p_latency_ms;
    double tmax_tol;        /* relative tolerance when stepping T_max candidates (0: exact) */
    unsigned rc_mask;       /* recompute modes to try: bit dp_rc */
    bool rc_per_microbatch; /* each micro-batch its own cheapest feasible mode (default false:
                               one mode per iteration, as in the paper) */
    unsigned sched_mask;    /* schedules to try: bit dp_sched_kind */
    int pack_len;           /* packing baseline: row length (GPT sequence, T5 input) */
    int pack_target_len;    /* packing baseline: T5 target row length */
    long token_budget;      /* token-budget baseline: padded tokens per micro-batch */
} dp_config;

/* Defaults for a cost model: GPT 32 layers hidden 4096, T5 12+12 layers hidden 1024; 4 stages,
 * 1 replica, 36000 MB, param factor 8, 25 GB/s and 0.02 ms p2p, pad 8, exact T_max steps,
 * every recompute mode and schedule, packing rows 2048 (T5: 2048 x 2048), budget 8192. */
void dp_config_default(dp_config *cfg, const dp_cost_model *cm);
/* Refuses values out of range, naming the option. */
dp_status dp_config_check(const dp_config *cfg);

/* ---- micro-batch model ---------------------------------------------------------------------- */

/* One micro-batch on every stage under one recompute mode. */
typedef struct dp_mb_eval {
    bool feasible;
    double cost_ms;               /* DP cost: the slowest stage's forward + backward */
    double fwd_ms[DP_MAX_STAGES]; /* per stage */
    double bwd_ms[DP_MAX_STAGES];
    double stored_mb[DP_MAX_STAGES]; /* activation kept until the backward */
    double peak_mb[DP_MAX_STAGES];   /* transient peak of the forward above what is stored */
    double comm_ms;                  /* one activation (or gradient) transfer between stages */
    char why[160];                   /* why infeasible */
} dp_mb_eval;

/* Model state (parameters, gradients, optimizer) per stage in MB; what is left for
 * activations is memory_mb minus it (may be negative). The state does not depend on the
 * recompute mode: the profiles' parameter sizes differ between modes by noise (< 0.04 %), and
 * the largest over the profiled modes is taken (rc is accepted for symmetry). */
double dp_stage_state_mb(const dp_cost_model *cm, const dp_config *cfg, dp_rc rc, int stage);
/* Layers of each component on stage s: layers are split evenly in order, encoder first. */
void dp_stage_layers(const dp_config *cfg, int stage, int *enc, int *dec);
/* Evaluate a micro-batch of `mbs` samples padded to (pad_in, pad_tgt). Feasible when the cost
 * model covers it and, on every stage s, (S - s) * stored + peak fits the memory left after
 * the model state (the 1F1B bound the DP uses). */
void dp_mb_evaluate(const dp_cost_model *cm, const dp_config *cfg, dp_rc rc, int mbs, int pad_in,
                    int pad_tgt, dp_mb_eval *out);
int dp_pad(int len, int multiple);

/* ---- ordering --------------------------------------------------------------------------- */

/* order[k] = index of the k-th sample. Decoder-only: by total length. Encoder-decoder: the
 * open-path heuristic of order.c (sort, then 2-opt moves on the path within a window, in
 * padded-cost distance); never worse in adjacency cost than the sort by (input, target). */
dp_status dp_order(const dp_sample *s, size_t n, bool encdec, size_t *order);
/* Adjacency cost of an order: sum over neighbours of |d input| + |d target|. */
double dp_adjacency_cost(const dp_sample *s, const size_t *order, size_t n);

/* ---- partition (the DP) ----------------------------------------------------------------- */

typedef struct dp_partition {
    size_t *cut; /* micro-batch k = ordered samples [cut[k], cut[k+1]); cut[0] = 0 */
    size_t n_mb;
    dp_rc rc;            /* the mode (with rc_mixed: the mode of the slowest micro-batch) */
    dp_rc *mb_rc;        /* per micro-batch */
    bool rc_mixed;       /* planned with rc_per_microbatch */
    double t_max_ms;     /* the slowest micro-batch */
    double sum_ms;       /* f(N): sum of micro-batch costs */
    double objective_ms; /* (S - 1) * T_max + f(N) / D */
    size_t candidates;   /* T_max values tried */
} dp_partition;
void dp_partition_free(dp_partition *p);

/* The exact DP (docs/dynapipe.md) for one recompute mode over samples already ordered
 * (ordered[k] = the k-th sample). DP_EINFEASIBLE (naming the sample) when no partition fits. */
dp_status dp_partition_rc(const dp_cost_model *cm, const dp_config *cfg, dp_rc rc,
                          const dp_sample *ordered, size_t n, dp_partition *out);
/* The same over every mode in cfg->rc_mask; the best feasible objective is kept. With
 * cfg->rc_per_microbatch one DP instead, where a micro-batch's cost is its cheapest feasible
 * mode's (still exact for that objective). */
dp_status dp_partition_best(const dp_cost_model *cm, const dp_config *cfg, const dp_sample *ordered,
                            size_t n, dp_partition *out);

/* ---- schedules ------------------------------------------------------------------------- */

/* What the scheduler needs of each micro-batch. */
typedef struct dp_mb_times {
    double fwd_ms[DP_MAX_STAGES], bwd_ms[DP_MAX_STAGES];
    double stored_mb[DP_MAX_STAGES], peak_mb[DP_MAX_STAGES];
    double comm_ms;
} dp_mb_times;

typedef struct dp_op {
    int mb;
    bool backward;
    double start_ms, end_ms;
} dp_op;

typedef struct dp_schedule {
    dp_sched_kind kind;
    int stages, n_mb;
    dp_op *ops[DP_MAX_STAGES]; /* per stage, in execution order, 2 * n_mb each */
    double makespan_ms;
    double peak_mb[DP_MAX_STAGES]; /* highest activation memory reached on each stage */
    bool fits;                     /* peak_mb within the limit on every stage */
} dp_schedule;
void dp_schedule_free(dp_schedule *s);

/* Build the per-stage op order of `kind` (the cyclic one memory-aware: a micro-batch's
 * injection is delayed until its activations fit) and simulate it event by event: an op
 * starts when its stage is free and its input has arrived (comm_ms after the producing op). */
dp_status dp_schedule_build(dp_sched_kind kind, const dp_mb_times *t, int n_mb, int stages,
                            const double *limit_mb, dp_schedule *out);
/* Re-simulate a given op order (ops' mb/backward fields) and fill the times, makespan, peak
 * memory and fits. DP_EINVAL when the order is not executable (an op before its input). */
dp_status dp_simulate(const dp_mb_times *t, int n_mb, int stages, const double *limit_mb,
                      dp_schedule *s);

/* ---- plans and baselines ----------------------------------------------------------------- */

typedef struct dp_microbatch {
    size_t *samples; /* indices into the input batch (packing: those with tokens in it) */
    size_t n;
    int mbs;                         /* micro-batch size: samples, or rows for packing */
    dp_rc rc;                        /* its recompute mode */
    int padded_input, padded_target; /* GPT: padded_input is the sequence, target 0 */
    double cost_ms;
    int replica; /* data-parallel replica that runs it */
    dp_mb_times times;
} dp_microbatch;

typedef struct dp_result {
    dp_microbatch *mb;
    size_t n_mb;
    dp_rc rc; /* the recompute mode (rc_mixed: chosen per micro-batch, see mb[k].rc) */
    bool rc_mixed;
    dp_sched_kind schedule;
    double t_max_ms, objective_ms, iteration_ms, tokens_per_s;
    long real_tokens, padded_tokens; /* padded_tokens: tokens computed, pad included */
    dp_schedule *sched;              /* one per replica; ops name local micro-batches */
    size_t **replica_mb;             /* per replica: local micro-batch k = mb[replica_mb[r][k]] */
    size_t *replica_n;
    int replicas, stages, hidden;
    double state_mb[DP_MAX_STAGES];
} dp_result;
void dp_result_free(dp_result *r);

typedef enum dp_method {
    DP_METHOD_DYNAPIPE = 0,
    DP_METHOD_PADDING,      /* every sample padded to the batch maximum, fixed mbs */
    DP_METHOD_PACKING,      /* Megatron-style greedy packing into fixed rows, fixed mbs */
    DP_METHOD_TOKEN_BUDGET, /* sorted, cut when the padded tokens would pass the budget */
    DP_METHOD_COUNT
} dp_method;
const char *dp_method_name(dp_method m);

/* Plan one global batch with a method: micro-batches, recompute mode, schedule (the shortest
 * feasible makespan among cfg->sched_mask), simulated iteration time and tokens/s. Validates
 * the samples first (DP_EEMPTY, DP_ERANGE naming the sample) and the memory limit
 * (DP_EINFEASIBLE naming it). */
dp_status dp_plan(const dp_cost_model *cm, const dp_config *cfg, const dp_sample *s, size_t n,
                  dp_method method, dp_result *out);
/* The sample checks dp_plan does first. */
dp_status dp_validate(const dp_cost_model *cm, const dp_config *cfg, const dp_sample *s, size_t n);

/* ---- instruction streams ------------------------------------------------------------------ */

typedef enum dp_opcode {
    DP_I_LOAD_INPUT = 0,
    DP_I_FORWARD,
    DP_I_BACKWARD,
    DP_I_SEND_ACT_START,
    DP_I_SEND_ACT_FINISH,
    DP_I_RECV_ACT_START,
    DP_I_RECV_ACT_FINISH,
    DP_I_SEND_GRAD_START,
    DP_I_SEND_GRAD_FINISH,
    DP_I_RECV_GRAD_START,
    DP_I_RECV_GRAD_FINISH,
    DP_I_FREE_BUFFER,
    DP_I_COUNT
} dp_opcode;
const char *dp_opcode_name(dp_opcode op);

/* One instruction. shape = (micro-batch size, padded input, padded target, hidden) of the
 * buffer moved or computed (LoadInput: hidden 1, token ids); peer = the other rank of a
 * send/receive (-1 otherwise). Semantics: a Start posts without waiting; RecvFinish waits
 * for the peer's matching SendStart, SendFinish for the peer's matching RecvStart. Streams
 * post a send and finish it before the buffer is freed (activations) or at the end
 * (gradients), so a rank never blocks on a send that its peer reaches only later. */
typedef struct dp_instr {
    dp_opcode op;
    int32_t mb;
    int32_t peer;
    int32_t shape[4];
} dp_instr;

typedef struct dp_stream {
    int32_t rank, stages;
    dp_instr *v;
    size_t n;
} dp_stream;
void dp_stream_free(dp_stream *s);

/* The stream of pipeline rank `stage` of `replica` from a plan's schedule. */
dp_status dp_instructions(const dp_result *r, int replica, int stage, dp_stream *out);
/* Binary form: "DPIS", u16 version 1, u16 reserved, i32 rank, i32 stages, u32 count, then
 * per instruction u8 op, i32 mb, i32 peer, 4 x i32 shape (little endian, packed: 25 bytes). */
dp_status dp_stream_encode(const dp_stream *s, uint8_t **buf, size_t *len);
dp_status dp_stream_decode(const uint8_t *buf, size_t len, dp_stream *s);
/* JSON form: {"rank":R,"stages":S,"instructions":[{"op":"Forward","mb":0,"peer":-1,
 * "shape":[b,i,t,h]},...]} */
dp_status dp_stream_json(const dp_stream *s, FILE *f);

/* Check the streams of one pipeline (stages streams, rank = index): every send has its
 * receive at the peer in the same order with the same shape, starts precede finishes,
 * forwards have their input, backwards their forward and gradient, buffers are freed after
 * their backward, and a rendezvous execution of all ranks finishes (no deadlock).
 * DP_ECHECK with the rank, instruction index and what is wrong. */
dp_status dp_check_streams(const dp_stream *streams, int stages);

#endif
