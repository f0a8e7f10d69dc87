#!/usr/bin/env python3
"""minuet_torch.py: the minuet package's CUDA path (minuet.cuda) on torch CUDA tensors, against
its CPU path, on a real GPU (scripts/gpu-check part 4; exits 77 where the CUDA backend cannot
run). Fresh random inputs every run (the seed is printed).

  1. sort, kernel maps (sort-based and hash-based: the same counts), forward, transposed
     forward and backward of one layer: CUDA against CPU, relative error below 1e-5;
  2. a small encoder-decoder (submanifold K=3 convolutions, a strided K=2 s=2 convolution
     and its transposed use, ReLU) trained for 5 SGD steps from the same weights on the GPU
     and on the CPU: the losses descend, and agree to 1e-4 relative and to a hundredth of
     how far they moved;
  3. the time of one training step of that network on N voxels, GPU against CPU.
Prints "minuet-torch: ok ..." lines and a last line "minuet-torch: N checks, M failed".
  PYTHONPATH=minuet/python MINUET_LIB=build/lib/libminuet.so python3 minuet_torch.py [N]
"""
import os, sys, time

try:
    import numpy as np
    import torch
except ImportError as e:
    print(f"minuet-torch: skipped: {e}")
    sys.exit(77)

import minuet
import minuet.cuda as mc

ok, why = mc.available()
if not ok or not torch.cuda.is_available():
    print(f"minuet-torch: skipped: {why if not ok else 'torch sees no CUDA device'}")
    sys.exit(77)
seed = int(os.environ.get("MINUET_CHECK_SEED", time.time_ns() % 2**31))
print(f"minuet-torch on {why}, seed {seed}")
torch.manual_seed(seed)
rng = np.random.default_rng(seed)
checks = failed = 0


def check(name, good, detail):
    global checks, failed
    checks += 1
    failed += 0 if good else 1
    print(f"minuet-torch: {'ok' if good else 'FAILED'} {name} ({detail})", flush=True)


def rel(a, b):
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if torch.isnan(a).any():
        return float("nan")
    return float((a - b).norm() / max(b.norm(), 1e-30))


