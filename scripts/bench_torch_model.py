#!/usr/bin/env python3
"""The peer of `esa bench model --device cuda`: a Llama-shaped checkpoint with random weights,
written by Hugging Face transformers (save_pretrained: bf16 safetensors, sharded past 2 GB) for
esa's own loader, and timed in transformers (SDPA attention) on the same GPU: prefill seconds and
decode tokens/s after each prefill, greedy, random prompt ids (speed does not depend on the text).

Usage: python3 scripts/bench_torch_model.py --shape smollm2|llama3-8b --save DIR [--prefill 8k,32k]
       [--decode 64] [--no-bench]
"""
import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

SHAPES = {
    # SmolLM2-135M-Instruct's shape (the embedded model).
    "smollm2": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, rope_theta=100000.0, tie_word_embeddings=True,
                    max_position_embeddings=8192, rms_norm_eps=1e-5),
    # Llama-3-8B's shape.
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0, tie_word_embeddings=False,
                      max_position_embeddings=8192, rms_norm_eps=1e-5),
}


def lengths(text):
    return [int(x[:-1]) * 1024 if x[-1] in "kK" else int(x) for x in text.split(",")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="smollm2")
    ap.add_argument("--save", required=True, help="folder for the checkpoint (config.json + safetensors)")
    ap.add_argument("--prefill", default="8k,32k")
    ap.add_argument("--decode", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-bench", action="store_true", help="only write the checkpoint")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    config = LlamaConfig(**SHAPES[a.shape], attn_implementation="sdpa")
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    model.save_pretrained(a.save, safe_serialization=True, max_shard_size="2GB")
    if a.no_bench:
        return
    name = torch.cuda.get_device_name()
    print(f"transformers {a.shape} (random bf16 weights, SDPA) on {name}")
    print(f"{'prefill':>8} {'seconds':>10} {'tokens/s':>12} {'decode t/s':>12}")
    for n in lengths(a.prefill):
        ids = torch.randint(0, config.vocab_size, (1, n), device="cuda")
        with torch.no_grad():
            model(ids[:, :256], use_cache=True)  # warm-up (kernels, allocator)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = model(ids, use_cache=True, logits_to_keep=1)
            torch.cuda.synchronize()
            prefill_s = time.perf_counter() - t0
            past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            t1 = time.perf_counter()
            for _ in range(a.decode):
                out = model(nxt, past_key_values=past, use_cache=True)
                past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            torch.cuda.synchronize()
            decode_s = time.perf_counter() - t1
        print(f"{n:>8} {prefill_s:>10.3f} {n / prefill_s:>12.1f} {a.decode / decode_s if a.decode else 0:>12.1f}")
        del out, past
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
