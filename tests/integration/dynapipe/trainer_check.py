"""One PipelineTrainer step under torchrun (gloo), with data-parallel replicas or the T5
model, checked against a single process running the whole model over every micro-batch (run
by test_executor):

  torchrun --nproc-per-node S*D trainer_check.py --stages S [--model gpt|t5]
                                                   [--method dynapipe|packing]

The T5 (2 encoder + 4 decoder layers) crosses stage boundaries with the encoder's output and
the decoder's hidden state (two tensors), or with the encoder's output alone. With packing,
the reference builds the rows itself (GPT: the batch's tokens concatenated and cut; T5: the
planner's first-fit rows, each row's inputs and targets concatenated) and checks that every
real token is in exactly one row.

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
    ap.add_argument("--method", choices=["dynapipe", "packing"], default="dynapipe")
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
                              hidden=gpt.hidden, max_len=256, max_target=256, pack_len=256,
                              pack_target_len=96)
    else:
        cfg = dynapipe.config(cm, stages=S, dp_size=D, layers_enc=gpt.layers, hidden=gpt.hidden,
                              max_len=256, pack_len=256)
    rnd = random.Random(3)
    samples = [(rnd.randint(4, 150), rnd.randint(1, 60)) for _ in range(64)]
    tr = PipelineTrainer(gpt, cm, cfg, method=a.method, keep_grads=True)
    r = tr.step(samples)
    names = {id(p): n for n, p in gpt.named_parameters()}
    mine = {names[i]: g for i, g in tr.last_grads.items()}
    got = [None] * world
    dist.gather_object(mine, got if rank == 0 else None, dst=0)
    status = 0
    if rank == 0:
        ref = make()
        p = dynapipe.plan(cm, cfg, samples, a.method)
        t5, packing = a.model == "t5", a.method == "packing"
        batches, row = [], 0
        if packing and not t5:
            toks = torch.cat([models.tokens_of(samples, i, ref.vocab) for i in range(len(samples))])
        if packing and t5:
            rows = models.t5_first_fit(samples, cfg.pack_len, cfg.pack_target_len)
        for m in p.microbatches:
            if packing and t5:
                batches.append(models.t5_packed_batch(samples, rows[row:row + m.mbs],
                                                      m.padded_input, m.padded_target, ref.vocab))
            elif packing:
                ids = toks[row * m.padded_input:(row + m.mbs) * m.padded_input]
                b = torch.zeros(m.mbs * m.padded_input, dtype=torch.long)
                b[:len(ids)] = ids
                b = b.reshape(m.mbs, m.padded_input)
                lab = torch.full_like(b, models.IGNORE)
                lab[:, :-1] = b[:, 1:]
                n_real = (len(ids) - 1) % m.padded_input + 1  # tokens in the last row
                lab[-1, n_real - 1:] = models.IGNORE
                batches.append({"ids": b, "labels": lab})
            elif t5:
                batches.append(models.t5_batch(samples, m.samples, m.padded_input,
                                               m.padded_target, ref.vocab))
            else:
                batches.append(models.gpt_batch(samples, m.samples, m.padded_input, ref.vocab))
            row += m.mbs
        labels = torch.cat([b["labels"].reshape(-1) for b in batches])
        norm = int((labels != models.IGNORE).sum())
        if packing and t5:  # every real token in exactly one row
            pairs = [models.tokens_of(samples, i, ref.vocab, gpt=False) for i in range(len(samples))]
            want = (sorted(torch.cat([x for x, _ in pairs]).tolist()),
                    sorted(torch.cat([y for _, y in pairs]).tolist()))
            have = (sorted(torch.cat([b["in_ids"][~b["in_pad"]] for b in batches]).tolist()),
                    sorted(torch.cat([b["labels"][b["labels"] != models.IGNORE]
                                      for b in batches]).tolist()))
            ok = want == have and sorted(i for r in rows for i in r) == list(range(len(samples)))
            print(("ok   " if ok else "FAIL ") + f"t5 packing: {len(rows)} rows in "
                  f"{len(p.microbatches)} micro-batches hold every input and target token once",
                  flush=True)
            status |= not ok
        ref_loss = 0.0
        for b in batches:
            out = ref(b) if t5 else ref(b["ids"])
            l = models.token_loss(out, b["labels"]) / norm
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
