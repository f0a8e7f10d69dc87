/* stage.c: the pipeline's view of one micro-batch: how layers are split over stages, the
 * model state each stage holds, and a micro-batch's per-stage forward and backward time,
 * activation memory and transfer time from the cost model. Also the configuration defaults.
 *
 * Memory per stage s: the model state (parameters x param_factor; the embedding on the first
 * and the last stage) plus the activations of the micro-batches in flight. Under 1F1B at most
 * S - s micro-batches are in flight on stage s, so a micro-batch is admitted when
 * (S - s) * stored + peak fits what the model state leaves; the schedules check the real mix. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

void dp_config_default(dp_config *cfg, const dp_cost_model *cm)
{
    memset(cfg, 0, sizeof *cfg);
    bool t5 = cm && dp_cost_model_encdec(cm);
    cfg->stages = 4;
    cfg->dp_size = 1;
    cfg->layers_enc = t5 ? 12 : 32;
    cfg->layers_dec = t5 ? 12 : 0;
    cfg->hidden = t5 ? 1024 : 4096;
    cfg->pad_multiple = 8;
    cfg->memory_mb = 36000;
    cfg->param_factor = 8;
    cfg->p2p_gbps = 25;
    cfg->p2p_latency_ms = 0.02;
    cfg->tmax_tol = 0;
    cfg->rc_mask = (1u << DP_RC_COUNT) - 1;
    cfg->sched_mask = (1u << DP_SCHED_COUNT) - 1;
    cfg->pack_len = 2048;
    cfg->pack_target_len = t5 ? 2048 : 0;
    cfg->token_budget = 8192;
}

dp_status dp_config_check(const dp_config *c)
{
    if (c->stages < 1 || c->stages > DP_MAX_STAGES)
        return dp_fail(DP_EINVAL, "--stages %d: accepted 1..%d", c->stages, DP_MAX_STAGES);
    if (c->dp_size < 1 || c->dp_size > 4096)
        return dp_fail(DP_EINVAL, "--dp %d: accepted 1..4096", c->dp_size);
    if (c->layers_enc < 0 || c->layers_dec < 0 || c->layers_enc + c->layers_dec < c->stages)
        return dp_fail(DP_EINVAL, "layers %d + %d: need at least one per stage (%d stages)",
                       c->layers_enc, c->layers_dec, c->stages);
    if (c->pad_multiple < 1 || c->pad_multiple > 4096)
        return dp_fail(DP_EINVAL, "--pad-multiple %d: accepted 1..4096", c->pad_multiple);
    if (!(c->memory_mb > 0) || !(c->param_factor >= 0) || !(c->p2p_gbps > 0) ||
        !(c->p2p_latency_ms >= 0) || !(c->tmax_tol >= 0 && c->tmax_tol < 1) || c->hidden < 1)
        return dp_fail(
            DP_EINVAL,
            "--memory-mb, --param-factor, --p2p-gbps, --p2p-latency-ms, --tmax-tol or --hidden out of range");
    if (!(c->rc_mask & 7u) || !(c->sched_mask & 3u))
        return dp_fail(DP_EINVAL, "no recompute mode or no schedule selected");
    if (c->max_len < 0 || c->max_target < 0 || c->pack_len < 1 || c->pack_target_len < 0 ||
        c->token_budget < 1)
        return dp_fail(DP_EINVAL, "--max-len, --pack-len or --token-budget out of range");
    return dp_done(DP_OK);
}

int dp_pad(int len, int multiple)
{
    if (multiple <= 1)
        return len;
    return (len + multiple - 1) / multiple * multiple;
}

void dp_stage_layers(const dp_config *cfg, int stage, int *enc, int *dec)
{
    long total = cfg->layers_enc + cfg->layers_dec;
    long lo = total * stage / cfg->stages, hi = total * (stage + 1) / cfg->stages;
    long e_hi = hi < cfg->layers_enc ? hi : cfg->layers_enc;
    *enc = e_hi > lo ? (int)(e_hi - lo) : 0;
    *dec = (int)(hi - lo) - *enc;
}

double dp_stage_state_mb(const dp_cost_model *cm, const dp_config *cfg, dp_rc rc, int stage)
{
    (void)rc;
    int enc, dec;
    dp_stage_layers(cfg, stage, &enc, &dec);
    double worst = 0;
    for (int m = 0; m < DP_RC_COUNT; m++) {
        if (!dp_cost_model_has_rc(cm, (dp_rc)m))
            continue;
        double p = enc * dp_cm_param_mb(cm, (dp_rc)m, DP_ENCODER) +
                   dec * dp_cm_param_mb(cm, (dp_rc)m, DP_DECODER);
        if (stage == 0 || stage == cfg->stages - 1) /* the embedding (input; tied output) */
            p += dp_cm_param_mb(cm, (dp_rc)m, DP_POSTPROCESS);
        worst = fmax(worst, p);
    }
    return worst * cfg->param_factor;
}

