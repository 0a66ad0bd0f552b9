#!/usr/bin/env bash
# End to end: esa sweep on the embedded model over a 4-cell grid (2 cells calibrate a shared
# projection). SIGKILL mid-sweep then rerun: every cell once, none half-written, the same answers as
# an uninterrupted run; shards 1/3..3/3 merged equal the unsharded run; bad configs are one line.
# With WITH_MPI=1 (esa built with ESA_WITH_MPI): mpirun -np 3 gives the serial run's cells.
# Usage: test_sweep.sh ESA_BINARY MODEL TEXT REQUIRE_MODEL(0|1) PYTHON_WITH_H5PY EXPERIMENTS_DIR WITH_MPI(0|1)
set -uo pipefail
ESA="$1"; MODEL="$2"; TEXT="$3"; REQUIRE_MODEL="${4:-0}"; PY="${5:-}"; EXPERIMENTS="${6:-}"; WITH_MPI="${7:-0}"
HERE="$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=common.sh
source "$HERE/common.sh"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT

require_model_and_h5py "$MODEL" "$REQUIRE_MODEL" "$PY"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
cat >"$WORK/grid.toml" <<TOML
name = "test"
[fixed]
model = "$MODEL"
suite = "passkey"
lengths = "256,320"
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

"$ESA" sweep --config "$WORK/grid.toml" --dry-run >"$WORK/dry.out" 2>&1; rc=$?
check "dry run lists 4 cells" test $rc -eq 0 -a "$(grep -c "policy=" "$WORK/dry.out")" -eq 4
check "dry run marks the esa cells as calibrating" test "$(grep -c "(calibrates)" "$WORK/dry.out")" -eq 2

"$ESA" sweep --config "$WORK/grid.toml" -o "$WORK/ref.h5" >"$WORK/ref.out" 2>"$WORK/ref.err"; rc=$?
check "sweep succeeds" test $rc -eq 0
check "sweep reports 4 cells" grep -q "4 cells (4 run now, 0 from before, 0 failed)" "$WORK/ref.out"
check "one projection for the two esa cells (cached by content)" \
  test "$(ls "$WORK/ref.h5.cache" | grep -c '^proj-')" -eq 1
[[ -n "$PY" ]] && check "h5py reads sweep.h5 with the documented layout" \
  "$PY" "$HERE/h5_layout.py" check-sweep "$WORK/ref.h5" 4

if [[ -n "$PY" && -n "$EXPERIMENTS" ]] && "$PY" -c "import matplotlib" 2>/dev/null; then
  proj="$WORK/ref.h5.cache/$(ls "$WORK/ref.h5.cache" | grep '^proj-' | head -1)"
  "$PY" "$EXPERIMENTS/../scripts/plot.py" recall "$proj" -o "$WORK/recall" >/dev/null
  check "plot.py recall renders the cell's proj.h5" test -s "$WORK/recall.png" -a -s "$WORK/recall.pdf"
fi

# --- SIGKILL inside the second cell, then rerun ------------------------------------------------
"$ESA" sweep --config "$WORK/grid.toml" -o "$WORK/run.h5" --cache "$WORK/ref.h5.cache" >"$WORK/run1.out" \
  2>"$WORK/run1.err" &
pid=$!
# 4 cases per cell: the 5th finished case is inside the second cell.
kill_after_cases $pid "$WORK/run1.err" 5
n_cases=$(grep -cE "#0: (correct|wrong)" "$WORK/run1.err")
check "the sweep was killed after its first cell ($n_cases of 16 cases)" test "$n_cases" -ge 5 -a "$n_cases" -lt 16
"$ESA" sweep --config "$WORK/grid.toml" -o "$WORK/run.h5" --cache "$WORK/ref.h5.cache" >"$WORK/run2.out" 2>&1; rc=$?
check "the rerun completes" test $rc -eq 0
check "the rerun kept the finished cell" grep -qE "4 cells \([0-3] run now, [1-3] from before, 0 failed\)" \
  "$WORK/run2.out"
check "no temporary file is left" test -z "$(ls "$WORK" | grep partial)"
if [[ -n "$PY" ]]; then
  check "every cell once, none half-written" "$PY" "$HERE/h5_layout.py" check-sweep "$WORK/run.h5" 4
  "$PY" "$HERE/h5_layout.py" sweep-cells "$WORK/ref.h5" >"$WORK/ref.cells"
  "$PY" "$HERE/h5_layout.py" sweep-cells "$WORK/run.h5" >"$WORK/run.cells"
  check "killed + rerun gives the uninterrupted run's cells and answers" diff "$WORK/ref.cells" "$WORK/run.cells"
