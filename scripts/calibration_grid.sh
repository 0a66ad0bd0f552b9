#!/usr/bin/env bash
# The calibration comparison of bench/RESULTS.md: closed, adam and pca at d' = 8, 16, 32, 64 from
# one dump, then the Markdown summary (scripts/calibration_report.py).
# Usage: scripts/calibration_grid.sh [QK_H5] [OUT_DIR]
#   default QK_H5: out/calibration/qk.h5, made first when missing with
#   esa dump --text data/corpus/calibration.txt --tokens 50000 --seq-len 4096
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ESA="${ESA:-$ROOT/build/bin/esa}"
QK="${1:-$ROOT/out/calibration/qk.h5}"
OUT="${2:-$(dirname "$QK")}"
mkdir -p "$OUT"
if [[ ! -f "$QK" ]]; then
  bash "$ROOT/scripts/fetch_corpus.sh"
  "$ESA" dump --text "$ROOT/data/corpus/calibration.txt" --tokens 50000 --seq-len 4096 -o "$QK"
fi
for dim in 8 16 32 64; do
  for method in closed pca adam; do
    echo "== $method d'=$dim" >&2
    "$ESA" calibrate --qk "$QK" --method "$method" --dim "$dim" --force -q -o "$OUT/${method}_${dim}.h5" |
      tail -2 >&2
  done
done
PY=/usr/bin/python3; "$PY" -c "import h5py" 2>/dev/null || PY=python3
"$PY" "$ROOT/scripts/calibration_report.py" "$OUT"
