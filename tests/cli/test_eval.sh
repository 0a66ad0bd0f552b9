#!/usr/bin/env bash
# End to end: esa eval. results.h5 has the documented layout (read by h5py); a run killed with
# SIGKILL and rerun with --resume ends with every case exactly once and the same answers as an
# uninterrupted run; bad flags and mismatched resumes give one-line errors.
# Scenarios (each a ctest entry e2e.eval.<name>; `all` runs every one):
#   smollm2  one run on the embedded model: the passkey table, progress, the results layout
#   ref      the uninterrupted reference run on the tiny model (a fixture: resume, errors need it)
#   resume   SIGKILL mid-run, then --resume: the reference's cases and answers; growing the grid
#   suites   niah, multi-niah, kv run and score on the tiny model; --dry-run prompt lengths
#   errors   one-line errors, nothing written
# Usage: test_eval.sh SCENARIO ESA_BINARY MODEL HAYSTACK REQUIRE_MODEL(0|1) PYTHON_WITH_H5PY
set -uo pipefail
SCENARIO="$1"; ESA="$2"; MODEL="$3"; HAYSTACK="$4"; REQUIRE_MODEL="${5:-0}"; PY="${6:-}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
BASE=(--suite passkey --policy full,streaming --select 32 --init 4 --chunk 64 --max-new 4)
# The tiny model's grid: 2 lengths x 5 depths x 2 policies = 20 cases, a few seconds in all.
TBASE=("${BASE[@]}" --depths 0:100:25)
# tiny_grid ARGS...: GRID=(the tiny model's grid, then ARGS)
tiny_grid() { GRID=(--model "$SHARED/ref/models/tiny_long.gguf" "${TBASE[@]}" --lengths 1024,2048 --local 128 "$@"); }

# --- the embedded model: 2 lengths x 3 depths x 2 policies = 12 short cases ----------------------
scenario_smollm2() {
  require_model_and_h5py "$MODEL" "$REQUIRE_MODEL" "$PY"
  "$ESA" eval --model "$MODEL" "${BASE[@]}" --depths 0:100:50 --lengths 256,320 --local 128 --seed 11 \
    -o "$WORK/ref.h5" >"$WORK/ref.out" 2>"$WORK/ref.err"; rc=$?
  check "eval succeeds" test $rc -eq 0
  check "eval prints the table (lengths x policies)" grep -qE "^ +length +full +streaming" "$WORK/ref.out"
  check "eval prints a row per length" grep -qE "^ +320 " "$WORK/ref.out"
  check "eval reports 12 cases" grep -q "12 cases (12 run now, 0 from before)" "$WORK/ref.out"
  check "progress on stderr: cases, tokens/s, ETA" grep -qE "eval case [0-9]+/12: .*tokens/s, ETA" "$WORK/ref.err"
  [[ -n "$PY" ]] && check "h5py reads results.h5 with the documented layout" \
    "$PY" "$HERE/h5_layout.py" check-results "$WORK/ref.h5" 12
}

# --- the tiny model: one uninterrupted run, the reference ---------------------------------------
scenario_ref() {
  require_h5py "$REQUIRE_MODEL" "$PY"
  tiny_models "$WORK/models"
  tiny_grid --seed 11
  "$ESA" eval "${GRID[@]}" -o "$WORK/ref.h5" >"$WORK/ref.out" 2>"$WORK/ref.err"; rc=$?
  check "eval on the tiny model succeeds" test $rc -eq 0
  check "eval prints the table (lengths x policies)" grep -qE "^ +length +full +streaming" "$WORK/ref.out"
  check "eval prints a row per length" grep -qE "^ +2048 " "$WORK/ref.out"
  check "eval reports 20 cases" grep -q "20 cases (20 run now, 0 from before)" "$WORK/ref.out"
  check "every finished case is logged on stderr" test "$(grep -cE "#0: (correct|wrong)" "$WORK/ref.err")" -eq 20
  [[ -n "$PY" ]] && check "h5py reads results.h5 with the documented layout" \
    "$PY" "$HERE/h5_layout.py" check-results "$WORK/ref.h5" 20
}

