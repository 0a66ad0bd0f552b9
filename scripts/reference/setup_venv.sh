#!/usr/bin/env bash
# Creates .venv-ref/ (git-ignored) with the pinned reference packages of requirements.txt, from
# PyPI. Needed only to regenerate fixtures under tests/fixtures/, never to build or test esa.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.venv-ref"
[[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --disable-pip-version-check -q -r "$ROOT/scripts/reference/requirements.txt"
echo "reference venv ready: $VENV/bin/python"
