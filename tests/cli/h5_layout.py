#!/usr/bin/env python3
"""Checks esa's HDF5 files with h5py (an independent reader), and writes projection files the
way another tool would. Usage:
  h5_layout.py check-qk qk.h5             documented datasets, dtypes, shapes and attributes
  h5_layout.py check-proj proj.h5         the same for proj.h5
  h5_layout.py copy-proj in.h5 out.h5     the layer arrays as float64, only score_space and w kept
  h5_layout.py identity-proj qk.h5 out.h5 W = I, b = 0 for every layer of the model in qk.h5
  h5_layout.py drop-layer in.h5 out.h5 N  copy without /layer_N and with n_layers - 1
Exit status 1 with a message on the first violation."""
import sys

import h5py
import numpy as np

PROVENANCE = ["format", "format_version", "esa_version", "git_revision", "command_line", "created", "model",
              "model_sha256", "seed"]


def need(cond, msg):
    if not cond:
        sys.exit(f"h5_layout: {msg}")


def check_provenance(f, fmt):
    for a in PROVENANCE:
        need(a in f.attrs, f"{f.filename}: missing root attribute {a}")
    need(f.attrs["format"] == fmt, f"{f.filename}: format {f.attrs['format']!r}, expected {fmt!r}")
    need(isinstance(f.attrs["command_line"], str) and "esa" in f.attrs["command_line"], "command_line not recorded")
    need(len(f.attrs["model_sha256"]) == 64, "model_sha256 is not a sha256")


def check_qk(path):
    with h5py.File(path, "r") as f:
        check_provenance(f, "esa-qk")
        for a in ["text", "text_sha256", "score_space", "w", "seq_len", "n_tokens", "n_sequences", "layers",
                  "n_layers", "n_heads", "n_kv_heads", "head_dim", "architecture"]:
            need(a in f.attrs, f"{path}: missing attribute {a}")
        T, hkv, d = int(f.attrs["n_tokens"]), int(f.attrs["n_kv_heads"]), int(f.attrs["head_dim"])
        need(f["tokens"].shape == (T,) and f["tokens"].dtype == np.int32, "/tokens")
        pos = f["positions"][:]
        need(pos.shape == (T,) and pos[0] == 0 and np.all((pos[1:] == 0) | (pos[1:] == pos[:-1] + 1)), "/positions")
        need(int((pos == 0).sum()) == int(f.attrs["n_sequences"]), "n_sequences disagrees with /positions")
        need(f.attrs["score_space"] in ("rotated", "plain"), "score_space")
        for layer in f.attrs["layers"]:
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
        n = int(f.attrs["in_dim"])
        layers = list(f.attrs["layers"])
        for layer, dim in zip(layers, f.attrs["dims"]):
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
        n = int(f.attrs["n_kv_heads"]) * int(f.attrs["head_dim"])
        g.attrs["score_space"] = f.attrs["score_space"]
        g.attrs["w"] = f.attrs["w"]
        for layer in range(int(f.attrs["n_layers"])):
            g[f"layer_{layer:02d}/Wq"] = np.eye(n, dtype=np.float32)
            g[f"layer_{layer:02d}/Wk"] = np.eye(n, dtype=np.float32)
            g[f"layer_{layer:02d}/bq"] = np.zeros(n, dtype=np.float32)
            g[f"layer_{layer:02d}/bk"] = np.zeros(n, dtype=np.float32)


def drop_layer(src, dst, layer):
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        for k, v in f.attrs.items():
            g.attrs[k] = v
        g.attrs["n_layers"] = int(f.attrs["n_layers"]) - 1
        for name in f:
            if name != f"layer_{int(layer):02d}":
                f.copy(name, g)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"check-qk": check_qk, "check-proj": check_proj, "copy-proj": copy_proj, "identity-proj": identity_proj,
     "drop-layer": drop_layer}[cmd](*args)
