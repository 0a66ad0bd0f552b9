// The passkey suite (InfiniteBench / Landmark / InfLLM template): a task line, the noise
// "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
// repeated, the needle "The pass key is {key}. Remember it. {key} is the pass key." at the depth,
// the question "What is the pass key?" and the answer prefix "The pass key is". 5-digit keys.
#include <fmt/format.h>

#include "tasks/scoring.h"
#include "tasks/suite.h"

namespace esa::tasks {
namespace {

constexpr const char* kTask =
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz you "
    "about the important information there.";
constexpr const char* kNoise = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

class PasskeySuite final : public Suite {
 public:
  PasskeySuite(const text::Tokenizer& tok, const SuiteOptions& o)
      : tok_(tok), options_(o), filler_(repeating_filler(tok.encode(kNoise, false, false))) {}
  const std::string& name() const override { return options_.name; }

  TaskCase build(int64_t length, double depth, int64_t sample) const override {
    std::mt19937_64 rng = case_rng(options_.seed, name(), length, depth, sample);
    const std::string key = fmt::format("{}", std::uniform_int_distribution<int>(10000, 99999)(rng));
    PromptParts parts;
    parts.head = kTask;
    parts.needles = {{fmt::format(" The pass key is {0}. Remember it. {0} is the pass key.", key), depth}};
    parts.tail = "\nWhat is the pass key?";
    parts.answer_prefix = options_.chat ? "The pass key is" : " The pass key is";
    TaskCase c{length, depth, sample, build_prompt(tok_, parts, length, options_.chat, filler_), {key}, 8};
    return c;
  }
  CaseScore score(const TaskCase& c, const std::string& generated) const override {
    const double s = score_passkey(generated, c.answers.at(0));
    return {s, s == 1.0};
  }

 private:
  const text::Tokenizer& tok_;
  SuiteOptions options_;
  FillerSource filler_;
};

}  // namespace

std::unique_ptr<Suite> make_passkey_suite(const text::Tokenizer& tok, const SuiteOptions& o) {
  return std::make_unique<PasskeySuite>(tok, o);
}

}  // namespace esa::tasks
