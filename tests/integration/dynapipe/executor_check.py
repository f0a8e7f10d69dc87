"""One run of the pipeline executor under torchrun (gloo), checked against a single-process,
non-pipelined run over the same micro-batches (run by test_executor).

  torchrun --nproc-per-node S executor_check.py [--corrupt]

Rank 0 plans a batch of variable-length samples (the GPT cost model, the tiny model's layer
count and width), checks every rank's stream with the library's checker, and broadcasts the
plan; each rank runs its stage's stream; rank 0 then compares the loss and every parameter
gradient with one process running the whole model over the same micro-batches. --corrupt
changes one receive's shape in a stream: the checker must refuse it before any rank starts.
Prints one line per check ("ok ..." / "FAIL ..."); exit 0 when all pass."""
import argparse
import datetime
import os
import random
import sys

import torch
import torch.distributed as dist

import dynapipe
from dynapipe import models
from dynapipe.executor import PipelineExecutor
from dynapipe.train import shutdown

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../../.."))


def report(rank, line):
    """Each rank's message in a file of its own too (REPORT_DIR): torchrun stops the other
    ranks as soon as one exits non-zero, and what a stopped rank printed may be lost."""
    d = os.environ.get("REPORT_DIR")
    if d:
        with open(os.path.join(d, f"rank{rank}.txt"), "w") as f:
            f.write(line + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corrupt", action="store_true")
    ap.add_argument("--samples", type=int, default=48)
    a = ap.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank, S = dist.get_rank(), dist.get_world_size()
    gpt = models.TinyGPT(vocab=128, hidden=32, layers=6, heads=4, max_len=256, seed=1)
    cm = dynapipe.CostModel(os.path.join(ROOT, "dynapipe", "data", "costmodels"), "gpt")
    cfg = dynapipe.config(cm, stages=S, layers_enc=gpt.layers, hidden=gpt.hidden)
    rnd = random.Random(7)
    samples = [(rnd.randint(4, 150), rnd.randint(1, 60)) for _ in range(a.samples)]
    msg = [None]
    if rank == 0:
        plan = dynapipe.plan(cm, cfg, samples)
        streams = [plan.stream(s) for s in range(S)]
        if a.corrupt:
            k = next(i for i, x in enumerate(streams[S - 1]) if x.op == "RecvActivationStart")
            streams[S - 1][k] = streams[S - 1][k]._replace(shape=(1, 8, 0, gpt.hidden))
        try:
            dynapipe.check_streams(streams)
            msg[0] = {"mbs": [(m.samples, m.padded_input) for m in plan.microbatches],
                      "local": plan.local[0], "streams": streams}
        except dynapipe.DynapipeValueError as e:
            msg[0] = {"error": str(e)}
    dist.broadcast_object_list(msg, src=0)
    p = msg[0]
    if "error" in p:
        line = f"rank {rank}: the plan's streams were refused before any rank started: {p['error']}"
        print(line, flush=True)
        report(rank, line)
        dist.barrier()  # both say it before either exits (torchrun stops the rest then)
        dist.destroy_process_group()
        return 3
    mbs = [p["mbs"][j] for j in p["local"]]  # replica-local order
    norm = models.real_predictions(samples)

    def data(j):
        idx, pin = mbs[j]
        return models.gpt_batch(samples, idx, pin, gpt.vocab)

    stage = gpt.stage(cfg, rank)
    loss = PipelineExecutor(stage, rank, S).run(p["streams"][rank], data, norm)
    names = {id(prm): n for n, prm in gpt.named_parameters()}
    mine = {names[id(prm)]: prm.grad.clone() for _, prm in stage.named_parameters()
            if prm.grad is not None}
    got = [None] * S
    dist.gather_object({"loss": loss, "grads": mine, "n_mb": len(mbs)}, got if rank == 0 else None,
                       dst=0)
    failures = 0
    if rank == 0:
        ref = models.TinyGPT(vocab=128, hidden=32, layers=6, heads=4, max_len=256, seed=1)
        ref_loss = 0.0
        for j in range(len(mbs)):
            batch = data(j)
            l = models.token_loss(ref(batch["ids"]), batch["labels"]) / norm
            l.backward()
            ref_loss += float(l)
        pipe_loss = got[S - 1]["loss"]
        grads = {}
        for g in got:
            grads.update(g["grads"])

        def check(cond, what):
            nonlocal failures
            print(("ok   " if cond else "FAIL ") + what, flush=True)
            failures += 0 if cond else 1

        check(len(mbs) > 1 and len({pin for _, pin in mbs}) > 1,
              f"{S} stages: {len(mbs)} micro-batches of padded lengths "
              f"{sorted({pin for _, pin in mbs})}")
        check(abs(pipe_loss - ref_loss) <= 1e-5 * abs(ref_loss),
              f"{S} stages: loss {pipe_loss:.6f} = the single-process run's {ref_loss:.6f}")
        worst, worst_name = 0.0, ""
        missing = [n for n, _ in ref.named_parameters() if n not in grads]
        for n, prm in ref.named_parameters():
            if n in grads:
                e = float((grads[n] - prm.grad).abs().max() / (prm.grad.abs().max() + 1e-12))
                if e > worst:
                    worst, worst_name = e, n
        check(not missing and worst < 1e-4,
              f"{S} stages: every parameter's gradient as the single-process run's "
              f"(worst {worst:.1e} at {worst_name}; missing {missing})")
    shutdown()  # a barrier, then destroy: no rank exits while a peer works
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
