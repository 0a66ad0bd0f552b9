#!/usr/bin/env python3
"""The peer of `esa bench attention --device cuda`: PyTorch on the same GPU, shapes and dtype.

One decode step of one layer: scaled_dot_product_attention (flash backend where it takes the
shapes, GQA through enable_gqa) of one query token over a bf16 cache of N tokens, and torch.topk
of k over N float32 scores. Times are CUDA-graph replays (launch gaps removed, as esa's "step"
column), medians of several rounds. Prints a table; --json writes the numbers.

Usage: python3 scripts/bench_torch_attention.py --context 32k,128k,512k,1m [--topk 2048,4096]
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F


def parse_contexts(text):
    out = []
    for item in text.split(","):
        unit = 1
        if item[-1] in "kK":
            unit, item = 1024, item[:-1]
        elif item[-1] in "mM":
            unit, item = 1024 * 1024, item[:-1]
        out.append(int(item) * unit)
    return out


def graph_us(fn, reps=50, rounds=5):
    """Microseconds per call of fn replayed from a CUDA graph (median of rounds)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            graph.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1000.0 / reps)
    return statistics.median(times)


def sdpa_backend(q, k, v):
    """The first backend that takes these shapes: flash, then cuDNN, then efficient, then math."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                    SDPBackend.MATH):
        try:
            with sdpa_kernel(backend):
                F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
            torch.cuda.synchronize()
            return backend
        except RuntimeError:
            continue
    raise RuntimeError("no SDPA backend takes these shapes")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--context", default="32k,128k,512k,1m")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--topk", default="2048,4096")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from torch.nn.attention import sdpa_kernel

    torch.manual_seed(0)
    dev = torch.device("cuda")
    print(f"bench torch attention: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
          f"{args.heads} query heads, {args.kv_heads} KV heads, head dim {args.head_dim}, bf16; CUDA-graph replay")
    print(f"{'context':>8} {'what':<22} {'us':>9}")
    results = []
    for n in parse_contexts(args.context):
        q = torch.randn(1, args.heads, 1, args.head_dim, device=dev, dtype=torch.bfloat16)
        k = torch.randn(1, args.kv_heads, n, args.head_dim, device=dev, dtype=torch.bfloat16)
        v = torch.randn(1, args.kv_heads, n, args.head_dim, device=dev, dtype=torch.bfloat16)
        backend = sdpa_backend(q, k, v)

        def sdpa():
            with sdpa_kernel(backend):
                F.scaled_dot_product_attention(q, k, v, enable_gqa=True)

        us = graph_us(sdpa)
        name = f"sdpa {backend.name.lower()}"
        print(f"{n:>8} {name:<22} {us:>9.2f}", flush=True)
        results.append({"context": n, "what": "sdpa", "backend": backend.name, "us": us})
        del k, v
        scores = torch.randn(n, device=dev, dtype=torch.float32)
        for kk in [int(x) for x in args.topk.split(",")]:
            if kk > n:
                continue
            us = graph_us(lambda: torch.topk(scores, kk, sorted=False))
            print(f"{n:>8} {'torch.topk k=' + str(kk):<22} {us:>9.2f}", flush=True)
            results.append({"context": n, "what": "topk", "k": kk, "us": us})
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
