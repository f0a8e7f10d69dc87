"""Pipeline training of a small GPT with DynaPipe's plans (or a baseline's), under torchrun
with gloo, one stage per process:

  scripts/dynapipe-run -- torchrun --nproc-per-node 2 dynapipe/python/examples/train_gpt.py \\
      [--method dynapipe|packing|padding|token_budget] [--iterations 5] [--tokens 8192]

Batches come from the multi-task mixture (a new one each iteration, the same for every
method). Rank 0 prints one JSON line per iteration and a summary: measured tokens/s, the
planner's time, its predicted iteration time (from the bundled A100 cost model, not this
machine's)."""
import argparse
import datetime
import json
import os

import torch
import torch.distributed as dist

import dynapipe
from dynapipe import models
from dynapipe.train import PipelineTrainer, shutdown

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../../.."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="dynapipe", choices=["dynapipe", "packing", "padding",
                                                              "token_budget"])
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--pack-len", type=int, default=1024)
    ap.add_argument("--cost-model", default=None,
                    help="a directory profiled by python -m dynapipe.profile (default: the "
                         "bundled A100 GPT-6.7B profiles)")
    ap.add_argument("--cm-name", default="tinygpt")
    a = ap.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=300))
    rank, S = dist.get_rank(), dist.get_world_size()
    gpt = models.TinyGPT(vocab=256, hidden=a.hidden, layers=a.layers, heads=4, max_len=2560, seed=0)
    if a.cost_model:
        cm = dynapipe.CostModel(a.cost_model, a.cm_name)
    else:
        cm = dynapipe.CostModel(os.path.join(ROOT, "dynapipe", "data", "costmodels"), "gpt")
    extra = {"memory_mb": 8000} if a.cost_model else {}  # this machine's memory, its model
    cfg = dynapipe.config(cm, stages=S, layers_enc=a.layers, hidden=a.hidden, max_len=2560,
                          pack_len=a.pack_len, **extra)
    tr = PipelineTrainer(gpt, cm, cfg, a.method)
    tok = sec = plan_s = pred = 0.0
    for it in range(a.warmup + a.iterations):
        samples = dynapipe.mixture(a.tokens, seed=100 + it)
        r = tr.step(samples)
        if it >= a.warmup:
            tok += r["tokens"]
            sec += r["seconds"]
            plan_s += r["plan_seconds"]
            pred += r["predicted_ms"]
        if rank == 0:
            print(json.dumps({"iteration": it, "method": a.method, "stages": S, **r}), flush=True)
    if rank == 0:
        print(json.dumps({"summary": True, "method": a.method, "stages": S,
                          "iterations": a.iterations, "tokens_per_s": tok / sec,
                          "measured_iteration_ms": 1e3 * sec / a.iterations,
                          "predicted_iteration_ms": pred / a.iterations,
                          "plan_ms_per_iteration": 1e3 * plan_s / a.iterations}), flush=True)
    shutdown()  # a barrier, then destroy: no rank exits while a peer works


if __name__ == "__main__":
    main()
