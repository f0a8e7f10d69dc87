"""Profile a models.TinyGPT or models.TinyT5 configuration on this machine into a cost model
the planner loads (the CSV format of dynapipe/data/costmodels/README.md, recompute mode none):

  python -m dynapipe.profile --out DIR [--model gpt|t5] [--name NAME] [--hidden 64]
                             [--heads 4] [--vocab 256] [--max-tokens 16384] [--max-len 4096]
                             [--max-target 512] [--repeat 3] [--no-p2p]

Per grid point (micro-batch size mbs in 1, 2, 4, ...; sequence lengths 16, 32, ..., at most
--max-len, T5 targets at most --max-target; at most --max-tokens tokens a point, input and
target together): one layer's forward and backward time (median of --repeat runs after a
warm-up, one thread: a pipeline stage's process) and its stored activation (the bytes
autograd saves, per layer; the transient peak taken as the same plus the layer's output),
and the head + loss's forward and backward time.
- GPT: a transformer block at (mbs, length); the head at (mbs, length).
- T5: an encoder block at (mbs, input), a decoder block (self-attention, cross-attention to
  the encoder's output, whose gradient it computes too) at (mbs, input, target), the head
  at (mbs, target), keyed as the bundled T5 profiles key them.
Parameter MB (fp16 bytes, as the profiles count them): the embeddings with the head, one
encoder block, one decoder block. Writes DIR/NAME_time.csv, DIR/NAME_memory.csv and
DIR/model_state.csv.

Then (unless --no-p2p) the point-to-point link the executor uses: two processes with gloo
over loopback send tensors of 64 KiB to 4 MiB back and forth; the least-squares line
through the one-way times gives the latency and bandwidth the planner's p2p_latency_ms and
p2p_gbps stand for, written to DIR/p2p.csv (load_p2p reads it)."""
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


def _layer(fn, inputs, repeat):
    """fn(*inputs) -> one tensor: forward ms, backward ms, stored bytes, output MB."""
    stored, y = _saved_bytes(lambda: fn(*inputs))
    g = torch.randn_like(y)
    fwd = _median_ms(lambda: fn(*inputs), repeat)
    bwd = _median_ms(lambda: torch.autograd.backward(fn(*inputs), g), repeat) - fwd
    for x in inputs:
        if isinstance(x, torch.Tensor):
            x.grad = None
    return fwd, bwd, stored, y.numel() * y.element_size() / 1e6


def _seqs(limit):
    return [s for s in (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192) if s <= limit]


def _mbs(tokens_per_sample, max_tokens):
    m = 1
    while m * tokens_per_sample <= max_tokens:
        yield m
        m *= 2


def profile(out_dir, name="tinygpt", hidden=64, heads=4, vocab=256, max_tokens=16384,
            repeat=3, max_len=4096, log=print, model="gpt", max_target=512):
    """Profile one model kind ("gpt" or "t5") over the grid; returns the number of grid
    points of its main layer (GPT blocks, T5 decoder blocks)."""
    if model not in ("gpt", "t5"):
        raise ValueError(f"model {model!r}: gpt or t5")
    torch.set_num_threads(1)
    os.makedirs(out_dir, exist_ok=True)
    head = torch.nn.Sequential(torch.nn.LayerNorm(hidden), torch.nn.Linear(hidden, vocab, bias=False))
    time_rows, mem_rows = [], []

    def head_point(mbs, seq, key):
        hx = torch.randn(mbs, seq, hidden, requires_grad=True)
        labels = torch.randint(0, vocab, (mbs * seq,))

        def head_loss():
            return F.cross_entropy(head(hx).reshape(-1, vocab), labels)

        hf = _median_ms(head_loss, repeat)
        hb = _median_ms(lambda: head_loss().backward(), repeat) - hf
        for d, ms in (("forward", hf), ("backward", hb)):
            time_rows.append([name, 1, "none", "postprocess", d, mbs, *key, 0, f"{max(ms, 0.001):.4f}"])
        return hf, hb

    def layer_rows(comp, mbs, key, r):
        fwd, bwd, stored, out_mb = r
        for d, ms in (("forward", fwd), ("backward", bwd)):
            time_rows.append([name, 1, "none", comp, d, mbs, *key, 0, f"{max(ms, 0.001):.4f}"])
        mem_rows.append([name, 1, "none", comp, mbs, *key, 0, f"{stored / 1e6:.4f}",
                         f"{stored / 1e6 + out_mb:.4f}"])

    points = 0
    if model == "gpt":
        block = models.Block(hidden, heads)
        layers = {"encoder": block}
        emb = [torch.nn.Embedding(vocab, hidden)]
        for seq in _seqs(max_len):
            for mbs in _mbs(seq, max_tokens):
                x = torch.randn(mbs, seq, hidden, requires_grad=True)
                r = _layer(block, (x,), repeat)
                layer_rows("encoder", mbs, (seq, ""), r)
                hf, hb = head_point(mbs, seq, (seq, ""))
                points += 1
                log(f"  mbs {mbs:4d} seq {seq:5d}: block {r[0]:8.2f} + {r[1]:8.2f} ms, head "
                    f"{hf:7.2f} + {hb:7.2f} ms, stored {r[2] / 1e6:8.2f} MB")
    else:
        enc, dec = models.EncBlock(hidden, heads), models.DecBlock(hidden, heads)
        layers = {"encoder": enc, "decoder": dec}
        emb = [torch.nn.Embedding(vocab, hidden) for _ in range(2)]  # encoder's, decoder's
        for seq in _seqs(max_len):
            for mbs in _mbs(seq, max_tokens):
                x = torch.randn(mbs, seq, hidden, requires_grad=True)
                pad = torch.zeros(mbs, seq, dtype=torch.bool)
                r = _layer(enc, (x, pad), repeat)
                layer_rows("encoder", mbs, (seq, ""), r)
                log(f"  encoder mbs {mbs:4d} input {seq:5d}: {r[0]:8.2f} + {r[1]:8.2f} ms, "
                    f"stored {r[2] / 1e6:8.2f} MB")
        for tgt in _seqs(max_target):
            for mbs in _mbs(tgt, max_tokens):
                hf, hb = head_point(mbs, tgt, ("", tgt))
            for seq in _seqs(max_len):
                for mbs in _mbs(seq + tgt, max_tokens):
                    y = torch.randn(mbs, tgt, hidden, requires_grad=True)
                    e = torch.randn(mbs, seq, hidden, requires_grad=True)
                    pad = torch.zeros(mbs, seq, dtype=torch.bool)
                    r = _layer(dec, (y, e, pad), repeat)
                    layer_rows("decoder", mbs, (seq, tgt), r)
                    points += 1
                    log(f"  decoder mbs {mbs:4d} input {seq:5d} target {tgt:5d}: {r[0]:8.2f} + "
                        f"{r[1]:8.2f} ms, stored {r[2] / 1e6:8.2f} MB")
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
        w.writerow([name, 1, "none", "embedding",
                    f"{sum(param_mb(m) for m in emb) + param_mb(head):.6f}"])
        for comp, m in layers.items():
            w.writerow([name, 1, "none", comp, f"{param_mb(m):.6f}"])
    return points


