#include "engine/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"

namespace esa {

int32_t argmax(const float* logits, int64_t n) {
  int64_t best = -1;  // none yet: NaN never wins (as cuda::launch_argmax_rows)
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isnan(logits[i]) && (best < 0 || logits[i] > logits[best])) best = i;
  }
  return best < 0 ? 0 : int32_t(best);
}

GenerateResult generate_greedy(const LlamaModel& model, std::span<const int32_t> prompt, const GenerateOptions& options,
                               const std::function<void(int32_t)>& on_token) {
  ESA_CHECK(!prompt.empty(), "generate: empty prompt");
  ESA_CHECK(options.max_new >= 0, "generate: --max-new must be >= 0, got {}", options.max_new);
  using clock = std::chrono::steady_clock;
  GenerateResult r;
  r.prompt_tokens = int64_t(prompt.size());
  KvCache cache = model.make_cache();
  cache.reserve(int64_t(prompt.size()) + options.max_new);
  ForwardOptions fwd;
  fwd.chunk = options.chunk;
  fwd.policy = options.policy;
  fwd.cuda_graphs = options.cuda_graphs;

  const auto t0 = clock::now();
  Tensor logits = model.forward(prompt, cache, fwd);
  r.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  r.stop_reason = "max tokens";
  const auto t1 = clock::now();
  auto is_stop = [&](int32_t id) {
    return std::find(options.stop_ids.begin(), options.stop_ids.end(), id) != options.stop_ids.end();
  };
  auto accept = [&](int32_t id) {
    if (is_stop(id)) {
      r.stop_reason = "stop token";
      return false;
    }
    r.tokens.push_back(id);
    if (on_token) on_token(id);
    return true;
  };
  if (options.max_new > 0 && accept(argmax(logits.data(), logits.numel()))) {
    // The rest on the device when the model is there (LlamaModel::decode_greedy).
    model.decode_greedy(r.tokens.back(), options.max_new - 1, cache, fwd, accept);
  }
  r.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  r.kv_cache_bytes = cache.bytes_allocated();
  return r;
}

}  // namespace esa
