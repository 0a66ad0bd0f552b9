#include "engine/generate.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace esa {

int32_t argmax(const float* logits, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return int32_t(best);
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

  const auto t0 = clock::now();
  Tensor logits = model.forward(prompt, cache, fwd);
  r.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  r.stop_reason = "max tokens";
  const auto t1 = clock::now();
  for (int64_t i = 0; i < options.max_new; ++i) {
    const int32_t next = argmax(logits.data(), logits.numel());
    if (std::find(options.stop_ids.begin(), options.stop_ids.end(), next) != options.stop_ids.end()) {
      r.stop_reason = "stop token";
      break;
    }
    r.tokens.push_back(next);
    if (on_token) on_token(next);
    if (i + 1 == options.max_new) break;
    logits = model.forward(std::span<const int32_t>(&next, 1), cache, fwd);
  }
  r.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  r.kv_cache_bytes = cache.bytes_allocated();
  return r;
}

}  // namespace esa
