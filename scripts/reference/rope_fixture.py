#!/usr/bin/env python3
"""RoPE reference fixture for tests/unit/test_ops.cc.

Calls transformers' own RoPE initialisation (LlamaRotaryEmbedding.compute_default_rope_parameters
for 'default', modeling_rope_utils.ROPE_INIT_FUNCTIONS for 'linear', 'llama3', 'yarn') on small
LlamaConfig objects and writes, per case, the config values, inv_freq (float32, written exactly
as doubles) and attention_factor. It also applies transformers' LlamaRotaryEmbedding +
apply_rotary_pos_emb to a random head at a few positions (0, 1, large, non-monotonic), so the
test checks the whole rotate_half path, not only the tables (transformers computes the tables and
the angles in float32; the test accounts for that, see RotationMatchesApplyRotaryPosEmb).

A case whose options esa's RopeConfig cannot express can be kept with "esa_expressible": false;
the test then prints how far esa's table is from it instead of requiring a match (none today:
yarn "truncate": false maps to RopeConfig::yarn_truncate).

Rerun (from the repository root, with the reference venv of scripts/reference/setup_venv.sh):
    .venv-ref/bin/python scripts/reference/rope_fixture.py --out tests/fixtures/rope/tables.json
"""
import argparse
import json
import sys

import numpy as np
import torch
import transformers
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

SEED = 20240611

# name -> (head_dim, max_position_embeddings, rope_parameters, esa_expressible)
CASES = {
    "default_hd64_base10000": (64, 2048, {"rope_type": "default", "rope_theta": 10000.0}, True),
    "default_hd128_base500000": (128, 8192, {"rope_type": "default", "rope_theta": 500000.0}, True),
    "linear_hd64_f4": (64, 8192, {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}, True),
    # Llama 3.1 / 3.2: factor 8 / 32, original context 8192, low 1, high 4.
    "llama3_hd128_base500000_f8": (128, 131072, {
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "original_max_position_embeddings": 8192,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0}, True),
    "llama3_hd64_base500000_f32": (64, 131072, {
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "original_max_position_embeddings": 8192,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0}, True),
    "llama3_hd64_base10000_f8_low2_high8": (64, 32768, {
        "rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "original_max_position_embeddings": 4096,
        "low_freq_factor": 2.0, "high_freq_factor": 8.0}, True),
    # YaRN: default attention factor 0.1 ln(factor) + 1.
    "yarn_hd128_base10000_f4": (128, 16384, {
        "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 4096,
        "beta_fast": 32.0, "beta_slow": 1.0}, True),
    "yarn_hd64_base1000000_f4": (64, 16384, {
        "rope_type": "yarn", "rope_theta": 1000000.0, "factor": 4.0, "original_max_position_embeddings": 4096,
        "beta_fast": 32.0, "beta_slow": 1.0}, True),
    "yarn_hd64_base10000_f8_attn": (64, 32768, {
        "rope_type": "yarn", "rope_theta": 10000.0, "factor": 8.0, "original_max_position_embeddings": 4096,
        "beta_fast": 16.0, "beta_slow": 2.0, "attention_factor": 1.25}, True),
    "yarn_hd64_base10000_f40_mscale": (64, 163840, {
        "rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0, "original_max_position_embeddings": 4096,
        "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 0.707}, True),
    # truncate=false keeps the unrounded correction range (RopeConfig::yarn_truncate).
    "yarn_hd128_base10000_f4_notruncate": (128, 16384, {
        "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 4096,
        "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False}, True),
}

APPLY_POSITIONS = [0, 1, 2, 7, 4095, 4096, 100000, 3, 65535]
APPLY_CASES = ["default_hd64_base10000", "linear_hd64_f4", "llama3_hd128_base500000_f8", "llama3_hd64_base500000_f32",
               "yarn_hd128_base10000_f4", "yarn_hd64_base10000_f40_mscale", "yarn_hd128_base10000_f4_notruncate"]


def make_config(head_dim, max_pos, params):
    return LlamaConfig(hidden_size=2 * head_dim, num_attention_heads=2, num_key_value_heads=1, head_dim=head_dim,
                       max_position_embeddings=max_pos, rope_parameters=dict(params))


def table(config):
    rope_type = config.rope_parameters["rope_type"]
    if rope_type == "default":
        inv_freq, attention_factor = LlamaRotaryEmbedding.compute_default_rope_parameters(config)
    else:
        inv_freq, attention_factor = ROPE_INIT_FUNCTIONS[rope_type](config, None)
    assert inv_freq.dtype == torch.float32, inv_freq.dtype
    return inv_freq, float(attention_factor)


def exact(t):
    """float32 tensor -> Python floats written as the shortest decimal that reads back as the
    same float32 (the test reads them as double and rounds to float32)."""
    return [float(str(v)) for v in t.detach().cpu().numpy().astype(np.float32).reshape(-1)]


def dumps(value, indent=0):
    """JSON with one line per key and number lists kept on one line (a reviewable fixture)."""
    pad = " " * indent
    if isinstance(value, dict):
        items = [f'{pad} {json.dumps(k)}: {dumps(v, indent + 1).lstrip()}' for k, v in value.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
    return pad + json.dumps(value)


def apply_case(config, rng):
    head_dim = config.head_dim
    emb = LlamaRotaryEmbedding(config)
    x = torch.from_numpy(rng.standard_normal((1, 1, len(APPLY_POSITIONS), head_dim)).astype(np.float32))
    pos = torch.tensor([APPLY_POSITIONS], dtype=torch.int64)
    cos, sin = emb(x, pos)
    y, _ = apply_rotary_pos_emb(x, x.clone(), cos, sin, unsqueeze_dim=1)
    return {"positions": APPLY_POSITIONS, "x": exact(x), "y": exact(y)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    cases = {}
    for name, (head_dim, max_pos, params, expressible) in CASES.items():
        config = make_config(head_dim, max_pos, params)
        inv_freq, attention_factor = table(config)
        p = config.rope_parameters
        case = {
            "rope_type": p["rope_type"],
            "head_dim": head_dim,
            "max_position_embeddings": max_pos,
            "rope_parameters": {k: v for k, v in p.items()},
            "esa_expressible": expressible,
            "inv_freq": exact(inv_freq),
            "attention_factor": attention_factor,
        }
        if name in APPLY_CASES:
            case["apply"] = apply_case(config, rng)
        cases[name] = case
    doc = {
        "generator": "scripts/reference/rope_fixture.py",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "seed": SEED,
        "cases": cases,
    }
    with open(args.out, "w") as f:
        f.write(dumps(doc) + "\n")
    print(f"wrote {len(cases)} cases to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
