#!/usr/bin/env python3
"""Writes the safetensors test fixtures under tests/fixtures/safetensors (read by test_safetensors
and test_config).

What it writes (about 215 KB in all, deterministic: numpy seed 1234, rerunnable; every run
overwrites the same files with the same bytes):

  llama_sharded/  a tiny Llama-shaped checkpoint (2 layers, hidden 64, 4 heads, 2 KV heads,
                  head_dim 16, FFN 128, vocab 256, tied embeddings) sharded in two files
                  model-0000{1,2}-of-00002.safetensors with model.safetensors.index.json, and a
                  config.json with llama3 rope_scaling. Dtypes are mixed: norms and one K
                  projection F32, most weights BF16, layer 1's MLP F16 (its down_proj starts with
                  -0.0 and two fp16 subnormals to pin the conversion of edge values).
  qwen2_single/   a tiny Qwen2-shaped checkpoint in one model.safetensors (1 layer, hidden 16,
                  4 heads, 2 KV heads, FFN 32, vocab 64, q/k/v biases, untied lm_head; the
                  config.json leaves tie_word_embeddings out to exercise its default).
  expected.json   per tensor, computed here by numpy (the independent reader): file, dtype,
                  shape, sum, sum of |x|, sum of squares (float64 over the float32 values) and the
                  first 4 values; per checkpoint the parameter count.

The files are written by the official `safetensors` package (its Rust serializer), so esa reads
what the framework of record writes. BF16 is not a numpy dtype: values are rounded from float32
to bfloat16 here (round to nearest even) and handed over as raw uint16 bits.

Run:  /work/main/.venv-ref/bin/python scripts/reference/make_safetensors_fixture.py
Needs numpy and safetensors (`.venv-ref/bin/pip install safetensors`).
"""
import json
import os
import sys

import numpy as np
from safetensors import TensorSpec, serialize_file

SEED = 1234
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures",
                    "safetensors")


