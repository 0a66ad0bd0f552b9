#!/usr/bin/env bash
# End to end: esa sweep over a 4-cell grid (2 cells calibrate a shared projection), on the tiny
# model (only that cells are reproduced, resumed and merged identically matters, not the answers).
# SIGKILL mid-sweep then rerun: every cell once, none half-written, the same answers as an
# uninterrupted run; shards 1/3..3/3 merged equal the unsharded run; bad configs are one line.
# With WITH_MPI=1 (esa built with ESA_WITH_MPI): mpirun -np 3 gives the serial run's cells.
# Scenarios (each a ctest entry e2e.sweep.<name>; `all` runs every one):
#   plan     --dry-run of the grid and of every shipped experiments/*.toml
#   ref      the uninterrupted reference sweep (a fixture: resume, shards, mpi need it)
#   resume   SIGKILL inside the second cell, then a rerun
#   shards   shards 1/3..3/3 + --merge = the reference; merge errors
#   mpi      mpirun -np 3 = the reference; an MPI rerun resumes (skipped without MPI)
#   errors   bad configs and --shard: one-line errors, no output
#   reuse    finished cells are reused only by the same grid over the same files: a rerun after the
#            model's contents or the grid changed is refused; merging two different results of one
#            cell is refused; an output that names an input, or that another run holds, is refused
# Usage: test_sweep.sh SCENARIO ESA_BINARY MODEL TEXT REQUIRE_MODEL(0|1) PYTHON_WITH_H5PY EXPERIMENTS_DIR WITH_MPI(0|1)
# (MODEL, the embedded model, is only named by the shipped grids that `plan` dry-runs.)
set -uo pipefail
SCENARIO="$1"; ESA="$2"; MODEL="$3"; TEXT="$4"; REQUIRE_MODEL="${5:-0}"; PY="${6:-}"; EXPERIMENTS="${7:-}"
WITH_MPI="${8:-0}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
init_shared
REF="$SHARED/ref"
GRID="$REF/grid.toml"

# write_grid FILE MODEL: the 4-cell test grid (4 passkey cases per cell).
write_grid() {
  cat >"$1" <<TOML
name = "test"
[fixed]
model = "$2"
suite = "passkey"
lengths = "1024,2048"
depths = "0,100"
max_new = 4
init = 4
local = 128
select = 32
chunk = 64
dim = 8
calib_text = "$TEXT"
calib_tokens = 512
calib_seq_len = 256
[axes]
policy = ["streaming", "esa"]
eps = [1, 3]
TOML
}