# --- killed with SIGKILL mid-run, then --resume ------------------------------------------------
scenario_resume() {
  need_scenario ref "$SHARED/ref/ref.h5"
  tiny_grid --seed 11
  set -- "${GRID[@]}"
  # Killed right after the 4th finished case (each is logged on stderr).
  python3 "$HERE/signal_after.py" 4 KILL "$WORK/run1.err" "$ESA" eval "$@" -o "$WORK/run.h5" >"$WORK/run1.out"
  done_before=$(grep -cE "#0: (correct|wrong)" "$WORK/run1.err")
  check "the run was killed mid-grid ($done_before of 20 cases logged)" test "$done_before" -ge 4 -a "$done_before" -lt 20
  check "the killed run left a readable results.h5" test -f "$WORK/run.h5"
  expect_error "an existing output needs --resume or --force" "exists (pass --force" \
    "$ESA" eval "$@" -o "$WORK/run.h5"
  tiny_grid --seed 12
  expect_error "--resume with another seed is refused" "the file has 'seed = 11', this run 'seed = 12'" \
    "$ESA" eval "${GRID[@]}" -o "$WORK/run.h5" --resume
  expect_error "--resume with another budget is refused" "policy.full" \
    "$ESA" eval --model "$SHARED/ref/models/tiny_long.gguf" "${TBASE[@]}" --lengths 1024,2048 --local 96 --seed 11 \
    -o "$WORK/run.h5" --resume
  "$ESA" eval "$@" -o "$WORK/run.h5" --resume >"$WORK/run2.out" 2>"$WORK/run2.err"; rc=$?
  check "the resumed run succeeds" test $rc -eq 0
  check "the resumed run kept the killed run's cases" \
    grep -qE "20 cases \([0-9]+ run now, ([4-9]|1[0-9]) from before\)" "$WORK/run2.out"
  check "no temporary file is left" test -z "$(ls "$WORK" | grep partial)"
  if [[ -n "$PY" ]]; then
    check "every case exactly once after the resume" "$PY" "$HERE/h5_layout.py" check-results "$WORK/run.h5" 20
    "$PY" "$HERE/h5_layout.py" cases "$SHARED/ref/ref.h5" >"$WORK/ref.cases"
    "$PY" "$HERE/h5_layout.py" cases "$WORK/run.h5" >"$WORK/run.cases"
    check "killed + resumed gives the uninterrupted run's answers" diff "$WORK/ref.cases" "$WORK/run.cases"
  fi
  if [[ -n "$PY" ]]; then  # rows esa could not have written are refused, not carried and counted
    for bad in "depth nan:depth nan is outside [0, 1]" "length -3:length -3 is not 1" \
               "dup 0:a second row for case"; do
      "$PY" "$HERE/h5_layout.py" corrupt-case "$WORK/run.h5" "$WORK/bad.h5" ${bad%%:*}
      expect_error "--resume over a corrupt row (${bad%%:*})" "bad.h5: /cases row" \
        "$ESA" eval "$@" -o "$WORK/bad.h5" --resume
      expect_error "… naming what is wrong" "${bad#*:}" "$ESA" eval "$@" -o "$WORK/bad.h5" --resume
    done
  fi
  "$ESA" eval "$@" -o "$WORK/run.h5" --resume >"$WORK/run3.out" 2>&1
  check "resuming a complete run redoes nothing" grep -q "20 cases (0 run now, 20 from before)" "$WORK/run3.out"
  # Growing the grid: a new length runs only its own cases.
  "$ESA" eval --model "$SHARED/ref/models/tiny_long.gguf" "${TBASE[@]}" --lengths 1024,2048,1536 --local 128 --seed 11 \
    -o "$WORK/run.h5" --resume -q >"$WORK/run4.out" 2>&1
  check "a resumed run with a longer grid adds only the new cases" grep -q "30 cases (10 run now, 20 from before)" \
    "$WORK/run4.out"
}

