// The factory of every policy kind (PAPER.md sections 1-5); make_policy (policy.h,
// attention/registry.cc) picks among them by options.kind. Each kind is one stem here:
//   full       streaming.cc   every token in the local branch: exact causal attention;
//   streaming  streaming.cc   initial + local tokens only (StreamingLLM / LM-Infinite);
//   oracle     oracle.cc      exact scores f(m; c) = sum_g q~_g . k_g, per-query max subtracted,
//                             max over the chunk, proximity max-pool (eps), top-k;
//   esa        esa.cc         the same pipeline on compressed scores q' . k' (projection.h);
//   infllm     infllm.cc      blocks of middle tokens scored by representative keys (thunlp/InfLLM);
//   quest      quest.cc       pages of middle tokens scored by Quest's bound (mit-han-lab/Quest).
// Each <p>.cc has its GPU half in <p>_cuda.cc (Policy::make_device_selector); docs/ARCHITECTURE.md
// says where a new policy's parts go.
#pragma once

#include <memory>

#include "attention/policy.h"
#include "attention/projection.h"
#include "model/config.h"

namespace esa::attention {

std::unique_ptr<Policy> make_full_policy(const PolicyOptions& options);
std::unique_ptr<Policy> make_streaming_policy(const PolicyOptions& options);
std::unique_ptr<Policy> make_oracle_policy(const PolicyOptions& options);
std::unique_ptr<Policy> make_infllm_policy(const PolicyOptions& options);
std::unique_ptr<Policy> make_quest_policy(const PolicyOptions& options);

/// esa with options.projection (proj.h5, projection_file.h; "" means the identity projection).
/// esa with individual heads needs a per-KV-head (block-diagonal) projection, as the identity is;
/// a projection that mixes heads is an error at the first selection.
std::unique_ptr<Policy> make_esa_policy(const PolicyOptions& options, const ModelConfig& config);

/// esa with an explicit projection (tests, benchmarks, evaluating a calibration). The projection's
/// in_dim must be n_kv_heads * head_dim and it must have a layer for every layer it is asked about.
std::unique_ptr<Policy> make_esa_policy(const PolicyOptions& options, Projection projection);

}  // namespace esa::attention
