#!/usr/bin/env bash
# End-to-end tests of the esa command line: version and help, info and tokenize on a tiny
# generated model and on the embedded SmolLM2 model, generation and its flags. Corrupt inputs
# are the hostile-input table of test_hostile.sh.
# Scenarios (each a ctest entry e2e.cli.<name>; `all` runs every one):
#   basics   version, help, subcommands
#   tiny     info, tokenize, generate, bench and bad options on tiny and fixture models
#   smollm2  info, tokenize, a chat answer and the prompt sources (file, stdin, ids) on the embedded model
# Usage: test_cli.sh SCENARIO ESA_BINARY MODEL FIXTURES_DIR REQUIRE_MODEL(0|1)
set -uo pipefail
SCENARIO="$1"; ESA="$2"; MODEL="$3"; FIXTURES="$4"; REQUIRE_MODEL="${5:-0}"
MAKE_BAD="${ESA_MAKE_BAD_MODELS:?ESA_MAKE_BAD_MODELS must point at the make_bad_models program}"
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

scenario_basics() {
# --- version and help ---------------------------------------------------------------------
out="$("$ESA" --version)"; check "--version prints version and git revision" grep -Eq '^esa [0-9]+\.[0-9]+\.[0-9]+ \(git [0-9a-f]+' <<<"$out"
for sub in info tokenize "bench tokenize"; do
  # shellcheck disable=SC2086
  help="$("$ESA" $sub --help)"
  check "$sub --help lists options" grep -q -- "--model" <<<"$help"
done
"$ESA" >/dev/null 2>&1; check "no subcommand exits non-zero" test $? -ne 0
"$ESA" frobnicate >/dev/null 2>&1; check "unknown subcommand exits non-zero" test $? -ne 0

}

