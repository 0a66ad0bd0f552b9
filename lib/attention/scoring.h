// What the scoring policies (oracle, esa, infllm, quest: attention/<p>.cc) share on the host:
// one call's geometry checked once (prepare), the ScoringPolicy base, and the queries in the
// score space. Scores live in options.score_space: `rotated` (queries rotated to w, keys
// before RoPE: the long-branch logit) or `plain` (both before RoPE). Every scoring policy
// attends to all initial tokens and, when |M| <= budget.select, to all of M; it never returns
// more than budget.select middle tokens per list, nor a token >= local_begin.
#pragma once

#include <cstdint>
#include <vector>

#include "attention/device_selector.h"
#include "attention/policy.h"

namespace esa::attention {

/// Geometry of one select() call, checked once.
struct Step {
  ContextSplit split;
  int64_t S = 0, T = 0, hq = 0, hkv = 0, d = 0, width = 0;
  int64_t m0 = 0, m1 = 0;  // middle tokens [m0, m1)
  int64_t middle() const { return m1 - m0; }
};

/// Checks `in` against the cache (throws esa::Error naming `who`) and splits the context.
Step prepare(const LayerInputs& in, const Budget& budget, const char* who);

/// The chunk's queries in the score space: in.q [T, Hq, d] (before RoPE) folded over each KV
/// group to [T, Hkv, d] and, for `rotated`, rotated to position w. What every scoring policy
/// scores with, and what `esa dump` records for calibration.
Tensor score_space_queries(const LayerInputs& in, int64_t n_kv_heads, ScoreSpace space, int64_t w);

class ScoringPolicy : public Policy {
 protected:
  explicit ScoringPolicy(PolicyOptions o) : Policy(std::move(o)) {}

  bool individual() const { return options_.heads == HeadMode::individual; }
  int64_t lists(const Step& s) const { return individual() ? s.hkv : 1; }
  /// Whether the device halves take these options: one list for all heads (per-KV-head lists
  /// are not on the GPU) and a pool the kernels take.
  bool device_takes_options() const { return !individual() && options_.eps <= 1024; }

  /// Every middle token, in each list.
  Selection all_middle(const Step& s) const;

  /// q~ [T, Hkv, d] in the options' score space.
  Tensor score_queries(const LayerInputs& in, const Step& s) const {
    return score_space_queries(in, s.hkv, options_.score_space, options_.query_position());
  }

  /// Per-layer state vectors, grown on first use.
  template <class V>
  static V& layer_state(std::vector<V>& states, int64_t layer) {
    if (int64_t(states.size()) <= layer) states.resize(size_t(layer + 1));
    return states[size_t(layer)];
  }
};

}  // namespace esa::attention
