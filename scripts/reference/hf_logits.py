#!/usr/bin/env python3
"""Golden forward-pass fixtures for esa (tests/fixtures/model/*.json), from Hugging Face transformers.

For each prompt: the token ids, the last position's logits (top 50, the full vector's max |logit|
and logsumexp; tiny models also the whole vector), per-layer summaries of the residual stream
(captured with forward hooks), the final norm's output, and a greedy continuation computed by a
plain argmax loop over transformers' KV cache (no EOS stop, no logits processors).

Models:
  *.gguf   loaded by AutoModelForCausalLM.from_pretrained(dir, gguf_file=name, dtype=float32):
           transformers dequantises every tensor to float32 (gguf.quants.dequantize) and undoes
           llama.cpp's Q/K row permutation (LlamaTensorProcessor._reverse_permute_weights), giving
           the rotate_half layout. The script checks shapes, the tied lm_head and that q_proj/k_proj
           are the GGUF rows reordered per head (HF row h*D + j <- GGUF row h*D + 2j for j < D/2,
           h*D + 2(j - D/2) + 1 otherwise). Prompts: four fixed texts (SMOLLM2_PROMPTS below,
           the long one assembled from fixed paragraphs to >= 2048 tokens). Tokenised with the
           `tokenizers` reference of tokenizer_fixture.py (GGUF vocabulary and merges, SmolLM2's
           real pre-tokenizer Sequence[Digits(individual_digits=True), ByteLevel]); transformers'
           own GGUF tokenizer does not split digits (no "smollm" entry). No BOS is prepended
           (the GGUF says tokenizer.ggml.add_bos_token = false).
  folder   a Hugging Face checkpoint (config.json + safetensors), loaded with dtype=float32, so a
           bfloat16 checkpoint is widened exactly and the reference runs in float32 on the stored
           (rounded) weights. Prompts: random token ids (numpy default_rng(--seed)), lengths
           1, 7, 100 and 300.

Compute: float32, attn_implementation="eager" (plain softmax(QK^T/sqrt(d))V), one torch thread,
no gradients. Rerunning on the same machine rewrites identical files; another CPU (other SIMD
paths in torch's GEMM) may change the last digit of some floats. Per-prompt timings are printed,
not stored, so that the files stay reproducible.

Rerun (from the repository root, with the reference venv of scripts/reference/setup_venv.sh):
    .venv-ref/bin/python scripts/reference/hf_logits.py \
        --model data/models/SmolLM2-135M-Instruct.Q4_1.gguf --out tests/fixtures/model/smollm2.json
    .venv-ref/bin/python scripts/reference/make_tiny_models.py --out tests/fixtures/model
    .venv-ref/bin/python scripts/reference/hf_logits.py --model tests/fixtures/model/tiny_llama \
        --out tests/fixtures/model/tiny_llama.json
    .venv-ref/bin/python scripts/reference/hf_logits.py --model tests/fixtures/model/tiny_qwen2 \
        --out tests/fixtures/model/tiny_qwen2.json
"""
import argparse
import hashlib
import importlib.metadata
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_fixture  # noqa: E402  (the reference tokenizer of the tokenizer fixture)

SUMMARY_WIDTH = 32
TOP_K = 50
LONG_MIN_TOKENS = 2048

CHAT_PROMPT = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
               "Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
               "<|im_start|>assistant\n")

CODE_PROMPT = ("def fibonacci(n):\n"
               "    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"
               "    a, b = 0, 1\n"
               "    for _ in range(n):\n"
               "        a, b = b, a + b\n"
               "    return a\n"
               "\n"
               "\n"
               "def is_prime(n):\n")

