// The passkey suite; see passkey.h.
#include "tasks/passkey.h"

#include <fmt/format.h>

#include <cctype>
#include <random>

namespace esa::tasks {
namespace {

constexpr const char* kTask =
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz you "
    "about the important information there.";
constexpr const char* kNoise = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

}  // namespace

PasskeyCase build_passkey(const text::Tokenizer& tok, int64_t length, double depth, uint64_t seed, bool chat) {
  // The key depends on the seed and the cell, so cells of one run differ but reruns agree.
  std::seed_seq seq{uint32_t(seed), uint32_t(seed >> 32), uint32_t(length), uint32_t(std::llround(depth * 1e6))};
  std::mt19937_64 gen(seq);
  PasskeyCase c;
  c.key = fmt::format("{}", std::uniform_int_distribution<int>(10000, 99999)(gen));
  PromptParts parts;
  parts.head = kTask;
  parts.needle = fmt::format(" The pass key is {0}. Remember it. {0} is the pass key.", c.key);
  parts.tail = "\nWhat is the pass key?";
  parts.answer_prefix = chat ? "The pass key is" : " The pass key is";
  const std::vector<int32_t> unit = tok.encode(kNoise, false, false);
  c.prompt = build_prompt(tok, parts, length, depth, chat, [&](int64_t n) {
    std::vector<int32_t> out;
    while (int64_t(out.size()) < n) out.insert(out.end(), unit.begin(), unit.end());
    return out;
  });
  return c;
}

double score_passkey(const std::string& generated, const std::string& key) {
  size_t i = 0;
  while (i < generated.size() && !std::isdigit(static_cast<unsigned char>(generated[i]))) ++i;
  size_t j = i;
  while (j < generated.size() && std::isdigit(static_cast<unsigned char>(generated[j]))) ++j;
  return i < generated.size() && generated.substr(i, j - i) == key ? 1.0 : 0.0;
}

}  // namespace esa::tasks
