#!/usr/bin/env bash
# A fuzz campaign on a machine with cores to spare (the GPU host's CPUs): every harness, several
# libFuzzer instances each, corpora kept in STATE/c/<harness> so that a second call resumes where
# the first stopped. Prints executions and findings per harness last.
# Usage: scripts/fuzz_campaign.sh FUZZ_DIR STATE SECONDS [INSTANCES] [HARNESS...]
#   FUZZ_DIR: bin/ (the fuzz_* harnesses of a -DESA_FUZZ=ON build) and lib/ (their shared libraries)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$1" STATE="$2" SECONDS_TO_RUN="$3" INSTANCES="${4:-2}"; shift $(( $# < 4 ? $# : 4 ))
HARNESSES=("$@"); [[ ${#HARNESSES[@]} -gt 0 ]] || HARNESSES=(fuzz_gguf fuzz_safetensors fuzz_safetensors_index fuzz_tokenizer_json fuzz_grid fuzz_hdf5)
export LD_LIBRARY_PATH="$FUZZ/lib:${LD_LIBRARY_PATH:-}"
for h in "${HARNESSES[@]}"; do
  mkdir -p "$STATE/c/$h" "$STATE/art/$h"
  # The regressions once, as run_fuzz.sh does; then the instances.
  if compgen -G "$ROOT/tests/fuzz/regressions/$h/*" >/dev/null; then
    ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=0 "$FUZZ/bin/$h" -rss_limit_mb=4096 \
      "$ROOT"/tests/fuzz/regressions/"$h"/* >"$STATE/regress_$h.txt" 2>&1 || echo "$h: a regression input fails again"
  fi
  for i in $(seq 1 "$INSTANCES"); do
    (
      export ASAN_OPTIONS=allocator_may_return_null=1
      [[ "$h" == fuzz_hdf5 ]] && export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"  # libhdf5's own leaks (tests/fuzz/README.md)
      cd "$STATE/art/$h" && "$FUZZ/bin/$h" -max_total_time="$SECONDS_TO_RUN" -timeout=30 -rss_limit_mb=4096 \
        -malloc_limit_mb=1048576 -print_final_stats=1 -artifact_prefix="$STATE/art/$h/" \
        "$STATE/c/$h" "$ROOT/tests/fuzz/corpus/$h" >>"$STATE/log_${h}_$i.txt" 2>&1
    ) &
  done
done
wait
printf '%-24s %12s %9s %s\n' harness executions instances findings
for h in "${HARNESSES[@]}"; do
  execs=$(cat "$STATE"/log_"$h"_*.txt | awk '/stat::number_of_executed_units/{s += $NF} END {print s + 0}')
  printf '%-24s %12s %9s %s\n' "$h" "$execs" "$INSTANCES" "$(ls "$STATE/art/$h" | tr '\n' ' ')"
done
