#!/usr/bin/env bash
# End to end on a GPU machine with the embedded model: the GPU forward against the CPU on the
# model's logits (test_forward_cuda's EmbeddedModelMatchesCpu), the same passkey cases scored on the CPU
# and on the GPU (answers compared), the retrieval suites on the GPU at long contexts, and the
# model's prefill/decode speed on GPU and CPU. Prints a short table last.
# Usage: ESA_MODEL=model.gguf scripts/gpu_e2e.sh [BUNDLE_DIR] [PROJ.h5]
#   BUNDLE_DIR: from scripts/gpu_bundle.sh (default .gpu/bundle); PROJ: a projection of the model
#   for --policy esa (default: identity). LENGTHS, LONG_LENGTHS, LONG_POLICIES and EVAL_FLAGS
#   (the budget flags) override;
#   BUDGET_S (default 480) bounds the whole run (each eval gets a share; a cut-off eval keeps
#   its finished cases).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUNDLE="${1:-$ROOT/.gpu/bundle}"
PROJ="${2:-}"
: "${ESA_MODEL:?set ESA_MODEL to the model file}"
OUTDIR="${OUT:-/tmp}/e2e"; mkdir -p "$OUTDIR"
LOG="$OUTDIR/gpu_e2e.log"; : > "$LOG"
source "$ROOT/scripts/gpu_env.sh" "$BUNDLE"
HAYSTACK="${HAYSTACK:-$ROOT/data/corpus/haystack.txt}"
LENGTHS="${LENGTHS:-4k,8k}"              # CPU and GPU both
LONG_LENGTHS="${LONG_LENGTHS:-16k,32k,64k,128k}"  # GPU only
LONG_POLICIES="${LONG_POLICIES:-full,infllm,quest,esa,oracle}"  # every one selects on the GPU
BUDGET_S="${BUDGET_S:-480}"
START=$(date +%s)
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
proj_flag=(); [[ -n "$PROJ" ]] && proj_flag=(--proj "$PROJ")
# The budget of experiments/policies.toml (a projection fitted with w = --local = 1024).
read -r -a budget <<< "${EVAL_FLAGS:---init 64 --local 1024 --select 512 --eps 3}"
common=(-m "$ESA_MODEL" --depths 0:100:50 --quiet "${budget[@]}" "${proj_flag[@]}")
sha256sum "$ESA_MODEL" | tee -a "$LOG"

declare -A RESULT
# 1. Logits: GPU against CPU.
ESA_REQUIRE_MODEL=1 "$BIN/test_forward_cuda" --gtest_filter='CudaTest.EmbeddedModelMatchesCpu' >>"$LOG" 2>&1 \
  && RESULT[logits]=pass || RESULT[logits]=FAIL
grep "relative error" "$LOG"
# 1b. Greedy decoding on the device (CUDA graphs) against the host loop, and the same text with
# and without graphs through esa generate; then SIGINT during a graph-replayed generation must
# end it cleanly (exit 130, one line, no CUDA error).
ESA_REQUIRE_MODEL=1 "$BIN/test_forward_cuda" --gtest_filter='CudaTest.EmbeddedModelDecodes*' >>"$LOG" 2>&1 \
  && RESULT[decode]=pass || RESULT[decode]=FAIL
gen=(-m "$ESA_MODEL" --device cuda --chat --prompt "Write a long story about a lighthouse keeper and the sea." -n 300)
"$BIN/esa" generate "${gen[@]}" >"$OUTDIR/gen_graphs.txt" 2>>"$LOG"
"$BIN/esa" generate "${gen[@]}" --no-cuda-graphs >"$OUTDIR/gen_eager.txt" 2>>"$LOG"
small=(--policy esa --init 4 --local 16 --select 16)  # a budget below the 342 tokens, so esa selects
"$BIN/esa" generate "${gen[@]}" "${small[@]}" >"$OUTDIR/gen_esa_graphs.txt" 2>>"$LOG"
"$BIN/esa" generate "${gen[@]}" "${small[@]}" --no-cuda-graphs >"$OUTDIR/gen_esa_eager.txt" 2>>"$LOG"
RESULT[graph_text]=identical
for p in gen gen_esa; do
  cmp -s "$OUTDIR/${p}_graphs.txt" "$OUTDIR/${p}_eager.txt" && [[ -s "$OUTDIR/${p}_graphs.txt" ]] \
    || RESULT[graph_text]="DIFFERENT ($p)"
