"""The data-loader hook under torchrun (gloo), 2 stages (run by test_executor): a DataLoader of
samples with their own token ids trains through PlannedLoader for 3 batches; each batch's
loss must equal a single process's computed sample by sample from the token ids (each
sample's next-token loss alone, summed and divided by the batch's predictions), with the
same AdamW steps, so the hook trains on the samples' own tokens, normalises by real tokens
and steps once per batch. The loader is read one batch ahead and rank 0 plans the next batch
while the current one trains: the later steps wait for the planner less than half its time.
A step given another batch than its plan_ahead() is refused on every rank; a rank whose
loader gives another batch is refused."""
import datetime
import os
import sys

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

import dynapipe
from dynapipe import models
from dynapipe.hook import PlannedLoader
from dynapipe.train import PipelineTrainer, shutdown

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../../.."))
VOCAB = 97


def dataset(n=96, seed=5):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        a = int(torch.randint(3, 120, (1,), generator=g))
        t = int(torch.randint(1, 40, (1,), generator=g))
        out.append({"input_ids": torch.randint(0, VOCAB, (a,), generator=g).tolist(),
                    "target_ids": torch.randint(0, VOCAB, (t,), generator=g).tolist()})
    return out


def main():
    bad = len(sys.argv) > 1 and sys.argv[1] == "--mismatch"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank, S = dist.get_rank(), dist.get_world_size()
    data = dataset(seed=6 if bad and rank == 1 else 5)
    loader = DataLoader(data, batch_size=32, shuffle=False, collate_fn=list)
    make = lambda: models.TinyGPT(vocab=VOCAB, hidden=32, layers=4, heads=4, max_len=256, seed=4)
    gpt = make()
    cm = dynapipe.CostModel(os.path.join(ROOT, "dynapipe", "data", "costmodels"), "gpt")
    cfg = dynapipe.config(cm, stages=S, layers_enc=gpt.layers, hidden=gpt.hidden, max_len=256)
    tr = PipelineTrainer(gpt, cm, cfg, lr=1e-2)
    try:
        steps = list(PlannedLoader(loader, tr))
        losses = [st["loss"] for st in steps]
    except dynapipe.DynapipeValueError as e:
        print(f"rank {rank}: error: {e}", flush=True)
        d = os.environ.get("REPORT_DIR")
        if d:
            with open(os.path.join(d, f"rank{rank}.txt"), "w") as f:
                f.write(f"rank {rank}: error: {e}\n")
        return 1
    status = 0
    if rank == 0:
        ref = make()
        opt = torch.optim.AdamW(ref.parameters(), lr=1e-2)
        want = []
        for b0 in range(0, len(data), 32):
            batch = data[b0:b0 + 32]
            norm = sum(len(s["input_ids"]) + len(s["target_ids"]) - 1 for s in batch)
            total = 0.0
            for s in batch:  # each sample alone, from its own token ids
                seq = torch.tensor(s["input_ids"] + s["target_ids"])
                l = models.token_loss(ref(seq[None, :-1]), seq[None, 1:]) / norm
                l.backward()
                total += float(l)
            opt.step()
            opt.zero_grad()
            want.append(total)
        worst = max(abs(a - b) / abs(b) for a, b in zip(losses, want))
        ok = len(losses) == 3 and worst < 1e-4 and abs(want[2] - want[0]) / want[0] > 1e-3
        print(("ok   " if ok else "FAIL ") + f"the hook: 3 batches of token samples, losses "
              f"{['%.5f' % v for v in losses]} = a single process's sample by sample "
              f"{['%.5f' % v for v in want]} (worst {worst:.1e})", flush=True)
        status = 0 if ok else 1
        ok = all(st["plan_wait_seconds"] < 0.5 * st["plan_seconds"] for st in steps[1:])
        print(("ok   " if ok else "FAIL ") + "the hook plans ahead: steps 2 and 3 waited " +
              ", ".join(f"{1e3 * st['plan_wait_seconds']:.3f} ms of the planner's "
                        f"{1e3 * st['plan_seconds']:.3f}" for st in steps[1:]), flush=True)
        status |= not ok
    try:
        tr.step(data[:8], tr.plan_ahead(data[8:16]))
        refused = "no error"
    except dynapipe.DynapipeValueError as e:
        refused = str(e)
    ok = "plan_ahead() was given another batch" in refused
    if rank == 0 or not ok:
        print(("ok   " if ok else "FAIL ") + f"rank {rank}: a step with another batch than its "
              f"plan_ahead() is refused: {refused}", flush=True)
    status |= not ok
    shutdown()  # a barrier, then destroy: no rank exits while a peer works
    return status


if __name__ == "__main__":
    sys.exit(main())
