"""One measurement of scripts/bench-minuet-spconv, in a process of its own (so that its peak
RSS is its own): spconv's CPU path against the same model with the Minuet hook.

  spconv_bench.py net    --coords C.npy --model resnet21|unet42 --mode spconv|minuet
                         --phase forward|train [--threads 2] [--repeat 3]
  spconv_bench.py layers --coords C.npy --mode spconv|minuet [--threads 2] [--repeat 3]
  spconv_bench.py floor  --coords C.npy --model resnet21|unet42 [--threads 2] [--repeat 3]

net: a ResNet-21- or UNet-42-style spconv model (random weights, seed 0; widths 16, 32, 64,
128, 256 as minuet bench's defaults; ReLU between convolutions), forward under no_grad or
forward + backward of sum(y^2); prints one JSON line: best seconds of --repeat runs after a
warm-up run (which also autotunes Minuet's layer shapes), peak RSS in MiB, the output's
checksum. layers: per layer kind (SubMConv3d 16->16 K=3; SparseConv3d 16->32 K=2 s=2;
SparseConv3d 16->32 K=3 s=2 p=1), the index generation / map build (spconv's
get_indice_pairs; Minuet's sort and map, the output sites included for strided layers) and
the convolution with the map reused. floor: the GEMM floor of the model on this machine:
the multiply-adds every engine must do (each layer's kernel-map pairs x C_in x C_out, the
same for spconv and Minuet), at the speed of torch's BLAS on dense, cache-resident blocks
of those shapes (the best per row of 1024-, 4096- and 16384-row torch.mm calls, the same
threads): forward [pairs, C_in] x [C_in, C_out]; a training step adds the input gradient
[pairs, C_out] x [C_out, C_in] and the weight gradient [C_in, pairs] x [pairs, C_out].
Gathers, scatters, maps and everything else cost nothing in it, so no engine doing the same
arithmetic at that speed beats it, and spconv's time over it bounds the speed-up any such
engine can reach.
"""
import argparse
import json
import resource
import sys
import time

import numpy as np
import torch

import spconv.pytorch as spconv
import spconv.pytorch.ops as spops

spops.get_current_stream = lambda: 0  # spconv 2.3.8's CPU backward asks CUDA for a stream

WIDTHS = (16, 32, 64, 128, 256)


def relu(x):
    return x.replace_feature(torch.relu(x.features))


class Res(torch.nn.Module):
    def __init__(self, w, key):
        super().__init__()
        self.c1 = spconv.SubMConv3d(w, w, 3, indice_key=key, bias=False)
        self.c2 = spconv.SubMConv3d(w, w, 3, indice_key=key, bias=False)

    def forward(self, x):
        y = self.c2(relu(self.c1(x)))
        return relu(y.replace_feature(y.features + x.features))


class ResNet21(torch.nn.Module):
    """A stem convolution, 4 stages of a stride-2 K=2 convolution and 2 residual blocks."""

    def __init__(self, cin):
        super().__init__()
        w = WIDTHS
        self.stem = spconv.SubMConv3d(cin, w[0], 3, indice_key="s0", bias=False)
        self.stages = torch.nn.ModuleList()
        for i in range(4):
            self.stages.append(torch.nn.ModuleList([
                spconv.SparseConv3d(w[i], w[i + 1], 2, stride=2, indice_key=f"d{i + 1}", bias=False),
                Res(w[i + 1], f"s{i + 1}"), Res(w[i + 1], f"s{i + 1}")]))

    def forward(self, x):
        x = relu(self.stem(x))
        for down, r1, r2 in self.stages:
            x = r2(r1(relu(down(x))))
        return x


