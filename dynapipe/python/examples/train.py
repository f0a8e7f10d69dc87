"""Pipeline training of a small GPT or T5-style model with DynaPipe's plans (or a
baseline's), under torchrun with gloo, one stage per process:

  scripts/dynapipe-run -- torchrun --nproc-per-node 2 dynapipe/python/examples/train.py \\
      [--model gpt|t5] [--method dynapipe|packing|padding|token_budget] [--iterations 5]
      [--tokens 8192] [--lengths FILE [--target-len N]] [--layers 4] [--pack-len N] [--pack-target-len N] [--cost-model DIR]

Batches come from the multi-task mixture, or from --lengths (a new one each iteration, the
same for every method): a GPT sample is its input and target as one sequence, a T5 sample the pair.
Rank 0 plans each batch in a background thread while the previous one trains, and prints
one JSON line per iteration and a summary: measured tokens/s, the planner's time and how
long a step still waited for it, its predicted iteration time (from --cost-model, profiled
on this machine by python -m dynapipe.profile, or else the bundled A100 profiles)."""
import argparse
import datetime
import json
import os

import torch
import torch.distributed as dist

import dynapipe
import dynapipe.profile
from dynapipe import models
from dynapipe.train import PipelineTrainer, shutdown

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../../.."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gpt", choices=["gpt", "t5"])
    ap.add_argument("--method", default="dynapipe", choices=["dynapipe", "packing", "padding",
                                                              "token_budget"])
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--lengths", default=None,
                    help="draw batches from this lengths file (dynapipe/data/lengths: per-sample "
                         "rows, histograms, JSON lines) instead of the mixture")
    ap.add_argument("--target-len", type=int, default=0,
                    help="with a 1-D lengths histogram: each sample's target length")
    ap.add_argument("--layers", type=int, default=4, help="GPT: layers; T5: encoder and "
                    "decoder layers each")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--pack-len", type=int, default=None,
                    help="packing's row (GPT default 1024; T5 default 2048 inputs)")
    ap.add_argument("--pack-target-len", type=int, default=512, help="T5: packing's row of targets")
    ap.add_argument("--cost-model", default=None,
                    help="a directory profiled by python -m dynapipe.profile (default: the "
                         "bundled A100 GPT-6.7B profiles)")
    ap.add_argument("--cm-name", default=None, help="the profile's name (default: tinygpt, tinyt5)")
    a = ap.parse_args()
    t5 = a.model == "t5"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=300))
    rank, S = dist.get_rank(), dist.get_world_size()
    if t5:  # the mixture's inputs reach 2048 tokens, its targets 512
        model = models.TinyT5(vocab=256, hidden=a.hidden, enc_layers=a.layers,
                              dec_layers=a.layers, heads=4, max_len=2048, seed=0)
        shape = dict(layers_enc=a.layers, layers_dec=a.layers, max_len=2048, max_target=512,
                     pack_len=a.pack_len or 2048, pack_target_len=a.pack_target_len)
    else:
        model = models.TinyGPT(vocab=256, hidden=a.hidden, layers=a.layers, heads=4,
                               max_len=2560, seed=0)
        shape = dict(layers_enc=a.layers, max_len=2560, pack_len=a.pack_len or 1024)
    if a.cost_model:
        cm = dynapipe.CostModel(a.cost_model, a.cm_name or "tiny" + a.model)
    else:
        cm = dynapipe.CostModel(os.path.join(ROOT, "dynapipe", "data", "costmodels"), a.model)
    extra = {"memory_mb": 8000} if a.cost_model else {}  # this machine's memory, its model
    link = a.cost_model and dynapipe.profile.load_p2p(a.cost_model)
    if link:  # the link measured beside the profile: gloo between two of this machine's processes
        extra.update(p2p_latency_ms=link[0], p2p_gbps=link[1])
    cfg = dynapipe.config(cm, stages=S, hidden=a.hidden, **shape, **extra)
    tr = PipelineTrainer(model, cm, cfg, a.method)
    tok = sec = plan_s = wait_s = pred = 0.0
    n = a.warmup + a.iterations
    if a.lengths:
        src = dynapipe.Lengths(a.lengths)
        batch = lambda it: src.batch(a.tokens, seed=100 + it, target_len_1d=a.target_len,
                                     max_total=0 if t5 else 2560)
    else:
        batch = lambda it: dynapipe.mixture(a.tokens, seed=100 + it)
    samples = batch(0)
    ahead = tr.plan_ahead(samples)
    for it in range(n):
        nxt = batch(it + 1) if it + 1 < n else None
        nxt_ahead = tr.plan_ahead(nxt) if nxt else None  # planned while this batch trains
        r = tr.step(samples, ahead)
        samples, ahead = nxt, nxt_ahead
        if it >= a.warmup:
            tok += r["tokens"]
            sec += r["seconds"]
            plan_s += r["plan_seconds"]
            wait_s += r["plan_wait_seconds"]
            pred += r["predicted_ms"]
        if rank == 0:
            print(json.dumps({"iteration": it, "model": a.model, "method": a.method, "stages": S,
                              **r}), flush=True)
    if rank == 0:
        print(json.dumps({"summary": True, "model": a.model, "method": a.method, "stages": S,
                          "iterations": a.iterations, "tokens_per_s": tok / sec,
                          "measured_iteration_ms": 1e3 * sec / a.iterations,
                          "predicted_iteration_ms": pred / a.iterations,
                          "plan_ms_per_iteration": 1e3 * plan_s / a.iterations,
                          "plan_wait_ms_per_iteration": 1e3 * wait_s / a.iterations}),
              flush=True)
    shutdown()  # a barrier, then destroy: no rank exits while a peer works


if __name__ == "__main__":
    main()
