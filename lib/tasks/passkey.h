// The passkey suite (InfiniteBench / Landmark / InfLLM template): a task line, the noise
// "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
// repeated, the needle "The pass key is {key}. Remember it. {key} is the pass key." at the depth,
// the question "What is the pass key?" and the answer prefix "The pass key is". 5-digit keys.
#pragma once

#include <cstdint>
#include <string>

#include "tasks/prompt.h"

namespace esa::tasks {

struct PasskeyCase {
  std::string key;  // 5 digits, from the seed
  BuiltPrompt prompt;
};

/// Deterministic from (seed, length, depth): the same arguments give identical ids.
PasskeyCase build_passkey(const text::Tokenizer& tokenizer, int64_t length, double depth, uint64_t seed, bool chat);

/// 1 when the first integer (a maximal run of digits) in `generated` equals `key`, else 0.
double score_passkey(const std::string& generated, const std::string& key);

}  // namespace esa::tasks
