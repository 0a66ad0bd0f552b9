// Selection diagnostics: a Policy decorator that records, at every select(), how the wrapped
// policy's choice compares with the exact oracle's (PAPER.md sections 2 and 5), so that an
// accuracy result can be explained by the selection behind it. Diagnostics never change
// results: select() returns the wrapped policy's Selection untouched.
//
// Definitions, per call (one layer, one chunk), with M = [init_end, local_begin) the middle
// tokens of split_context(budget, chunk_begin):
//   chosen(list)  middle tokens the Selection attends to through that list: those in the long
//                 list, and those at or after Selection::local_begin (the local branch sees
//                 them: `full` attends to all of M);
//   n_selected    max over the lists of |chosen(list)|;
//   recall        |union of chosen ∩ O| / |O|, O = the middle tokens of an oracle built from
//                 the same options (kind oracle, heads uniform); 1 when O is empty;
//   mass          mean over query heads h and chunk queries c of sum over chosen(list of g(h))
//                 of p_{h,c}(m) = softmax over m in M of q_{h,c} . k_{g(h),m} / sqrt(d), in the
//                 policy's score space (rotated: query rotated to w, key before RoPE; plain:
//                 both before RoPE); 1 when M is empty. Computed in float64 (Eigen GEMMs over
//                 column blocks of M, online softmax), so memory stays bounded;
//   needles       per registered range [begin, end): the fraction of its tokens attended by
//                 the long branch (any list) or the local branch, for ranges with end <=
//                 chunk_begin; NaN for an empty range or one that does not lie wholly before
//                 the chunk (so that fractions stay aligned with the registered ranges).
// Cost: O(Hq * T * |M| * d) per call, on top of the oracle's own selection.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "attention/policy.h"
#include "model/config.h"

namespace esa::attention {

/// One select() call, as seen by DiagnosticPolicy.
struct SelectionRecord {
  int64_t layer = 0, chunk_begin = 0, chunk_len = 0;
  int64_t n_middle = 0;    // |M|
  int64_t n_selected = 0;  // middle tokens chosen, max over the Selection's lists
  double recall = 1.0;     // share of the oracle's middle tokens that were chosen
  double mass = 1.0;       // share of the middle tokens' softmax mass the choice captures
  std::vector<double> needle_fraction;  // per registered needle; NaN when empty or not before the chunk
};

/// The share of the middle tokens' attention mass that `sel` captures (the `mass` above), for
/// the inputs of one call and the options (budget, score space, w) of the policy that chose it.
double selection_mass(const LayerInputs& in, const Selection& sel, const PolicyOptions& options);

class DiagnosticPolicy final : public Policy {
 public:
  /// Wraps `inner` (its options become this policy's) and builds the oracle it is compared to.
  DiagnosticPolicy(std::unique_ptr<Policy> inner, const ModelConfig& config);

  /// Runs the wrapped policy and the oracle, records one SelectionRecord, returns the wrapped
  /// policy's Selection unchanged.
  Selection select(const LayerInputs& in) override;

  /// Token ranges [begin, end) whose coverage every later record reports (replaces earlier ones).
  /// Throws esa::Error on a range with begin < 0 or end < begin.
  void set_needles(std::vector<std::pair<int64_t, int64_t>> needles);

  const std::vector<SelectionRecord>& records() const { return records_; }
  void clear() { records_.clear(); }
  const Policy& inner() const { return *inner_; }

  struct LayerSummary {
    int64_t layer = 0, calls = 0;
    double mean_recall = 0, mean_mass = 0, min_recall = 0;
  };
  /// One entry per layer that has records, sorted by layer.
  std::vector<LayerSummary> summary() const;

 private:
  std::unique_ptr<Policy> inner_, oracle_;
  std::vector<std::pair<int64_t, int64_t>> needles_;
  std::vector<SelectionRecord> records_;
};

}  // namespace esa::attention
