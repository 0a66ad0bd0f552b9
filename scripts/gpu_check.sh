#!/usr/bin/env bash
# On a GPU machine, in one go: build (or take a bundle from scripts/gpu_bundle.sh), check every
# CUDA kernel against its CPU reference, run the kernel tests under compute-sanitizer, benchmark,
# and print a short table last.
# Usage: scripts/gpu_check.sh [BUNDLE_DIR]   (default: .gpu/bundle if present, else build here)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUNDLE="${1:-$ROOT/.gpu/bundle}"
LOG="${OUT:-/tmp}/gpu_check.log"
if [[ -d "$BUNDLE/bin" ]]; then
  BIN="$BUNDLE/bin"
  export LD_LIBRARY_PATH="$BUNDLE/lib:${LD_LIBRARY_PATH:-}"
  export ESA_FIXTURES_DIR="$BUNDLE/fixtures"
else
  bash "$ROOT/scripts/build.sh" -DESA_WITH_CUDA=ON >/dev/null || { echo "gpu_check: build failed" >&2; exit 1; }
  BIN="$ROOT/build/bin"
  for t in test_cuda test_dequantize test_gguf test_core; do ln -sf "$ROOT/build/tests/$t" "$BIN/$t"; done
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$LOG"
"$BIN/esa" --version | tee -a "$LOG"

declare -A RESULT
run() {  # run NAME CMD...: records pass/fail and keeps the output in the log
  local name="$1"; shift
  if "$@" >>"$LOG" 2>&1; then RESULT[$name]="pass"; else RESULT[$name]="FAIL ($?)"; fi
  echo "== $name: ${RESULT[$name]}"
}
run "unit tests (CPU)" bash -c "'$BIN/test_core' && '$BIN/test_gguf' && '$BIN/test_dequantize'"
run "CUDA vs CPU" "$BIN/test_cuda" --gtest_brief=1
grep -q "Skipped" <(grep -A2 "CudaTest" "$LOG") && RESULT["CUDA vs CPU"]="SKIPPED (no GPU?)"
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    run "compute-sanitizer $tool" compute-sanitizer --tool $tool --error-exitcode 3 "$BIN/test_cuda" --gtest_brief=1
  done
else
  RESULT["compute-sanitizer memcheck"]="not installed"; RESULT["compute-sanitizer racecheck"]="not installed"
fi
"$BIN/bench_dequantize" --benchmark_min_time=0.2 --benchmark_format=console 2>&1 | tee -a "$LOG" | grep -E "^BM_" > /tmp/gpu_bench.txt

echo
echo "gpu_check summary ($(date -u +%F), $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1))"
printf '%-30s %s\n' "check" "result"
for k in "unit tests (CPU)" "CUDA vs CPU" "compute-sanitizer memcheck" "compute-sanitizer racecheck"; do printf '%-30s %s\n' "$k" "${RESULT[$k]:-?}"; done
echo "dequantize (CPU, host cores of the GPU machine):"
awk '{printf "  %-26s %s %s\n", $1, $(NF-1), $NF}' /tmp/gpu_bench.txt
[[ "${RESULT["CUDA vs CPU"]}" == "pass" ]]