scenario_plan() {
  tiny_models "$WORK/models"
  write_grid "$WORK/grid.toml" "$WORK/models/tiny_long.gguf"
  "$ESA" sweep --config "$WORK/grid.toml" --dry-run >"$WORK/dry.out" 2>&1; rc=$?
  check "dry run lists 4 cells" test $rc -eq 0 -a "$(grep -c "policy=" "$WORK/dry.out")" -eq 4
  check "dry run marks the esa cells as calibrating" test "$(grep -c "(calibrates)" "$WORK/dry.out")" -eq 2
  # --- the shipped grids are valid ---
  if [[ -n "$EXPERIMENTS" ]]; then
    for f in "$EXPERIMENTS"/*.toml; do
      "$ESA" sweep --config "$f" --dry-run >"$WORK/exp.out" 2>&1; rc=$?
      check "$(basename "$f") parses and plans" test $rc -eq 0
    done
  fi
}

scenario_ref() {
  require_h5py "$REQUIRE_MODEL" "$PY"
  tiny_models "$WORK/models"
  write_grid "$GRID" "$WORK/models/tiny_long.gguf"
  "$ESA" sweep --config "$GRID" -o "$WORK/ref.h5" >"$WORK/ref.out" 2>"$WORK/ref.err"; rc=$?
  check "sweep succeeds" test $rc -eq 0
  check "sweep reports 4 cells" grep -q "4 cells (4 run now, 0 from before, 0 failed)" "$WORK/ref.out"
  check "one projection for the two esa cells (cached by content)" \
    test "$(ls "$WORK/ref.h5.cache" | grep -c '^proj-')" -eq 1
  if [[ -n "$PY" ]]; then
    check "h5py reads sweep.h5 with the documented layout" "$PY" "$HERE/h5_layout.py" check-sweep "$WORK/ref.h5" 4
    "$PY" "$HERE/h5_layout.py" sweep-cells "$WORK/ref.h5" >"$WORK/ref.cells"
  fi
  if [[ -n "$PY" && -n "$EXPERIMENTS" ]] && "$PY" -c "import matplotlib" 2>/dev/null; then
    proj="$WORK/ref.h5.cache/$(ls "$WORK/ref.h5.cache" | grep '^proj-' | head -1)"
    "$PY" "$EXPERIMENTS/../scripts/plot.py" recall "$proj" -o "$WORK/recall" >/dev/null
    check "plot.py recall renders the cell's proj.h5" test -s "$WORK/recall.png" -a -s "$WORK/recall.pdf"
  fi
}

# --- SIGKILL inside the second cell, then rerun ------------------------------------------------
scenario_resume() {
  need_scenario ref "$REF/ref.h5"
  # 4 cases per cell: killed right after the 5th finished case, inside the second cell.
  python3 "$HERE/signal_after.py" 5 KILL "$WORK/run1.err" \
    "$ESA" sweep --config "$GRID" -o "$WORK/run.h5" --cache "$REF/ref.h5.cache" >"$WORK/run1.out"
  n_cases=$(grep -cE "#0: (correct|wrong)" "$WORK/run1.err")
  check "the sweep was killed after its first cell ($n_cases of 16 cases)" test "$n_cases" -ge 5 -a "$n_cases" -lt 16
  "$ESA" sweep --config "$GRID" -o "$WORK/run.h5" --cache "$REF/ref.h5.cache" >"$WORK/run2.out" 2>&1; rc=$?
  check "the rerun completes" test $rc -eq 0
  check "the rerun kept the finished cell" grep -qE "4 cells \([0-3] run now, [1-3] from before, 0 failed\)" \
    "$WORK/run2.out"
  check "no temporary file is left" test -z "$(ls "$WORK" | grep partial)"
  if [[ -n "$PY" ]]; then
    check "every cell once, none half-written" "$PY" "$HERE/h5_layout.py" check-sweep "$WORK/run.h5" 4
    "$PY" "$HERE/h5_layout.py" sweep-cells "$WORK/run.h5" >"$WORK/run.cells"
    check "killed + rerun gives the uninterrupted run's cells and answers" diff "$REF/ref.cells" "$WORK/run.cells"
  fi
}

# --- shards and merge --------------------------------------------------------------------------
scenario_shards() {
  need_scenario ref "$REF/ref.h5"
  for i in 1 2 3; do
    "$ESA" sweep --config "$GRID" --shard $i/3 -o "$WORK/s$i.h5" --cache "$REF/ref.h5.cache" -q \
      >"$WORK/s$i.out" 2>&1 || fail "shard $i/3"
  done
  "$ESA" sweep --merge "$WORK/s1.h5" "$WORK/s2.h5" "$WORK/s3.h5" -o "$WORK/all.h5" >"$WORK/merge.out" 2>&1; rc=$?
  check "merge succeeds" test $rc -eq 0
  check "merge reports 4 cells" grep -q "4 cells from 3 files (0 with errors)" "$WORK/merge.out"
  if [[ -n "$PY" ]]; then
    "$PY" "$HERE/h5_layout.py" sweep-cells "$WORK/all.h5" >"$WORK/all.cells"
    check "shards 1/3 + 2/3 + 3/3 merged = the unsharded run" diff "$REF/ref.cells" "$WORK/all.cells"
  fi
  expect_error "merge of a results file" "not an esa esa-sweep file" \
    "$ESA" sweep --merge "$REF/ref.h5.cache/$(ls "$REF/ref.h5.cache" | grep '^proj-' | head -1)" -o "$WORK/x.h5"
  expect_error "merge onto an existing output" "exists (pass --force" \
    "$ESA" sweep --merge "$WORK/s1.h5" -o "$WORK/all.h5"
  sed 's/^name = "test"/name = "other"/' "$GRID" >"$WORK/other.toml"
  "$ESA" sweep --config "$WORK/other.toml" --shard 1/3 -o "$WORK/other.h5" --cache "$REF/ref.h5.cache" -q >/dev/null 2>&1
  expect_error "merge of another grid's shard" "other.h5: made from another grid config than" \
    "$ESA" sweep --merge "$WORK/s1.h5" "$WORK/other.h5" -o "$WORK/x.h5"
  check "no output from the failed merges" test ! -e "$WORK/x.h5"
}

# --- MPI: dynamic cells over ranks, rank 0 writes -----------------------------------------------
scenario_mpi() {
  if [[ "$WITH_MPI" != "1" ]]; then echo "skip: esa built without MPI"; return; fi
  need_scenario ref "$REF/ref.h5"
  if ! command -v mpirun >/dev/null; then
    fail "esa was built with MPI but mpirun is not on PATH (install openmpi-bin)"; return
  fi
  local mpi_flags=(--oversubscribe -np 3)
  [[ "$(id -u)" == "0" ]] && mpi_flags+=(--allow-run-as-root)
  # A fresh cache: two workers calibrate the esa cells' shared projection at the same time.
  OMP_NUM_THREADS=1 mpirun "${mpi_flags[@]}" "$ESA" sweep --config "$GRID" -o "$WORK/mpi.h5" \
    >"$WORK/mpi.out" 2>"$WORK/mpi.err"; rc=$?
  check "mpirun -np 3 esa sweep succeeds" test $rc -eq 0
  check "rank 0 reports the cells once" grep -q "4 cells (4 run now, 0 from before, 0 failed)" "$WORK/mpi.out"
  check "both workers ran cells" test "$(grep -oE "done by rank [12]" "$WORK/mpi.err" | sort -u | wc -l)" -eq 2
  if [[ -n "$PY" ]]; then
    "$PY" "$HERE/h5_layout.py" sweep-cells "$WORK/mpi.h5" >"$WORK/mpi.cells"
    check "the MPI run's cells and answers = the serial run's" diff "$REF/ref.cells" "$WORK/mpi.cells"
  fi
  OMP_NUM_THREADS=1 mpirun "${mpi_flags[@]}" "$ESA" sweep --config "$GRID" -o "$WORK/mpi.h5" \
    >"$WORK/mpi2.out" 2>&1; rc=$?
  check "an MPI rerun resumes: nothing to do" grep -q "4 cells (0 run now, 4 from before, 0 failed)" "$WORK/mpi2.out"
}

# --- errors ------------------------------------------------------------------------------------
scenario_errors() {
  tiny_models "$WORK/models"
  write_grid "$WORK/grid.toml" "$WORK/models/tiny_long.gguf"
  printf '[fixed]\nepz = 3\n' >"$WORK/bad.toml"
  expect_error "unknown key, with a suggestion" "bad.toml:2: unknown key 'epz' (did you mean 'eps'?)" \
    "$ESA" sweep --config "$WORK/bad.toml" -o "$WORK/x.h5"
  printf '[axes]\neps = []\n' >"$WORK/bad.toml"
  expect_error "empty axis" "axis 'eps' is empty" "$ESA" sweep --config "$WORK/bad.toml" -o "$WORK/x.h5"
  printf '[fixed]\npolicy = "full"\ndim = 8\n' >"$WORK/bad.toml"
  expect_error "calibration without a projection policy" "no cell uses a projection" \
    "$ESA" sweep --config "$WORK/bad.toml" -o "$WORK/x.h5"
  expect_error "bad shard" "bad --shard '4/3'" "$ESA" sweep --config "$WORK/grid.toml" --shard 4/3 -o "$WORK/x.h5"
  expect_error "missing config" "/nonexistent.toml" "$ESA" sweep --config /nonexistent.toml -o "$WORK/x.h5"
  check "no output from the failed runs" test ! -e "$WORK/x.h5"
}

# --- what makes a finished cell reusable ------------------------------------------------------
scenario_reuse() {
  tiny_models "$WORK/models"
  cp "$WORK/models/tiny_long.gguf" "$WORK/m.gguf"
  cat >"$WORK/g.toml" <<TOML
name = "reuse"
[fixed]
model = "$WORK/m.gguf"
suite = "passkey"
lengths = "1024"
depths = "0,100"
max_new = 4
init = 4
local = 128
chunk = 64
[axes]
policy = ["streaming", "full"]
TOML
  "$ESA" sweep --config "$WORK/g.toml" -o "$WORK/r1.h5" -q >"$WORK/r1.out" 2>&1 || fail "the first sweep"
  "$ESA" sweep --config "$WORK/g.toml" -o "$WORK/r1.h5" -q >"$WORK/r1b.out" 2>&1
  check "an unchanged rerun reuses every cell" grep -q "2 cells (0 run now, 2 from before, 0 failed)" "$WORK/r1b.out"
  cp "$WORK/r1.h5" "$WORK/before.h5"
  # The same path, other weights: the finished cells no longer describe this model.
  cp "$WORK/models/tiny.gguf" "$WORK/m.gguf"
  expect_error "a rerun over a changed model file" "r1.h5: the finished cells read other files" \
    "$ESA" sweep --config "$WORK/g.toml" -o "$WORK/r1.h5" -q
  sed 's/max_new = 4/max_new = 5/' "$WORK/g.toml" >"$WORK/g2.toml"
  expect_error "a rerun of an edited grid" "r1.h5: made from another grid config than" \
    "$ESA" sweep --config "$WORK/g2.toml" -o "$WORK/r1.h5" -q
  cmp -s "$WORK/r1.h5" "$WORK/before.h5"; check "the refused reruns left the output as it was" test $? -eq 0
  "$ESA" sweep --config "$WORK/g.toml" -o "$WORK/r2.h5" -q >/dev/null 2>&1 || fail "the sweep over the other model"
  expect_error "a merge of two different results of one cell" "hold different results for it" \
    "$ESA" sweep --merge "$WORK/r1.h5" "$WORK/r2.h5" -o "$WORK/x.h5"
  expect_error "an output that is one of the merged files" "is the run's input --merge" \
    "$ESA" sweep --merge "$WORK/r1.h5" "$WORK/r2.h5" -o "$WORK/r2.h5" --force
  expect_error "an output that is the model" "is the run's input --model" \
    "$ESA" eval -m "$WORK/m.gguf" --suite passkey --lengths 1k --depths 0 --policy full -o "$WORK/m.gguf" --force
  check "the model is intact" cmp -s "$WORK/m.gguf" "$WORK/models/tiny.gguf"
  # Two runs on one output: the second is refused while the first holds it, the first completes.
  "$ESA" eval -m "$WORK/m.gguf" --suite passkey --lengths 1k,2k --depths 0:100:10 --samples 3 --policy full \
    -o "$WORK/e.h5" --quiet >"$WORK/e1.out" 2>&1 &
  local first=$!
  for _ in $(seq 100); do [[ -e "$WORK/e.h5.lock" ]] && break; sleep 0.05; done
  expect_error "a second run on an output in use" "e.h5: another esa run (pid $first) is writing it" \
    "$ESA" eval -m "$WORK/m.gguf" --suite passkey --lengths 1k --depths 0 --policy full -o "$WORK/e.h5" --force
  wait $first; check "the first run completes" test $? -eq 0
  check "the first run's results are whole" grep -q "e.h5: 66 cases (66 run now" "$WORK/e1.out"
  check "no lock or temporary file is left" test -z "$(ls "$WORK" | grep -E 'lock|partial')"
  check "no output from the refused runs" test ! -e "$WORK/x.h5"
}

run_scenarios "$SCENARIO" plan ref resume shards mpi errors reuse
