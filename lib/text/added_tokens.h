// Added (special) tokens matched in raw text before pre-tokenization: at the leftmost position
// where one matches, the longest wins (tokenizers' AddedVocabulary, Aho-Corasick
// LeftmostLongest; llama.cpp's tokenizer_st_partition). The text between matches is tokenized
// normally. Control tokens (e.g. "<|im_start|>") are matched only when the caller parses special
// tokens; user-defined ones always, as in both references.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace esa::text {

class AddedTokens {
 public:
  struct Token {
    std::string content;
    int32_t id = -1;
    bool control = false;  // matched only when parse_special
  };
  /// A piece of text: either plain text (id == -1) or one matched token (id >= 0).
  struct Fragment {
    std::string_view text;
    int32_t id = -1;
  };

  AddedTokens() = default;
  explicit AddedTokens(std::vector<Token> tokens);

  bool empty() const { return tokens_.empty(); }
  /// Cuts `text` into fragments (appended to `out`, in order).
  void split(std::string_view text, bool parse_special, std::vector<Fragment>& out) const;

 private:
  std::vector<Token> tokens_;
  // Indices into tokens_ by first byte, longest content first.
  std::array<std::vector<uint32_t>, 256> by_first_byte_;
};

}  // namespace esa::text