PARAGRAPHS = [
    "The river begins as a thin stream high in the mountains, where snow melts slowly through the "
    "spring. By the time it reaches the valley it has gathered the water of a hundred smaller "
    "brooks, and it moves with a quiet, steady strength. Farmers along its banks have relied on it "
    "for centuries, digging channels to carry the water to their fields of wheat and barley.",
    "In the old library at the centre of the town, the shelves rise from the floor to the ceiling. "
    "The librarian, a patient woman named Margaret, knows where almost every book is kept. When a "
    "student asks for a history of the region, she walks without hesitation to the third aisle, "
    "reaches for a faded green volume and explains that it was written in 1887 by a local teacher.",
    "Computers store numbers in binary, as sequences of ones and zeros. A single bit can hold only "
    "two values, but eight bits together form a byte, which can represent 256 different values. "
    "Modern processors work with 64-bit words and can perform billions of operations every second, "
    "which is why a task that once took a week can now be finished in a few minutes.",
    "The recipe is simple. Mix two cups of flour with a teaspoon of salt, then add warm water a "
    "little at a time until the dough comes together. Knead it for ten minutes, cover it with a "
    "cloth and leave it to rest for an hour. Bake the loaf at 220 degrees for about 35 minutes, "
    "until the crust is brown and the bread sounds hollow when you tap it underneath.",
    "Astronomers have long been fascinated by the planets of our solar system. Jupiter, the largest, "
    "is a giant ball of gas with a storm called the Great Red Spot that has lasted for hundreds of "
    "years. Saturn is famous for its rings, which are made of countless pieces of ice and rock. Mars, "
    "smaller and colder than the Earth, may once have had rivers and lakes on its surface.",
    "Learning a new language takes time and practice. At first the grammar seems strange and the "
    "words are hard to remember, but after a few months of regular study the patterns begin to make "
    "sense. Reading simple stories, listening to conversations and speaking with native speakers "
    "all help. Most teachers agree that a little practice every day is better than a lot once a week.",
    "The meeting started at nine o'clock and lasted for almost three hours. The team discussed the "
    "budget for the next year, the schedule for the new project and the results of the customer "
    "survey. In the end they decided to hire two more engineers, to move the launch date from March "
    "to May, and to spend more time testing the product before it reaches the public.",
    "Forests cover nearly a third of the land on Earth. They provide homes for countless species of "
    "animals and plants, they clean the air we breathe, and they help to regulate the climate by "
    "storing large amounts of carbon. When forests are cut down, much of that carbon returns to the "
    "atmosphere, which is one reason why protecting them has become an important goal.",
    "The train left the station exactly on time. Through the window, the passengers watched the city "
    "give way to suburbs, then to open fields and small villages. A child in the front row counted "
    "the cows, while an old man read his newspaper and a young couple planned their holiday. After "
    "four hours the mountains appeared on the horizon, blue and white against the evening sky.",
    "Good software is written to be read by people as well as by machines. Clear names, short "
    "functions and honest comments make a program easier to understand and to change. Tests give "
    "confidence that a change has not broken something that used to work. Over the years, a careful "
    "team can keep a large program healthy, while a careless one can make even a small one fragile.",
    "The village market opens every Saturday morning. Farmers bring fresh vegetables, eggs and "
    "cheese, and a baker sells bread that is still warm from the oven. People come not only to shop "
    "but also to meet their neighbours and to exchange news. By noon most of the stalls are empty, "
    "and the square is quiet again until the following week.",
    "Music has the power to change our mood in a moment. A slow melody can make us feel calm or sad, "
    "while a fast rhythm makes us want to dance. Scientists who study the brain have found that "
    "listening to music activates many different regions at once, including those involved in "
    "memory, emotion and movement, which may explain why songs from our youth stay with us forever.",
]


# ----------------------------------------------------------------------------------------------
# Small helpers.

def f32(x):
    """A float32 value as the shortest decimal that reads back to the same float32."""
    return float(str(np.float32(x)))


def f32_list(a):
    return [f32(v) for v in np.asarray(a, dtype=np.float32).reshape(-1)]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def version(pkg):
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def rel(path):
    """A path relative to the repository root when it lies inside it (keeps the files portable)."""
    root = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    p = os.path.abspath(path)
    return os.path.relpath(p, root) if p.startswith(root + os.sep) else p


# ----------------------------------------------------------------------------------------------
# Models.

def load_gguf_model(path):
    d, name = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        d, gguf_file=name, dtype=torch.float32, attn_implementation="eager").eval()
    return model


