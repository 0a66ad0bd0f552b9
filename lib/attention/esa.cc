// esa (PAPER.md sections 2-3): the oracle's pipeline on compressed scores q' . k' (projection.h),
// with a per-layer cache of k' for every token, extended by the new tokens of each step. GPU half:
// esa_cuda.cc (the projection uploaded, k' kept on the device).
#include "attention/policies.h"
#include "attention/projection_file.h"
#include "attention/scoring.h"
#include "attention/selection.h"
#include "core/error.h"

namespace esa::attention {

#ifdef ESA_WITH_CUDA
std::unique_ptr<DeviceSelector> make_esa_selector(const DeviceContext& context, const PolicyOptions& options,
                                                  const Projection& projection);
#endif

namespace {

class EsaPolicy final : public ScoringPolicy {
 public:
  EsaPolicy(PolicyOptions o, Projection projection) : ScoringPolicy(std::move(o)), proj_(std::move(projection)) {
    proj_.validate();
  }

  std::unique_ptr<DeviceSelector> make_device_selector(const DeviceContext& context) const override {
#ifdef ESA_WITH_CUDA
    // The score kernels take d' a multiple of 8 up to 256, the same for every layer.
    bool takes = device_takes_options() && !proj_.layers.empty();
    for (const LayerProjection& layer : proj_.layers) {
      takes = takes && layer.dim % 8 == 0 && layer.dim <= 256 && layer.dim == proj_.layers[0].dim;
    }
    if (takes) return make_esa_selector(context, options_, proj_);
#endif
    (void)context;
    return nullptr;
  }

  Selection select(const LayerInputs& in) override {
    const Step s = prepare(in, options_.budget, "esa");
    ESA_CHECK(proj_.in_dim == s.width, "esa: projection input dimension {} but the cache has {} KV heads x {} = {}",
              proj_.in_dim, s.hkv, s.d, s.width);
    ESA_CHECK(in.layer < int64_t(proj_.layers.size()), "esa: projection has {} layers, layer {} requested",
              proj_.layers.size(), in.layer);
    const int64_t dim = proj_.layers[size_t(in.layer)].dim;
    // Compressed-key cache: k' of every token, extended by the new ones (a shorter KV cache
    // means it was truncated: drop the tail).
    std::vector<float>& kc = layer_state(compressed_, in.layer);  // [tokens, dim]
    const int64_t have = int64_t(kc.size()) / dim;
    if (have > s.S) kc.resize(size_t(s.S * dim));
    if (have < s.S) {
      proj_.append_keys(in.layer, in.cache->keys(in.layer).data + have * s.width, s.S - have, kc);
    }
    if (s.middle() <= options_.budget.select) return all_middle(s);

    const Tensor q = score_queries(in, s);  // [T, Hkv * d]
    std::vector<float> qc;                  // [T, dim]
    proj_.project_queries(in.layer, q.data(), s.T, qc);
    const float* kmid = kc.data() + s.m0 * dim;  // [|M|, dim]
    if (individual()) return select_individual(s, in.layer, qc, kmid, dim);
    const std::vector<float> F = chunk_importance(s.T, s.middle(), [&](int64_t j0, int64_t count, float* out) {
      dot_scores(qc.data(), dim, s.T, kmid + j0 * dim, dim, count, dim, out);
    });
    Selection sel;
    sel.local_begin = s.split.local_begin;
    sel.long_tokens.push_back(long_list(s.split.init_end, s.m0, select_top(F, options_.eps, options_.budget.select)));
    return sel;
  }

 private:
  // Individual heads: each KV head g selects with its own block of the compressed vectors,
  // q'_g . k'_g. That is a per-head score only when the projection maps head g's dimensions to
  // block g alone (block-diagonal, as the identity is), which is checked once per layer.
  Selection select_individual(const Step& s, int64_t layer, const std::vector<float>& qc, const float* kmid,
                              int64_t dim) {
    check_block_diagonal(layer, s.hkv, s.d);
    const int64_t dh = dim / s.hkv;
    Selection sel;
    sel.local_begin = s.split.local_begin;
    for (int64_t g = 0; g < s.hkv; ++g) {
      const std::vector<float> F = chunk_importance(s.T, s.middle(), [&](int64_t j0, int64_t count, float* out) {
        dot_scores(qc.data() + g * dh, dim, s.T, kmid + j0 * dim + g * dh, dim, count, dh, out);
      });
      sel.long_tokens.push_back(long_list(s.split.init_end, s.m0, select_top(F, options_.eps, options_.budget.select)));
    }
    return sel;
  }

  void check_block_diagonal(int64_t layer, int64_t hkv, int64_t d) {
    if (int64_t(block_checked_.size()) <= layer) block_checked_.resize(size_t(layer + 1), false);
    if (block_checked_[size_t(layer)]) return;
    const LayerProjection& p = proj_.layers[size_t(layer)];
    ESA_CHECK(p.dim % hkv == 0, "esa: --heads individual needs a per-KV-head projection; layer {} has d' = {} for {} KV heads",
              layer, p.dim, hkv);
    const int64_t dh = p.dim / hkv;
    for (const std::vector<float>* w : {&p.wq, &p.wk}) {
      for (int64_t r = 0; r < p.dim; ++r) {
        for (int64_t c = 0; c < proj_.in_dim; ++c) {
          ESA_CHECK(r / dh == c / d || (*w)[size_t(r * proj_.in_dim + c)] == 0.0f,
                    "esa: --heads individual needs a per-KV-head (block-diagonal) projection; layer {} mixes heads", layer);
        }
      }
    }
    block_checked_[size_t(layer)] = true;
  }

  Projection proj_;
  std::vector<bool> block_checked_;
  std::vector<std::vector<float>> compressed_;  // per layer: [tokens, dim]
};

}  // namespace

std::unique_ptr<Policy> make_esa_policy(const PolicyOptions& options, Projection projection) {
  options.validate();
  ESA_CHECK(options.kind == PolicyKind::esa, "make_esa_policy: policy '{}' is not esa", policy_name(options.kind));
  return std::make_unique<EsaPolicy>(options, std::move(projection));
}

std::unique_ptr<Policy> make_esa_policy(const PolicyOptions& options, const ModelConfig& config) {
  if (!options.projection.empty()) return make_esa_policy(options, read_projection(options.projection, config, options));
  return make_esa_policy(options, Projection::identity(config.n_layers, config.n_kv_heads * config.head_dim));
}

}  // namespace esa::attention
