#!/usr/bin/env bash
# End to end: esa dump -> esa calibrate (closed, pca, adam) -> esa generate --policy esa --proj;
# h5py reads both files and finds the documented layout; esa reads a proj.h5 written by h5py;
# mismatched or broken inputs give one-line errors and leave no partial output.
# Scenarios (each a ctest entry e2e.calibrate.<name>; `all` runs every one):
#   smollm2  the chain on the embedded model (30 layers, key dimension 192): what the esa policy
#            generates with a fitted, an identity (h5py-written) and a float64 projection
#   flow     the chain on the tiny model, every method, h5py both ways (a fixture for errors)
#   errors   mismatched and broken inputs: one-line errors, no partial output
# Usage: test_calibrate.sh SCENARIO ESA_BINARY MODEL TEXT REQUIRE_MODEL(0|1) PYTHON_WITH_H5PY
set -uo pipefail
SCENARIO="$1"; ESA="$2"; MODEL="$3"; TEXT="$4"; REQUIRE_MODEL="${5:-0}"; PY="${6:-}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"
init_shared
FLOW="$SHARED/flow"
TINY="$FLOW/models/tiny_long.gguf"  # 2 layers, 2 KV heads of 8: key dimension 16

PROMPT="$(head -c 3000 "$TEXT") What is this text about?"
run_policy() {  # run_policy MODEL POLICY PROJ: greedy continuation with small budgets (selection happens)
  "$ESA" generate --model "$1" -p "$PROMPT" --policy "$2" ${3:+--proj "$3"} --w 2048 --init 4 --local 64 \
    --select 32 --chunk 64 -n 12
}

# --- the embedded model: dump -> calibrate -> the esa policy ----------------------------------------
scenario_smollm2() {
  require_model_and_h5py "$MODEL" "$REQUIRE_MODEL" "$PY"
  "$ESA" dump --model "$MODEL" --text "$TEXT" --tokens 512 --seq-len 256 --chunk 128 -o "$WORK/qk.h5" -q \
    >"$WORK/dump.out" 2>"$WORK/dump.err"; rc=$?
  check "dump succeeds" test $rc -eq 0
  check "dump reports 512 tokens in 2 sequences, 30 layers" grep -q "512 tokens in 2 sequences, 30 layers" "$WORK/dump.out"
  [[ -n "$PY" ]] && check "h5py reads qk.h5 with the documented layout" "$PY" "$HERE/h5_layout.py" check-qk "$WORK/qk.h5"
  expect_error "dump: bad --layers" "layer 30 does not exist" \
    "$ESA" dump --model "$MODEL" --text "$TEXT" --layers 0,30 -o "$WORK/l.h5" -q
  "$ESA" calibrate --qk "$WORK/qk.h5" --method closed --dim 16 --eval-queries 32 -o "$WORK/proj.h5" -q \
    >"$WORK/cal.out" 2>&1; rc=$?
  check "calibrate succeeds" test $rc -eq 0
  check "calibrate prints 30 layers and the mean" \
    bash -c '[[ $(grep -cE "^ +[0-9]+ +16 " "$1") -eq 30 ]] && grep -qE "^ +mean " "$1"' _ "$WORK/cal.out"
  [[ -n "$PY" ]] && check "h5py reads proj.h5 with the documented layout" "$PY" "$HERE/h5_layout.py" check-proj "$WORK/proj.h5"
  out_esa="$(run_policy "$MODEL" esa "$WORK/proj.h5" 2>/dev/null)"; rc=$?
  check "generate --policy esa --proj proj.h5 runs" bash -c '[[ $0 -eq 0 && -n "$1" ]]' $rc "$out_esa"
  if [[ -n "$PY" ]]; then
    "$PY" "$HERE/h5_layout.py" identity-proj "$WORK/qk.h5" "$WORK/identity.h5"
    check "an identity proj.h5 written by h5py selects as the oracle does" \
      test "$(run_policy "$MODEL" esa "$WORK/identity.h5" 2>/dev/null)" = "$(run_policy "$MODEL" oracle "" 2>/dev/null)"
    "$PY" "$HERE/h5_layout.py" copy-proj "$WORK/proj.h5" "$WORK/copy64.h5"
    check "a float64 copy of proj.h5 written by h5py gives the same output" \
      test "$(run_policy "$MODEL" esa "$WORK/copy64.h5" 2>/dev/null)" = "$out_esa"
  fi
  expect_error "d' larger than the key dimension" "--dim 193 is larger than the key dimension 192" \
    "$ESA" calibrate --qk "$WORK/qk.h5" --dim 193 -o "$WORK/p193.h5" -q
  tiny_models "$WORK/models"
  expect_error "proj.h5 of another model" "fitted for key dimension 192" \
    "$ESA" generate --model "$WORK/models/tiny.gguf" -p "the cat" --policy esa --proj "$WORK/proj.h5" --w 2048 -n 1
  if [[ -n "$PY" ]]; then
    "$PY" "$HERE/h5_layout.py" drop-layer "$WORK/proj.h5" "$WORK/29layers.h5" 29
    expect_error "proj.h5 with the wrong layer count" "29layers.h5: has 29 layers, this model has 30" \
      "$ESA" generate --model "$MODEL" -p "hi" --policy esa --proj "$WORK/29layers.h5" --w 2048 -n 1
  fi
}

