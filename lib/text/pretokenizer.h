// Pre-tokenizers of byte-level BPE: the regex rule sets that cut text into words before BPE
// merges, run with PCRE2 (UTF + UCP, JIT-compiled). Reference: Hugging Face `tokenizers`
// (pre_tokenizers/byte_level.rs, digits.rs, split.rs, matched through Oniguruma) and llama.cpp's
// llama-vocab.cpp (LLAMA_VOCAB_PRE_TYPE_*).
//
// Rule sets (the `pre` string of TokenizerSpec, GGUF `tokenizer.ggml.pre`):
//   gpt2    ByteLevel(use_regex=true): 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|
//           ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   smollm  Digits(individual_digits=true) then gpt2: every \p{N} character is its own word and
//           the gpt2 regex runs on each stretch between digits separately (so `\s+(?!\S)` sees
//           the end of the stretch, not the digit).
//   llama3  Split(isolated) on (?i:'s|..|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//           ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+      (alias: llama-bpe)
//   qwen2   as llama3 with \p{N} instead of \p{N}{1,3}
// `\s` is written out as Oniguruma's Unicode \s ([\t-\r\x{85}\p{Z}]), which differs from PCRE2's
// (no U+0085). Text between matches is kept as a word (Split's "isolated" behaviour), and each
// byte of invalid UTF-8 becomes a word of its own (tokenizers never sees such input).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct pcre2_real_code_8;

namespace esa::text {

enum class PreTokenizerKind { gpt2, smollm, llama3, qwen2 };
const char* pre_tokenizer_name(PreTokenizerKind kind);
/// The rule set for a `pre` name; throws esa::Error naming `source` when unknown.
PreTokenizerKind parse_pre_tokenizer(const std::string& name, const std::string& source);
/// The rule set whose Split regex (as a tokenizer.json spells it) is `regex`: llama3 or qwen2.
std::optional<PreTokenizerKind> pre_tokenizer_from_split_regex(std::string_view regex);

class PreTokenizer {
 public:
  explicit PreTokenizer(PreTokenizerKind kind);
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  PreTokenizerKind kind() const { return kind_; }
  /// Appends the words of `text` to `out`: views into `text`, in order, covering it exactly.
  /// Thread-safe (match data is per thread).
  void split(std::string_view text, std::vector<std::string_view>& out) const;

 private:
  void split_valid(std::string_view text, size_t begin, size_t end,
                   std::vector<std::string_view>& out) const;
  void split_regex(std::string_view text, size_t begin, size_t end,
                   std::vector<std::string_view>& out) const;

  PreTokenizerKind kind_;
  pcre2_real_code_8* words_ = nullptr;   // the word regex of the rule set
  pcre2_real_code_8* digit_ = nullptr;   // smollm: \p{N}
  bool jit_ = false;
};

}  // namespace esa::text
