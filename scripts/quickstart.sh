#!/usr/bin/env bash
# From a fresh clone to a first result: installs the dependencies, builds, fetches the embedded
# model and the essay corpus, describes the model, round-trips text through its tokenizer, then
# the main job, small: dump Q/K of 8k calibration tokens, fit 16-dimensional projections, and
# score passkey at 2k/4k/8k/16k with full, streaming and esa attention (about 13 minutes on 2
# cores after the build; full attention at 16k alone takes 4-5). Outputs go to $ESA_QUICKSTART_DIR (default build/quickstart).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
bash "$ROOT/scripts/build.sh"
bash "$ROOT/scripts/fetch_model.sh"
bash "$ROOT/scripts/fetch_corpus.sh"
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

# --- the main job, small -----------------------------------------------------------------------
OUT="${ESA_QUICKSTART_DIR:-${ESA_BUILD_DIR:-$ROOT/build}/quickstart}"
mkdir -p "$OUT"
# One budget for every step: the esa policy scores with queries rotated to position w = --local,
# so the dump records them there too. ε = 3 (proximity half-width) rather than the default 1: with
# 1, esa attends only parts of the 25-token needle and this small model misses it at 8k-16k
# (bench/RESULTS.md, Retrieval).
LOCAL=1024; SELECT=512; EPS=3
echo; echo "== esa dump: Q/K of 8192 calibration tokens (4 sequences of 2048)"
"$ESA" dump --model "$MODEL" --text "$ROOT/data/corpus/calibration.txt" --tokens 8192 --seq-len 2048 --w $LOCAL \
  -o "$OUT/qk.h5" --force
echo; echo "== esa calibrate: 16-dimensional projections (closed form), held-out recall per layer"
"$ESA" calibrate --qk "$OUT/qk.h5" --dim 16 -o "$OUT/proj.h5" --force | tail -4
echo; echo "== esa eval: passkey, 2k-16k tokens, needle at 50%, full vs streaming vs esa" \
  "(init 64, local $LOCAL, select $SELECT, eps $EPS)"
"$ESA" eval --model "$MODEL" --suite passkey --lengths 2k,4k,8k,16k --depths 50 --policy full,streaming,esa \
  --proj "$OUT/proj.h5" --local $LOCAL --select $SELECT --eps $EPS -o "$OUT/passkey.h5" --force
echo; echo "every case is in $OUT/passkey.h5 (h5py: f['cases/generated'], f['cases/correct'], ...)"
