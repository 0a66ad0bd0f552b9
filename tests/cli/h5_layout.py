#!/usr/bin/env python3
"""Checks esa's HDF5 files with h5py (an independent reader), and writes projection files the
way another tool would. Usage:
  h5_layout.py check-qk qk.h5             documented datasets, dtypes, shapes and attributes
  h5_layout.py check-proj proj.h5         the same for proj.h5
  h5_layout.py copy-proj in.h5 out.h5     the layer arrays as float64, only score_space and w kept
  h5_layout.py identity-proj qk.h5 out.h5 W = I, b = 0 for every layer of the model in qk.h5
  h5_layout.py drop-layer in.h5 out.h5 N  copy without /layer_N and with n_layers - 1
  h5_layout.py check-results results.h5 N   esa eval's layout; N distinct cases, each once
  h5_layout.py cases results.h5           one line per case: policy length depth sample correct generated
  h5_layout.py set-attr in.h5 NAME VALUE  set a string attribute of the root (in place)
  h5_layout.py check-sweep sweep.h5 N     esa sweep's layout; N cells, each a complete group
  h5_layout.py sweep-cells sweep.h5       one line per cell: id, status, settings, its cases' answers
Exit status 1 with a message on the first violation."""
import os
import shutil
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import esa_h5  # noqa: E402

PROVENANCE = ["format", "format_version", "esa_version", "git_revision", "command_line", "created", "model",
              "model_sha256", "seed"]


def need(cond, msg):
    if not cond:
        sys.exit(f"h5_layout: {msg}")


def check_provenance(f, fmt):
    for a in PROVENANCE:
        need(a in f.attrs, f"{f.filename}: missing root attribute {a}")
    a = esa_h5.attrs(f)
    need(a["format"] == fmt, f"{f.filename}: format {a['format']!r}, expected {fmt!r}")
    need(isinstance(a["command_line"], str) and "esa" in a["command_line"], "command_line not recorded")
    need(len(a["model_sha256"]) == 64, "model_sha256 is not a sha256")


def check_qk(path):
    with h5py.File(path, "r") as f:
        check_provenance(f, "esa-qk")
        for a in ["text", "text_sha256", "score_space", "w", "seq_len", "n_tokens", "n_sequences", "layers",
                  "n_layers", "n_heads", "n_kv_heads", "head_dim", "architecture"]:
            need(a in f.attrs, f"{path}: missing attribute {a}")
        T, hkv, d = int(esa_h5.attrs(f)["n_tokens"]), int(esa_h5.attrs(f)["n_kv_heads"]), int(esa_h5.attrs(f)["head_dim"])
        need(f["tokens"].shape == (T,) and f["tokens"].dtype == np.int32, "/tokens")
        pos = f["positions"][:]
        need(pos.shape == (T,) and pos[0] == 0 and np.all((pos[1:] == 0) | (pos[1:] == pos[:-1] + 1)), "/positions")
        need(int((pos == 0).sum()) == int(esa_h5.attrs(f)["n_sequences"]), "n_sequences disagrees with /positions")
        need(esa_h5.attrs(f)["score_space"] in ("rotated", "plain"), "score_space")
        for layer in esa_h5.attrs(f)["layers"]:
            g = f[f"layer_{int(layer):02d}"]
            for name in ("q_folded", "k"):
                ds = g[name]
                need(ds.shape == (T, hkv, d), f"{ds.name} shape {ds.shape}")
                need(ds.dtype == np.float16, f"{ds.name} dtype {ds.dtype}, expected float16")
                need(ds.chunks is not None and ds.compression == "gzip", f"{ds.name} not chunked and compressed")
                need(np.isfinite(ds[:]).all(), f"{ds.name} has NaN/Inf")
    print(f"h5py: {path}: qk layout ok")


