"""Faults of pipeline training under torchrun (gloo), one per run (run by test_executor):

  torchrun --nproc-per-node 2 executor_faults.py long|empty|ranks|kill

long: a sample longer than the model's maximum; empty: an empty batch; ranks: a plan for
another number of ranks; kill: rank 1 dies in the middle of the iteration. Every rank that is
still alive prints "rank R: error: ..." naming the cause and exits non-zero; nothing hangs
(the executor's waits time out after 10 s; torchrun may also stop the survivors of a killed
rank first)."""
import datetime
import os
import sys

import torch
import torch.distributed as dist

import dynapipe
from dynapipe import models
from dynapipe.train import PipelineTrainer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../../.."))


def main():
    fault = sys.argv[1]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=30))
    rank, S = dist.get_rank(), dist.get_world_size()
    gpt = models.TinyGPT(vocab=64, hidden=16, layers=4, heads=2, max_len=256, seed=0)
    cm = dynapipe.CostModel(os.path.join(ROOT, "dynapipe", "data", "costmodels"), "gpt")
    try:
        cfg = dynapipe.config(cm, stages=S + (fault == "ranks"), layers_enc=gpt.layers,
                              hidden=gpt.hidden, max_len=256)
        tr = PipelineTrainer(gpt, cm, cfg, timeout_s=10)
        samples = [(20, 5)] * 12
        if fault == "long":
            samples[5] = (300, 10)
        elif fault == "empty":
            samples = []
        elif fault == "kill" and rank == 1:
            import threading
            threading.Timer(0.05, lambda: os._exit(9)).start()  # dies inside the step
            samples = [(200, 50)] * 40
        if fault == "kill" and rank == 0:
            samples = [(200, 50)] * 40
        tr.step(samples)
        print(f"rank {rank}: no error", flush=True)
        return 0
    except Exception as e:  # the clear message every rank must give
        line = f"rank {rank}: error: {e}"
        print(line, flush=True)
        d = os.environ.get("REPORT_DIR")  # also in a file: torchrun may stop a rank that is
        if d:  # still printing once another exits
            with open(os.path.join(d, f"rank{rank}.txt"), "w") as f:
                f.write(line + "\n")
        if fault != "kill":  # the killed rank's peer has nobody to wait for
            try:  # every live rank says it before torchrun tears the group down
                dist.monitored_barrier(timeout=datetime.timedelta(seconds=60))
            except RuntimeError:
                pass
        return 1


if __name__ == "__main__":
    sys.exit(main())
