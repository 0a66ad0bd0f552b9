#!/usr/bin/env bash
# The first-results grid of bench/RESULTS.md: suites x policies x lengths x depths on the CPU, one
# `esa eval` per (suite, policy) writing OUT_DIR/<suite>_<label>.h5, run N at a time. Resumable:
# rerun the same command and finished cases are kept (each unit runs with --resume).
# Usage: scripts/eval_grid.sh OUT_DIR
# Environment (defaults in brackets):
#   ESA [build/bin/esa]  MODEL [the embedded model]  HAYSTACK [data/corpus/haystack.txt]
#   PROJ_CLOSED, PROJ_ADAM   proj.h5 files for the esa-closed / esa-adam units (skipped when unset)
#   SUITES ["passkey multi-niah"]  POLICIES ["full streaming infllm quest oracle"]
#   LENGTHS [2k,4k,8k,16k]  DEPTHS [10,50,90]  SAMPLES [1]  SEED [0]
#   JOBS [2] units at a time, THREADS [1] per unit
#   DEADLINE [0: none] epoch seconds by which every unit stops (interrupted cases rerun next time)
#   EXTRA [] more esa eval flags for every unit (a budget: --local 1024 --select 512)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:?usage: eval_grid.sh OUT_DIR}"
ESA="${ESA:-$ROOT/build/bin/esa}"
MODEL="${MODEL:-$ROOT/data/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
HAYSTACK="${HAYSTACK:-$ROOT/data/corpus/haystack.txt}"
SUITES="${SUITES:-passkey multi-niah}"
POLICIES="${POLICIES:-full streaming infllm quest oracle}"
LENGTHS="${LENGTHS:-2k,4k,8k,16k}"; DEPTHS="${DEPTHS:-10,50,90}"; SAMPLES="${SAMPLES:-1}"; SEED="${SEED:-0}"
JOBS="${JOBS:-2}"; THREADS="${THREADS:-1}"; DEADLINE="${DEADLINE:-0}"; EXTRA="${EXTRA:-}"
mkdir -p "$OUT_DIR"

units=()  # "suite label policy proj"
for suite in $SUITES; do
  for p in $POLICIES; do units+=("$suite $p $p -"); done
  [[ -n "${PROJ_CLOSED:-}" ]] && units+=("$suite esa-closed esa $PROJ_CLOSED")
  [[ -n "${PROJ_ADAM:-}" ]] && units+=("$suite esa-adam esa $PROJ_ADAM")
done

run_unit() {
  read -r suite label policy proj <<<"$1"
  local args=(eval --model "$MODEL" --haystack "$HAYSTACK" --suite "$suite" --policy "$policy" --lengths "$LENGTHS"
              --depths "$DEPTHS" --samples "$SAMPLES" --seed "$SEED" --threads "$THREADS" --resume -q
              -o "$OUT_DIR/${suite}_${label}.h5")
  [[ "$proj" != "-" ]] && args+=(--proj "$proj")
  # shellcheck disable=SC2206
  args+=($EXTRA)
  local t0=$SECONDS rc left
  if [[ "$DEADLINE" -gt 0 ]]; then
    left=$((DEADLINE - $(date +%s)))
    if [[ $left -lt 5 ]]; then echo "eval_grid: $suite $label not started (deadline)"; return; fi
    timeout -s INT "$left" "$ESA" "${args[@]}" >"$OUT_DIR/${suite}_${label}.out" 2>&1; rc=$?
  else
    "$ESA" "${args[@]}" >"$OUT_DIR/${suite}_${label}.out" 2>&1; rc=$?
  fi
  echo "eval_grid: $suite $label rc $rc in $((SECONDS - t0)) s"
}
export -f run_unit
export ESA MODEL HAYSTACK LENGTHS DEPTHS SAMPLES SEED THREADS DEADLINE EXTRA OUT_DIR
printf '%s\n' "${units[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_unit "$@"' _ {}
