"""One PipelineTrainer step under torchrun (gloo), with data-parallel replicas or the T5
model, checked against a single process running the whole model over every micro-batch (run
by test_executor):

  torchrun --nproc-per-node S*D trainer_check.py --stages S [--model gpt|t5]

The T5 (2 encoder + 4 decoder layers) crosses stage boundaries with the encoder's output and
the decoder's hidden state (two tensors), or with the encoder's output alone.

The planner splits the micro-batches over the D replicas; each pipeline runs its share, the
stages' gradients are all-reduced across replicas; the summed loss and every gradient (taken
before the optimizer step) must be the single process's. Prints ok/FAIL lines on rank 0."""
import argparse
import datetime
import os
import random
import sys

import torch
import torch.distributed as dist

import dynapipe
from dynapipe import models
from dynapipe.train import PipelineTrainer, shutdown

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../../.."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stages", type=int, default=2)
    ap.add_argument("--model", choices=["gpt", "t5"], default="gpt")
    a = ap.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    S, D = a.stages, world // a.stages
    def make():
        if a.model == "t5":
            return models.TinyT5(vocab=128, hidden=32, enc_layers=2, dec_layers=4, heads=4,
                                 max_len=256, seed=2)
        return models.TinyGPT(vocab=128, hidden=32, layers=4, heads=4, max_len=256, seed=2)

    gpt = make()
    cm = dynapipe.CostModel(os.path.join(ROOT, "dynapipe", "data", "costmodels"), a.model)
    if a.model == "t5":
        cfg = dynapipe.config(cm, stages=S, dp_size=D, layers_enc=2, layers_dec=4,
                              hidden=gpt.hidden, max_len=256, max_target=256)
    else:
        cfg = dynapipe.config(cm, stages=S, dp_size=D, layers_enc=gpt.layers, hidden=gpt.hidden,
                              max_len=256)
    rnd = random.Random(3)
    samples = [(rnd.randint(4, 150), rnd.randint(1, 60)) for _ in range(64)]
    tr = PipelineTrainer(gpt, cm, cfg, keep_grads=True)
    r = tr.step(samples)
    names = {id(p): n for n, p in gpt.named_parameters()}
    mine = {names[i]: g for i, g in tr.last_grads.items()}
    got = [None] * world
    dist.gather_object(mine, got if rank == 0 else None, dst=0)
    status = 0
    if rank == 0:
        ref = make()
        p = dynapipe.plan(cm, cfg, samples)
        t5 = a.model == "t5"
        norm = sum(b for _, b in samples) if t5 else models.real_predictions(samples)
        ref_loss = 0.0
        for m in p.microbatches:
            if t5:
                batch = models.t5_batch(samples, m.samples, m.padded_input, m.padded_target,
                                        ref.vocab)
                l = models.token_loss(ref(batch), batch["labels"]) / norm
            else:
                batch = models.gpt_batch(samples, m.samples, m.padded_input, ref.vocab)
                l = models.token_loss(ref(batch["ids"]), batch["labels"]) / norm
            l.backward()
            ref_loss += float(l)
        reps = {m.replica for m in p.microbatches}
        print(("ok   " if reps == set(range(D)) else "FAIL ") +
              f"{a.model}, {S} stages x {D} replicas: {len(p.microbatches)} micro-batches over replicas "
              f"{sorted(reps)}", flush=True)
        ok = abs(r["loss"] - ref_loss) <= 1e-5 * abs(ref_loss)
        print(("ok   " if ok else "FAIL ") + f"{a.model}, {S} stages x {D} replicas: loss {r['loss']:.6f} = the "
              f"single-process run's {ref_loss:.6f}", flush=True)
        status |= not ok
        worst, where, seen = 0.0, "", set()
        for g in got:
            for n, t in g.items():
                seen.add(n)
                prm = dict(ref.named_parameters())[n]
                e = float((t - prm.grad).abs().max() / (prm.grad.abs().max() + 1e-12))
                if e > worst:
                    worst, where = e, n
        missing = [n for n, _ in ref.named_parameters() if n not in seen]
        ok = not missing and worst < 1e-4
        print(("ok   " if ok else "FAIL ") + f"{a.model}, {S} stages x {D} replicas: every gradient, all-reduced "
              f"over the replicas, as the single-process run's (worst {worst:.1e} {where}; "
              f"missing {missing})", flush=True)
        status |= not ok
    shutdown()  # a barrier, then destroy: no rank exits while a peer works
    return status


if __name__ == "__main__":
    sys.exit(main())
