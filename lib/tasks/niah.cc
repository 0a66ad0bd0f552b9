// The essay-haystack suites.
//   niah        gkamradt's Needle in a Haystack: the San Francisco needle at the depth of Paul
//               Graham essays (moved back to a sentence end, as his harness does), his question,
//               and the answer prefix of the offline variant ("Here is the most relevant sentence
//               in the context:", the assistant prefill Anthropic published for it).
//   multi-niah  RULER niah_multikey / niah_multivalue: needles "One of the special magic numbers
//               for {key} is: {7 digits}."; the asked needle at the depth, the others at seeded
//               random depths; multikey asks one of N keys, multivalue asks all N values of one key.
#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "core/error.h"
#include "tasks/scoring.h"
#include "tasks/suite.h"

namespace esa::tasks {
namespace {

constexpr const char* kNeedleAnswer = "eat a sandwich and sit in Dolores Park on a sunny day";

class NiahSuite final : public Suite {
 public:
  NiahSuite(const text::Tokenizer& tok, const SuiteOptions& o)
      : tok_(tok), options_(o), haystack_(tok, o.haystack) {}
  const std::string& name() const override { return options_.name; }

  TaskCase build(int64_t length, double depth, int64_t sample) const override {
    // Sample 0 is gkamradt's test: the essays from their start. Other samples start the
    // haystack at a seeded sentence, so that they are different texts.
    std::mt19937_64 rng = case_rng(options_.seed, name(), length, depth, sample);
    const int64_t start = sample == 0 ? 0 : int64_t(rng() % uint64_t(haystack_.sentences()));
    PromptParts parts;
    parts.head = "You are a helpful AI bot that answers questions for a user. Keep your response short and direct.\n";
    parts.needles = {{fmt::format("\nThe best thing to do in San Francisco is {}.\n", kNeedleAnswer), depth}};
    parts.tail = "\n\nWhat is the best thing to do in San Francisco? Don't give information outside the document or "
                 "repeat your findings.";
    parts.answer_prefix = options_.chat ? "Here is the most relevant sentence in the context:"
                                        : "\nHere is the most relevant sentence in the context:";
    const auto filler = [&](int64_t n) { return haystack_.take(n, start); };
    return TaskCase{length, depth, sample, build_prompt(tok_, parts, length, options_.chat, filler), {kNeedleAnswer},
                    32};
  }
  CaseScore score(const TaskCase& c, const std::string& generated) const override {
    const NiahScore s = score_niah(generated, c.answers.at(0));
    return {s.key_words, s.exact};
  }

 private:
  const text::Tokenizer& tok_;
  SuiteOptions options_;
  EssayHaystack haystack_;
};

// Keys "adjective-noun", as RULER draws them from wonderwords.
constexpr const char* kAdjectives[] = {
    "ancient", "bitter", "brave",  "calm",   "clever", "crooked", "curious", "damp",   "eager",  "faint",
    "fierce",  "fragile", "gentle", "gloomy", "hollow", "humble", "icy",     "jagged", "lively", "lonely",
    "mellow",  "narrow", "nimble", "odd",    "pale",   "proud",  "quiet",   "rapid",  "rusty",  "shiny",
    "silent",  "sleepy", "smooth", "sturdy", "tender", "tidy",   "vast",    "wicked", "wild",   "zealous"};
constexpr const char* kNouns[] = {
    "anchor", "badger",  "basket", "beacon", "canyon", "castle", "comet",  "compass", "dagger", "falcon",
    "fiddle", "garden",  "glacier", "harbor", "helmet", "island", "jungle", "kettle",  "lantern", "meadow",
    "mirror", "needle",  "orchard", "parrot", "pebble", "pillow", "quartz", "ribbon",  "saddle", "spider",
    "teapot", "thunder", "tractor", "trumpet", "tunnel", "velvet", "violin", "walrus",  "willow", "zipper"};

class MultiNiahSuite final : public Suite {
 public:
  MultiNiahSuite(const text::Tokenizer& tok, const SuiteOptions& o)
      : tok_(tok), options_(o), haystack_(tok, o.haystack) {
    ESA_CHECK(o.needles >= 1 && o.needles <= 100, "--needles must be in [1, 100], got {}", o.needles);
    ESA_CHECK(o.variant == "multikey" || o.variant == "multivalue",
              "unknown multi-niah variant '{}' (expected multikey or multivalue)", o.variant);
  }
  const std::string& name() const override { return options_.name; }

