// Leftmost-longest matching of added tokens (see added_tokens.h).
#include "text/added_tokens.h"

#include <algorithm>

namespace esa::text {

AddedTokens::AddedTokens(std::vector<Token> tokens) {
  for (auto& t : tokens) {
    if (!t.content.empty()) tokens_.push_back(std::move(t));
  }
  for (uint32_t i = 0; i < tokens_.size(); ++i) {
    by_first_byte_[static_cast<unsigned char>(tokens_[i].content[0])].push_back(i);
  }
  for (auto& list : by_first_byte_) {
    std::stable_sort(list.begin(), list.end(), [&](uint32_t a, uint32_t b) {
      return tokens_[a].content.size() > tokens_[b].content.size();
    });
  }
}

void AddedTokens::split(std::string_view text, bool parse_special,
                        std::vector<Fragment>& out) const {
  size_t start = 0;  // start of the pending plain text
  size_t i = 0;
  while (i < text.size()) {
    const auto& candidates = by_first_byte_[static_cast<unsigned char>(text[i])];
    const Token* match = nullptr;
    for (uint32_t k : candidates) {
      const Token& t = tokens_[k];
      if (t.control && !parse_special) continue;
      if (text.compare(i, t.content.size(), t.content) == 0) {
        match = &t;
        break;
      }
    }
    if (match == nullptr) {
      ++i;
      continue;
    }
    if (i > start) out.push_back({text.substr(start, i - start), -1});
    out.push_back({text.substr(i, match->content.size()), match->id});
    i += match->content.size();
    start = i;
  }
  if (text.size() > start) out.push_back({text.substr(start), -1});
}

}  // namespace esa::text
