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
mkdir -p "$ARTIFACTS"
if compgen -G "$DIR/regressions/$NAME/*" >/dev/null; then
  "$BIN" -rss_limit_mb=4096 "$DIR"/regressions/"$NAME"/* || { echo "$NAME: a regression input fails again"; exit 1; }
fi
# -rss_limit_mb: an input that makes esa allocate gigabytes is an allocation bomb, a finding.
"$BIN" -max_total_time="$SECONDS_TO_RUN" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
  -artifact_prefix="$ARTIFACTS/$NAME-" "$@" "$WORK" "$DIR/corpus/$NAME"
