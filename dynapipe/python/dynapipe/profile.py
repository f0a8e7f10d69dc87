"""Profile a models.TinyGPT configuration on this machine into a cost model the planner
loads (the CSV format of dynapipe/data/costmodels/README.md, recompute mode none):

  python -m dynapipe.profile --out DIR [--name tinygpt] [--hidden 64] [--heads 4]
                             [--vocab 256] [--max-tokens 16384] [--repeat 3]

Per grid point (micro-batch size mbs in 1, 2, 4, ...; sequence length 16, 32, ..., 4096; at
most --max-tokens tokens): one transformer block's forward and backward time (median of
--repeat runs after a warm-up, one thread: a pipeline stage's process) and its stored
activation (the bytes autograd saves, per layer; the transient peak taken as the same
plus the block's output), the head + loss's forward and backward time; the embedding's and
one block's parameter MB (fp16 bytes, as the profiles count them). Writes
DIR/NAME_time.csv, DIR/NAME_memory.csv and DIR/model_state.csv."""
import argparse
import csv
import os
import statistics
import time

import torch
import torch.nn.functional as F

from . import models


def _median_ms(fn, repeat):
    fn()
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        t.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(t)


def _saved_bytes(fn):
    total = [0]

    def pack(x):
        total[0] += x.numel() * x.element_size()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        out = fn()
    return total[0], out


def profile(out_dir, name="tinygpt", hidden=64, heads=4, vocab=256, max_tokens=16384,
            repeat=3, max_len=4096, log=print):
    torch.set_num_threads(1)
    os.makedirs(out_dir, exist_ok=True)
    block = models.Block(hidden, heads)
    head = torch.nn.Sequential(torch.nn.LayerNorm(hidden), torch.nn.Linear(hidden, vocab, bias=False))
    emb = torch.nn.Embedding(vocab, hidden)
    time_rows, mem_rows = [], []
    seqs = [s for s in (16, 32, 64, 128, 256, 512, 1024, 2048, 4096) if s <= max_len]
    for seq in seqs:
        mbs = 1
        while mbs * seq <= max_tokens:
            x = torch.randn(mbs, seq, hidden, requires_grad=True)
            stored, y = _saved_bytes(lambda: block(x))
            g = torch.randn_like(y)
            fwd = _median_ms(lambda: block(x), repeat)
            bwd = _median_ms(lambda: torch.autograd.backward(block(x), g), repeat) - fwd
            hx = torch.randn(mbs, seq, hidden, requires_grad=True)
            labels = torch.randint(0, vocab, (mbs * seq,))

            def head_loss():
                return F.cross_entropy(head(hx).reshape(-1, vocab), labels)

            hf = _median_ms(head_loss, repeat)
            hb = _median_ms(lambda: head_loss().backward(), repeat) - hf
            for comp, d, ms in (("encoder", "forward", fwd), ("encoder", "backward", bwd),
                                ("postprocess", "forward", hf), ("postprocess", "backward", hb)):
                time_rows.append([name, 1, "none", comp, d, mbs, seq, "", 0, f"{max(ms, 0.001):.4f}"])
            out_mb = y.numel() * y.element_size() / 1e6
            mem_rows.append([name, 1, "none", "encoder", mbs, seq, "", 0, f"{stored / 1e6:.4f}",
                             f"{stored / 1e6 + out_mb:.4f}"])
            log(f"  mbs {mbs:4d} seq {seq:5d}: block {fwd:8.2f} + {bwd:8.2f} ms, head "
                f"{hf:7.2f} + {hb:7.2f} ms, stored {stored / 1e6:8.2f} MB")
            mbs *= 2
    with open(os.path.join(out_dir, f"{name}_time.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "tp", "recompute", "component", "direction", "mbs", "enc_seqlen",
                    "dec_seqlen", "dup_idx", "time_ms"])
        w.writerows(time_rows)
    with open(os.path.join(out_dir, f"{name}_memory.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "tp", "recompute", "component", "mbs", "enc_seqlen", "dec_seqlen",
                    "dup_idx", "stored_activation_mb", "peak_activation_mb"])
        w.writerows(mem_rows)
    param_mb = lambda m: sum(p.numel() for p in m.parameters()) * 2 / 1e6
    with open(os.path.join(out_dir, "model_state.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "tp", "recompute", "component", "param_mb"])
        w.writerow([name, 1, "none", "embedding", f"{param_mb(emb) + param_mb(head):.6f}"])
        w.writerow([name, 1, "none", "encoder", f"{param_mb(block):.6f}"])
    return len(time_rows) // 4


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", default="tinygpt")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--max-tokens", type=int, default=16384)
    ap.add_argument("--max-len", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    t0 = time.perf_counter()
    n = profile(a.out, a.name, a.hidden, a.heads, a.vocab, a.max_tokens, a.repeat, a.max_len)
    print(f"{n} grid points in {time.perf_counter() - t0:.0f} s -> {a.out}/{a.name}_time.csv, "
          f"{a.name}_memory.csv, model_state.csv")


if __name__ == "__main__":
    main()
