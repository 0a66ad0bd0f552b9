#!/usr/bin/env python3
"""Reference dequantisation fixture for tests/unit/test_dequantize.cc.

Random ggml blocks (fixed seed) of every type esa dequantises, decoded by the independent numpy
implementation in the PyPI package `gguf` (gguf.quants.dequantize). Scale fields (fp16) are set
to random finite values so every element is a finite number; F16 and BF16 also carry the special
values (signed zeros, infinities, NaN, subnormals, extremes).

Rerun (from the repository root, with the reference venv of scripts/reference/setup_venv.sh):
    .venv-ref/bin/python scripts/reference/dequant_fixture.py --out tests/fixtures/dequant/blocks.json
"""
import argparse
import json
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

# type -> (blocks in the fixture, byte offsets of the fp16 scale fields inside one block)
TYPES = {
    "Q4_0": (T.Q4_0, 16, [0]),
    "Q4_1": (T.Q4_1, 16, [0, 2]),
    "Q5_0": (T.Q5_0, 16, [0]),
    "Q5_1": (T.Q5_1, 16, [0, 2]),
    "Q8_0": (T.Q8_0, 16, [0]),
    "Q2_K": (T.Q2_K, 4, [80, 82]),
    "Q3_K": (T.Q3_K, 4, [108]),
    "Q4_K": (T.Q4_K, 4, [0, 2]),
    "Q5_K": (T.Q5_K, 4, [0, 2]),
    "Q6_K": (T.Q6_K, 4, [208]),
}


def block_geometry(qtype):
    return gguf.GGML_QUANT_SIZES[qtype]  # (elements per block, bytes per block)


def quantized_case(rng, qtype, n_blocks, scale_offsets):
    block_elems, block_bytes = block_geometry(qtype)
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for b in range(n_blocks):
        for off in scale_offsets:
            # Mostly moderate scales, sometimes zero, tiny (subnormal) or negative.
            choice = rng.integers(0, 10)
            if choice == 0:
                v = 0.0
            elif choice == 1:
                v = float(rng.uniform(-1, 1)) * 2.0 ** -20
            else:
                v = float(rng.uniform(-2.0, 2.0)) * 2.0 ** int(rng.integers(-8, 3))
            raw[b, off:off + 2] = np.frombuffer(np.float16(v).tobytes(), dtype=np.uint8)
    values = dequantize(raw.reshape(-1), qtype).astype(np.float32).reshape(-1)
    assert values.size == n_blocks * block_elems, (qtype, values.size)
    assert np.all(np.isfinite(values)), qtype
    return raw.tobytes(), values


def float_case(rng, name):
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -2.5, 65504.0, -65504.0, 6.0e-8, 6.1e-5, 1e-40, 3.0e38]
    vals = np.concatenate([np.array(specials, dtype=np.float32), rng.normal(0, 3, 243).astype(np.float32)])
    if name == "F16":
        raw = vals.astype(np.float16).tobytes()
        out = dequantize(np.frombuffer(raw, dtype=np.uint8), T.F16)
    else:
        bits = vals.view(np.uint32) >> 16
        raw = bits.astype(np.uint16).tobytes()
        out = dequantize(np.frombuffer(raw, dtype=np.uint8), T.BF16)
    return raw, np.asarray(out, dtype=np.float32).reshape(-1)


def encode_values(values):
    # JSON has no inf/nan: write them as strings.
    out = []
    for v in values.tolist():
        if np.isnan(v):
            out.append("nan")
        elif np.isinf(v):
            out.append("inf" if v > 0 else "-inf")
        else:
            out.append(float(np.float32(v)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=20251125)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    cases = {}
    for name in ("F16", "BF16"):
        raw, values = float_case(rng, name)
        cases[name] = {"raw_hex": raw.hex(), "values": encode_values(values)}
    for name, (qtype, n_blocks, offs) in TYPES.items():
        raw, values = quantized_case(rng, qtype, n_blocks, offs)
        cases[name] = {"raw_hex": raw.hex(), "values": encode_values(values)}
    doc = {
        "generator": "scripts/reference/dequant_fixture.py",
        "command": " ".join(sys.argv),
        "seed": args.seed,
        "gguf_version": getattr(gguf, "__version__", None) or __import__("importlib.metadata").metadata.version("gguf"),
        "numpy_version": np.__version__,
        "cases": cases,
    }
    with open(args.out, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    summary = ', '.join(k + ' ' + str(len(v['values'])) for k, v in cases.items())
    print(f'wrote {args.out}: {summary}')


if __name__ == "__main__":
    main()