def f32_to_bf16_bits(x):
    """float32 -> bfloat16 bits, round to nearest even (no NaN in our data)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return bits.astype(np.uint16)


def bf16_bits_to_f32(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


class Tensor:
    """One tensor: its stored bytes (`raw`, little-endian) and the float32 values they decode to."""

    def __init__(self, values, dtype):
        values = np.asarray(values, dtype=np.float32)
        self.shape = list(values.shape)
        self.dtype = dtype
        if dtype == "F32":
            self.raw = values.astype("<f4")
            self.decoded = values
            self.spec_dtype = "float32"
        elif dtype == "F16":
            self.raw = values.astype("<f2")
            self.decoded = self.raw.astype(np.float32)
            self.spec_dtype = "float16"
        elif dtype == "BF16":
            self.raw = f32_to_bf16_bits(values).astype("<u2")
            self.decoded = bf16_bits_to_f32(self.raw)
            self.spec_dtype = "bfloat16"
        else:
            raise ValueError(dtype)
        self.raw = np.ascontiguousarray(self.raw)

    def spec(self):
        return TensorSpec(dtype=self.spec_dtype, shape=self.shape, data_ptr=self.raw.ctypes.data,
                          data_len=self.raw.nbytes)

    def expected(self, file_name):
        d = self.decoded.astype(np.float64).ravel()
        return {
            "file": file_name,
            "dtype": self.dtype,
            "shape": self.shape,
            "sum": float(d.sum()),
            "sum_abs": float(np.abs(d).sum()),
            "sum_sq": float((d * d).sum()),
            "first": [float(v) for v in d[:4]],
        }


def weight(rng, rows, cols, dtype, scale=0.02):
    return Tensor(rng.standard_normal((rows, cols)) * scale, dtype)


def norm(rng, n):
    return Tensor(1.0 + 0.1 * rng.standard_normal(n), "F32")


def write(path, tensors, metadata):
    # The serializer only reads the buffers, which `tensors` keeps alive for the call.
    serialize_file({name: t.spec() for name, t in tensors.items()}, path, metadata)
    os.chmod(path, 0o644)  # the serializer creates 0600 files


def llama_sharded(rng, out):
    hidden, heads, kv_heads, head_dim, ffn, vocab, layers = 64, 4, 2, 16, 128, 256, 2
    shards = [{}, {}]
    shards[0]["model.embed_tokens.weight"] = weight(rng, vocab, hidden, "BF16")
    for i in range(layers):
        s = shards[i]
        p = f"model.layers.{i}."
        s[p + "input_layernorm.weight"] = norm(rng, hidden)
        s[p + "self_attn.q_proj.weight"] = weight(rng, heads * head_dim, hidden, "BF16")
        s[p + "self_attn.k_proj.weight"] = weight(rng, kv_heads * head_dim, hidden,
                                                  "F32" if i == 1 else "BF16")
        s[p + "self_attn.v_proj.weight"] = weight(rng, kv_heads * head_dim, hidden, "BF16")
        s[p + "self_attn.o_proj.weight"] = weight(rng, hidden, heads * head_dim, "BF16")
        s[p + "post_attention_layernorm.weight"] = norm(rng, hidden)
        mlp_dtype = "F16" if i == 1 else "BF16"
        s[p + "mlp.gate_proj.weight"] = weight(rng, ffn, hidden, mlp_dtype)
        s[p + "mlp.up_proj.weight"] = weight(rng, ffn, hidden, mlp_dtype)
        down = rng.standard_normal((hidden, ffn)) * 0.02
        if i == 1:
            down.flat[:4] = [-0.0, 2.0**-24, 2.0**-15, -1.5]  # -0, fp16 subnormals, exact value
        s[p + "mlp.down_proj.weight"] = Tensor(down, mlp_dtype)
    shards[1]["model.norm.weight"] = norm(rng, hidden)

    expected = {}
    weight_map = {}
    total_size = 0
    for k, tensors in enumerate(shards):
        name = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        write(os.path.join(out, name), tensors, {"format": "pt"})
        for tname, t in tensors.items():
            weight_map[tname] = name
            expected[tname] = t.expected(name)
            total_size += t.raw.nbytes
    index = {"metadata": {"total_size": total_size},
             "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "hidden_size": hidden,
        "intermediate_size": ffn,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "vocab_size": vocab,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-05,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 512,
            "rope_type": "llama3",
        },
        "attention_bias": False,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    return expected


def qwen2_single(rng, out):
    hidden, heads, kv_heads, head_dim, ffn, vocab = 16, 4, 2, 4, 32, 64
    t = {}
    t["model.embed_tokens.weight"] = weight(rng, vocab, hidden, "BF16")
    p = "model.layers.0."
    t[p + "input_layernorm.weight"] = norm(rng, hidden)
    t[p + "self_attn.q_proj.weight"] = weight(rng, heads * head_dim, hidden, "BF16")
    t[p + "self_attn.q_proj.bias"] = Tensor(0.1 * rng.standard_normal(heads * head_dim), "F32")
    t[p + "self_attn.k_proj.weight"] = weight(rng, kv_heads * head_dim, hidden, "BF16")
    t[p + "self_attn.k_proj.bias"] = Tensor(0.1 * rng.standard_normal(kv_heads * head_dim), "F32")
    t[p + "self_attn.v_proj.weight"] = weight(rng, kv_heads * head_dim, hidden, "BF16")
    t[p + "self_attn.v_proj.bias"] = Tensor(0.1 * rng.standard_normal(kv_heads * head_dim), "F16")
    t[p + "self_attn.o_proj.weight"] = weight(rng, hidden, heads * head_dim, "BF16")
    t[p + "post_attention_layernorm.weight"] = norm(rng, hidden)
    t[p + "mlp.gate_proj.weight"] = weight(rng, ffn, hidden, "F16")
    t[p + "mlp.up_proj.weight"] = weight(rng, ffn, hidden, "F16")
    t[p + "mlp.down_proj.weight"] = weight(rng, hidden, ffn, "F16")
    t["model.norm.weight"] = norm(rng, hidden)
    t["lm_head.weight"] = weight(rng, vocab, hidden, "BF16")
    write(os.path.join(out, "model.safetensors"), t, {"format": "pt"})
    config = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_act": "silu",
        "hidden_size": hidden,
        "intermediate_size": ffn,
        "num_hidden_layers": 1,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "vocab_size": vocab,
        "max_position_embeddings": 32768,
        "max_window_layers": 21,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "rope_scaling": None,
        "sliding_window": 32768,
        "use_sliding_window": False,
        "torch_dtype": "bfloat16",
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    return {name: x.expected("model.safetensors") for name, x in t.items()}


def main():
    rng = np.random.default_rng(SEED)
    expected = {"seed": SEED, "checkpoints": {}}
    for name, make in (("llama_sharded", llama_sharded), ("qwen2_single", qwen2_single)):
        out = os.path.join(ROOT, name)
        os.makedirs(out, exist_ok=True)
        tensors = make(rng, out)
        count = sum(int(np.prod(t["shape"])) for t in tensors.values())
        expected["checkpoints"][name] = {"parameter_count": count, "tensors": tensors}
    with open(os.path.join(ROOT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(ROOT) for f in fs)
    print(f"wrote {os.path.normpath(ROOT)} ({total} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