class UNet42(torch.nn.Module):
    """MinkUNet-like: 2 stem convolutions, the 4 encoder stages above, 4 decoder stages of an
    inverse K=2 convolution, the skip concatenated and merged by a K=3 convolution, a residual
    block, and a closing K=3 convolution."""

    def __init__(self, cin):
        super().__init__()
        w = WIDTHS
        self.stem1 = spconv.SubMConv3d(cin, w[0], 3, indice_key="s0", bias=False)
        self.stem2 = spconv.SubMConv3d(w[0], w[0], 3, indice_key="s0", bias=False)
        self.enc = torch.nn.ModuleList()
        for i in range(4):
            self.enc.append(torch.nn.ModuleList([
                spconv.SparseConv3d(w[i], w[i + 1], 2, stride=2, indice_key=f"d{i + 1}", bias=False),
                Res(w[i + 1], f"s{i + 1}"), Res(w[i + 1], f"s{i + 1}")]))
        self.dec = torch.nn.ModuleList()
        for i in range(4, 0, -1):
            self.dec.append(torch.nn.ModuleList([
                spconv.SparseInverseConv3d(w[i], w[i - 1], 2, indice_key=f"d{i}", bias=False),
                spconv.SubMConv3d(2 * w[i - 1], w[i - 1], 3, indice_key=f"s{i - 1}", bias=False),
                Res(w[i - 1], f"s{i - 1}")]))
        self.last = spconv.SubMConv3d(w[0], w[0], 3, indice_key="s0", bias=False)

    def forward(self, x):
        x = relu(self.stem2(relu(self.stem1(x))))
        skips = [x]
        for down, r1, r2 in self.enc:
            x = r2(r1(relu(down(x))))
            skips.append(x)
        for (up, merge, res), skip in zip(self.dec, reversed(skips[:-1])):
            u = relu(up(x))
            x = res(relu(merge(u.replace_feature(torch.cat([u.features, skip.features], 1)))))
        return self.last(x)


def load(path):
    c = np.load(path).astype(np.int32)
    c[:, 1:] -= c[:, 1:].min(0)
    shape = [int(v) + 1 for v in c[:, 1:].max(0)]
    g = torch.Generator().manual_seed(0)
    idx = torch.from_numpy(c)[torch.randperm(c.shape[0], generator=g)]  # voxelizer order
    return idx.contiguous(), shape


def best(fn, repeat):
    fn()  # warm-up: allocations, and Minuet's autotuning of each layer shape
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return min(t)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cmd_net(a):
    idx, shape = load(a.coords)
    torch.manual_seed(0)
    feats = torch.randn(idx.shape[0], 4)
    net = (ResNet21 if a.model == "resnet21" else UNet42)(4)
    out = {}

    def forward():
        with torch.no_grad():
            y = net(spconv.SparseConvTensor(feats, idx, shape, 1))
        out["sum"] = float(y.features.double().abs().sum())

    def train():
        net.zero_grad()
        f = feats.clone().requires_grad_(True)
        y = net(spconv.SparseConvTensor(f, idx, shape, 1))
        (y.features ** 2).sum().backward()
        out["sum"] = float(y.features.double().abs().sum())

    s = best(forward if a.phase == "forward" else train, a.repeat)
    print(json.dumps({"voxels": int(idx.shape[0]), "seconds": s, "peak_rss_mib": peak_rss_mib(),
                      "checksum": out["sum"]}))