def cloud(n, extent, batches=2):
    """n distinct random sites, sorted (numpy int32 [n, 4])."""
    cells = rng.choice(batches * extent ** 3, size=n, replace=False)
    c = np.stack([cells // extent ** 3, (cells // extent ** 2) % extent - extent // 2,
                  (cells // extent) % extent - extent // 2, cells % extent - extent // 2], 1)
    s, _ = minuet.sort(c.astype(np.int32))
    return s


# ---- 1. one layer --------------------------------------------------------------------------
n = 20000
c_np = cloud(n, 40)
c = torch.from_numpy(c_np).cuda()
shuf = c[torch.randperm(n, device="cuda")]
s, perm = mc.sort(shuf)
check("sort", torch.equal(s, c) and torch.equal(shuf[perm], c), f"{n} rows")
m_sort = mc.kernel_map(c, c, 3)
m_hash = mc.kernel_map(c, c, 3, method="hash")
m_cpu = minuet.kernel_map(c_np, c_np, 3)
check("kernel map counts", m_sort.counts() == m_hash.counts() == list(m_cpu.counts()),
      f"{m_sort.total} pairs, sort = hash = CPU")
f = torch.randn(n, 32)
w = torch.randn(27, 32, 48) * 0.1
b = torch.randn(48)
out_g = mc.conv(m_sort, f.cuda(), w.cuda(), b.cuda())
out_c = minuet.conv(m_cpu, f, w, b)
e = rel(out_g, out_c)
check("forward K=3 32->48", e < 1e-5, f"rel err {e:.2e}")
again = mc.conv(m_sort, f.cuda(), w.cuda(), b.cuda())
check("forward deterministic", torch.equal(again, out_g), "two runs, the same bits")
g = torch.randn(n, 48)
di_g, dw_g, db_g = mc.conv_backward(m_sort, f.cuda(), w.cuda(), g.cuda(), need_bias=True)
di_c, dw_c, db_c = minuet.conv_backward(m_cpu, f, w, g, need_bias=True)
e = max(rel(di_g, di_c), rel(dw_g, dw_c), rel(db_g, db_c))
check("backward K=3 32->48", e < 1e-5, f"worst rel err of d_in, d_W, d_bias {e:.2e}")
down_np = minuet.conv_outputs(c_np, 2, 2, 0, 1, (1 << 20,) * 3)  # spconv's grid: o = floor(p/2)
# the strided map between the full-resolution sites and their stride-2 sites, in the units of
# the input grid (tensor stride 1): outputs scaled back by 2
down_np = down_np.copy()
down_np[:, 1:] *= 2
md_cpu = minuet.kernel_map(c_np, down_np, 2)
md = mc.kernel_map(c, torch.from_numpy(down_np).cuda(), 2)
check("strided map counts", md.counts() == list(md_cpu.counts()), f"{md.total} pairs")
w2 = torch.randn(8, 32, 16) * 0.1
e = rel(mc.conv(md, f.cuda(), w2.cuda()), minuet.conv(md_cpu, f, w2))
check("strided forward", e < 1e-5, f"rel err {e:.2e}")
fd = torch.randn(down_np.shape[0], 16)
w3 = torch.randn(8, 16, 32) * 0.1
e = rel(mc.conv(md, fd.cuda(), w3.cuda(), transposed=True),
        minuet.conv(md_cpu, fd, w3, transposed=True))
check("transposed forward", e < 1e-5, f"rel err {e:.2e}")


# ---- 2. training, GPU against CPU ------------------------------------------------------------
class Conv(torch.autograd.Function):
    """minuet's convolution on either device: the CUDA path or the CPU path."""

    @staticmethod
    def forward(ctx, x, w, maps, transposed):
        ctx.maps, ctx.tr = maps, transposed
        ctx.save_for_backward(x, w)
        if x.is_cuda:
            return mc.conv(maps["cuda"], x, w, transposed=transposed)
        return minuet.conv(maps["cpu"], x, w, transposed=transposed)

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        if x.is_cuda:
            di, dw, _ = mc.conv_backward(ctx.maps["cuda"], x, w, grad.contiguous(), ctx.tr)
        else:
            di, dw, _ = minuet.conv_backward(ctx.maps["cpu"], x, w, grad.contiguous(), ctx.tr)
        return di, dw, None, None


def net_maps(c_np, dev):
    down = minuet.conv_outputs(c_np, 2, 2, 0, 1, (1 << 20,) * 3).copy()
    down[:, 1:] *= 2
    if dev == "cuda":
        ct, dt = torch.from_numpy(c_np).cuda(), torch.from_numpy(down).cuda()
        return ({"cuda": mc.kernel_map(ct, ct, 3)}, {"cuda": mc.kernel_map(ct, dt, 2)},
                {"cuda": mc.kernel_map(dt, dt, 3, tensor_stride=2)})
    return ({"cpu": minuet.kernel_map(c_np, c_np, 3)}, {"cpu": minuet.kernel_map(c_np, down, 2)},
            {"cpu": minuet.kernel_map(down, down, 3, tensor_stride=2)})


def weights(seed):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(27, 4, 32), (27, 32, 32), (8, 32, 64), (27, 64, 64), (8, 64, 32), (27, 32, 8)]
    return [(torch.randn(*s, generator=gen) / (s[0] * s[1]) ** 0.5) for s in shapes]


def forward(x, W, maps):
    sub, down, sub2 = maps
    h = torch.relu(Conv.apply(x, W[0], sub, False))
    h = torch.relu(Conv.apply(h, W[1], sub, False))
    d = torch.relu(Conv.apply(h, W[2], down, False))
    d = torch.relu(Conv.apply(d, W[3], sub2, False))
    u = torch.relu(Conv.apply(d, W[4], down, True)) + h
    return Conv.apply(u, W[5], sub, False)


def train(dev, c_np, x, y, steps=5):
    maps = net_maps(c_np, dev)
    W = [w.to(dev).requires_grad_() for w in weights(seed)]
    opt = torch.optim.SGD(W, lr=0.5)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ((forward(x.to(dev), W, maps) - y.to(dev)) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


x = torch.randn(n, 4)
y = torch.randn(n, 8)
lg, lc = train("cuda", c_np, x, y), train("cpu", c_np, x, y)
e = max(abs(a - b) / abs(b) for a, b in zip(lg, lc))
moved = abs(lc[-1] - lc[0]) / lc[0]
# the GPU's losses follow the CPU's to within a hundredth of how far training moved them
# (and 1e-4), and training moved them: both descend
descends = all(b < a for a, b in zip(lc, lc[1:])) and all(b < a for a, b in zip(lg, lg[1:]))
check("training 5 SGD steps", e < min(1e-4, moved / 100) and descends,
      f"losses GPU {lg[0]:.6f}->{lg[-1]:.6f}, CPU {lc[0]:.6f}->{lc[-1]:.6f}, worst rel diff {e:.1e}")


# ---- 3. time of a training step ---------------------------------------------------------------
def step_time(dev, c_np, reps=3):
    maps = net_maps(c_np, dev)
    W = [w.to(dev).requires_grad_() for w in weights(1)]
    xx, yy = torch.randn(len(c_np), 4).to(dev), torch.randn(len(c_np), 8).to(dev)
    ts = []
    for r in range(reps + 1):
        if dev == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        ((forward(xx, W, maps) - yy) ** 2).mean().backward()
        if dev == "cuda":
            torch.cuda.synchronize()
        if r:
            ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2]


if failed == 0:
    big = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000
    cb = cloud(big, int((3 * big / 2) ** (1 / 3)) + 2)
    tg, tc = step_time("cuda", cb), step_time("cpu", cb, reps=1)
    print(f"minuet-torch: training step on {big} voxels (6 convolutions): GPU {tg * 1e3:.1f} ms, "
          f"CPU ({torch.get_num_threads()} threads) {tc * 1e3:.1f} ms, {tc / tg:.1f}x")
print(f"minuet-torch: {checks} checks, {failed} failed")
sys.exit(1 if failed else 0)
