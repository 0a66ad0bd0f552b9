#!/usr/bin/env bash
# Model speed on a GPU machine: a Llama-shaped checkpoint with random weights, written by Hugging
# Face transformers (save_pretrained, sharded bf16 safetensors), timed by transformers (SDPA) and
# by esa's own loader and GPU forward with full attention and with esa (random projection of
# d' = MODEL_DIM; speed does not depend on its values). Prints esa's table, then transformers'.
# Exit 2 where torch/transformers with CUDA are missing.
# Usage: [MODEL_SHAPE=smollm2|llama3-8b] [MODEL_PREFILL=8k,32k] [MODEL_DECODE=64] [MODEL_DIM=128]
#        [MODEL_FLAGS="--init 128 --local 2048 --select 4096"] [MODEL_ESA_ONLY=512k]
#        scripts/gpu_model_bench.sh [BUNDLE_DIR]
# MODEL_ESA_ONLY: lengths timed with esa alone after the table (does a long prefill fit the card;
# the dense peers would take minutes there).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/gpu_env.sh" "${1:-$ROOT/.gpu/bundle}"
python3 -c "import torch, transformers; assert torch.cuda.is_available()" 2>/dev/null || exit 2
SHAPE="${MODEL_SHAPE:-smollm2}" PREFILL="${MODEL_PREFILL:-8k,32k}" DECODE="${MODEL_DECODE:-64}"
read -r -a flags <<< "${MODEL_FLAGS:---init 128 --local 2048 --select 4096}"
CKPT="${TMPDIR:-/tmp}/esa_random_$SHAPE"
python3 "$ROOT/scripts/bench_torch_model.py" --shape "$SHAPE" --save "$CKPT" --prefill "$PREFILL" --decode "$DECODE" \
  > /tmp/gpu_torch_model.txt || exit 1
"$BIN/esa" bench model -m "$CKPT" --prefill "$PREFILL" --decode "$DECODE" --device cuda --policy esa,full \
  --dim "${MODEL_DIM:-128}" "${flags[@]}" || exit 1
if [[ -n "${MODEL_ESA_ONLY:-}" ]]; then
  "$BIN/esa" bench model -m "$CKPT" --prefill "$MODEL_ESA_ONLY" --decode "$DECODE" --device cuda --policy esa \
    --dim "${MODEL_DIM:-128}" "${flags[@]}" || exit 1
fi
cat /tmp/gpu_torch_model.txt
