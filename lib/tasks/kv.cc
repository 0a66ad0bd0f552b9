// The kv suite (InfiniteBench Retrieve.KV): a JSON object of random UUID keys and values, the
// asked pair at the depth (pairs are never split), "Key: "{key}"" and the answer prefix "The
// value associated with the specified key is:". The exact length is reached by whole pairs and
// then newlines before the closing brace (JSON white space).
#include <fmt/format.h>

#include "core/error.h"
#include "tasks/scoring.h"
#include "tasks/suite.h"

namespace esa::tasks {
namespace {

std::string uuid4(std::mt19937_64& rng) {
  const uint64_t hi = rng(), lo = rng();
  const uint64_t a = (hi & 0xFFFFFFFFFFFF0FFFull) | 0x4000ull;               // version 4
  const uint64_t b = (lo & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull;   // variant 10
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", uint32_t(a >> 32), uint32_t((a >> 16) & 0xFFFF),
                     uint32_t(a & 0xFFFF), uint32_t(b >> 48), b & 0xFFFFFFFFFFFFull);
}

std::string pair_text(const std::string& key, const std::string& value) {
  return fmt::format(" \"{}\": \"{}\",", key, value);
}

class KvSuite final : public Suite {
 public:
  KvSuite(const text::Tokenizer& tok, const SuiteOptions& o) : tok_(tok), options_(o) {
    const std::vector<int32_t> nl = tok.encode("\n", false, false);
    ESA_CHECK(nl.size() == 1, "the tokenizer has no single newline token (kv pads with it)");
    newline_ = nl[0];
  }
  const std::string& name() const override { return options_.name; }

  TaskCase build(int64_t length, double depth, int64_t sample) const override {
    std::mt19937_64 rng = case_rng(options_.seed, name(), length, depth, sample);
    const std::string key = uuid4(rng), value = uuid4(rng);
    PromptParts parts;
    parts.head = "Extract the value corresponding to the specified key in the JSON object below.\n\nJSON data:\n{";
    parts.needles = {{pair_text(key, value), depth}};
    parts.tail = fmt::format("\n}}\n\nKey: \"{}\"", key);
    parts.answer_prefix = options_.chat ? "The value associated with the specified key is:"
                                        : "\nThe value associated with the specified key is:";
    // Random pairs from this case's stream until the next would not fit, then newlines.
    auto filler = [&](int64_t n) {
      Filler f;
      f.boundaries.push_back(0);
      while (true) {
        const std::vector<int32_t> p = tok_.encode(pair_text(uuid4(rng), uuid4(rng)), false, false);
        if (int64_t(f.ids.size() + p.size()) > n) break;
        f.ids.insert(f.ids.end(), p.begin(), p.end());
        f.boundaries.push_back(int64_t(f.ids.size()));
      }
      f.ids.resize(size_t(n), newline_);
      return f;
    };
    return TaskCase{length, depth, sample, build_prompt(tok_, parts, length, options_.chat, filler), {value}, 48};
  }
  CaseScore score(const TaskCase& c, const std::string& generated) const override {
    const double s = score_kv(generated, c.answers.at(0));
    return {s, s == 1.0};
  }

 private:
  const text::Tokenizer& tok_;
  SuiteOptions options_;
  int32_t newline_ = 0;
};

}  // namespace

std::unique_ptr<Suite> make_kv_suite(const text::Tokenizer& tok, const SuiteOptions& o) {
  return std::make_unique<KvSuite>(tok, o);
}

}  // namespace esa::tasks
