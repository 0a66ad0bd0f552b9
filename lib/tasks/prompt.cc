// build_prompt; see prompt.h.
#include "tasks/prompt.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "text/chat_template.h"

namespace esa::tasks {

int64_t snap_back(const std::vector<int64_t>& boundaries, int64_t at) {
  const auto it = std::upper_bound(boundaries.begin(), boundaries.end(), at);
  return it == boundaries.begin() ? 0 : *(it - 1);
}

FillerSource repeating_filler(std::vector<int32_t> unit) {
  ESA_CHECK(!unit.empty(), "an empty filler unit");
  return [unit = std::move(unit)](int64_t n) {
    Filler f;
    while (int64_t(f.ids.size()) < n) {
      f.boundaries.push_back(int64_t(f.ids.size()));
      f.ids.insert(f.ids.end(), unit.begin(), unit.end());
    }
    f.boundaries.push_back(int64_t(f.ids.size()));
    return f;
  };
}

BuiltPrompt build_prompt(const text::Tokenizer& tok, const PromptParts& parts, int64_t length, bool chat,
                         const FillerSource& filler) {
  for (const Needle& n : parts.needles) ESA_CHECK(n.depth >= 0 && n.depth <= 1, "depth {} outside [0, 1]", n.depth);
  std::vector<int32_t> pre, post;
  if (chat) {
    // The template around a sentinel user message: the ids before and after it.
    const std::string sentinel = "\x1f";
    const std::string wrapped = text::chat_prompt(tok.spec(), sentinel);
    const size_t at = wrapped.find(sentinel);
    ESA_CHECK(at != std::string::npos, "the chat template dropped the user message");
    pre = tok.encode(wrapped.substr(0, at), /*add_special=*/true, /*parse_special=*/true);
    post = tok.encode(wrapped.substr(at + sentinel.size()), false, true);
  } else {
    pre = tok.encode("", /*add_special=*/true, false);  // BOS when the model asks for it
  }
  auto piece = [&](const std::string& s) { return tok.encode(s, false, false); };
  const std::vector<int32_t> head = piece(parts.head), tail = piece(parts.tail), answer = piece(parts.answer_prefix);
  std::vector<std::vector<int32_t>> needles;
  int64_t fixed = int64_t(pre.size() + head.size() + tail.size() + post.size() + answer.size());
  for (const Needle& n : parts.needles) {
    needles.push_back(piece(n.text));
    fixed += int64_t(needles.back().size());
  }
  ESA_CHECK(fixed <= length, "a prompt of {} tokens cannot hold its fixed parts ({} tokens)", length, fixed);
  BuiltPrompt b;
  b.filler_tokens = length - fixed;
  const Filler fill = filler(b.filler_tokens);
  ESA_CHECK(int64_t(fill.ids.size()) >= b.filler_tokens, "filler gave {} tokens, {} needed", fill.ids.size(),
            b.filler_tokens);
  // Where each needle goes in the filler, then the needles in filler order (stable: equal points
  // keep the given order).
  for (const Needle& n : parts.needles) {
    const int64_t at = int64_t(std::llround(n.depth * double(b.filler_tokens)));
    b.filler_before.push_back(fill.boundaries.empty() ? at : snap_back(fill.boundaries, at));
  }
  std::vector<size_t> order(needles.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t c) { return b.filler_before[a] < b.filler_before[c]; });
  b.needles.resize(needles.size());
  auto append = [&](const std::vector<int32_t>& v) { b.ids.insert(b.ids.end(), v.begin(), v.end()); };
  b.ids.reserve(size_t(length));
  append(pre);
  append(head);
  int64_t used = 0;
  for (size_t i : order) {
    b.ids.insert(b.ids.end(), fill.ids.begin() + used, fill.ids.begin() + b.filler_before[i]);
    used = b.filler_before[i];
    b.needles[i].first = int64_t(b.ids.size());
    append(needles[i]);
    b.needles[i].second = int64_t(b.ids.size());
  }
  b.ids.insert(b.ids.end(), fill.ids.begin() + used, fill.ids.begin() + b.filler_tokens);
  append(tail);
  append(post);
  append(answer);
  return b;
}

}  // namespace esa::tasks
