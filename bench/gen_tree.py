#!/usr/bin/env python3
"""Generates a deterministic directory tree of about TARGET_MB megabytes with
mixed file sizes and compressibility (a rough rootfs: many small text-like
files, medium binaries, a few large files, some incompressible data).
Usage: gen_tree.py DIR [TARGET_MB]"""
import os
import random
import sys

root = sys.argv[1]
target = int(sys.argv[2]) * 1_000_000 if len(sys.argv) > 2 else 500_000_000
rng = random.Random(42)
words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(2, 10)))
         for _ in range(5000)]


def texty(n):
    out = bytearray()
    while len(out) < n:
        out += b" ".join(rng.choice(words) for _ in range(12)) + b"\n"
    return bytes(out[:n])


LOW_ENTROPY = bytes((b * 7 % 256) & 0x3C for b in range(256))


def binary(n):
    # Like executables: half low-entropy (compresses ~2:1), half random.
    half = n // 2
    return os.urandom(half).translate(LOW_ENTROPY) + os.urandom(n - half)


total = 0
i = 0
os.makedirs(root, exist_ok=True)
while total < target:
    d = os.path.join(root, f"usr/lib/pkg{i % 97:02d}/sub{i % 13}")
    os.makedirs(d, exist_ok=True)
    r = rng.random()
    if r < 0.97:
        n = rng.randint(100, 16_000)
        data = texty(n)
    elif r < 0.997:
        n = rng.randint(64_000, 1_000_000)
        data = binary(n)
    elif r < 0.9995:
        n = rng.randint(5_000_000, 20_000_000)
        data = binary(n)
    else:
        n = rng.randint(1_000_000, 8_000_000)
        data = os.urandom(n)
    p = os.path.join(d, f"f{i:06d}" + (".txt" if n < 16_001 else ".bin"))
    with open(p, "wb") as f:
        f.write(data)
    if i % 500 == 0:
        os.symlink(os.path.basename(p), p + ".link")
    total += n
    i += 1
print(f"{root}: {i} files, {total / 1e6:.0f} MB")
