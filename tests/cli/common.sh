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

# kill_after_cases PID LOG N: SIGKILLs PID once its stderr LOG shows N finished eval cases
# (or it exits first; at most 600 s: CI runs this beside the other suites on 2 cores, where four
# cases took over 60 s), then reaps it.
kill_after_cases() {
  local pid="$1" log="$2" n="$3"
  for _ in $(seq 1 6000); do
    [[ $(grep -cE "#0: (correct|wrong)" "$log" 2>/dev/null) -ge $n ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
}