def check_proj(path):
    with h5py.File(path, "r") as f:
        check_provenance(f, "esa-proj")
        for a in ["in_dim", "n_layers", "layers", "dims", "score_space", "w", "method", "qk", "text_sha256"]:
            need(a in f.attrs, f"{path}: missing attribute {a}")
        n = int(esa_h5.attrs(f)["in_dim"])
        layers = list(esa_h5.attrs(f)["layers"])
        for layer, dim in zip(layers, esa_h5.attrs(f)["dims"]):
            g = f[f"layer_{int(layer):02d}"]
            need(g["Wq"].shape == (dim, n) and g["Wk"].shape == (dim, n), f"{g.name} W shapes")
            need(g["bq"].shape == (dim,) and g["bk"].shape == (dim,), f"{g.name} b shapes")
            for a in ["method", "dim", "rel_err", "recall_at_16", "recall_at_64", "recall_at_256", "recall_at_25pct"]:
                need(a in g.attrs, f"{g.name}: missing attribute {a}")
        m = f["metrics"]
        for c in ["layer", "dim", "rel_err", "recall_at_16", "recall_at_64", "recall_at_256", "recall_at_25pct"]:
            need(m[c].shape == (len(layers),), f"/metrics/{c}")
        need(np.all(m["rel_err"][:] >= 0), "rel_err")
        r = m["recall_at_16"][:]
        need(np.all((r >= 0) & (r <= 1) | np.isnan(r)), "recall out of [0, 1]")
    print(f"h5py: {path}: proj layout ok")


def copy_proj(src, dst):
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        for k in ("score_space", "w"):
            g.attrs[k] = f.attrs[k]
        for name in f:
            if name.startswith("layer_"):
                for ds in ("Wq", "bq", "Wk", "bk"):
                    g[f"{name}/{ds}"] = f[f"{name}/{ds}"][:].astype(np.float64)


def identity_proj(qk, dst):
    with h5py.File(qk, "r") as f, h5py.File(dst, "w") as g:
        n = int(esa_h5.attrs(f)["n_kv_heads"]) * int(esa_h5.attrs(f)["head_dim"])
        g.attrs["score_space"] = f.attrs["score_space"]
        g.attrs["w"] = f.attrs["w"]
        for layer in range(int(esa_h5.attrs(f)["n_layers"])):
            g[f"layer_{layer:02d}/Wq"] = np.eye(n, dtype=np.float32)
            g[f"layer_{layer:02d}/Wk"] = np.eye(n, dtype=np.float32)
            g[f"layer_{layer:02d}/bq"] = np.zeros(n, dtype=np.float32)
            g[f"layer_{layer:02d}/bk"] = np.zeros(n, dtype=np.float32)


def drop_layer(src, dst, layer):
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        for k, v in f.attrs.items():
            g.attrs[k] = v
        g.attrs["n_layers"] = int(esa_h5.attrs(f)["n_layers"]) - 1
        for name in f:
            if name != f"layer_{int(layer):02d}":
                f.copy(name, g)


RESULT_COLUMNS = {"policy": str, "length": np.int64, "depth": np.float64, "sample": np.int64, "tokens": np.int64,
                  "prompt_sha256": str, "answer": str, "generated": str, "correct": np.int64, "score": np.float64,
                  "prefill_s": np.float64, "decode_s": np.float64, "new_tokens": np.int64, "stop_reason": str}


def check_results(path, n):
    with h5py.File(path, "r") as f:
        check_provenance(f, "esa-results")
        for a in ["suite", "case_config", "history", "lengths", "depths", "samples", "policies", "cases"]:
            need(a in f.attrs, f"{path}: missing attribute {a}")
        need(int(esa_h5.attrs(f)["cases"]) == int(n), f"{path}: {esa_h5.attrs(f)['cases']} cases, expected {n}")
        cols = {}
        for name, kind in RESULT_COLUMNS.items():
            need(f"cases/{name}" in f, f"{path}: missing /cases/{name}")
            d = f[f"cases/{name}"]
            need(d.shape == (int(n),), f"/cases/{name} has shape {d.shape}, expected ({n},)")
            if kind is str:
                cols[name] = [x.decode() if isinstance(x, bytes) else x for x in d.asstr()[:]]
            else:
                need(d.dtype == kind, f"/cases/{name} is {d.dtype}, expected {np.dtype(kind)}")
                cols[name] = d[:]
        keys = list(zip(cols["policy"], cols["length"], cols["depth"], cols["sample"]))
        need(len(set(keys)) == len(keys), f"{path}: a case appears twice")
        need(all(t == l for t, l in zip(cols["tokens"], cols["length"])), "a prompt is not of its requested length")
        need(all(len(h) == 64 for h in cols["prompt_sha256"]), "prompt_sha256 is not a sha256")
        need(set(cols["correct"]) <= {0, 1}, "correct is not 0/1")
        need(all(0 <= s <= 1 for s in cols["score"]), "a score outside [0, 1]")
        need(all(p > 0 for p in cols["prefill_s"]), "a prefill time <= 0")
        if "cases/diag_recall" in f:
            for name in ["diag_recall", "diag_mass", "diag_needle"]:
                need(f[f"cases/{name}"].shape[0] == int(n), f"/cases/{name} rows")