P2P_SIZES = (1 << 16, 1 << 18, 1 << 20, 1 << 22)


def _p2p_worker(rank, port, out, rounds):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)
    rows = []
    for n in P2P_SIZES:
        x = torch.zeros(n // 4)
        best = float("inf")
        for _ in range(3):  # the best of 3 rounds of `rounds` round trips
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(rounds):
                if rank == 0:
                    dist.send(x, 1)
                    dist.recv(x, 1)
                else:
                    dist.recv(x, 0)
                    dist.send(x, 0)
            best = min(best, (time.perf_counter() - t0) / (2 * rounds))
        rows.append((n, best * 1e3))
    if rank == 0:
        with open(out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["bytes", "one_way_ms"])
            w.writerows((n, f"{ms:.5f}") for n, ms in rows)
    dist.barrier()
    dist.destroy_process_group()


def profile_p2p(out_dir, rounds=20):
    """Measure the gloo link between two processes of this machine into DIR/p2p.csv; returns
    (latency_ms, gbps) as load_p2p fits them."""
    import socket
    import torch.multiprocessing as mp
    os.makedirs(out_dir, exist_ok=True)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    mp.spawn(_p2p_worker, args=(port, os.path.join(out_dir, "p2p.csv"), rounds), nprocs=2)
    return load_p2p(out_dir)


def load_p2p(directory):
    """(latency_ms, gbps) fitted to DIR/p2p.csv (one-way time = latency + bytes / bandwidth),
    or None where there is no such file. Pass them as config(p2p_latency_ms=, p2p_gbps=)."""
    path = os.path.join(directory, "p2p.csv")
    if not os.path.exists(path):
        return None
    pts = [(float(r["bytes"]), float(r["one_way_ms"])) for r in csv.DictReader(open(path))]
    if len(pts) < 2:
        raise ValueError(f"{path}: at least two sizes are needed, found {len(pts)}")
    n = len(pts)
    mx, my = sum(x for x, _ in pts) / n, sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    slope = sum((x - mx) * (y - my) for x, y in pts) / sxx  # ms per byte
    if slope <= 0:
        raise ValueError(f"{path}: the time does not grow with the size")
    return max(my - slope * mx, 0.0), 1e-6 / slope  # GB/s = bytes/ms * 1e3 / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="gpt", choices=["gpt", "t5"])
    ap.add_argument("--name", default=None, help="the cost model's name (default: tinygpt, tinyt5)")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--max-tokens", type=int, default=16384)
    ap.add_argument("--max-len", type=int, default=4096)
    ap.add_argument("--max-target", type=int, default=512, help="T5: the longest target")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-p2p", action="store_true", help="skip the point-to-point measurement")
    a = ap.parse_args()
    name = a.name or ("tiny" + a.model)
    for k in ("hidden", "heads", "vocab", "max_tokens", "max_len", "max_target", "repeat"):
        if getattr(a, k) < 1:
            ap.error(f"--{k.replace('_', '-')} must be at least 1")
    if a.max_len < 16 or a.max_target < 16 or a.max_tokens < 16:
        ap.error("--max-len, --max-target and --max-tokens must be at least 16 (the grid's first length)")
    if a.hidden % a.heads:
        ap.error(f"--hidden {a.hidden} is not a multiple of --heads {a.heads}")
    t0 = time.perf_counter()
    n = profile(a.out, name, a.hidden, a.heads, a.vocab, a.max_tokens, a.repeat, a.max_len,
                model=a.model, max_target=a.max_target)
    msg = f"{n} grid points in {time.perf_counter() - t0:.0f} s -> {a.out}/{name}_time.csv, " \
          f"{name}_memory.csv, model_state.csv"
    if not a.no_p2p:
        lat, gbps = profile_p2p(a.out)
        msg += f", p2p.csv (gloo: {lat:.3f} ms + {gbps:.2f} GB/s)"
    print(msg)


if __name__ == "__main__":
    main()