def cmd_layers(a):
    from spconv.core import ConvAlgo
    idx, shape = load(a.coords)
    torch.manual_seed(0)
    f = torch.randn(idx.shape[0], 16)
    rows = []
    for name, K, s, p, cout, subm in [("SubMConv3d 16->16 K=3", 3, 1, 1, 16, True),
                                      ("SparseConv3d 16->32 K=2 s=2", 2, 2, 0, 32, False),
                                      ("SparseConv3d 16->32 K=3 s=2 p=1", 3, 2, 1, 32, False)]:
        if a.mode == "spconv":
            def mapping():
                spops.get_indice_pairs(idx, 1, shape, ConvAlgo.Native, [K] * 3, [s] * 3, [p] * 3,
                                       [1] * 3, [0] * 3, subm, False)
        else:
            import minuet
            th = torch.get_num_threads()

            def mapping():
                srt, _ = minuet.sort(idx, threads=th)
                if subm:
                    minuet.kernel_map(srt, srt, K, threads=th)
                else:
                    oshape = spops.get_conv_output_size(shape, [K] * 3, [s] * 3, [p] * 3, [1] * 3)
                    outs = minuet.conv_outputs(srt, K, s, p, 1, oshape, threads=th)
                    q = outs.clone()
                    q[:, 1:] = outs[:, 1:] * s - p + (K // 2) * (K % 2)
                    minuet.kernel_map(srt, q, K, threads=th)
        tm = best(mapping, a.repeat)
        layer = (spconv.SubMConv3d(16, cout, K, indice_key="k", bias=False) if subm else
                 spconv.SparseConv3d(16, cout, K, stride=s, padding=p, indice_key="k", bias=False))
        x = spconv.SparseConvTensor(f, idx, shape, 1)
        with torch.no_grad():
            y = layer(x)  # builds and stores the map under "k"
            if subm:
                tc = best(lambda: layer(y.replace_feature(f)), a.repeat)
            else:  # a strided map cannot be reused by spconv: time the layer whole minus the map
                tc = max(best(lambda: layer(spconv.SparseConvTensor(f, idx, shape, 1)), a.repeat) - tm, 0.0)
        rows.append({"layer": name, "map_s": tm, "conv_s": tc})
    print(json.dumps({"voxels": int(idx.shape[0]), "layers": rows, "peak_rss_mib": peak_rss_mib()}))


def cmd_floor(a):
    import minuet
    from minuet import spconv_hook
    spconv_hook.install()
    idx, shape = load(a.coords)
    torch.manual_seed(0)
    feats = torch.randn(idx.shape[0], 4)
    net = (ResNet21 if a.model == "resnet21" else UNet42)(4)
    shapes = []
    orig = minuet.conv

    def record(kmap, feats, weight, *args, **kw):
        shapes.append((int(kmap.total), int(weight.shape[1]), int(weight.shape[2])))
        return orig(kmap, feats, weight, *args, **kw)

    minuet.conv = record
    with torch.no_grad():
        net(spconv.SparseConvTensor(feats, idx, shape, 1))
    minuet.conv = orig

    rates = {}

    def per_row(k, n, kind):
        """Seconds per row of the best of 1024-, 4096- and 16384-row GEMMs (cache-resident
        blocks, output preallocated): kind "x" [rows, k] x [k, n]; kind "t" [n, rows] x
        [rows, k]^T... the weight gradient [k, rows] x [rows, n] summed over rows."""
        key = (k, n, kind)
        if key not in rates:
            r = []
            for m in (1024, 4096, 16384):
                if kind == "x":
                    A, B, C = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)
                    r.append(best(lambda: torch.mm(A, B, out=C), a.repeat) / m)
                else:
                    A, B, C = torch.randn(m, k), torch.randn(m, n), torch.empty(k, n)
                    r.append(best(lambda: torch.mm(A.t(), B, out=C), a.repeat) / m)
            rates[key] = min(r)
        return rates[key]

    fwd = sum(p * per_row(ci, co, "x") for p, ci, co in shapes)
    bwd = sum(p * (per_row(co, ci, "x") + per_row(ci, co, "t")) for p, ci, co in shapes)
    print(json.dumps({"voxels": int(idx.shape[0]), "convs": len(shapes),
                      "gmacs": sum(p * ci * co for p, ci, co in shapes) / 1e9,
                      "forward_floor_s": fwd, "train_floor_s": fwd + bwd}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["net", "layers", "floor"])
    ap.add_argument("--coords", required=True)
    ap.add_argument("--model", choices=["resnet21", "unet42"], default="unet42")
    ap.add_argument("--mode", choices=["spconv", "minuet"])
    ap.add_argument("--phase", choices=["forward", "train"], default="forward")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    if a.what != "floor" and a.mode is None:
        ap.error(f"{a.what}: --mode spconv|minuet is required")
    torch.set_num_threads(a.threads)
    if a.what == "floor":
        return cmd_floor(a)
    if a.mode == "minuet":
        from minuet import spconv_hook
        spconv_hook.install()
    (cmd_net if a.what == "net" else cmd_layers)(a)


if __name__ == "__main__":
    sys.exit(main())