scenario_tiny() {
# --- tiny generated model -----------------------------------------------------------------
"$MAKE_BAD" "$WORK/models" >/dev/null || { fail "make_bad_models"; }
TINY="$WORK/models/tiny.gguf"
out="$("$ESA" info --model "$TINY" 2>"$WORK/err")"; rc=$?
check "info on tiny model succeeds" test $rc -eq 0
check "info on tiny model shows the architecture" grep -Eq '^architecture +llama' <<<"$out"
check "info on tiny model shows 2 layers" grep -Eq '^layers +2$' <<<"$out"
json="$("$ESA" info --model "$TINY" --format json)"
check "info --format json is valid JSON" python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["layers"]==2 and d["tied_embeddings"]' <<<"$json"
ids="$("$ESA" tokenize --model "$TINY" --text "the cat" --ids 2>/dev/null)"
check "tokenize --ids prints integers" grep -Eq '^[0-9]+( [0-9]+)*$' <<<"$ids"
back="$("$ESA" tokenize --model "$TINY" --decode "$ids")"
check "tokenize round trip on tiny model" test "$back" = "the cat"

# --- safetensors checkpoints (fixtures made by scripts/reference/make_safetensors_fixture.py) --
out="$("$ESA" info --model "$FIXTURES/safetensors/llama_sharded")"; rc=$?
check "info on a sharded safetensors llama succeeds" test $rc -eq 0
check "info on sharded llama: 2 layers, llama3 rope scaling, rotate_half" \
  bash -c 'grep -Eq "^layers +2$" <<<"$1" && grep -Eq "^rope .*rotate_half, scaling llama3" <<<"$1" && grep -Eq "^format +safetensors" <<<"$1"' _ "$out"
out="$("$ESA" info --model "$FIXTURES/safetensors/qwen2_single" --format json)"; rc=$?
check "info on a qwen2 safetensors file reports the qkv bias" python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["architecture"]=="qwen2" and d["qkv_bias"] and d["tokenizer"] is None' <<<"$out"

# Corrupt model files: the hostile-input table, tests/cli/test_hostile.sh.

# --- generation ----------------------------------------------------------------------------
out="$("$ESA" generate --model "$TINY" --prompt "the cat" --max-new 4 2>"$WORK/err")"; rc=$?
check "generate on the tiny model runs and reports speed" bash -c '[[ $0 -eq 0 ]] && grep -q "tokens/s" "$1"' "$rc" "$WORK/err"
"$ESA" generate --model "$TINY" --prompt "the cat" --max-new 1000 >/dev/null 2>"$WORK/err"; rc=$?
check "generate past the trained context is an error" bash -c '[[ $0 -ne 0 ]] && grep -q "exceeds the model" "$1"' "$rc" "$WORK/err"
# Prompt sources (their text equality is checked on SmolLM2, whose text is not empty).
printf 'the cat' >"$WORK/prompt.txt"
"$ESA" tokenize --model "$TINY" --text "the cat" --add-special --ids >"$WORK/prompt.ids" 2>/dev/null
back="$("$ESA" tokenize --model "$TINY" --prompt-ids - <"$WORK/prompt.ids" 2>/dev/null)"
check "tokenize --prompt-ids - decodes ids from standard input" grep -q "the cat" <<<"$back"
# Past the kernel's 128 KiB cap on one argument: read whole from a pipe (the context check then counts it).
python3 -c 'print("the cat sat on the mat " * 10000)' | "$ESA" generate --model "$TINY" --prompt-file - >/dev/null 2>"$WORK/err"; rc=$?
check "a 230 KB prompt on standard input is read whole" \
  bash -c '[[ $0 -ne 0 ]] && grep -Eq "prompt \(([0-9]{5,}) tokens\)" "$1"' "$rc" "$WORK/err"
"$ESA" generate --model "$TINY" --prompt "x" --prompt-file "$WORK/prompt.txt" >/dev/null 2>"$WORK/err"; rc=$?
check "two prompt sources are one clear error" \
  bash -c '[[ $0 -ne 0 ]] && grep -q "exactly one of --prompt" "$1" && [[ $(wc -l <"$1") -eq 1 ]]' "$rc" "$WORK/err"
printf '1 2 oops' >"$WORK/bad.ids"
"$ESA" generate --model "$TINY" --prompt-ids "$WORK/bad.ids" >/dev/null 2>"$WORK/err"; rc=$?
check "a bad id in --prompt-ids names the file and the item" \
  bash -c '[[ $0 -ne 0 ]] && grep -q "bad.ids: item 3 .oops. is not an integer token id" "$1"' "$rc" "$WORK/err"
printf '0 99999999' >"$WORK/bad.ids"
"$ESA" generate --model "$TINY" --prompt-ids "$WORK/bad.ids" >/dev/null 2>"$WORK/err"; rc=$?
check "an id past the vocabulary in --prompt-ids is an error" \
  bash -c '[[ $0 -ne 0 ]] && grep -q "outside the vocabulary" "$1"' "$rc" "$WORK/err"

for policy in full streaming infllm quest esa oracle; do
  out="$("$ESA" generate --model "$TINY" --prompt "the cat sat on the mat and then the cat sat again" --max-new 4 \
         --policy "$policy" --init 2 --local 4 --select 4 --chunk 4 2>"$WORK/err")"; rc=$?
  check "generate --policy $policy runs" bash -c '[[ $0 -eq 0 ]] && grep -q "policy $1" "$2"' "$rc" "$policy" "$WORK/err"
done
"$ESA" generate --model "$TINY" --prompt "the cat sat on the mat and then the cat sat again" --max-new 2 --policy quest \
  --init 2 --local 4 --select 4 --chunk 4 --diag >/dev/null 2>"$WORK/err"; rc=$?
check "generate --diag prints per-layer recall" bash -c '[[ $0 -eq 0 ]] && grep -q "mean recall" "$1" && [[ $(grep -cE "^ +[01] +[0-9]+ +[0-9.]+ +[0-9.]+ +[0-9.]+$" "$1") -eq 2 ]]' "$rc" "$WORK/err"
"$ESA" generate --model "$TINY" --prompt "x" --policy dense >/dev/null 2>"$WORK/err"; rc=$?
check "generate --policy dense is an error" bash -c '[[ $0 -ne 0 ]] && grep -q "unknown policy" "$1"' "$rc" "$WORK/err"
"$ESA" generate --model "$TINY" --prompt "x" --eps -1 >/dev/null 2>"$WORK/err"; rc=$?
check "generate --eps -1 is an error" bash -c '[[ $0 -ne 0 ]] && grep -q -- "--eps" "$1"' "$rc" "$WORK/err"
out="$("$ESA" bench attention --shape smollm2-135m --context 2048 --steps 2 --local 256 --select 256 --init 16)"; rc=$?
check "bench attention runs every policy" bash -c '[[ $0 -eq 0 ]] && [[ $(grep -cE "^ +2048 " <<<"$1") -eq 9 ]]' "$rc" "$out"
out="$("$ESA" bench model --model "$TINY" --prefill 32 --decode 2 --chunk 8 --policy full,esa --dim 8 --init 2 \
  --local 4 --select 4 2>"$WORK/err")"; rc=$?
check "bench model times full and esa" bash -c '[[ $0 -eq 0 ]] && grep -qE "^full +32 " <<<"$1" && grep -qE "^esa +32 " <<<"$1"' "$rc" "$out"
"$ESA" bench model --model "$TINY" --prefill 32 --kv-offload >/dev/null 2>"$WORK/err"; rc=$?
check "--kv-offload without --device cuda is one clear error" \
  bash -c '[[ $0 -ne 0 ]] && grep -q -- "--kv-offload" "$1" && [[ $(wc -l <"$1") -eq 1 ]]' "$rc" "$WORK/err"
"$ESA" bench model --model "$TINY" --prefill 32 --policy full,,esa >/dev/null 2>"$WORK/err"; rc=$?
check "an empty item in --policy is an error" bash -c '[[ $0 -ne 0 ]] && grep -q "empty item" "$1"' "$rc" "$WORK/err"

# --- bad options ----------------------------------------------------------------------------
"$ESA" tokenize --model "$TINY" >/dev/null 2>"$WORK/err"; rc=$?
check "tokenize without text is an error" test $rc -ne 0 -a "$(wc -l <"$WORK/err")" -eq 1
"$ESA" tokenize --model "$TINY" --decode "1 99999" >/dev/null 2>"$WORK/err"; rc=$?
check "decode of an out-of-range id is an error" grep -q "outside the vocabulary" "$WORK/err"
"$ESA" info --model "$TINY" --format xml >/dev/null 2>"$WORK/err"; rc=$?
check "info --format xml is an error" test $rc -ne 0

}

