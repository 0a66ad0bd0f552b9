#!/usr/bin/env python3
"""The same eval cases run on two devices (or two builds), side by side: per case (policy,
length, depth, sample) both generated answers and whether each is correct; then the agreement
per policy. Needs h5py. Usage: compare_answers.py A.h5 B.h5"""
import sys

import h5py


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def load(path):
    with h5py.File(path, "r") as f:
        c = f["cases"]
        keys = zip(c["policy"][:], c["length"][:], c["depth"][:], c["sample"][:])
        out = {}
        for key, gen, ok in zip(keys, c["generated"][:], c["correct"][:]):
            out[(text(key[0]), int(key[1]), float(key[2]), int(key[3]))] = (text(gen).strip(), int(ok))
        return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a, b = load(sys.argv[1]), load(sys.argv[2])
    common = sorted(set(a) & set(b))
    print(f"{'policy':<8} {'length':>7} {'depth':>6}  {'A':<14} {'B':<14} same")
    agree = {}
    for k in common:
        (ga, oka), (gb, okb) = a[k], b[k]
        same = ga == gb
        n, s = agree.get(k[0], (0, 0))
        agree[k[0]] = (n + 1, s + int(same))
        print(f"{k[0]:<8} {k[1]:>7} {k[2]:>6.2f}  {ga[:12] + ('+' if oka else '-'):<14} {gb[:12] + ('+' if okb else '-'):<14} "
              f"{'yes' if same else 'NO'}")
    for p, (n, s) in agree.items():
        print(f"{p}: {s}/{n} cases give the same answer on both")
    print(f"cases only in one file: {len(set(a) ^ set(b))}")


if __name__ == "__main__":
    main()
