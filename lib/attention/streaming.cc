// The two policies that select no middle token: `full` (everything in the local branch: exact
// causal attention) and `streaming` (initial + local tokens only, StreamingLLM / LM-Infinite).
// GPU halves: streaming_cuda.cc.
#include <numeric>

#include "attention/device_selector.h"
#include "attention/policies.h"

namespace esa::attention {

#ifdef ESA_WITH_CUDA
std::unique_ptr<DeviceSelector> make_full_selector(const DeviceContext& context);
std::unique_ptr<DeviceSelector> make_streaming_selector(const DeviceContext& context, const PolicyOptions& options);
#endif

namespace {

class FullPolicy final : public Policy {
 public:
  explicit FullPolicy(PolicyOptions o) : Policy(std::move(o)) {}
  Selection select(const LayerInputs&) override { return Selection{0, {{}}}; }
  bool reads_keys_before_rope() const override { return false; }

  std::unique_ptr<DeviceSelector> make_device_selector(const DeviceContext& context) const override {
#ifdef ESA_WITH_CUDA
    return make_full_selector(context);
#else
    (void)context;
    return nullptr;
#endif
  }
};

class StreamingPolicy final : public Policy {
 public:
  explicit StreamingPolicy(PolicyOptions o) : Policy(std::move(o)) {}
  Selection select(const LayerInputs& in) override {
    const ContextSplit split = split_context(options_.budget, in.chunk_begin());
    Selection s;
    s.local_begin = split.local_begin;
    s.long_tokens.emplace_back(size_t(split.init_end));
    std::iota(s.long_tokens[0].begin(), s.long_tokens[0].end(), int64_t(0));
    return s;
  }

  std::unique_ptr<DeviceSelector> make_device_selector(const DeviceContext& context) const override {
#ifdef ESA_WITH_CUDA
    return make_streaming_selector(context, options_);
#else
    (void)context;
    return nullptr;
#endif
  }
};

}  // namespace

std::unique_ptr<Policy> make_full_policy(const PolicyOptions& options) {
  options.validate();
  return std::make_unique<FullPolicy>(options);
}

std::unique_ptr<Policy> make_streaming_policy(const PolicyOptions& options) {
  options.validate();
  return std::make_unique<StreamingPolicy>(options);
}

}  // namespace esa::attention
