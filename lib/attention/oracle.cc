// oracle (PAPER.md section 2): the exact importance f(m; c) = sum_g q~_g . k_g of every middle
// token, per-query max subtracted, max over the chunk, proximity max-pool (eps), top-k: the upper
// bound of what a compressed score (esa) can choose. GPU half: oracle_cuda.cc.
#include "attention/policies.h"
#include "attention/scoring.h"
#include "attention/selection.h"

namespace esa::attention {

#ifdef ESA_WITH_CUDA
std::unique_ptr<DeviceSelector> make_oracle_selector(const DeviceContext& context, const PolicyOptions& options);
#endif

namespace {

class OraclePolicy final : public ScoringPolicy {
 public:
  explicit OraclePolicy(PolicyOptions o) : ScoringPolicy(std::move(o)) {}

  Selection select(const LayerInputs& in) override {
    const Step s = prepare(in, options_.budget, "oracle");
    if (s.middle() <= options_.budget.select) return all_middle(s);
    const Tensor q = score_queries(in, s);  // [T, Hkv, d]
    const float* keys = in.cache->keys(in.layer).data + s.m0 * s.width;  // [|M|, Hkv, d]
    Selection sel;
    sel.local_begin = s.split.local_begin;
    for (int64_t g = 0; g < lists(s); ++g) {
      const int64_t off = individual() ? g * s.d : 0, dim = individual() ? s.d : s.width;
      const std::vector<float> F = chunk_importance(s.T, s.middle(), [&](int64_t j0, int64_t count, float* out) {
        dot_scores(q.data() + off, s.width, s.T, keys + j0 * s.width + off, s.width, count, dim, out);
      });
      sel.long_tokens.push_back(long_list(s.split.init_end, s.m0, select_top(F, options_.eps, options_.budget.select)));
    }
    return sel;
  }

  std::unique_ptr<DeviceSelector> make_device_selector(const DeviceContext& context) const override {
#ifdef ESA_WITH_CUDA
    if (device_takes_options()) return make_oracle_selector(context, options_);
#endif
    (void)context;
    return nullptr;
  }
};

}  // namespace

std::unique_ptr<Policy> make_oracle_policy(const PolicyOptions& options) {
  options.validate();
  return std::make_unique<OraclePolicy>(options);
}

}  // namespace esa::attention
