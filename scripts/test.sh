#!/usr/bin/env bash
# The test command (CI runs it through .ci/run): installs the dependencies, fetches the embedded
# model, builds, and runs every test with ctest. Model-dependent tests are required, not skipped.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
bash "$ROOT/scripts/fetch_model.sh"
bash "$ROOT/scripts/fetch_corpus.sh"  # the niah haystack (tests/cli/test_eval.sh)
bash "$ROOT/scripts/build.sh" -DESA_REQUIRE_MODEL=ON "$@"
cd "${ESA_BUILD_DIR:-$ROOT/build}"
ctest --output-on-failure -j "${ESA_JOBS:-$(nproc)}"
