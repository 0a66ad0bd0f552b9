#!/usr/bin/env bash
# From a fresh clone to a first result: installs the dependencies, builds, fetches the embedded
# model, and runs the main job. (Today: describe the model and round-trip text through its
# tokenizer; calibration and evaluation join as they land.)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
bash "$ROOT/scripts/build.sh"
bash "$ROOT/scripts/fetch_model.sh"
ESA="${ESA_BUILD_DIR:-$ROOT/build}/bin/esa"
MODEL="$ROOT/data/models/SmolLM2-135M-Instruct.Q4_1.gguf"

echo; echo "== esa info"
"$ESA" info --model "$MODEL"

TEXT='The pass key is 71432. Remember it. 71432 is the pass key.'
echo; echo "== esa tokenize: \"$TEXT\""
"$ESA" tokenize --model "$MODEL" --text "$TEXT"
IDS="$("$ESA" tokenize --model "$MODEL" --text "$TEXT" --ids 2>/dev/null)"
BACK="$("$ESA" tokenize --model "$MODEL" --decode "$IDS")"
echo; echo "ids:     $IDS"
echo "decoded: $BACK"
if [[ "$BACK" == "$TEXT" ]]; then echo "round trip: ok"; else echo "round trip: MISMATCH" >&2; exit 1; fi
