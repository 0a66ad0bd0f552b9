// Pre-tokenizer rule sets through PCRE2 (see pretokenizer.h for the rules and the reference).
#include "text/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"
#include "text/byte_mapping.h"

namespace esa::text {
namespace {

// Oniguruma's Unicode \s (what `tokenizers` matches with): \t-\r, U+0085 and the Z categories.
#define ESA_WS "\\t-\\r\\x{85}\\p{Z}"

constexpr const char* kGpt2Regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" ESA_WS "\\p{L}\\p{N}]+"
    "|[" ESA_WS "]+(?![^" ESA_WS "])|[" ESA_WS "]+";
constexpr const char* kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
    "| ?[^" ESA_WS "\\p{L}\\p{N}]+[\\r\\n]*|[" ESA_WS "]*[\\r\\n]+|[" ESA_WS "]+(?![^" ESA_WS "])"
    "|[" ESA_WS "]+";
constexpr const char* kQwen2Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "| ?[^" ESA_WS "\\p{L}\\p{N}]+[\\r\\n]*|[" ESA_WS "]*[\\r\\n]+|[" ESA_WS "]+(?![^" ESA_WS "])"
    "|[" ESA_WS "]+";
#undef ESA_WS

pcre2_code* compile(const char* pattern, bool* jit) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    ESA_FAIL("pre-tokenizer regex does not compile at offset {}: {}", offset,
             reinterpret_cast<const char*>(message));
  }
  *jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return code;
}

// Match data and JIT stack, one per thread: a pcre2_match_data may not be shared between
// concurrent matches. The JIT stack grows to 64 MiB so that `\s+(?!\S)` can backtrack over
// very long whitespace runs.
struct MatchState {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, nullptr);
  MatchState() { pcre2_jit_stack_assign(context, nullptr, stack); }
  ~MatchState() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
};

MatchState& match_state() {
  thread_local MatchState state;
  return state;
}

// Finds the first match of `code` in text[start, end); false when none.
bool find(const pcre2_code* code, bool jit, std::string_view text, size_t start, size_t end,
          size_t* match_begin, size_t* match_end) {
  MatchState& st = match_state();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const int rc = jit ? pcre2_jit_match(code, subject, end, start, 0, st.data, st.context)
                     : pcre2_match(code, subject, end, start, PCRE2_NO_UTF_CHECK, st.data,
                                   st.context);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(rc, message, sizeof(message));
    ESA_FAIL("pre-tokenizer: regex match failed at byte {} of a {}-byte text: {}", start,
             text.size(), reinterpret_cast<const char*>(message));
  }
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(st.data);
  *match_begin = ovector[0];
  *match_end = ovector[1];
  return true;
}

}  // namespace

const char* pre_tokenizer_name(PreTokenizerKind kind) {
  switch (kind) {
    case PreTokenizerKind::gpt2: return "gpt2";
    case PreTokenizerKind::smollm: return "smollm";
    case PreTokenizerKind::llama3: return "llama3";
    case PreTokenizerKind::qwen2: return "qwen2";
  }
  return "?";
}

PreTokenizerKind parse_pre_tokenizer(const std::string& name, const std::string& source) {
  if (name == "gpt2" || name == "gpt-2") return PreTokenizerKind::gpt2;
  if (name == "smollm") return PreTokenizerKind::smollm;
  if (name == "llama3" || name == "llama-bpe" || name == "llama-v3") return PreTokenizerKind::llama3;
  if (name == "qwen2") return PreTokenizerKind::qwen2;
  ESA_FAIL("{}: unknown pre-tokenizer '{}' (known: gpt2, smollm, llama3, llama-bpe, qwen2)",
           source.empty() ? "tokenizer" : source, name);
}

std::optional<PreTokenizerKind> pre_tokenizer_from_split_regex(std::string_view regex) {
  // As Llama-3's and Qwen2's tokenizer.json (and transformers' GGUF loader) write them.
  static constexpr std::string_view kLlama3 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  static constexpr std::string_view kQwen2 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  if (regex == kLlama3) return PreTokenizerKind::llama3;
  if (regex == kQwen2) return PreTokenizerKind::qwen2;
  return std::nullopt;
}

PreTokenizer::PreTokenizer(PreTokenizerKind kind) : kind_(kind) {
  const char* pattern = kGpt2Regex;
  if (kind == PreTokenizerKind::llama3) pattern = kLlama3Regex;
  if (kind == PreTokenizerKind::qwen2) pattern = kQwen2Regex;
  words_ = compile(pattern, &jit_);
  if (kind == PreTokenizerKind::smollm) {
    bool digit_jit = false;
    digit_ = compile("\\p{N}", &digit_jit);
    jit_ = jit_ && digit_jit;
  }
}

PreTokenizer::~PreTokenizer() {
  pcre2_code_free(words_);
  pcre2_code_free(digit_);
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& out) const {
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t valid = pos + utf8_valid_prefix(text.substr(pos));
    if (valid > pos) split_valid(text, pos, valid, out);
    if (valid < text.size()) out.push_back(text.substr(valid, 1));  // one invalid byte
    pos = valid + 1;
  }
}

void PreTokenizer::split_valid(std::string_view text, size_t begin, size_t end,
                               std::vector<std::string_view>& out) const {
  if (kind_ != PreTokenizerKind::smollm) {
    split_regex(text, begin, end, out);
    return;
  }
  size_t pos = begin;
  while (pos < end) {
    size_t digit_begin = end, digit_end = end;
    if (!find(digit_, jit_, text, pos, end, &digit_begin, &digit_end)) digit_begin = end;
    if (digit_begin > pos) split_regex(text, pos, digit_begin, out);
    if (digit_begin == end) break;
    out.push_back(text.substr(digit_begin, digit_end - digit_begin));
    pos = digit_end;
  }
}

void PreTokenizer::split_regex(std::string_view text, size_t begin, size_t end,
                               std::vector<std::string_view>& out) const {
  size_t pos = begin;
  while (pos < end) {
    size_t match_begin = 0, match_end = 0;
    if (!find(words_, jit_, text, pos, end, &match_begin, &match_end)) {
      out.push_back(text.substr(pos, end - pos));
      return;
    }
    if (match_begin > pos) out.push_back(text.substr(pos, match_begin - pos));
    if (match_end == match_begin) {  // no rule matches empty text; guard against looping anyway
      match_end = match_begin + 1;
      while (match_end < end && (static_cast<unsigned char>(text[match_end]) & 0xC0) == 0x80) {
        ++match_end;
      }
    }
    out.push_back(text.substr(match_begin, match_end - match_begin));
    pos = match_end;
  }
}

}  // namespace esa::text
