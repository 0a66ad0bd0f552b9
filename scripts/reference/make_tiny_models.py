#!/usr/bin/env python3
"""Tiny random Hugging Face checkpoints for esa's golden forward-pass tests (tests/fixtures/model/).

Made by transformers itself (LlamaForCausalLM / Qwen2ForCausalLM built from a config, saved with
save_pretrained), so esa reads exactly what the framework of record writes, config.json included.
Their golden logits come from scripts/reference/hf_logits.py.

  tiny_llama/  LlamaConfig: 2 layers, hidden 64, 4 heads, 2 KV heads (head_dim 16), FFN 128, vocab
               512, rope_theta 10000 with llama3 rope scaling (factor 8, low_freq_factor 1,
               high_freq_factor 4, original_max_position_embeddings 64: with head_dim 16 the eight
               frequencies fall in all three llama3 regimes, kept, smoothed and divided by 8),
               max_position_embeddings 2048, rms_norm_eps 1e-5, untied lm_head. Stored in bfloat16
               (transformers rounds float32 to nearest even) in exactly two shards
               model-0000{1,2}-of-00002.safetensors + model.safetensors.index.json.
  tiny_qwen2/  Qwen2Config: 2 layers, hidden 64, 4 heads, 2 KV heads, FFN 128, vocab 512, q/k/v
               biases (Qwen2 always has them), tied embeddings, rope_theta 1e6, rms_norm_eps 1e-6
               (the Qwen2Config default). Stored in float32, one model.safetensors.

Weights: transformers' own initialisation (normal(0, initializer_range=0.2) for linear and
embedding weights) under torch.manual_seed; then, because that initialisation leaves RMSNorm
weights at 1 and biases at 0 (which would hide a bug in either), every norm weight is set to
1 + 0.2 * N(0,1) and every bias to 0.2 * N(0,1) from the same generator. Note that transformers 5
writes the RoPE settings as `rope_parameters` ({rope_theta, rope_type, ...}) in config.json, not
as the top-level `rope_theta` / `rope_scaling` of transformers 4 checkpoints.

Deterministic (seeds fixed, CPU): rerunning rewrites the same bytes.

Rerun (from the repository root, with the reference venv of scripts/reference/setup_venv.sh):
    .venv-ref/bin/python scripts/reference/make_tiny_models.py --out tests/fixtures/model
then regenerate their golden files (see scripts/reference/hf_logits.py):
    .venv-ref/bin/python scripts/reference/hf_logits.py --model tests/fixtures/model/tiny_llama \
        --out tests/fixtures/model/tiny_llama.json
    .venv-ref/bin/python scripts/reference/hf_logits.py --model tests/fixtures/model/tiny_qwen2 \
        --out tests/fixtures/model/tiny_qwen2.json
"""
import argparse
import glob
import json
import os
import shutil

import torch
import transformers

LLAMA_SEED = 20251201
QWEN2_SEED = 20251202


def perturb_norms_and_biases(model, seed):
    """Norm weights 1 + 0.2 N(0,1), biases 0.2 N(0,1): transformers' init leaves them at 1 and 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def check_init(model, initializer_range):
    for name, p in model.named_parameters():
        if name.endswith("proj.weight") or name.endswith("embed_tokens.weight") or name == "lm_head.weight":
            std = float(p.detach().float().std())
            assert abs(std - initializer_range) < 0.1 * initializer_range, (name, std)


def save(model, out_dir, **kwargs):
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    model.save_pretrained(out_dir, **kwargs)


def make_llama(out_dir):
    cfg = transformers.LlamaConfig(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        rms_norm_eps=1e-5, rope_theta=10000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        tie_word_embeddings=False, initializer_range=0.2, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(LLAMA_SEED)
    model = transformers.LlamaForCausalLM(cfg).eval()
    check_init(model, cfg.initializer_range)
    perturb_norms_and_biases(model, LLAMA_SEED + 1)
    model = model.to(torch.bfloat16)
    # Two shards: a limit a bit above half the checkpoint's bytes.
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    save(model, out_dir, max_shard_size=total // 2 + 32 * 1024)
    shards = sorted(glob.glob(os.path.join(out_dir, "*.safetensors")))
    assert [os.path.basename(s) for s in shards] == ["model-00001-of-00002.safetensors",
                                                      "model-00002-of-00002.safetensors"], shards
    assert os.path.isfile(os.path.join(out_dir, "model.safetensors.index.json"))
    return out_dir


def make_qwen2(out_dir):
    cfg = transformers.Qwen2Config(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rope_theta=1e6, tie_word_embeddings=True,
        initializer_range=0.2)
    torch.manual_seed(QWEN2_SEED)
    model = transformers.Qwen2ForCausalLM(cfg).eval()
    check_init(model, cfg.initializer_range)
    perturb_norms_and_biases(model, QWEN2_SEED + 1)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert model.model.layers[0].self_attn.q_proj.bias is not None
    save(model, out_dir)
    files = sorted(os.listdir(out_dir))
    assert "model.safetensors" in files and "model.safetensors.index.json" not in files, files
    return out_dir


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder that receives tiny_llama/ and tiny_qwen2/")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for d in (make_llama(os.path.join(args.out, "tiny_llama")),
              make_qwen2(os.path.join(args.out, "tiny_qwen2"))):
        sizes = {f: os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d))}
        print(d, json.dumps(sizes))


if __name__ == "__main__":
    main()
