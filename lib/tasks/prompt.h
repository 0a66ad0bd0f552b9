// Building retrieval prompts to an exact token length (the eval suites). A prompt is assembled
// from token sequences, not from one string: [chat prefix] + head + filler with the needles
// inserted + tail + [chat suffix] + answer prefix, where the filler is a token stream cut to the
// exact count that makes the total `length`. Concatenating separately tokenized pieces is what
// InfiniteBench and RULER do too; each piece starts at a word boundary, so the ids decode to the
// intended text.
//
// A needle goes at `depth` of the filler (0: before all of it, 1: after all of it), moved back to
// the nearest insertion point the filler allows (a sentence end in an essay, a pair boundary in a
// JSON object); needles that land on the same point keep their given order.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "text/tokenizer.h"

namespace esa::tasks {

struct Needle {
  std::string text;
  double depth = 0.5;  // in [0, 1]
};

struct PromptParts {
  std::string head;           // task description, before the haystack
  std::vector<Needle> needles;
  std::string tail;           // question, after the haystack
  std::string answer_prefix;  // start of the answer ("The pass key is"), after the chat suffix
};

/// A filler stream: `ids` (at least the requested count) and the positions where a needle may be
/// inserted (sorted; a needle goes before ids[p]). Empty `boundaries`: anywhere.
struct Filler {
  std::vector<int32_t> ids;
  std::vector<int64_t> boundaries;
};
/// Returns a Filler of at least n tokens; build_prompt uses its first n.
using FillerSource = std::function<Filler(int64_t n)>;

struct BuiltPrompt {
  std::vector<int32_t> ids;                          // exactly the requested length
  std::vector<std::pair<int64_t, int64_t>> needles;  // token range [begin, end) of each needle, in PromptParts order
  int64_t filler_tokens = 0;
  std::vector<int64_t> filler_before;                // filler tokens before each needle (its snapped depth)
};

/// Throws esa::Error when the fixed parts alone exceed `length` or a depth is outside [0, 1].
BuiltPrompt build_prompt(const text::Tokenizer& tokenizer, const PromptParts& parts, int64_t length, bool chat,
                         const FillerSource& filler);

/// A filler that repeats `unit` (tokenized once), with insertion points between repetitions.
FillerSource repeating_filler(std::vector<int32_t> unit);

/// The largest p in `boundaries` with p <= at (0 when none): where a needle aimed at `at` goes.
int64_t snap_back(const std::vector<int64_t>& boundaries, int64_t at);

}  // namespace esa::tasks