scenario_smollm2() {
# --- the embedded model ---------------------------------------------------------------------
if [[ -f "$MODEL" ]]; then
  out="$("$ESA" info --model "$MODEL")"; rc=$?
  check "info on SmolLM2 succeeds" test $rc -eq 0
  for want in '^architecture +llama$' '^layers +30$' '^hidden +576$' '^heads +9$' '^kv heads +3 ' \
              '^head dim +64$' '^ffn +1536$' '^vocab +49152$' '^rope base +100000$' '^context +8192$' \
              '^embeddings +tied' '^quant mix +.*Q4_1 x210' '^sha256 +b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53$'; do
    check "info on SmolLM2 matches $want" grep -Eq "$want" <<<"$out"
  done
  text='Hello world! The pass key is 71432. Remember it.'
  ids="$("$ESA" tokenize --model "$MODEL" --text "$text" --ids 2>/dev/null)"
  back="$("$ESA" tokenize --model "$MODEL" --decode "$ids")"
  check "tokenize round trip on SmolLM2" test "$back" = "$text"
  answer="$("$ESA" generate --model "$MODEL" --chat --prompt "What is the capital of France?" --max-new 32 2>/dev/null)"
  check "generate --chat answers the capital of France: $answer" grep -q "Paris" <<<"$answer"
  # The prompt from a file, from standard input and as token ids: the same greedy text as --prompt.
  question="Name three colours of the rainbow."
  printf '%s' "$question" >"$WORK/prompt.txt"
  "$ESA" tokenize --model "$MODEL" --text "$question" --add-special --ids >"$WORK/prompt.ids" 2>/dev/null
  want="$("$ESA" generate --model "$MODEL" --prompt "$question" --max-new 12 2>/dev/null)"
  got_file="$("$ESA" generate --model "$MODEL" --prompt-file "$WORK/prompt.txt" --max-new 12 2>/dev/null)"
  got_stdin="$("$ESA" generate --model "$MODEL" --prompt-file - --max-new 12 <"$WORK/prompt.txt" 2>/dev/null)"
  got_ids="$("$ESA" generate --model "$MODEL" --prompt-ids "$WORK/prompt.ids" --max-new 12 2>/dev/null)"
  check "generate --prompt-file, --prompt-file - and --prompt-ids give --prompt's text: $want" \
    bash -c '[[ -n "${0//[[:space:]]/}" && "$0" == "$1" && "$0" == "$2" && "$0" == "$3" ]]' "$want" "$got_file" "$got_stdin" "$got_ids"
  chat="$("$ESA" tokenize --model "$MODEL" --text "hi" --chat 2>/dev/null | head -1)"
  check "tokenize --chat starts with <|im_start|> (id 1)" grep -Eq '^1	<\|im_start\|>$' <<<"$chat"
elif [[ "$REQUIRE_MODEL" == "1" ]]; then
  fail "the embedded model is required but missing: $MODEL (run scripts/fetch_model.sh)"
else
  echo "skip embedded-model checks: $MODEL not found (run scripts/fetch_model.sh)"
fi

}

run_scenarios "$SCENARIO" basics tiny smollm2
