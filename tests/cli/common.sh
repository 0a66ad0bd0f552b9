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
