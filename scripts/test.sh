#!/usr/bin/env bash
# The test command (CI runs it through .ci/run): installs the dependencies, fetches the embedded
# model, builds, and runs the tests with ctest. Model-dependent tests are required, not skipped.
#   scripts/test.sh              Release build in build/: every tier (unit, model, e2e, gpu; see
#                                tests/CMakeLists.txt and README "Tests")
#   scripts/test.sh --sanitize   clang build with AddressSanitizer + UndefinedBehaviorSanitizer and
#                                the libFuzzer harnesses in build-sanitize/: the suite again without
#                                the entries labelled `long` (whole-SmolLM2 forwards, minutes each,
#                                10+ under ASan), plus a 60 s fuzz smoke run; any sanitizer report
#                                fails its test
#   scripts/test.sh [--sanitize] --all   every entry, the long ones included (also ESA_SANITIZE_ALL=1)
# ESA_TEST_TIERS=<label regex> runs only those tiers, e.g. ESA_TEST_TIERS=unit or 'unit|e2e'
# ("all": every tier). Further arguments go to cmake's configure step.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SANITIZE=0
ALL=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --sanitize) SANITIZE=1; shift ;;
    --all) ALL=1; shift ;;
    *) break ;;
  esac
done
[[ "${ESA_SANITIZE_ALL:-0}" == 1 ]] && ALL=1
ESA_SETUP_SANITIZE=$SANITIZE bash "$ROOT/scripts/setup.sh"
bash "$ROOT/scripts/fetch_model.sh"
bash "$ROOT/scripts/fetch_corpus.sh"  # the niah haystack (tests/cli/test_eval.sh)
if [[ $SANITIZE == 1 ]]; then
  export ESA_BUILD_DIR="${ESA_BUILD_DIR:-$ROOT/build-sanitize}"
  # CUDA off: nvcc does not take clang's sanitizer flags, and no GPU runs here anyway; MPI off:
  # Open MPI's own allocations trip LeakSanitizer (the MPI path is tested in the plain build).
  CC=clang CXX=clang++ bash "$ROOT/scripts/build.sh" -DESA_REQUIRE_MODEL=ON -DESA_SANITIZE=ON -DESA_FUZZ=ON \
    -DESA_WITH_CUDA=OFF -DESA_WITH_MPI=OFF -DESA_BUILD_BENCH=OFF "$@"
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
  export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$ROOT/tests/sanitize/lsan.supp:print_suppressions=0}"
else
  bash "$ROOT/scripts/build.sh" -DESA_REQUIRE_MODEL=ON "$@"
fi
cd "${ESA_BUILD_DIR:-$ROOT/build}"
SELECT=()
if [[ -n "${ESA_TEST_TIERS:-}" && "${ESA_TEST_TIERS}" != all ]]; then SELECT+=(-L "$ESA_TEST_TIERS"); fi
# The long entries (label `long`) run the library code that the unit and e2e entries cover, on the
# whole embedded model; under ASan they take 10+ minutes each.
if [[ $SANITIZE == 1 && $ALL == 0 ]]; then SELECT+=(-LE long); fi
ctest --output-on-failure -j "${ESA_JOBS:-$(nproc)}" "${SELECT[@]}"