# --- the tiny model: dump -> calibrate (every method) -> the esa policy -------------------------------
scenario_flow() {
  require_h5py "$REQUIRE_MODEL" "$PY"
  tiny_models "$WORK/models"
  "$ESA" dump --model "$TINY" --text "$TEXT" --tokens 1024 --seq-len 256 --chunk 128 -o "$WORK/qk.h5" -q \
    >"$WORK/dump.out" 2>"$WORK/dump.err"; rc=$?
  check "dump succeeds" test $rc -eq 0
  check "dump reports 1024 tokens in 4 sequences, 2 layers" grep -q "1024 tokens in 4 sequences, 2 layers" "$WORK/dump.out"
  [[ -n "$PY" ]] && check "h5py reads qk.h5 with the documented layout" "$PY" "$HERE/h5_layout.py" check-qk "$WORK/qk.h5"
  for method in closed pca adam; do
    "$ESA" calibrate --qk "$WORK/qk.h5" --method $method --dim 4 --epochs 1 --eval-queries 32 \
      -o "$WORK/proj_$method.h5" -q >"$WORK/cal_$method.out" 2>"$WORK/cal.err"; rc=$?
    check "calibrate --method $method succeeds" test $rc -eq 0
    check "calibrate --method $method prints 2 layers and the mean" \
      bash -c '[[ $(grep -cE "^ +[0-9]+ +4 " "$1") -eq 2 ]] && grep -qE "^ +mean " "$1"' _ "$WORK/cal_$method.out"
    [[ -n "$PY" ]] && check "h5py reads proj.h5 ($method) with the documented layout" \
      "$PY" "$HERE/h5_layout.py" check-proj "$WORK/proj_$method.h5"
  done
  "$ESA" calibrate --qk "$WORK/qk.h5" --energy 0.9 --eval-queries 16 -o "$WORK/proj_energy.h5" -q >"$WORK/cal_e.out" 2>&1
  check "calibrate --energy picks d' per layer" bash -c 'grep -qE "^ +0 +[0-9]+ " "$1"' _ "$WORK/cal_e.out"

  # --- the esa policy reads the projection (what it generates: scenario smollm2; the tiny
  # model's greedy continuations are mostly the stop token or a repeated control byte) ---
  run_policy "$TINY" esa "$WORK/proj_closed.h5" 2>"$WORK/gen.err" >/dev/null; rc=$?
  check "generate --policy esa --proj proj.h5 runs" \
    bash -c '[[ $0 -eq 0 ]] && grep -q "policy esa" "$1" && grep -q "^prefill " "$1"' $rc "$WORK/gen.err"
}