def check_gguf_model(model, path):
    """Shapes, tied head, and the Q/K un-permutation against the raw GGUF tensors."""
    import gguf
    cfg = model.config
    D = cfg.head_dim
    H, KV, E, F, V = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hidden_size,
                      cfg.intermediate_size, cfg.vocab_size)
    assert (cfg.num_hidden_layers, E, H, KV, D, F, V) == (30, 576, 9, 3, 64, 1536, 49152), cfg
    assert cfg.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "lm_head not tied"
    for p in model.parameters():
        assert p.dtype == torch.float32
    layer = model.model.layers[0]
    shapes = {"q_proj": (H * D, E), "k_proj": (KV * D, E), "v_proj": (KV * D, E), "o_proj": (E, H * D)}
    for n, s in shapes.items():
        assert tuple(getattr(layer.self_attn, n).weight.shape) == s, n
    for n, s in {"gate_proj": (F, E), "up_proj": (F, E), "down_proj": (E, F)}.items():
        assert tuple(getattr(layer.mlp, n).weight.shape) == s, n

    reader = gguf.GGUFReader(path)
    tensors = {t.name: t for t in reader.tensors}
    checked = []
    for il in (0, 17, 29):
        for gname, hf, heads in (("attn_q", "q_proj", H), ("attn_k", "k_proj", KV), ("attn_v", "v_proj", KV)):
            t = tensors[f"blk.{il}.{gname}.weight"]
            raw = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
            raw = raw.reshape(heads * D, E)
            if gname == "attn_v":
                order = np.arange(heads * D)  # V is stored as is
            else:
                j = np.arange(D)
                within = np.where(j < D // 2, 2 * j, 2 * (j - D // 2) + 1)
                order = (np.arange(heads)[:, None] * D + within[None, :]).reshape(-1)
            w = getattr(model.model.layers[il].self_attn, hf).weight.detach().numpy()
            assert np.array_equal(w, raw[order]), f"layer {il} {hf}: not the per-head de-interleaved GGUF rows"
            checked.append(f"blk.{il}.{gname}")
    t = tensors["token_embd.weight"]
    emb = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(V, E)
    assert np.array_equal(emb, model.model.embed_tokens.weight.detach().numpy())
    return {"shapes_and_tied_lm_head": "ok",
            "qk_unpermute": "q_proj/k_proj row h*D+j == GGUF attn_q/attn_k row h*D+2j (j<D/2) or "
                            "h*D+2(j-D/2)+1 (j>=D/2), exactly, for " + ", ".join(checked) +
                            "; v_proj and token_embd equal to the dequantised GGUF tensors"}


def load_hf_folder(path):
    return transformers.AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager").eval()


def config_summary(model):
    cfg = model.config
    rope = dict(getattr(cfg, "rope_parameters", None) or {})
    return {"model_type": cfg.model_type, "n_layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size,
            "n_heads": cfg.num_attention_heads, "n_kv_heads": cfg.num_key_value_heads,
            "head_dim": getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
            "ffn": cfg.intermediate_size, "vocab": cfg.vocab_size, "rms_norm_eps": cfg.rms_norm_eps,
            "rope_parameters": rope, "tie_word_embeddings": bool(cfg.tie_word_embeddings),
            "qkv_bias": model.model.layers[0].self_attn.q_proj.bias is not None,
            "rope_inv_freq": f32_list(model.model.rotary_emb.inv_freq),
            "rope_attention_scaling": float(model.model.rotary_emb.attention_scaling)}


# ----------------------------------------------------------------------------------------------
# Prompts.

def smollm2_prompts(tok):
    def encode(text):
        return tok.encode(text, add_special_tokens=False).ids

    rng = random.Random(20251130)
    chunks, ids = [], []
    while len(ids) < LONG_MIN_TOKENS:
        order = list(range(len(PARAGRAPHS)))
        rng.shuffle(order)
        for i in order:
            chunks.append(PARAGRAPHS[i])
            ids = encode("\n\n".join(chunks))
            if len(ids) >= LONG_MIN_TOKENS:
                break
    long_text = "\n\n".join(chunks)
    texts = [("plain", "The quick brown fox jumps over the lazy dog. It was a sunny day in the park"),
             ("chat_france", CHAT_PROMPT),
             ("code", CODE_PROMPT),
             ("long_prose", long_text)]
    return [{"name": n, "text": t, "ids": encode(t)} for n, t in texts]


def random_prompts(vocab, seed):
    rng = np.random.default_rng(seed)
    return [{"name": f"random_{n}", "text": None, "ids": rng.integers(0, vocab, size=n).tolist()}
            for n in (1, 7, 100, 300)]


# ----------------------------------------------------------------------------------------------
# The reference computation.

def layer_output(out):
    return out[0] if isinstance(out, (tuple, list)) else out


@torch.no_grad()
def run_prompt(model, ids, n_new, full_logits):
    captured = {}
    hooks = [model.model.embed_tokens.register_forward_hook(
        lambda m, i, o: captured.__setitem__(0, o.detach().clone()))]
    for il, layer in enumerate(model.model.layers):
        hooks.append(layer.register_forward_hook(
            lambda m, i, o, k=il + 1: captured.__setitem__(k, layer_output(o).detach().clone())))
    hooks.append(model.model.norm.register_forward_hook(
        lambda m, i, o: captured.__setitem__("norm", o.detach().clone())))

    x = torch.tensor([ids], dtype=torch.long)
    t0 = time.perf_counter()
    out = model(input_ids=x, use_cache=True, logits_to_keep=1)
    t_prefill = time.perf_counter() - t0
    for h in hooks:
        h.remove()
    n_layers = model.config.num_hidden_layers
    assert sorted(k for k in captured if k != "norm") == list(range(n_layers + 1))
    # The final norm ran on every position (only the LM head is restricted to the last one).
    assert captured["norm"].shape[1] == len(ids)

    logits = out.logits[0, -1].float().numpy()
    assert np.all(np.isfinite(logits))
    order = np.lexsort((np.arange(logits.size), -logits))[:TOP_K]  # by value desc, then id asc
    l64 = logits.astype(np.float64)
    m = l64.max()
    rec_logits = {"top_ids": order.tolist(), "top_values": f32_list(logits[order]),
                  "argmax": int(order[0]), "max_abs": f32(np.abs(logits).max()),
                  "logsumexp": float(m + math.log(np.exp(l64 - m).sum()))}
    if full_logits:
        rec_logits["full"] = f32_list(logits)

    hidden = []
    for k in range(n_layers + 1):
        h = captured[k][0].float().numpy()  # [T, hidden]
        assert np.all(np.isfinite(h)), k
        hidden.append({"index": k, "layer": k - 1, "name": "embedding" if k == 0 else f"layer_{k - 1}",
                       "frobenius": float(np.linalg.norm(h.astype(np.float64))),
                       "last_l2": float(np.linalg.norm(h[-1].astype(np.float64))),
                       "first": f32_list(h[0, :SUMMARY_WIDTH]),
                       "last": f32_list(h[-1, :SUMMARY_WIDTH])})
    hn = captured["norm"][0].float().numpy()
    final_norm = {"last": f32_list(hn[-1, :SUMMARY_WIDTH]),
                  "last_l2": float(np.linalg.norm(hn[-1].astype(np.float64))),
                  "frobenius": float(np.linalg.norm(hn.astype(np.float64)))}

    # Greedy continuation: argmax, feed back through the KV cache, exactly n_new tokens.
    t0 = time.perf_counter()
    cache, step_logits = out.cache, out.logits[0, -1]
    new_ids, margins = [], []
    for _ in range(n_new):
        top2 = torch.topk(step_logits, 2)
        nxt = int(torch.argmax(step_logits))  # first index of the maximum
        new_ids.append(nxt)
        margins.append(f32(top2.values[0] - top2.values[1]))
        step = model(input_ids=torch.tensor([[nxt]]), cache=cache, use_cache=True, logits_to_keep=1)
        cache, step_logits = step.cache, step.logits[0, -1]
    t_gen = time.perf_counter() - t0
    assert new_ids[0] == rec_logits["argmax"]
    greedy = {"n_new": n_new, "ids": new_ids, "margins": margins}
    return {"logits": rec_logits, "hidden": hidden, "final_norm": final_norm, "greedy": greedy}, t_prefill, t_gen


@torch.no_grad()
def check_greedy_with_generate(model, ids, expect):
    """The hand-written loop agrees with model.generate (greedy, EOS disabled)."""
    # generate() falls back to the model's own generation_config for an unset EOS, so both are
    # cleared (min_new_tokens would instead mask EOS's logit and change the argmax).
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = None
    try:
        gc = transformers.GenerationConfig(do_sample=False, max_new_tokens=len(expect), eos_token_id=None,
                                           pad_token_id=0)
        x = torch.tensor([ids])  # explicit mask: a random prompt may contain the pad id
        out = model.generate(x, attention_mask=torch.ones_like(x), generation_config=gc)
    finally:
        model.generation_config.eos_token_id = saved
    got = out[0, len(ids):].tolist()
    assert got == expect, (got, expect)


# ----------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="a .gguf file (SmolLM2) or a Hugging Face checkpoint folder")
    ap.add_argument("--out", required=True, help="output JSON")
    ap.add_argument("--seed", type=int, default=20251203, help="seed of the random prompts (folders only)")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    is_gguf = args.model.endswith(".gguf")

    t0 = time.perf_counter()
    if is_gguf:
        model = load_gguf_model(args.model)
        checks = check_gguf_model(model, args.model)
        vocab = tokenizer_fixture.read_gguf_vocab(args.model)
        tok = tokenizer_fixture.build_reference(vocab, "smollm")
        prompts = smollm2_prompts(tok)
        n_new, full_logits = 32, False
        files = {os.path.basename(args.model): sha256_file(args.model)}
        hf_tok = transformers.AutoTokenizer.from_pretrained(
            os.path.dirname(os.path.abspath(args.model)), gguf_file=os.path.basename(args.model))
        for p in prompts:
            p["transformers_gguf_ids_equal"] = hf_tok.encode(p["text"], add_special_tokens=False) == p["ids"]
    else:
        model = load_hf_folder(args.model)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        checks = {"tied_lm_head": model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()}
        assert checks["tied_lm_head"] == bool(model.config.tie_word_embeddings)
        tok = None
        prompts = random_prompts(model.config.vocab_size, args.seed)
        n_new, full_logits = 16, True
        files = {f: sha256_file(os.path.join(args.model, f)) for f in sorted(os.listdir(args.model))}
    t_load = time.perf_counter() - t0
    print(f"loaded {args.model} in {t_load:.1f} s", flush=True)

    records = []
    for p in prompts:
        rec, t_prefill, t_gen = run_prompt(model, p["ids"], n_new, full_logits)
        if tok is not None:
            rec["greedy"]["text"] = tok.decode(rec["greedy"]["ids"], skip_special_tokens=False)
        else:
            rec["greedy"]["text"] = None
        if p["name"] == "chat_france" or not is_gguf:
            check_greedy_with_generate(model, p["ids"], rec["greedy"]["ids"])
        records.append({**p, "n_tokens": len(p["ids"]), **rec})
        print(f"{p['name']}: {len(p['ids'])} tokens, prefill {t_prefill:.2f} s, {n_new} greedy steps "
              f"{t_gen:.2f} s; top1 {rec['logits']['argmax']}; continuation "
              f"{rec['greedy']['text']!r}" if tok else
              f"{p['name']}: {len(p['ids'])} tokens, prefill {t_prefill:.3f} s, {n_new} greedy steps "
              f"{t_gen:.3f} s; greedy {rec['greedy']['ids']}", flush=True)

    if is_gguf:
        france = next(r for r in records if r["name"] == "chat_france")
        assert "Paris" in france["greedy"]["text"], france["greedy"]["text"]

    n_layers = model.config.num_hidden_layers
    doc = {
        "about": "Golden forward pass of esa against Hugging Face transformers; see "
                 "scripts/reference/hf_logits.py.",
        "generator": "scripts/reference/hf_logits.py",
        "command": ".venv-ref/bin/python scripts/reference/hf_logits.py --model " + rel(args.model) +
                   " --out " + rel(args.out) + ("" if is_gguf else f" --seed {args.seed}"),
        "versions": {k: version(k) for k in ("transformers", "torch", "tokenizers", "gguf", "numpy",
                                             "safetensors", "accelerate")} | {"python": sys.version.split()[0]},
        "model": {"path": rel(args.model), "format": "gguf" if is_gguf else "hf_safetensors",
                  "sha256": files, "config": config_summary(model)},
        "compute": {"dtype": "float32", "attn_implementation": "eager", "torch_threads": 1,
                    "weights": ("GGUF dequantised to float32 by transformers (Q/K un-permuted to the "
                                "rotate_half layout)") if is_gguf else
                               "checkpoint loaded with dtype=float32 (bfloat16 widened exactly)",
                    "bos_prepended": False,
                    "tokenizer": ("tokenizers BPE on the GGUF vocab/merges, pre-tokenizer "
                                  "Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, "
                                  "use_regex=True)], control tokens special") if is_gguf else None,
                    "prompt_seed": None if is_gguf else args.seed},
        "indexing": {
            "hidden": f"{n_layers + 1} entries: index 0 (layer -1, 'embedding') is the token embedding "
                      "output, the input of layer 0; index i+1 (layer i, 'layer_i') is the residual "
                      "stream after decoder layer i (attention and MLP residual adds done), before the "
                      f"final norm. Index {n_layers} is the input of the final norm.",
            "first/last": f"the first {SUMMARY_WIDTH} hidden dimensions at position 0 / at the last "
                          "prompt position",
            "frobenius": "sqrt(sum of squares) over all positions and dimensions, float64",
            "logits": "of the last prompt position only; top_ids sorted by value descending, ties "
                      "by id ascending",
            "greedy": "argmax continuation (first index on ties) with the KV cache, exactly n_new "
                      "tokens, no EOS stop; margins[t] = top1 - top2 logit before choosing ids[t]",
        },
        "summary_width": SUMMARY_WIDTH,
        "top_k": TOP_K,
        "checks": checks,
        "prompts": records,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
