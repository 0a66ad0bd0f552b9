#!/usr/bin/env bash
# Runs one harness: first every input of regressions/<name>/ once (each crashed before), then
# fuzzing from corpus/<name>/ for SECONDS. New inputs go to a temporary folder, never the repo's
# corpus; a crash leaves its input in $ESA_FUZZ_ARTIFACTS (default: the current folder).
# Usage: run_fuzz.sh HARNESS_BINARY TESTS_FUZZ_DIR SECONDS [extra libFuzzer flags...]
set -uo pipefail
BIN="$1"; DIR="$2"; SECONDS_TO_RUN="$3"; shift 3
NAME="$(basename "$BIN")"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
ARTIFACTS="${ESA_FUZZ_ARTIFACTS:-$PWD}"
# A malloc that cannot be served returns NULL, as in production (libhdf5 checks for it and reports
# an error), instead of ASan aborting; one allocation is judged by its effect (a std::bad_alloc
# escaping esa, or resident memory past -rss_limit_mb), not by its requested size.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1"
# libhdf5 1.10 leaks a few hundred bytes on some of its error paths (known_upstream/fuzz_hdf5):
# no leak detection in that harness (the HDF5 unit tests under ASan keep it for esa's own paths).
[[ "$NAME" == fuzz_hdf5 ]] && export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"
LIMITS=(-rss_limit_mb=4096 -malloc_limit_mb=1048576)
mkdir -p "$ARTIFACTS"
if compgen -G "$DIR/regressions/$NAME/*" >/dev/null; then
  "$BIN" "${LIMITS[@]}" "$DIR"/regressions/"$NAME"/* || { echo "$NAME: a regression input fails again"; exit 1; }
fi
# -rss_limit_mb: an input that makes esa use gigabytes is an allocation bomb, a finding.
"$BIN" -max_total_time="$SECONDS_TO_RUN" -timeout=30 "${LIMITS[@]}" -print_final_stats=1 \
  -artifact_prefix="$ARTIFACTS/$NAME-" "$@" "$WORK" "$DIR/corpus/$NAME"
