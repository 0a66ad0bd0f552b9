// build_prompt; see prompt.h.
#include "tasks/prompt.h"

#include <cmath>

#include "core/error.h"
#include "text/chat_template.h"

namespace esa::tasks {

BuiltPrompt build_prompt(const text::Tokenizer& tok, const PromptParts& parts, int64_t length, double depth, bool chat,
                         const std::function<std::vector<int32_t>(int64_t)>& filler) {
  ESA_CHECK(depth >= 0 && depth <= 1, "depth {} outside [0, 1]", depth);
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
  const std::vector<int32_t> head = piece(parts.head), needle = piece(parts.needle), tail = piece(parts.tail),
                             answer = piece(parts.answer_prefix);
  const int64_t fixed = int64_t(pre.size() + head.size() + needle.size() + tail.size() + post.size() + answer.size());
  ESA_CHECK(fixed <= length, "a prompt of {} tokens cannot hold its fixed parts ({} tokens)", length, fixed);
  BuiltPrompt b;
  b.filler_tokens = length - fixed;
  const std::vector<int32_t> fill = filler(b.filler_tokens);
  ESA_CHECK(int64_t(fill.size()) >= b.filler_tokens, "filler gave {} tokens, {} needed", fill.size(), b.filler_tokens);
  const int64_t before = int64_t(std::llround(depth * double(b.filler_tokens)));
  auto append = [&](const std::vector<int32_t>& v) { b.ids.insert(b.ids.end(), v.begin(), v.end()); };
  append(pre);
  append(head);
  b.ids.insert(b.ids.end(), fill.begin(), fill.begin() + before);
  b.needle_begin = int64_t(b.ids.size());
  append(needle);
  b.needle_end = int64_t(b.ids.size());
  b.ids.insert(b.ids.end(), fill.begin() + before, fill.begin() + b.filler_tokens);
  append(tail);
  append(post);
  append(answer);
  return b;
}

}  // namespace esa::tasks
