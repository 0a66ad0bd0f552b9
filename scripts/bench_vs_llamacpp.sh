#!/usr/bin/env bash
# esa's CPU engine against llama.cpp on the same GGUF, same machine, same thread count, back to
# back. llama.cpp comes from the PyPI package llama-cpp-python (compiled from source on install)
# in a scratch venv outside the repository:
#   python3 -m venv /tmp/lcpp && CMAKE_ARGS="-DGGML_NATIVE=ON" /tmp/lcpp/bin/pip install llama-cpp-python
# Usage: scripts/bench_vs_llamacpp.sh [PREFILL_LIST] [DECODE] [THREADS]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFILL="${1:-512,2048,4096}"; DECODE="${2:-128}"; THREADS="${3:-2}"
MODEL="${ESA_MODEL:-$ROOT/data/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
LCPP_PYTHON="${LCPP_PYTHON:-/tmp/lcpp/bin/python}"
ESA="${ESA_BUILD_DIR:-$ROOT/build}/bin/esa"
echo "== $(date -u +%FT%TZ) $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, esa $("$ESA" --version | cut -d' ' -f2-)"
"$ESA" bench model --model "$MODEL" --prefill "$PREFILL" --decode "$DECODE" --threads "$THREADS"
"$LCPP_PYTHON" "$ROOT/scripts/bench_llamacpp.py" --model "$MODEL" --prefill "$PREFILL" --decode "$DECODE" --threads "$THREADS"
