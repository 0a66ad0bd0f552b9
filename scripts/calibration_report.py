#!/usr/bin/env python3
"""Summarises proj.h5 files from `esa calibrate` as Markdown tables (for bench/RESULTS.md).

  calibration_report.py DIR   reads DIR/{closed,adam,pca}_{D}.h5 for every D present and prints
                              (1) mean held-out recall@k and relative score error per method and d',
                              (2) per-layer recall@64 at each d', learned vs PCA,
                              (3) the share of layers where each learned method beats PCA.
Needs h5py (Debian python3-h5py: run with /usr/bin/python3)."""
import glob
import os
import re
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import esa_h5  # noqa: E402

METHODS = ["closed", "adam", "pca"]
KS = ["recall_at_16", "recall_at_64", "recall_at_256", "recall_at_25pct"]


def load(path):
    with h5py.File(path, "r") as f:
        m = {k: f["metrics"][k][:] for k in f["metrics"]}
        m["attrs"] = esa_h5.attrs(f)
    return m


def main(folder):
    runs = {}
    for path in glob.glob(os.path.join(folder, "*.h5")):
        hit = re.fullmatch(r"(closed|adam|pca)_(\d+)\.h5", os.path.basename(path))
        if hit:
            runs[(hit.group(1), int(hit.group(2)))] = load(path)
    if not runs:
        sys.exit(f"calibration_report: no closed_D.h5 / adam_D.h5 / pca_D.h5 in {folder}")
    dims = sorted({d for _, d in runs})
    a = next(iter(runs.values()))["attrs"]
    print(f"Source: {a['qk']} ({a['train_tokens']} training / {a['heldout_tokens']} held-out tokens), "
          f"model sha256 {a['model_sha256'][:12]}..., score space {a['score_space']} (w = {a['w']}), "
          f"git {a['git_revision']}.\n")
    print("| method | d' | rel. score error | recall@16 | recall@64 | recall@256 | recall@25% |")
    print("|---|---|---|---|---|---|---|")
    for d in dims:
        for m in METHODS:
            r = runs.get((m, d))
            if r is None:
                continue
            cells = " | ".join(f"{np.nanmean(r[k]):.3f}" for k in KS)
            print(f"| {m} | {d} | {np.mean(r['rel_err']):.4f} | {cells} |")
    print()
    for d in dims:
        if (m := runs.get(("pca", d))) is None:
            continue
        for learned in ("closed", "adam"):
            r = runs.get((learned, d))
            if r is None:
                continue
            wins = {k: int(np.sum(r[k] > m[k])) for k in KS}
            n = len(r["layer"])
            print(f"- d' = {d}: {learned} beats PCA in " +
                  ", ".join(f"{wins[k]}/{n} layers on {k.replace('recall_at_', 'recall@')}" for k in KS))
    print()
    d = 32 if 32 in dims else dims[len(dims) // 2]
    cols = [m for m in METHODS if (m, d) in runs]
    print(f"Per layer at d' = {d}, held-out recall@64:\n")
    print("| layer | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for i, layer in enumerate(runs[(cols[0], d)]["layer"]):
        print(f"| {layer} | " + " | ".join(f"{runs[(m, d)]['recall_at_64'][i]:.3f}" for m in cols) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