# --- the other suites run and score (one short case each) --------------------------------------
scenario_suites() {
  require_h5py "$REQUIRE_MODEL" "$PY"
  tiny_models "$WORK/models"
  local tiny="$WORK/models/tiny_long.gguf" suite
  for suite in niah multi-niah kv; do
    "$ESA" eval --model "$tiny" --suite $suite --haystack "$HAYSTACK" --lengths 1000 --depths 50 --policy full \
      --max-new 2 -o "$WORK/$suite.h5" -q >"$WORK/$suite.out" 2>&1; rc=$?
    check "eval --suite $suite runs" test $rc -eq 0
    [[ -n "$PY" ]] && check "h5py reads the $suite results" "$PY" "$HERE/h5_layout.py" check-results "$WORK/$suite.h5" 1
  done
  "$ESA" eval --model "$tiny" --suite multi-niah --variant multivalue --needles 3 --haystack "$HAYSTACK" \
    --lengths 800,1600 --depths 0:100:50 --samples 2 --dry-run >"$WORK/dry.out" 2>&1; rc=$?
  check "--dry-run lists every case" test $rc -eq 0 -a "$(grep -c "tokens  needle at" "$WORK/dry.out")" -eq 12
  check "--dry-run prompts have their exact lengths" \
    test "$(grep -cE "^ +(800|1600) .* (800|1600) tokens  needle" "$WORK/dry.out")" -eq 12
}

# --- one-line errors, nothing written ----------------------------------------------------------
scenario_errors() {
  need_scenario ref "$SHARED/ref/ref.h5"
  local tiny="$SHARED/ref/models/tiny_long.gguf"
  expect_error "unknown suite" "unknown suite 'needle'" "$ESA" eval --suite needle -o "$WORK/x.h5"
  expect_error "unknown policy" "unknown" "$ESA" eval --policy full,sparse -o "$WORK/x.h5"
  expect_error "a policy twice" "lists 'full' twice" "$ESA" eval --policy full,full -o "$WORK/x.h5"
  expect_error "bad --lengths" "bad --lengths" "$ESA" eval --lengths 4k,,8k -o "$WORK/x.h5"
  expect_error "bad --depths" "outside [0, 100]" "$ESA" eval --depths 0:110:10 -o "$WORK/x.h5"
  expect_error "bad --samples" "--samples must be 1 to 100000" "$ESA" eval --samples 0 -o "$WORK/x.h5"
  expect_error "bad --chat" "bad --chat 'maybe'" "$ESA" eval --chat maybe -o "$WORK/x.h5"
  expect_error "--resume with --force" "contradict" "$ESA" eval --resume --force -o "$WORK/x.h5"
  expect_error "missing haystack" "/nonexistent/hay.txt" \
    "$ESA" eval --model "$tiny" --suite niah --haystack /nonexistent/hay.txt -o "$WORK/x.h5"
  expect_error "a length too short for the task" "cannot hold its fixed parts" \
    "$ESA" eval --model "$tiny" --lengths 16 --depths 50 -o "$WORK/x.h5" -q
  expect_error "output folder missing" "does not exist" "$ESA" eval --model "$tiny" -o "$WORK/nope/x.h5"
  tiny_grid --seed 11
  set -- "${GRID[@]}"
  if [[ -n "$PY" ]]; then
    cp "$SHARED/ref/ref.h5" "$WORK/other.h5"
    "$PY" "$HERE/h5_layout.py" set-attr "$WORK/other.h5" format esa-qk
    expect_error "--resume of a file that is not esa results" "not an esa esa-results file" \
      "$ESA" eval "$@" -o "$WORK/other.h5" --resume
  fi
  printf 'not hdf5' >"$WORK/junk.h5"
  expect_error "--resume of a corrupt file" "junk.h5: not a readable HDF5 file" \
    "$ESA" eval "$@" -o "$WORK/junk.h5" --resume
  if [[ -n "$PY" ]]; then
    "$ESA" dump --model "$tiny" --text "$HAYSTACK" --tokens 256 --seq-len 256 --layers all -o "$WORK/qk.h5" -q \
      >/dev/null 2>&1
    "$PY" "$HERE/h5_layout.py" identity-proj "$WORK/qk.h5" "$WORK/proj.h5"
    "$PY" "$HERE/h5_layout.py" set-attr "$WORK/proj.h5" model_sha256 "$(printf '0%.0s' {1..64})"
    expect_error "a projection fitted on another model" "fitted on another model" \
      "$ESA" eval --model "$tiny" --policy esa --proj "$WORK/proj.h5" -o "$WORK/x.h5"
  fi
  check "no output or temporary file from the failed runs" test -z "$(ls "$WORK" | grep -E '^x\.h5|partial')"
}

run_scenarios "$SCENARIO" ref resume suites errors smollm2