  TaskCase build(int64_t length, double depth, int64_t sample) const override {
    std::mt19937_64 rng = case_rng(options_.seed, name() + "/" + options_.variant, length, depth, sample);
    const bool multivalue = options_.variant == "multivalue";
    const int64_t n = options_.needles;
    // Distinct keys and distinct values.
    std::set<std::string> keys_seen;
    std::vector<std::string> keys;
    const size_t n_keys = multivalue ? 1 : size_t(n);
    std::uniform_int_distribution<size_t> adjective(0, std::size(kAdjectives) - 1), noun(0, std::size(kNouns) - 1);
    while (keys.size() < n_keys) {
      std::string k = fmt::format("{}-{}", kAdjectives[adjective(rng)], kNouns[noun(rng)]);
      if (keys_seen.insert(k).second) keys.push_back(std::move(k));
    }
    std::set<std::string> values_seen;
    std::vector<std::string> values;
    std::uniform_int_distribution<int> digits(1000000, 9999999);
    while (int64_t(values.size()) < n) {
      std::string v = fmt::format("{}", digits(rng));
      if (values_seen.insert(v).second) values.push_back(std::move(v));
    }
    std::uniform_real_distribution<double> anywhere(0.0, 1.0);
    PromptParts parts;
    parts.head = "Some special magic numbers are hidden within the following text. Make sure to memorize it. I will "
                 "quiz you about the numbers afterwards.\n";
    for (int64_t i = 0; i < n; ++i) {
      const std::string& key = keys[multivalue ? 0 : size_t(i)];
      parts.needles.push_back({fmt::format(" One of the special magic numbers for {} is: {}.", key, values[size_t(i)]),
                               i == 0 ? depth : anywhere(rng)});
    }
    const std::string& asked = keys[0];
    const std::string lead = options_.chat ? "" : " ";
    TaskCase c{length, depth, sample, {}, {}, 0};
    if (multivalue) {
      parts.tail = fmt::format("\nWhat are all the special magic numbers for {} mentioned in the provided text?", asked);
      parts.answer_prefix = fmt::format("{}The special magic numbers for {} mentioned in the provided text are", lead, asked);
      c.answers = values;
      c.max_new = 8 + 8 * n;
    } else {
      parts.tail = fmt::format("\nWhat is the special magic number for {} mentioned in the provided text?", asked);
      parts.answer_prefix = fmt::format("{}The special magic number for {} mentioned in the provided text is", lead, asked);
      c.answers = {values[0]};
      c.max_new = 16;
    }
    // As niah: sample 0 from the essays' start, others from a seeded sentence.
    const int64_t start = sample == 0 ? 0 : int64_t(rng() % uint64_t(haystack_.sentences()));
    c.prompt = build_prompt(tok_, parts, length, options_.chat,
                            [&](int64_t count) { return haystack_.take(count, start); });
    return c;
  }
  CaseScore score(const TaskCase& c, const std::string& generated) const override {
    const double s = string_match_all(generated, c.answers);
    return {s, s == 1.0};
  }

 private:
  const text::Tokenizer& tok_;
  SuiteOptions options_;
  EssayHaystack haystack_;
};

}  // namespace

std::unique_ptr<Suite> make_niah_suite(const text::Tokenizer& tok, const SuiteOptions& o) {
  return std::make_unique<NiahSuite>(tok, o);
}
std::unique_ptr<Suite> make_multi_niah_suite(const text::Tokenizer& tok, const SuiteOptions& o) {
  return std::make_unique<MultiNiahSuite>(tok, o);
}

}  // namespace esa::tasks
