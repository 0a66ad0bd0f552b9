#!/usr/bin/env python3
"""Figures from esa's HDF5 files (h5py + matplotlib), each written as OUT.png and OUT.pdf.

figures:
  heatmap  INPUT   NIAH heatmap: % correct by depth (rows) x length (columns), one panel per policy
                   (results.h5) or per cell (sweep.h5)
  lengths  INPUT   accuracy vs length, one line per policy (results.h5) or per cell (sweep.h5)
  ablation SWEEP --x KEY   accuracy vs a swept setting (eps, dim, select, ...), one line per
                   combination of the other varied settings
  recall   PROJ    per-layer held-out recall@k of a proj.h5 (esa calibrate), one bar group per layer

INPUT is a results.h5 (esa eval) or a sweep.h5 (esa sweep); several INPUTs may be given for
heatmap and lengths (their series are combined, labelled by file name when needed).
Examples:
  scripts/plot.py heatmap results.h5 -o fig/niah
  scripts/plot.py ablation eps.h5 --x eps -o fig/eps
  scripts/plot.py recall proj.h5 -o fig/recall"""
import argparse
import collections
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import esa_h5  # noqa: E402

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def fail(msg):
    sys.exit(f"plot.py: {msg}")


def open_h5(path):
    try:
        return h5py.File(path, "r")
    except OSError:
        fail(f"{path}: not a readable HDF5 file")


def read_cases(group):
    """The eval table of a group: list of dicts."""
    cols = {}
    for name in ["policy", "length", "depth", "correct", "score"]:
        if name not in group:
            fail(f"{group.file.filename}: {group.name}/{name} missing (not an esa eval table)")
        d = group[name]
        cols[name] = list(d.asstr()[:]) if d.dtype.kind in "OS" else list(d[:])
    return [dict(zip(cols, row)) for row in zip(*cols.values())]


def series(path):
    """(label, cases, params) for each series in a results.h5 or sweep.h5."""
    out = []
    with open_h5(path) as f:
        fmt = esa_h5.attrs(f).get("format", "")
        if fmt == "esa-results":
            cases = read_cases(f["cases"])
            by_policy = collections.OrderedDict()
            for c in cases:
                by_policy.setdefault(c["policy"], []).append(c)
            for policy, cs in by_policy.items():
                out.append((policy, cs, {"policy": policy}))
        elif fmt == "esa-sweep":
            axes = [a for a in esa_h5.attrs(f)["axes"].split(",") if a]
            for cid in f["cells"]:
                g = f["cells"][cid]
                if esa_h5.attrs(g)["status"] != "ok":
                    continue
                params = {k: esa_h5.attrs(g)[k] for k in esa_h5.attrs(g)["params"].split(",") if k}
                label = " ".join(f"{a}={params[a]}" for a in axes) or cid
                out.append((label, read_cases(g["cases"]), params))
        else:
            fail(f"{path}: not an esa results or sweep file (format '{fmt}')")
    if not out:
        fail(f"{path}: no cases")
    return out


def all_series(paths):
    got = []
    for p in paths:
        for label, cases, params in series(p):
            got.append((f"{os.path.basename(p)}: {label}" if len(paths) > 1 else label, cases, params))
    return got


def save(fig, out, tight=True):
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    if tight:
        fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(f"{out}.{ext}", dpi=150)
    plt.close(fig)
    print(f"{out}.png, {out}.pdf")


def length_label(n):
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def accuracy(cases):
    return 100.0 * sum(c["correct"] for c in cases) / len(cases)


def fig_heatmap(a):
    ss = all_series(a.inputs)
    cols = min(len(ss), 3)
    rows = (len(ss) + cols - 1) // cols
    fig, axs = plt.subplots(rows, cols, figsize=(4.2 * cols + 1, 3.4 * rows), squeeze=False, constrained_layout=True)
    for ax in axs.flat[len(ss):]:
        ax.axis("off")
    for ax, (label, cases, _) in zip(axs.flat, ss):
        lengths = sorted({c["length"] for c in cases})
        depths = sorted({round(float(c["depth"]), 6) for c in cases})
        grid = np.full((len(depths), len(lengths)), np.nan)
        for i, d in enumerate(depths):
            for j, n in enumerate(lengths):
                cs = [c for c in cases if c["length"] == n and round(float(c["depth"]), 6) == d]
                if cs:
                    grid[i, j] = accuracy(cs)
        im = ax.imshow(grid, vmin=0, vmax=100, cmap="RdYlGn", aspect="auto")
        ax.set_xticks(range(len(lengths)), [length_label(n) for n in lengths])
        ax.set_yticks(range(len(depths)), [f"{100 * d:g}%" for d in depths])
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel("needle depth")
        ax.set_title(label, fontsize=9)
        for i in range(len(depths)):
            for j in range(len(lengths)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=axs, shrink=0.8, label="% correct")
    save(fig, a.output, tight=False)


