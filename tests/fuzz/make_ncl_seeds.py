#!/usr/bin/env python3
"""Write seed inputs for fuzz_ncl_frame: valid NCL frame streams (HELLO, APPEND, READ,
TRIM, TRIM_FILE, RESET with a shadow, SYNC_DONE, STATS) so the fuzzer starts deep inside
the handlers. Usage: tests/fuzz/make_ncl_seeds.py OUT_DIR (re-run when the format changes)."""
import os
import struct
import sys

POLY = 0x82F63B78
TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ (POLY if c & 1 else 0)
    TABLE.append(c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = (crc >> 8) ^ TABLE[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


def frame(ftype, payload, req=1, flags=0):
    hdr = struct.pack("<IBBHIIQ", 0x314C434E, ftype, flags, 0, len(payload), 0, req)
    crc = crc32c(hdr + payload)
    return struct.pack("<IBBHIIQ", 0x314C434E, ftype, flags, 0, len(payload), crc, req) + payload


def record(seq, ino, off, data, path=b"/f", kind=1):
    hdr = struct.pack("<QQQQIHBBI", seq, 1, ino, off, len(data), len(path), kind, 0, 0)
    crc = crc32c(hdr + path + data)
    return struct.pack("<QQQQIHBBI", seq, 1, ino, off, len(data), len(path), kind, 0, crc) + path + data


def hello(epoch, cid=b"c1", flags=0):
    return frame(1, struct.pack("<QBB", epoch, flags, len(cid)) + cid)


def append(epoch, first, recs):
    return frame(2, struct.pack("<QQI", epoch, first, len(recs)) + b"".join(recs))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    seeds = {
        "hello_append_read": b"\x80" + hello(1) + append(1, 0, [record(0, 5, 0, b"abc"), record(1, 5, 3, b"def")])
        + frame(6, struct.pack("<QI", 0, 0)),
        "trims": b"\x10" + hello(2) + append(2, 0, [record(i, 7, i, b"x" * 20) for i in range(4)])
        + frame(4, struct.pack("<QQQQ", 2, 1, 7, 3)) + frame(3, struct.pack("<QQ", 2, 2)) + frame(7, b""),
        "shadow": b"\x40" + hello(3) + append(3, 0, [record(0, 1, 0, b"a")])
        + frame(5, struct.pack("<QQ", 3, 0), flags=1) + append(3, 0, [record(0, 1, 0, b"a"), record(1, 1, 1, b"b")])
        + frame(8, struct.pack("<Q", 3)),
        "fenced": b"\x90" + hello(5, b"z") + hello(4, b"z") + append(4, 0, [record(0, 1, 0, b"q")])
        + hello(0, b"z", flags=1),
        "gap_full": b"\x00" + hello(1, b"g") + append(1, 3, [record(3, 1, 0, b"gap")])
        + append(1, 0, [record(0, 1, 0, b"y" * 60000)]) + append(1, 1, [record(1, 1, 0, b"y" * 60000)]),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