def cases(path):
    with h5py.File(path, "r") as f:
        c = f["cases"]
        rows = zip(c["policy"].asstr()[:], c["length"][:], c["depth"][:], c["sample"][:], c["correct"][:],
                   c["generated"].asstr()[:])
        for p, l, d, s, ok, g in sorted(rows):
            print(p, l, f"{d:.3f}", s, ok, repr(g))


def check_sweep(path, n):
    with h5py.File(path, "r") as f:
        check_provenance(f, "esa-sweep")
        for a in ["config", "name", "axes", "grid_cells"]:
            need(a in f.attrs, f"{path}: missing attribute {a}")
        cells = f["cells"]
        need(len(cells) == int(n), f"{path}: {len(cells)} cells, expected {n}")
        for cid, g in cells.items():
            for a in ["index", "status", "error", "seconds", "model_sha256", "projection", "params"]:
                need(a in g.attrs, f"/cells/{cid}: missing attribute {a}")
            for k in esa_h5.attrs(g)["params"].split(","):
                need(k in g.attrs, f"/cells/{cid}: parameter {k} missing")
            if esa_h5.attrs(g)["status"] == "ok":
                need("cases" in g and "policy" in g["cases"], f"/cells/{cid}: no cases")
                rows = g["cases/policy"].shape[0]
                for name in RESULT_COLUMNS:
                    need(g[f"cases/{name}"].shape[0] == rows, f"/cells/{cid}/cases/{name}: a half-written cell")


def sweep_cells(path):
    with h5py.File(path, "r") as f:
        for cid in sorted(f["cells"]):
            g = f["cells"][cid]
            params = " ".join(f"{k}={esa_h5.attrs(g)[k]}" for k in esa_h5.attrs(g)["params"].split(","))
            answers = []
            if "cases" in g:
                c = g["cases"]
                answers = sorted(zip(c["length"][:], c["depth"][:], c["generated"].asstr()[:]))
            print(cid, esa_h5.attrs(g)["status"], params, answers)


def zero_dataset(src, dst, name):
    """A copy of src whose dataset `name` is all zeros (degenerate activations)."""
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        for k, v in f.attrs.items():
            g.attrs[k] = v
        for top in f:
            f.copy(top, g)
        g[name][...] = 0


def corrupt_case(src, dst, column, value):
    """A copy of an eval results file whose first case has `column` set to `value` ("dup": the
    second row repeats the first's key)."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        c = f["cases"]
        if column == "dup":
            for k in ("policy", "length", "depth", "sample"):
                c[k][1] = c[k][0]
        else:
            c[column][0] = float(value) if c[column].dtype.kind == "f" else int(value)


def set_attr(path, name, value):
    with h5py.File(path, "r+") as f:
        esa_h5.set_text(f, name, value)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"check-qk": check_qk, "check-proj": check_proj, "copy-proj": copy_proj, "identity-proj": identity_proj,
     "drop-layer": drop_layer, "check-results": check_results, "cases": cases, "set-attr": set_attr,
     "check-sweep": check_sweep, "sweep-cells": sweep_cells, "zero-dataset": zero_dataset, "corrupt-case": corrupt_case}[cmd](*args)
