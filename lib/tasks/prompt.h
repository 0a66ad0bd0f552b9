// Building retrieval prompts to an exact token length (the eval suites of issue 6). A prompt is
// assembled from token sequences, not from one string: [chat prefix] + head + filler(before) +
// needle + filler(after) + tail + [chat suffix] + answer prefix, where the filler is a token
// stream cut to the exact count that makes the total `length`, split at `depth`. Concatenating
// separately tokenized pieces is what InfiniteBench and RULER do too; each piece starts at a
// word boundary, so the ids decode to the intended text.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace esa::tasks {

struct PromptParts {
  std::string head;           // task description, before the haystack
  std::string needle;         // inserted at the depth
  std::string tail;           // question, after the haystack
  std::string answer_prefix;  // start of the answer ("The pass key is"), after the chat suffix
};

struct BuiltPrompt {
  std::vector<int32_t> ids;   // exactly the requested length
  int64_t needle_begin = 0;   // token range of the needle in ids
  int64_t needle_end = 0;
  int64_t filler_tokens = 0;
};

/// `filler(n)` returns at least n filler token ids (the haystack stream, from its start).
/// Throws esa::Error when the fixed parts alone exceed `length`, or depth is outside [0, 1].
BuiltPrompt build_prompt(const text::Tokenizer& tokenizer, const PromptParts& parts, int64_t length, double depth,
                         bool chat, const std::function<std::vector<int32_t>(int64_t)>& filler);

}  // namespace esa::tasks