done
"$BIN/esa" generate -m "$ESA_MODEL" --device cuda --policy esa --init 64 --local 1024 --select 512 --chat \
  --prompt "Count from one to one million in words." -n 100000 --max-context 110000 >"$OUTDIR/gen_sigint.txt" 2>"$OUTDIR/gen_sigint.err" &
gen_pid=$!
sleep 6; kill -INT $gen_pid 2>/dev/null && sent=yes || sent="no (it had ended)"
wait $gen_pid; rc=$?
RESULT[sigint]="rc $rc, signal sent: $sent, stderr: $(tr '\n' ' ' <"$OUTDIR/gen_sigint.err" | tail -c 200)"

# 2. The same passkey cases on both devices, every policy (the CPU with every host core, in the background).
policies=full,infllm,quest,esa,oracle  # the five selecting policies and full
timeout $(( $(left) - 60 )) "$BIN/esa" eval --suite passkey --lengths "$LENGTHS" --policy "$policies" "${common[@]}" \
  --device cpu -o "$OUTDIR/passkey_cpu.h5" >"$OUTDIR/passkey_cpu.txt" 2>>"$LOG" &
cpu_pid=$!
"$BIN/esa" eval --suite passkey --lengths "$LENGTHS" --policy "$policies" "${common[@]}" --device cuda \
  -o "$OUTDIR/passkey_gpu.h5" >"$OUTDIR/passkey_gpu.txt" 2>>"$LOG"
# 3. Long contexts on the GPU only: passkey and multi-niah.
for suite in passkey multi-niah; do
  t=$(( ($(left) - 90) / 2 )); (( t > 30 )) || break
  timeout "$t" "$BIN/esa" eval --suite $suite --haystack "$HAYSTACK" --lengths "$LONG_LENGTHS" --policy "$LONG_POLICIES" \
    "${common[@]}" --device cuda -o "$OUTDIR/${suite}_long_gpu.h5" \
    >"$OUTDIR/${suite}_long_gpu.txt" 2>>"$LOG" || echo "$suite long: stopped at the time budget (finished cases kept)" | tee -a "$LOG"
done
wait $cpu_pid
# 4. --kv-offload: esa's passkey cases at OFFLOAD_LENGTHS with the KV cache in host memory, and
# the same cases with it on the GPU: the answers must agree (the arithmetic is the same).
OFFLOAD_LENGTHS="${OFFLOAD_LENGTHS:-32k}"
for where in resident offload; do
  flag=(); [[ $where == offload ]] && flag=(--kv-offload)
  "$BIN/esa" eval --suite passkey --haystack "$HAYSTACK" --lengths "$OFFLOAD_LENGTHS" --policy esa "${common[@]}" \
    --device cuda "${flag[@]}" -o "$OUTDIR/offload_$where.h5" >"$OUTDIR/offload_$where.txt" 2>>"$LOG"
done
# 5. The embedded model's speed, full attention: GPU, and CPU (every host core) at 8k.
"$BIN/esa" bench model -m "$ESA_MODEL" --prefill 8k,32k --decode 64 --device cuda >"$OUTDIR/bench_gpu.txt" 2>>"$LOG"
timeout 90 "$BIN/esa" bench model -m "$ESA_MODEL" --prefill 8k --decode 16 --device cpu >"$OUTDIR/bench_cpu.txt" 2>>"$LOG"

echo
echo "gpu_e2e summary ($(date -u +%F), $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1))"
echo "logits GPU vs CPU: ${RESULT[logits]}"
echo "greedy decoding on the device vs the host loop: ${RESULT[decode]}; generate text with/without CUDA graphs: ${RESULT[graph_text]}"
echo "SIGINT during a graph-replayed generate: ${RESULT[sigint]}"
for f in passkey_cpu passkey_gpu passkey_long_gpu multi-niah_long_gpu offload_resident offload_offload bench_gpu bench_cpu; do
  echo "-- $f"; cat "$OUTDIR/$f.txt" 2>/dev/null | tail -12
done
# Per case, the CPU's and the GPU's answers side by side (the h5 files hold both).
python3 "$ROOT/scripts/compare_answers.py" "$OUTDIR/passkey_cpu.h5" "$OUTDIR/passkey_gpu.h5" || true
python3 "$ROOT/scripts/compare_answers.py" "$OUTDIR/offload_resident.h5" "$OUTDIR/offload_offload.h5" || true
