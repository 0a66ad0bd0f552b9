#!/usr/bin/env bash
# The test command (CI runs it through .ci/run): installs the dependencies, fetches the embedded
# model, builds, and runs every test with ctest. Model-dependent tests are required, not skipped.
#   scripts/test.sh              Release build in build/, the whole suite
#   scripts/test.sh --sanitize   clang build with AddressSanitizer + UndefinedBehaviorSanitizer and
#                                the libFuzzer harnesses in build-sanitize/: the suite again (any
#                                sanitizer report fails its test; the five longest end-to-end runs
#                                only with ESA_SANITIZE_ALL=1) plus a 60 s fuzz smoke run
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SANITIZE=0
if [[ "${1:-}" == "--sanitize" ]]; then SANITIZE=1; shift; fi
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
  export ESA_SANITIZED=1  # CLI tests leave out what takes minutes under ASan (test_hostile.sh)
else
  bash "$ROOT/scripts/build.sh" -DESA_REQUIRE_MODEL=ON "$@"
fi
cd "${ESA_BUILD_DIR:-$ROOT/build}"
if [[ $SANITIZE == 1 && "${ESA_SANITIZE_ALL:-0}" != 1 ]]; then
  # The longest end-to-end runs (minutes each in the plain build, 10+ under ASan: whole SmolLM2
  # forwards) run the library code the unit and CLI tests cover; ESA_SANITIZE_ALL=1 includes them.
  ctest --output-on-failure -j "${ESA_JOBS:-$(nproc)}" \
    -E "^PoliciesOnModel\\.|^LlamaGolden\\.SmolLm2|^cli_eval$|^cli_sweep$|^cli_calibrate$"
else
  ctest --output-on-failure -j "${ESA_JOBS:-$(nproc)}"
fi
