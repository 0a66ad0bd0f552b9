#!/usr/bin/env bash
# On a GPU machine, in one go: build (or take a bundle from scripts/gpu_bundle.sh), check every
# CUDA kernel against its CPU reference, run the kernel tests under compute-sanitizer, benchmark,
# and print a short table last.
# Usage: scripts/gpu_check.sh [BUNDLE_DIR]   (default: .gpu/bundle if present, else build here)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUNDLE="${1:-$ROOT/.gpu/bundle}"
LOG="${OUT:-/tmp}/gpu_check.log"
source "$ROOT/scripts/gpu_env.sh" "$BUNDLE"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$LOG"
"$BIN/esa" --version | tee -a "$LOG"

declare -A RESULT
run() {  # run NAME CMD...: records pass/fail and keeps the output in the log
  local name="$1"; shift
  if "$@" >>"$LOG" 2>&1; then RESULT[$name]="pass"; else RESULT[$name]="FAIL ($?)"; fi
  echo "== $name: ${RESULT[$name]}"
}
run "unit tests (CPU)" bash -c "'$BIN/test_core' && '$BIN/test_gguf' && '$BIN/test_dequantize'"
# Every GPU test against its CPU reference: the kernels and the forward (test_*_cuda), and each
# policy's device half (test_<p>, TEST_P over {cpu, cuda}). A GPU case that skips is a failure here.
GPU_TESTS=(test_cuda_ops test_dequantize_cuda test_selection_cuda test_attention_cuda test_forward_cuda
           test_streaming test_oracle test_esa test_quest test_infllm test_selection)
cuda_vs_cpu() {
  local t rc=0
  for t in "${GPU_TESTS[@]}"; do
    "$BIN/$t" --gtest_brief=1 --gtest_filter="-CudaTest.Embedded*" > "/tmp/gpu_$t.txt" 2>&1 || rc=1  # Embedded: gpu_e2e.sh
    cat "/tmp/gpu_$t.txt"
    grep -q "SKIPPED" "/tmp/gpu_$t.txt" && grep -q "no CUDA device" "/tmp/gpu_$t.txt" && rc=2
  done
  return $rc
}
run "CUDA vs CPU" cuda_vs_cpu
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do  # kernels, and one short decode (cuBLAS is slow under the tools)
    run "compute-sanitizer $tool" bash -c "for t in test_cuda_ops test_selection_cuda test_attention_cuda; do
      compute-sanitizer --tool $tool --error-exitcode 3 '$BIN/'\$t --gtest_brief=1 || exit 3; done
      # The graph-replayed decode loop, short (768 tokens, 16 steps): frees deferred past the graphs.
      # Not API errors: a failed cudaGraphExecUpdate (a step whose graph changed shape) is how the
      # loop learns to instantiate afresh.
      ESA_TEST_SHORT_DECODE=1 compute-sanitizer --tool $tool --report-api-errors no --error-exitcode 3 '$BIN/test_forward_cuda' \
        --gtest_filter='CudaTest.DecodeGreedy*' --gtest_brief=1 || exit 3"
  done
else
  RESULT["compute-sanitizer memcheck"]="not installed"; RESULT["compute-sanitizer racecheck"]="not installed"
fi
"$BIN/bench_dequantize" --benchmark_min_time=0.2 --benchmark_format=console 2>&1 | tee -a "$LOG" | grep -E "^BM_" > /tmp/gpu_bench.txt

# Decode-step attention, one layer of Llama-3-8B's shape: esa's kernels, then PyTorch on the same
# card (SDPA flash with GQA, torch.topk) in the same call. CONTEXTS overrides the lengths.
CONTEXTS="${CONTEXTS:-32k,128k,512k,1m}"
"$BIN/esa" bench attention --device cuda --shape llama3-8b --context "$CONTEXTS" --steps 50 2>&1 | tee -a "$LOG" > /tmp/gpu_esa_attention.txt
RESULT["esa bench attention"]=$([[ ${PIPESTATUS[0]} == 0 ]] && echo pass || echo FAIL)
if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  python3 "$ROOT/scripts/bench_torch_attention.py" --context "$CONTEXTS" --topk 2048 2>&1 | tee -a "$LOG" > /tmp/gpu_torch_attention.txt
  RESULT["torch peer"]=$([[ ${PIPESTATUS[0]} == 0 ]] && echo pass || echo FAIL)
else
  RESULT["torch peer"]="no torch with CUDA here"; : > /tmp/gpu_torch_attention.txt
fi

# Model speed: a random-weight checkpoint written by transformers, timed there (SDPA) and by esa's
# loader and GPU forward (full and esa). MODEL_SHAPE / MODEL_PREFILL / MODEL_DECODE override.
bash "$ROOT/scripts/gpu_model_bench.sh" "$BUNDLE" > /tmp/gpu_model.txt 2>>"$LOG"
case $? in 0) RESULT["esa bench model"]=pass ;; 2) RESULT["esa bench model"]="no torch/transformers with CUDA here" ;;
  *) RESULT["esa bench model"]=FAIL ;; esac

echo
echo "gpu_check summary ($(date -u +%F), $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1))"
printf '%-30s %s\n' "check" "result"
for k in "unit tests (CPU)" "CUDA vs CPU" "compute-sanitizer memcheck" "compute-sanitizer racecheck" \
         "esa bench attention" "torch peer" "esa bench model"; do printf '%-30s %s\n' "$k" "${RESULT[$k]:-?}"; done
echo "dequantize (CPU, host cores of the GPU machine):"
awk '{printf "  %-26s %s %s\n", $1, $(NF-1), $NF}' /tmp/gpu_bench.txt
# One line per context: esa's step against SDPA dense (same card, same run), top-k against torch.topk.
python3 - /tmp/gpu_esa_attention.txt /tmp/gpu_torch_attention.txt <<'PY'
import sys
esa, torch = {}, {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) == 11 and f[0].isdigit():
        esa[(int(f[0]), f[1])] = {"step": float(f[7]), "topk": float(f[4]), "xfloor": float(f[10])}
for line in open(sys.argv[2]):
    f = line.split()
    if f and f[0].isdigit():
        torch[(int(f[0]), "topk" if f[1] == "torch.topk" else "sdpa")] = float(f[-1])
print(f"{'context':>8} {'esa us':>8} {'full us':>8} {'sdpa us':>8} {'sdpa/esa':>9} {'esa xfloor':>10} {'topk us':>8} {'torch.topk us':>13}")
for n in sorted({k[0] for k in esa}):
    e, fu, tk = esa.get((n, "esa"), {}), esa.get((n, "full"), {}), esa.get((n, "topk"), {})
    s, tt = torch.get((n, "sdpa")), torch.get((n, "topk"))
    ratio = f"{s / e['step']:.1f}x" if s and e else "-"
    fmt = lambda x: f"{x:.1f}" if x is not None else "-"
    print(f"{n:>8} {fmt(e.get('step')):>8} {fmt(fu.get('step')):>8} {fmt(s):>8} {ratio:>9} "
          f"{fmt(e.get('xfloor')):>10} {fmt(tk.get('step')):>8} {fmt(tt):>13}")
PY
echo "model speed (esa GPU forward, then transformers SDPA, same checkpoint and card):"
cat /tmp/gpu_model.txt
[[ "${RESULT["CUDA vs CPU"]}" == "pass" ]]
