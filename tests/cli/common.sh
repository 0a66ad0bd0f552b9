# Shared by the CLI test scripts: counters, checks, and the one-line-error rule.
passed=0; failed=0
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
# check NAME CONDITION...: runs the condition, records the result.
check() { local name="$1"; shift; if "$@"; then ok "$name"; else fail "$name"; fi; }
# expect_error NAME NEEDLE COMMAND...: the command exits non-zero with exactly one stderr line
# that contains NEEDLE.
expect_error() {
  local name="$1" needle="$2"; shift 2
  local err rc
  err="$("$@" 2>&1 >/dev/null)"; rc=$?
  if [[ $rc -ne 0 && $(printf '%s\n' "$err" | wc -l) -eq 1 && "$err" == *"$needle"* ]]; then
    ok "$name"
  else
    fail "$name (rc $rc, stderr: $err)"
  fi
}
# finish: prints the tally and exits non-zero when a check failed.
finish() { echo "$passed passed, $failed failed"; [[ $failed -eq 0 ]]; }

# --- scenarios ---------------------------------------------------------------------------------
# Each test script is a set of scenarios, functions scenario_<name>; ctest runs each as its own
# entry (e2e.<script>.<name>, see tests/CMakeLists.txt), `all` runs them in order in one go.
# Scenarios of one script share $SHARED: $ESA_TEST_WORK under ctest (a build-tree folder, so a
# setup scenario's outputs, e.g. $SHARED/ref/ref.h5, are there for the scenarios that require it),
# else a temporary folder. Each scenario works in its own $WORK = $SHARED/<name>, emptied first.
# run_scenarios SCENARIO NAME...: runs SCENARIO (or every NAME, in order, for `all`), then finish.
# init_shared: sets $SHARED (scripts that name paths under it call this first; run_scenarios does).
init_shared() {
  [[ -n "${SHARED:-}" ]] && return
  if [[ -n "${ESA_TEST_WORK:-}" ]]; then
    SHARED="$ESA_TEST_WORK"; mkdir -p "$SHARED"
  else
    SHARED="$(mktemp -d)"; trap 'chmod -R u+w "$SHARED"; rm -rf "$SHARED"' EXIT
  fi
}
run_scenarios() {
  local want="$1"; shift
  init_shared
  local names=("$want")
  [[ "$want" == all ]] && names=("$@")
  local s
  for s in "${names[@]}"; do
    if [[ " $* " != *" $s "* ]]; then echo "FAIL unknown scenario '$s' (known: $*)"; exit 2; fi
    WORK="$SHARED/$s"
    [[ -d "$WORK" ]] && { chmod -R u+w "$WORK"; rm -rf "$WORK"; }
    mkdir -p "$WORK"
    echo "--- scenario $s"
    "scenario_${s//./_}"
  done
  finish
}
# need_scenario NAME FILE...: FILE (made by scenario NAME, which ctest runs first as a fixture)
# exists, else the calling scenario fails at once.
need_scenario() {
  local name="$1" f; shift
  for f in "$@"; do
    [[ -e "$f" ]] || { fail "missing $f: run scenario '$name' first (ctest does, as a fixture)"; finish; exit 1; }
  done
}
# tiny_models DIR: the generated tiny models (make_bad_models): DIR/tiny.gguf (context 256) and
# DIR/tiny_long.gguf (the same weights, context 4096: long enough for the eval suites' prompts).
# Plumbing scenarios (resume, shards, MPI, interruption, hostile files) run on these: only that a
# result is reproduced, resumed or merged identically matters there, not what the model answers.
tiny_models() {
  "${ESA_MAKE_BAD_MODELS:?ESA_MAKE_BAD_MODELS must point at the make_bad_models program}" "$1" >/dev/null ||
    fail "make_bad_models $1"
}
# require_model_and_h5py MODEL REQUIRE_MODEL(0|1) PYTHON: without the model, skip (exit 0) or fail
# (exit 1) when it is required; without a python3 that has h5py, fail when required, else note
# that the h5py checks are skipped (callers test "$PY" before each).
require_model_and_h5py() {
  local model="$1" require="$2" py="$3"
  if [[ ! -f "$model" ]]; then
    if [[ "$require" == 1 ]]; then echo "FAIL model $model missing"; exit 1; fi
    echo "skip: $model not found (run scripts/fetch_model.sh)"; exit 0
  fi
  if [[ -z "$py" ]]; then
    if [[ "$require" == 1 ]]; then echo "FAIL no python3 with h5py (run scripts/setup.sh)"; exit 1; fi
    echo "note: no python3 with h5py; the h5py checks are skipped"
  fi
}

# require_h5py REQUIRE(0|1) PYTHON: for scenarios on the tiny models (no embedded model needed):
# without a python3 that has h5py, fail when required, else note that the h5py checks are skipped.
require_h5py() {
  if [[ -z "$2" ]]; then
    if [[ "$1" == 1 ]]; then echo "FAIL no python3 with h5py (run scripts/setup.sh)"; exit 1; fi
    echo "note: no python3 with h5py; the h5py checks are skipped"
  fi
}
