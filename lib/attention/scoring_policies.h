// The policies that score the middle tokens and keep the best (PAPER.md sections 2, 3 and 5):
//   oracle  exact scores f(m; c) = sum_g q~_g . k_g, per-query max subtracted, max over the
//           chunk, proximity max-pool (eps), top-k (k = budget.select);
//   esa     the same pipeline on compressed scores q' . k' (projection.h), with a per-layer cache
//           of k' for every token, extended by the new tokens of each step;
//   infllm  blocks of 128 middle tokens, each represented by the mean key of 4 representative
//           tokens; top blocks by the mean query's score (thunlp/InfLLM);
//   quest   pages of 16 middle tokens with per-channel key min/max; top pages by Quest's upper
//           bound (mit-han-lab/Quest).
// Every policy attends to all initial tokens and, when |M| <= budget.select, to all of M; it
// never returns more than budget.select middle tokens per list, nor a token >= local_begin.
// Scores live in options.score_space: `rotated` (queries rotated to w, keys before RoPE: the
// long-branch logit) or `plain` (both before RoPE).
#pragma once

#include <cstdint>
#include <memory>

#include "attention/policy.h"
#include "attention/projection.h"
#include "model/config.h"

namespace esa::attention {

inline constexpr int64_t kInfllmBlock = 128;          // tokens per InfLLM memory block
inline constexpr int64_t kInfllmRepresentatives = 4;  // representative tokens per block and KV head
inline constexpr int64_t kQuestPage = 16;             // tokens per Quest page

/// The chunk's queries in the score space: in.q [T, Hq, d] (before RoPE) folded over each KV
/// group to [T, Hkv, d] and, for `rotated`, rotated to position w. What every scoring policy
/// scores with, and what `esa dump` records for calibration.
Tensor score_space_queries(const LayerInputs& in, int64_t n_kv_heads, ScoreSpace space, int64_t w);

/// The policy for kind oracle, esa, infllm or quest; throws esa::Error for any other kind. esa reads
/// options.projection (proj.h5, projection_file.h; "" means the identity projection). esa with individual heads needs a per-KV-head (block-diagonal) projection, as the
/// identity is; a projection that mixes heads is an error at the first selection.
std::unique_ptr<Policy> make_scoring_policy(const PolicyOptions& options, const ModelConfig& config);

/// esa with an explicit projection (tests, benchmarks, evaluating a calibration). The projection's
/// in_dim must be n_kv_heads * head_dim and it must have a layer for every layer it is asked about.
std::unique_ptr<Policy> make_esa_policy(const PolicyOptions& options, Projection projection);

}  // namespace esa::attention
