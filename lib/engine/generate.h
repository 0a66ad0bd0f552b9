// Greedy generation: chunked prefill of the prompt, then one token at a time until a stop
// token or the token budget, with timings for prefill and decode.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "engine/llama.h"

namespace esa {

struct GenerateOptions {
  int64_t max_new = 64;             // tokens to generate at most
  std::vector<int32_t> stop_ids;    // generation ends after emitting one of these (not returned)
  int64_t chunk = 512;              // prefill chunk
  attention::Policy* policy = nullptr;  // null: exact causal attention (see ForwardOptions)
  bool cuda_graphs = true;          // ForwardOptions::cuda_graphs
};

struct GenerateResult {
  std::vector<int32_t> tokens;      // generated ids, without the stop token
  std::string stop_reason;          // "stop token", "max tokens"
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;      // after the first generated token
  size_t kv_cache_bytes = 0;
};

/// Index of the largest logit (the lowest index on ties; NaN never wins, all NaN gives 0).
int32_t argmax(const float* logits, int64_t n);

/// Greedy decoding. `on_token` (optional) sees each generated id as soon as it exists.
GenerateResult generate_greedy(const LlamaModel& model, std::span<const int32_t> prompt, const GenerateOptions& options,
                               const std::function<void(int32_t)>& on_token = {});

}  // namespace esa