fi

# --- shards and merge --------------------------------------------------------------------------
for i in 1 2 3; do
  "$ESA" sweep --config "$WORK/grid.toml" --shard $i/3 -o "$WORK/s$i.h5" --cache "$WORK/ref.h5.cache" -q \
    >"$WORK/s$i.out" 2>&1 || fail "shard $i/3"
done
"$ESA" sweep --merge "$WORK/s1.h5" "$WORK/s2.h5" "$WORK/s3.h5" -o "$WORK/all.h5" >"$WORK/merge.out" 2>&1; rc=$?
check "merge succeeds" test $rc -eq 0
check "merge reports 4 cells" grep -q "4 cells from 3 files (0 with errors)" "$WORK/merge.out"
if [[ -n "$PY" ]]; then
  "$PY" "$HERE/h5_layout.py" sweep-cells "$WORK/all.h5" >"$WORK/all.cells"
  check "shards 1/3 + 2/3 + 3/3 merged = the unsharded run" diff "$WORK/ref.cells" "$WORK/all.cells"
fi

# --- MPI: dynamic cells over ranks, rank 0 writes -----------------------------------------------
if [[ "$WITH_MPI" == "1" ]]; then
  if ! command -v mpirun >/dev/null; then
    fail "esa was built with MPI but mpirun is not on PATH (install openmpi-bin)"
  else
    mpi_flags=(--oversubscribe -np 3)
    [[ "$(id -u)" == "0" ]] && mpi_flags+=(--allow-run-as-root)
    # A fresh cache: two workers calibrate the esa cells' shared projection at the same time.
    OMP_NUM_THREADS=1 mpirun "${mpi_flags[@]}" "$ESA" sweep --config "$WORK/grid.toml" -o "$WORK/mpi.h5" \
      >"$WORK/mpi.out" 2>"$WORK/mpi.err"; rc=$?
    check "mpirun -np 3 esa sweep succeeds" test $rc -eq 0
    check "rank 0 reports the cells once" grep -q "4 cells (4 run now, 0 from before, 0 failed)" "$WORK/mpi.out"
    check "both workers ran cells" test "$(grep -oE "done by rank [12]" "$WORK/mpi.err" | sort -u | wc -l)" -eq 2
    if [[ -n "$PY" ]]; then
      "$PY" "$HERE/h5_layout.py" sweep-cells "$WORK/mpi.h5" >"$WORK/mpi.cells"
      check "the MPI run's cells and answers = the serial run's" diff "$WORK/ref.cells" "$WORK/mpi.cells"
    fi
    OMP_NUM_THREADS=1 mpirun "${mpi_flags[@]}" "$ESA" sweep --config "$WORK/grid.toml" -o "$WORK/mpi.h5" \
      >"$WORK/mpi2.out" 2>&1; rc=$?
    check "an MPI rerun resumes: nothing to do" \
      grep -q "4 cells (0 run now, 4 from before, 0 failed)" "$WORK/mpi2.out"
  fi
fi

# --- the shipped grids are valid ---------------------------------------------------------------
if [[ -n "$EXPERIMENTS" ]]; then
  for f in "$EXPERIMENTS"/*.toml; do
    "$ESA" sweep --config "$f" --dry-run >"$WORK/exp.out" 2>&1; rc=$?
    check "$(basename "$f") parses and plans" test $rc -eq 0
  done
fi

# --- errors ------------------------------------------------------------------------------------
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
expect_error "merge of a results file" "not an esa esa-sweep file" \
  "$ESA" sweep --merge "$WORK/ref.h5.cache/$(ls "$WORK/ref.h5.cache" | grep '^proj-' | head -1)" -o "$WORK/x.h5"
expect_error "merge onto an existing output" "exists (pass --force" \
  "$ESA" sweep --merge "$WORK/s1.h5" -o "$WORK/all.h5"
sed 's/^name = "test"/name = "other"/' "$WORK/grid.toml" >"$WORK/other.toml"
"$ESA" sweep --config "$WORK/other.toml" --shard 1/3 -o "$WORK/other.h5" --cache "$WORK/ref.h5.cache" -q >/dev/null 2>&1
expect_error "merge of another grid's shard" "other.h5: made from another grid config than" \
  "$ESA" sweep --merge "$WORK/s1.h5" "$WORK/other.h5" -o "$WORK/x.h5"
check "no output from the failed runs" test ! -e "$WORK/x.h5"
finish