/* The three components' per-layer values at this shape; false (with why) outside the grid. */
typedef struct layer_vals {
    double f[DP_COMPONENTS], b[DP_COMPONENTS], stored[2], peak[2];
} layer_vals;

static bool layer_values(const dp_cost_model *cm, dp_rc rc, int mbs, int in, int tgt, layer_vals *v,
                         char *why, size_t whylen)
{
    memset(v, 0, sizeof *v);
    int ncomp = dp_cost_model_encdec(cm) ? 2 : 1;
    for (int c = 0; c < ncomp; c++) {
        v->f[c] = dp_cm_time(cm, rc, (dp_component)c, false, mbs, in, tgt);
        v->b[c] = dp_cm_time(cm, rc, (dp_component)c, true, mbs, in, tgt);
        v->stored[c] = dp_cm_stored(cm, rc, (dp_component)c, mbs, in, tgt);
        v->peak[c] = dp_cm_peak(cm, rc, (dp_component)c, mbs, in, tgt);
        if (isnan(v->f[c] + v->b[c] + v->stored[c] + v->peak[c])) {
            snprintf(
                why, whylen,
                "(mbs %d, input %d, target %d) is outside the profiled %s grid of %s (recompute %s)",
                mbs, in, tgt, c ? "decoder" : "encoder", dp_cost_model_name(cm), dp_rc_name(rc));
            return false;
        }
    }
    v->f[DP_POSTPROCESS] = dp_cm_time(cm, rc, DP_POSTPROCESS, false, mbs, in, tgt);
    v->b[DP_POSTPROCESS] = dp_cm_time(cm, rc, DP_POSTPROCESS, true, mbs, in, tgt);
    if (isnan(v->f[DP_POSTPROCESS] + v->b[DP_POSTPROCESS])) {
        snprintf(why, whylen, "(mbs %d, length %d) is outside the profiled postprocess grid of %s",
                 mbs, dp_cost_model_encdec(cm) ? tgt : in, dp_cost_model_name(cm));
        return false;
    }
    return true;
}

void dp_mb_evaluate(const dp_cost_model *cm, const dp_config *cfg, dp_rc rc, int mbs, int pad_in,
                    int pad_tgt, dp_mb_eval *out)
{
    out->feasible = false;
    out->cost_ms = INFINITY;
    out->why[0] = '\0';
    layer_vals v;
    if (!layer_values(cm, rc, mbs, pad_in, pad_tgt, &v, out->why, sizeof out->why))
        return;
    int S = cfg->stages;
    double worst = 0;
    for (int s = 0; s < S; s++) {
        int ne, nd;
        dp_stage_layers(cfg, s, &ne, &nd);
        bool last = s == S - 1;
        out->fwd_ms[s] = ne * v.f[0] + nd * v.f[1] + (last ? v.f[DP_POSTPROCESS] : 0);
        out->bwd_ms[s] = ne * v.b[0] + nd * v.b[1] + (last ? v.b[DP_POSTPROCESS] : 0);
        out->stored_mb[s] = ne * v.stored[0] + nd * v.stored[1];
        out->peak_mb[s] = fmax(ne ? v.peak[0] : 0, nd ? v.peak[1] : 0);
        double limit = cfg->memory_mb - dp_stage_state_mb(cm, cfg, rc, s);
        double need = (S - s) * out->stored_mb[s] + out->peak_mb[s];
        if (need > limit) {
            snprintf(
                out->why, sizeof out->why,
                "(mbs %d, input %d, target %d) needs %.0f MB of activations on stage %d (recompute %s), over the %.0f MB that --memory-mb %.0f leaves",
                mbs, pad_in, pad_tgt, need, s, dp_rc_name(rc), limit, cfg->memory_mb);
            return;
        }
        worst = fmax(worst, out->fwd_ms[s] + out->bwd_ms[s]);
    }
    /* fp16 activations: the sequence (and, past the encoder, the encoder output too). */
    double bytes = 2.0 * mbs * (double)(pad_in + pad_tgt) * cfg->hidden;
    out->comm_ms = cfg->p2p_latency_ms + bytes / (cfg->p2p_gbps * 1e6);
    out->cost_ms = worst;
    out->feasible = true;
}
