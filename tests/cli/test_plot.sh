#!/usr/bin/env bash
# scripts/plot.py renders every figure type, PNG and PDF, from the committed 4-cell sweep
# (tests/fixtures/sweep_small.h5, made by `esa sweep` on the embedded model) and from a
# results.h5 taken out of it; bad inputs give a one-line error.
# Usage: test_plot.sh PLOT_PY FIXTURES_DIR PYTHON_WITH_H5PY_AND_MATPLOTLIB
set -uo pipefail
PLOT="$1"; FIXTURES="$2"; PY="${3:-}"
HERE="$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=common.sh
source "$HERE/common.sh"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
if [[ -z "$PY" ]] || ! "$PY" -c "import matplotlib" 2>/dev/null; then
  echo "FAIL no python3 with h5py and matplotlib (run scripts/setup.sh)"; exit 1
fi
SWEEP="$FIXTURES/sweep_small.h5"
figure_ok() {  # figure_ok OUT: both files exist and are real images
  [[ -s "$1.png" && -s "$1.pdf" ]] && head -c 8 "$1.png" | grep -q PNG && head -c 5 "$1.pdf" | grep -q %PDF
}
"$PY" "$PLOT" heatmap "$SWEEP" -o "$WORK/heat" >/dev/null; check "heatmap from sweep.h5" figure_ok "$WORK/heat"
"$PY" "$PLOT" lengths "$SWEEP" -o "$WORK/len" >/dev/null; check "lengths from sweep.h5" figure_ok "$WORK/len"
"$PY" "$PLOT" ablation "$SWEEP" --x eps -o "$WORK/abl" >/dev/null
check "ablation (accuracy vs eps) from sweep.h5" figure_ok "$WORK/abl"
# A results.h5 (esa eval's layout) made from one cell of the sweep.
"$PY" - "$SWEEP" "$WORK/results.h5" <<'PYEOF'
import sys, h5py
with h5py.File(sys.argv[1], "r") as s, h5py.File(sys.argv[2], "w") as r:
    r.attrs["format"] = "esa-results"
    s.copy(s["cells"][sorted(s["cells"])[0]]["cases"], r, "cases")
PYEOF
"$PY" "$PLOT" heatmap "$WORK/results.h5" -o "$WORK/rheat" >/dev/null
check "heatmap from results.h5" figure_ok "$WORK/rheat"
"$PY" "$PLOT" lengths "$WORK/results.h5" "$SWEEP" -o "$WORK/both" >/dev/null
check "lengths from results.h5 and sweep.h5 together" figure_ok "$WORK/both"
check "--help lists the figures" bash -c "'$PY' '$PLOT' --help | grep -q 'recall   PROJ'"
expect_error "ablation without --x" "ablation needs --x" "$PY" "$PLOT" ablation "$SWEEP" -o "$WORK/x"
expect_error "ablation over a setting the sweep lacks" "no setting 'dim'" "$PY" "$PLOT" ablation "$SWEEP" --x dim -o "$WORK/x"
expect_error "a file that is not HDF5" "heat.png: not a readable HDF5 file" "$PY" "$PLOT" heatmap "$WORK/heat.png" -o "$WORK/x"
"$PY" -c "import h5py; h5py.File('$WORK/plain.h5', 'w').attrs['format'] = 'other'"
expect_error "an HDF5 file that is not esa's" "plain.h5: not an esa results or sweep file" \
  "$PY" "$PLOT" heatmap "$SWEEP" "$WORK/plain.h5" -o "$WORK/x"
expect_error "recall from a sweep file" "not an esa proj.h5" "$PY" "$PLOT" recall "$SWEEP" -o "$WORK/x"
expect_error "a missing input" "no such file" "$PY" "$PLOT" heatmap "$WORK/none.h5" -o "$WORK/x"
finish