# --- mismatched and broken inputs ---------------------------------------------------------------------
scenario_errors() {
  need_scenario flow "$FLOW/qk.h5" "$FLOW/proj_closed.h5"
  local qk="$FLOW/qk.h5" proj="$FLOW/proj_closed.h5"
  expect_error "dump refuses to overwrite" "exists (pass --force" \
    "$ESA" dump --model "$TINY" --text "$TEXT" --tokens 256 --seq-len 256 -o "$qk" -q
  expect_error "dump: more tokens than the text has" "fewer than --tokens 100000000" \
    "$ESA" dump --model "$TINY" --text "$TEXT" --tokens 100000000 -o "$WORK/big.h5" -q
  expect_error "dump: bad --layers" "layer 2 does not exist" \
    "$ESA" dump --model "$TINY" --text "$TEXT" --layers 0,2 -o "$WORK/l.h5" -q
  expect_error "dump: unknown score space" "unknown --score-space 'diagonal'" \
    "$ESA" dump --model "$TINY" --text "$TEXT" --score-space diagonal -o "$WORK/s.h5" -q
  if [[ -n "$PY" ]]; then
    "$PY" "$HERE/h5_layout.py" drop-layer "$proj" "$WORK/1layers.h5" 1
    expect_error "proj.h5 with the wrong layer count" "1layers.h5: has 1 layers, this model has 2" \
      "$ESA" generate --model "$TINY" -p "hi" --policy esa --proj "$WORK/1layers.h5" --w 2048 -n 1
    "$PY" "$HERE/h5_layout.py" drop-layer "$qk" "$WORK/qk_missing.h5" 0
    expect_error "qk.h5 missing a layer" "qk_missing.h5: missing /layer_00/q_folded" \
      "$ESA" calibrate --qk "$WORK/qk_missing.h5" -o "$WORK/p_missing.h5" -q
    "$PY" "$HERE/h5_layout.py" zero-dataset "$qk" "$WORK/qk_zero.h5" /layer_01/k
    expect_error "all-zero keys are not a perfect fit" "qk_zero.h5: /layer_01/k is all zeros (degenerate" \
      "$ESA" calibrate --qk "$WORK/qk_zero.h5" --dim 4 -o "$WORK/p_zero.h5" -q
  fi
  expect_error "proj.h5 fitted in another score space" "fitted in score space 'rotated'" \
    "$ESA" generate --model "$TINY" -p "hi" --policy esa --proj "$proj" --score-space plain -n 1
  expect_error "proj.h5 fitted at another w" "w = 2048, but this run uses w = 512" \
    "$ESA" generate --model "$TINY" -p "hi" --policy esa --proj "$proj" --local 512 -n 1
  expect_error "d' larger than the key dimension" "--dim 17 is larger than the key dimension 16" \
    "$ESA" calibrate --qk "$qk" --dim 17 -o "$WORK/p17.h5" -q
  head -c $(($(stat -c %s "$qk") / 2)) "$qk" >"$WORK/qk_cut.h5"
  expect_error "truncated qk.h5" "qk_cut.h5" "$ESA" calibrate --qk "$WORK/qk_cut.h5" -o "$WORK/p_cut.h5" -q
  expect_error "a proj.h5 given as qk.h5" "not an esa esa-qk file" \
    "$ESA" calibrate --qk "$proj" -o "$WORK/p_wrong.h5" -q
  expect_error "unknown method" "unknown --method 'svd'" \
    "$ESA" calibrate --qk "$qk" --method svd -o "$WORK/p_svd.h5" -q
  expect_error "calibrate output in a missing folder" "does not exist" \
    "$ESA" calibrate --qk "$qk" --dim 4 -o "$WORK/no/such/p.h5" -q
  expect_error "calibrate onto its own input" "is the run's input --qk" \
    "$ESA" calibrate --qk "$qk" --dim 4 -o "$qk" --force -q
  if [[ -n "$PY" ]]; then check "the input dump is intact" "$PY" "$HERE/h5_layout.py" check-qk "$qk"; fi
  # SIGTERM during a long Adam fit: it ends within a step (not at the next layer group), 128 + 15.
  "$ESA" calibrate --qk "$qk" --dim 4 --method adam --epochs 100000 -o "$WORK/p_term.h5" -q 2>"$WORK/term.err" &
  local pid=$! t0
  sleep 1.5
  t0=$(date +%s%N)
  kill -TERM $pid
  wait $pid; rc=$?
  local waited_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  check "SIGTERM ends a long calibrate fit (exit $rc, ${waited_ms} ms)" test $rc -eq 143 -a $waited_ms -lt 10000
  check "… with one line and no output" test "$(wc -l <"$WORK/term.err")" -eq 1 -a ! -e "$WORK/p_term.h5"
  check "no partial outputs left behind" bash -c '! ls "$1"/*.partial-* "$2"/*.partial-* >/dev/null 2>&1' _ "$WORK" "$FLOW"
  check "no output from failed runs" bash -c '! ls "$1"/p_*.h5 "$1"/p17.h5 "$1"/big.h5 "$1"/l.h5 >/dev/null 2>&1' _ "$WORK"
}

run_scenarios "$SCENARIO" flow errors smollm2
