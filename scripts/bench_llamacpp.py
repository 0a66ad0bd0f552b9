#!/usr/bin/env python3
"""Prefill and decode speed of llama.cpp on a GGUF, as the baseline for `esa bench model`.

llama.cpp comes from the PyPI package llama-cpp-python, which compiles it from source on install
(for this CPU: CMAKE_ARGS="-DGGML_NATIVE=ON" pip install llama-cpp-python). Random token ids, like
esa bench model; the same thread count; prefill in batches of --batch tokens.

    python scripts/bench_llamacpp.py --model data/models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --prefill 512,2048,4096 --decode 128 --threads 2
"""
import argparse
import random
import resource
import time

import llama_cpp


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--prefill", default="512,2048,4096")
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    lengths = [int(x) for x in args.prefill.split(",")]
    n_ctx = max(lengths) + args.decode + 16
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=n_ctx, n_threads=args.threads, n_threads_batch=args.threads,
                          n_batch=args.batch, n_ubatch=args.batch, verbose=False)
    vocab = llm.n_vocab()
    rng = random.Random(args.seed)
    print(f"bench llama.cpp {llama_cpp.__version__}: {args.model}, {args.threads} threads, batch {args.batch}")
    print(f"{'prefill':>8} {'seconds':>10} {'tokens/s':>12} {'decode t/s':>12} {'peak RSS MiB':>14}")
    for p in lengths:
        ids = [rng.randrange(vocab) for _ in range(p)]
        llm.reset()  # n_tokens = 0: the next eval overwrites the KV cache from position 0
        t0 = time.perf_counter()
        llm.eval(ids)
        prefill = time.perf_counter() - t0
        t1 = time.perf_counter()
        for _ in range(args.decode):
            llm.eval([ids[-1]])  # speed does not depend on which token is fed
        decode = time.perf_counter() - t1
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{p:>8} {prefill:>10.2f} {p / prefill:>12.1f} {args.decode / decode:>12.1f} {rss:>14.0f}", flush=True)


if __name__ == "__main__":
    main()
