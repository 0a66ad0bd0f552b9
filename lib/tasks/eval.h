// Running a suite over a grid: lengths x depths x samples x policies, one greedy generation per
// case, scored by the suite; the results table that results.h5 (and each sweep cell) stores.
//
// Cases run length by length (shortest first), and within a (length, depth, sample) every
// policy in turn on the same prompt: an interrupted run has whole rows of the table.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "attention/policy.h"
#include "io/hdf5.h"
#include "engine/llama.h"
#include "tasks/suite.h"
#include "text/tokenizer.h"

namespace esa::tasks {

struct EvalPolicy {
  std::string label;  // the name in tables and results ("esa")
  attention::PolicyOptions options;
};

struct EvalGrid {
  std::vector<int64_t> lengths;  // tokens
  std::vector<double> depths;    // in [0, 1]
  int64_t samples = 1;
};

/// "4k,8k,16k" (k = 1024) or "3000,6000"; sorted, duplicates removed. Throws on bad items.
std::vector<int64_t> parse_lengths(const std::string& text, const char* flag = "--lengths");
/// "0:100:10" (percent, from:to:step, both ends included) or "10,50,90" (percent). Throws on
/// bad items or values outside [0, 100].
std::vector<double> parse_depths(const std::string& text);

/// Which case a result belongs to; depth is stored in millionths so that keys compare exactly.
struct CaseKey {
  std::string policy;
  int64_t length = 0, depth_ppm = 0, sample = 0;
  auto operator<=>(const CaseKey&) const = default;
};
int64_t depth_ppm(double depth);

struct CaseResult {
  CaseKey key;
  int64_t tokens = 0;             // prompt tokens
  std::string prompt_sha256;      // of the prompt's token ids (int32 little-endian)
  std::string answer;             // the references, joined by " | "
  std::string generated;
  bool correct = false;
  double score = 0;
  double prefill_seconds = 0, decode_seconds = 0;
  int64_t new_tokens = 0;
  std::string stop_reason;
  // Per layer, with --diag: mean oracle recall and attention mass kept over every select() of the
  // case, and the fraction of the asked needle's tokens attended, averaged over the decode steps
  // (NaN when the needle never lay before a step).
  std::vector<double> diag_recall, diag_mass, diag_needle;
};

struct EvalOptions {
  EvalGrid grid;
  std::vector<EvalPolicy> policies;
  int64_t max_new = 0;   // 0: the suite's own, enough for a correct answer
  bool diag = false;
  bool progress = true;  // on stderr: cases, tokens/s, ETA
};

/// Runs every case of the grid that is not in `done`, calling `on_case` as each finishes.
void run_eval(const LlamaModel& model, const text::Tokenizer& tokenizer, const Suite& suite,
              const EvalOptions& options, const std::set<CaseKey>& done,
              const std::function<void(CaseResult&&)>& on_case);

/// sha256 of token ids, as CaseResult::prompt_sha256.
std::string ids_sha256(const std::vector<int32_t>& ids);

// The results table: column datasets under `group` ("/cases"), one row per case:
// policy, length, depth, sample, tokens, prompt_sha256, answer, generated, correct, score,
// prefill_s, decode_s, new_tokens, stop_reason, and with diagnostics diag_recall, diag_mass,
// diag_needle [cases, layers].
void write_cases(io::H5File& file, const std::string& group, const std::vector<CaseResult>& cases);
/// Throws esa::Error naming the file when a column is missing or the columns disagree in length.
std::vector<CaseResult> read_cases(const io::H5File& file, const std::string& group);

/// The accuracy table printed at the end: rows = lengths; columns = policies when there are
/// several, else depths; cells = % correct, and a row of mean scores when scores differ from it.
std::string accuracy_table(const std::vector<CaseResult>& cases);

}  // namespace esa::tasks
