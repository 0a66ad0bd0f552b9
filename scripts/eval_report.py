#!/usr/bin/env python3
"""Markdown tables from the results files of scripts/eval_grid.sh (DIR/<suite>_<label>.h5): per
suite, rows = lengths, columns = policies, cells = % correct (mean score when it differs), and a
second table by depth. Needs h5py. Usage: eval_report.py DIR [--depths]"""
import argparse
import collections
import glob
import os
import sys

import h5py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import esa_h5  # noqa: E402

ORDER = ["full", "streaming", "infllm", "quest", "esa", "esa-closed", "esa-adam", "oracle"]


def load(path):
    with h5py.File(path, "r") as f:
        c = f["cases"]
        rows = list(zip(c["length"][:], c["depth"][:], c["correct"][:], c["score"][:]))
        return rows, esa_h5.attrs(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--depths", action="store_true", help="also a length x depth table per policy")
    a = ap.parse_args()
    by_suite = collections.defaultdict(dict)
    for path in sorted(glob.glob(os.path.join(a.dir, "*.h5"))):
        stem = os.path.basename(path)[:-3]
        with h5py.File(path, "r") as f:
            if esa_h5.attrs(f).get("format") != "esa-results" or "_" not in stem:
                continue
        suite, label = stem.rsplit("_", 1)
        by_suite[suite][label], _ = load(path)
    for suite, results in by_suite.items():
        labels = sorted(results, key=lambda l: (ORDER.index(l) if l in ORDER else len(ORDER), l))
        lengths = sorted({r[0] for rows in results.values() for r in rows})
        print(f"\n**{suite}** — % correct (cases per cell in brackets; mean score after / when it differs)\n")
        print("| length | " + " | ".join(labels) + " |")
        print("|---:|" + "---:|" * len(labels))
        for n in lengths:
            cells = []
            for l in labels:
                rows = [r for r in results[l] if r[0] == n]
                if not rows:
                    cells.append("–")
                    continue
                acc = 100.0 * sum(r[2] for r in rows) / len(rows)
                score = sum(r[3] for r in rows) / len(rows)
                cell = f"{acc:.0f} ({len(rows)})"
                if abs(score - acc / 100.0) > 1e-9:
                    cell += f" / {score:.2f}"
                cells.append(cell)
            print(f"| {n} | " + " | ".join(cells) + " |")
        if a.depths:
            depths = sorted({round(r[1], 6) for rows in results.values() for r in rows})
            for l in labels:
                print(f"\n{suite} / {l}: % correct by depth\n")
                print("| length | " + " | ".join(f"{100 * d:g}%" for d in depths) + " |")
                print("|---:|" + "---:|" * len(depths))
                for n in lengths:
                    cells = []
                    for d in depths:
                        rows = [r for r in results[l] if r[0] == n and round(r[1], 6) == d]
                        cells.append(f"{100.0 * sum(r[2] for r in rows) / len(rows):.0f}" if rows else "–")
                    print(f"| {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