def fig_lengths(a):
    fig, ax = plt.subplots(figsize=(6, 4))
    every = set()
    for label, cases, _ in all_series(a.inputs):
        lengths = sorted({c["length"] for c in cases})
        every.update(lengths)
        ax.plot(lengths, [accuracy([c for c in cases if c["length"] == n]) for n in lengths], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(every), [length_label(n) for n in sorted(every)])
    ax.minorticks_off()
    ax.set_xlabel("context length (tokens)")
    finish_accuracy_plot(fig, ax, a.output)


def finish_accuracy_plot(fig, ax, output):
    """The y axis, grid, legend and files shared by the accuracy line plots."""
    ax.set_ylabel("% correct")
    ax.set_ylim(-5, 105)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save(fig, output)


def fig_ablation(a):
    if not a.x:
        fail("ablation needs --x KEY (a swept setting, e.g. eps)")
    lines = collections.defaultdict(list)
    axes_seen = set()
    for path in a.inputs:
        with open_h5(path) as f:
            if esa_h5.attrs(f).get("format", "") != "esa-sweep":
                fail(f"{path}: ablation needs a sweep.h5")
            axes_seen.update(x for x in esa_h5.attrs(f)["axes"].split(",") if x)
        for _, cases, params in series(path):
            if a.x not in params:
                fail(f"{path}: no setting '{a.x}' in its cells")
            rest = " ".join(f"{k}={params[k]}" for k in sorted(axes_seen) if k != a.x and k in params)
            lines[rest].append((params[a.x], accuracy(cases)))
    fig, ax = plt.subplots(figsize=(6, 4))
    for rest, pts in sorted(lines.items()):
        try:
            pts.sort(key=lambda p: float(p[0]))
            xs = [float(p[0]) for p in pts]
        except ValueError:
            xs = [p[0] for p in pts]
        ax.plot(xs, [p[1] for p in pts], marker="o", label=rest or "all")
    ax.set_xlabel(a.x)
    finish_accuracy_plot(fig, ax, a.output)


def fig_recall(a):
    path = a.inputs[0]
    with open_h5(path) as f:
        if esa_h5.attrs(f).get("format", "") != "esa-proj" or "metrics" not in f:
            fail(f"{path}: not an esa proj.h5 with /metrics")
        m = f["metrics"]
        layers = m["layer"][:]
        names = [n for n in m if n.startswith("recall_at_")]
        fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(layers) * len(names) / 2), 4))
        width = 0.8 / len(names)
        for i, n in enumerate(names):
            ax.bar(np.arange(len(layers)) + i * width, m[n][:], width, label=n.replace("recall_at_", "recall@"))
        ax.set_xticks(np.arange(len(layers)) + 0.4 - width / 2, [str(int(x)) for x in layers], fontsize=7)
        ax.set_xlabel("layer")
        ax.set_ylabel("held-out recall")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{os.path.basename(path)}: {esa_h5.attrs(f).get('method', '')}, d' {list(esa_h5.attrs(f).get('dims', []))[:1]}",
                     fontsize=9)
        ax.legend(fontsize=7, ncol=len(names))
    save(fig, a.output)


FIGURES = {"heatmap": fig_heatmap, "lengths": fig_lengths, "ablation": fig_ablation, "recall": fig_recall}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("figure", choices=sorted(FIGURES))
    ap.add_argument("inputs", nargs="+", help="results.h5 / sweep.h5 / proj.h5")
    ap.add_argument("-o", "--output", required=True, help="output path without extension (.png and .pdf are written)")
    ap.add_argument("--x", help="ablation: the swept setting on the x axis")
    a = ap.parse_args()
    for p in a.inputs:
        if not os.path.exists(p):
            fail(f"{p}: no such file")
    FIGURES[a.figure](a)


if __name__ == "__main__":
    main()
