"""The Minuet part of `make demo` for spconv users: a UNet-42-style spconv model (the one of
minuet/python/bench/spconv_bench.py) on a real scan, run by spconv itself and with the Minuet
hook: a forward pass and one training step (forward + backward of sum(y^2)), the outputs and
gradients compared, each timed (torch threads 2; spconv's reference values with 1 thread,
because its CPU path races on 2).
  spconv_demo.py COORDS.npy"""
import copy
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import spconv_bench as sb  # noqa: E402  (the models, the loader and spconv's backward patch)
import spconv.pytorch as spconv  # noqa: E402

from minuet import spconv_hook  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t0


def main():
    idx, shape = sb.load(sys.argv[1])
    torch.manual_seed(0)
    feats = torch.randn(idx.shape[0], 4)
    ref = sb.UNet42(4)
    mine = copy.deepcopy(ref)
    print(f"{idx.shape[0]} voxels in a {shape[0]} x {shape[1]} x {shape[2]} grid; UNet-42-style "
          f"spconv model, widths {sb.WIDTHS}, {sum(p.numel() for p in ref.parameters())} weights")

    def forward(net):
        with torch.no_grad():
            return net(spconv.SparseConvTensor(feats, idx, shape, 1)).features

    def step(net):
        net.zero_grad()
        f = feats.clone().requires_grad_(True)
        y = net(spconv.SparseConvTensor(f, idx, shape, 1))
        (y.features ** 2).sum().backward()
        return f.grad, {n: p.grad.clone() for n, p in net.named_parameters()}

    def rel(a, b):
        return ((a - b).abs() / (1 + b.abs())).max().item()

    torch.set_num_threads(1)
    y_ref, t_ref1 = timed(lambda: forward(ref))
    (g_ref, p_ref), s_ref1 = timed(lambda: step(ref))
    torch.set_num_threads(2)
    _, t_ref2 = timed(lambda: forward(ref))
    _, s_ref2 = timed(lambda: step(ref))
    spconv_hook.install()
    forward(mine)  # the first pass autotunes each layer shape
    y, t_mn = timed(lambda: forward(mine))
    step(mine)
    (g, p), s_mn = timed(lambda: step(mine))
    print(f"forward:       spconv {t_ref2:.2f} s (1 thread {t_ref1:.2f} s), Minuet {t_mn:.2f} s: "
          f"{t_ref2 / t_mn:.2f}x; output max rel diff {rel(y, y_ref):.1e}")
    worst = max(rel(p[k], p_ref[k]) for k in p_ref)
    print(f"training step: spconv {s_ref2:.2f} s (1 thread {s_ref1:.2f} s), Minuet {s_mn:.2f} s: "
          f"{s_ref2 / s_mn:.2f}x; input gradient max rel diff {rel(g, g_ref):.1e}, "
          f"{len(p_ref)} weight gradients max rel diff {worst:.1e}")
    ok = rel(y, y_ref) < 1e-4 and rel(g, g_ref) < 1e-4 and worst < 1e-4
    print("outputs and gradients agree with spconv's" if ok else "MISMATCH with spconv")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
