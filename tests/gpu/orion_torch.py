#!/usr/bin/env python3
"""orion_torch.py: the PyTorch workloads of scripts/gpu-check's Orion part (real GPU only).

  orion_torch.py infer SECONDS MEAN_GAP_MS   HP: ResNet-50 inference, batch 4, Poisson arrivals;
                                             prints "requests=N p50_ms=X p99_ms=Y"
  orion_torch.py train SECONDS               BE: ResNet-50 training, batch 32;
                                             prints "iterations=N per_s=X"
  orion_torch.py both SECONDS MEAN_GAP_MS    the two as threads of one process, inference on a
                                             stream of the greatest priority (Orion's HP rule)
Models come from torchvision when installed, else a ResNet-50 built here (same layer shapes).
"""
import math, random, sys, threading, time

import torch
import torch.nn as nn


def resnet50():
    try:
        import torchvision
        return torchvision.models.resnet50()
    except Exception:
        pass

    class Bottleneck(nn.Module):
        def __init__(self, cin, mid, stride):
            super().__init__()
            cout = mid * 4
            self.body = nn.Sequential(
                nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            return torch.relu(self.body(x) + self.skip(x))

    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
              nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for mid, n, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(n):
            layers.append(Bottleneck(cin, mid, stride if i == 0 else 1))
            cin = mid * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000)]
    return nn.Sequential(*layers)


def infer(seconds, gap_ms, stream=None, out=None):
    model = resnet50().cuda().eval()
    x = torch.randn(4, 3, 224, 224, device="cuda")
    stream = stream or torch.cuda.Stream()
    rng = random.Random(7)
    lat = []
    with torch.no_grad(), torch.cuda.stream(stream):
        for _ in range(5):  # warm-up: cuDNN algorithm choice, allocator
            model(x)
        stream.synchronize()
        end = time.time() + seconds
        while time.time() < end:
            t0 = time.perf_counter()
            model(x)
            stream.synchronize()
            lat.append((time.perf_counter() - t0) * 1e3)
            time.sleep(-math.log(1 - rng.random()) * gap_ms / 1e3)
    lat.sort()
    res = (f"requests={len(lat)} p50_ms={lat[len(lat) // 2]:.2f} "
           f"p99_ms={lat[min(len(lat) - 1, len(lat) * 99 // 100)]:.2f}")
    if out is not None:
        out.append(res)
    return res


def train(seconds, out=None):
    model = resnet50().cuda().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(32, 3, 224, 224, device="cuda")
    y = torch.randint(0, 1000, (32,), device="cuda")
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(3):
        opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
    torch.cuda.synchronize()
    it, t0 = 0, time.time()
    while time.time() - t0 < seconds:
        opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
        it += 1
        if it % 4 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    res = f"iterations={it} per_s={it / (time.time() - t0):.2f}"
    if out is not None:
        out.append(res)
    return res


def main():
    cmd, secs = sys.argv[1], float(sys.argv[2])
    if cmd == "infer":
        print(infer(secs, float(sys.argv[3])))
    elif cmd == "train":
        print(train(secs))
    elif cmd == "both":
        least, greatest = torch.cuda.Stream.priority_range() if hasattr(torch.cuda.Stream, "priority_range") else (0, -1)
        hp_stream = torch.cuda.Stream(priority=greatest)
        a, b = [], []
        ti = threading.Thread(target=infer, args=(secs, float(sys.argv[3]), hp_stream, a))
        tt = threading.Thread(target=train, args=(secs + 5, b))
        tt.start(); time.sleep(5); ti.start(); ti.join(); tt.join()
        print(a[0]); print(b[0])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
