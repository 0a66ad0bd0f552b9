// The eval suites: each builds the case at (length, depth, sample) of a grid deterministically
// from the seed, to an exact token length with the model's tokenizer (tasks/prompt.h), and scores
// a generated answer (tasks/scoring.h).
//   passkey     InfiniteBench / Landmark / InfLLM: a 5-digit key in repeated noise.
//   niah        gkamradt's Needle in a Haystack: the San Francisco needle in Paul Graham essays.
//   multi-niah  RULER's multikey / multivalue: N "special magic number" needles in the essays.
//   kv          InfiniteBench Retrieve.KV: one UUID key's value in a JSON object of UUID pairs.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tasks/prompt.h"
#include "text/tokenizer.h"

namespace esa::tasks {

struct SuiteOptions {
  std::string name = "passkey";     // passkey | niah | multi-niah | kv
  bool chat = false;                // wrap the prompt in the model's chat template
  uint64_t seed = 0;
  int64_t needles = 4;              // multi-niah: needles in the haystack (>= 1)
  std::string variant = "multikey";  // multi-niah: multikey (one key asked, others distract) | multivalue
  std::string haystack;             // niah, multi-niah: the essay text file (data/corpus/haystack.txt)
};

struct TaskCase {
  int64_t length = 0;               // requested tokens (= prompt.ids.size())
  double depth = 0;                 // of the asked needle, in [0, 1]
  int64_t sample = 0;
  BuiltPrompt prompt;               // prompt.needles[0] is the asked needle (multivalue: its first value)
  std::vector<std::string> answers;  // what a correct output contains (every one of them)
  int64_t max_new = 32;             // tokens enough for a correct answer
};

struct CaseScore {
  double score = 0;   // in [0, 1]: the suite's partial credit
  bool correct = false;
};

class Suite {
 public:
  virtual ~Suite() = default;
  virtual const std::string& name() const = 0;
  /// Deterministic in (seed, length, depth, sample); throws esa::Error when `length` cannot hold
  /// the task's fixed text or depth is outside [0, 1].
  virtual TaskCase build(int64_t length, double depth, int64_t sample) const = 0;
  virtual CaseScore score(const TaskCase& c, const std::string& generated) const = 0;
};

/// Throws esa::Error for an unknown suite or bad options (missing haystack file, needles < 1, ...).
std::unique_ptr<Suite> make_suite(const text::Tokenizer& tokenizer, const SuiteOptions& options);
std::vector<std::string> suite_names();

// The suites, by name (make_suite dispatches to these).
std::unique_ptr<Suite> make_passkey_suite(const text::Tokenizer& tokenizer, const SuiteOptions& options);
std::unique_ptr<Suite> make_niah_suite(const text::Tokenizer& tokenizer, const SuiteOptions& options);
std::unique_ptr<Suite> make_multi_niah_suite(const text::Tokenizer& tokenizer, const SuiteOptions& options);
std::unique_ptr<Suite> make_kv_suite(const text::Tokenizer& tokenizer, const SuiteOptions& options);

/// The random stream of one case: the same (seed, suite, length, depth, sample) always gives the
/// same stream, and any change gives an unrelated one.
std::mt19937_64 case_rng(uint64_t seed, const std::string& suite, int64_t length, double depth, int64_t sample);

/// An essay haystack: the file tokenized once, with sentence ends as insertion points; repeated
/// when a prompt needs more tokens than the file has (as gkamradt's harness does).
class EssayHaystack {
 public:
  /// Throws esa::Error naming the file when it cannot be read, is empty or has no sentence end.
  EssayHaystack(const text::Tokenizer& tokenizer, const std::string& path);
  /// At least n tokens starting at the sentence start `sentence` (0: the file's beginning; taken
  /// modulo the number of sentences), wrapping around the file.
  Filler take(int64_t n, int64_t sentence) const;
  int64_t sentences() const { return int64_t(ends_.size()); }

 private:
  std::vector<int32_t> ids_;
  std::vector<int64_t> ends_;  // token index after each sentence end, ascending
};

}  // namespace esa::tasks
