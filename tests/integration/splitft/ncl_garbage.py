#!/usr/bin/env python3
"""Throw garbage at ncl-server peers for SECONDS: random bytes, truncated frames, frames
over the size limit, wrong CRCs, frames cut off mid-payload by a closing peer, requests
before HELLO, and half-sent frames left hanging on open connections.
Usage: ncl_garbage.py SECONDS HOST:PORT [HOST:PORT ...]; prints counts of what it sent."""
import importlib.util
import os
import random
import socket
import struct
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("seeds", os.path.join(here, "../../fuzz/make_ncl_seeds.py"))
seeds = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seeds)


def kinds(rng):
    good = seeds.hello(1, b"garbage-%d" % rng.randrange(4)) + seeds.append(1, 0, [seeds.record(0, 1, 0, b"z" * 32)])
    return {
        "random": lambda: rng.randbytes(rng.randrange(1, 5000)),
        "oversized": lambda: struct.pack("<IBBHIIQ", 0x314C434E, 2, 0, 0, 0xFFFFFFF0, 0, 1),
        "bad_crc": lambda: good[:12] + b"\x00\x00\x00\x00" + good[16:],
        "truncated": lambda: good[: rng.randrange(1, len(good))],
        "before_hello": lambda: seeds.append(1, 0, [seeds.record(0, 1, 0, b"q")]),
        "bad_magic": lambda: b"XXXX" + good[4:],
        "bit_flip": lambda: bytes(b ^ (1 << rng.randrange(8)) if i == rng.randrange(len(good)) else b
                                  for i, b in enumerate(good)),
    }


def main():
    secs = float(sys.argv[1])
    peers = [(h, int(p)) for h, p in (a.rsplit(":", 1) for a in sys.argv[2:])]
    rng = random.Random(1234)
    gen = kinds(rng)
    sent = {k: 0 for k in gen}
    hanging = []
    end = time.time() + secs
    while time.time() < end:
        host, port = rng.choice(peers)
        kind = rng.choice(list(gen))
        try:
            s = socket.create_connection((host, port), timeout=2)
            s.sendall(gen[kind]())
            sent[kind] += 1
            if kind == "truncated" and len(hanging) < 20:
                hanging.append(s)  # half a frame, connection left open
                continue
            s.settimeout(0.2)
            try:
                s.recv(65536)
            except OSError:
                pass
            s.close()
        except OSError:
            pass
    for s in hanging:
        s.close()
    print("garbage sent:", ", ".join(f"{k} {v}" for k, v in sent.items()))


if __name__ == "__main__":
    main()
