// infllm (thunlp/InfLLM, context_manager.py): blocks of 128 middle tokens, each represented by the
// mean key of 4 representative tokens; the top blocks by the chunk's mean query's score, plus the
// middle tokens not in a block yet. GPU half: infllm_cuda.cc.
//
// InfLLM's representative tokens. InfLLM picks, per block and head, the 4 tokens that received
// the most attention (summed softmax weights) while they were in the local window. Those weights
// belong to the local branch's arithmetic, which a policy does not see, and recomputing them per
// query would cost as much as the local attention itself. The approximation used here keeps the
// same shape: at every step, per layer and KV head, the chunk's mean query (before RoPE; the mean
// over the chunk's queries and the group's heads) attends by softmax(q . k / sqrt(d)) to every
// token of the window and the chunk, [local_begin, S), keys before RoPE, and each token
// accumulates the weight it receives; once its block has left the window, the 4 tokens with the
// largest accumulated weight (ties: lower position) are the block's representatives, per KV head.
// What this gives up: causality inside the chunk, the positions in the window, and per-query
// (rather than mean-query) softmax; it keeps "the tokens the window's queries attended to most".
#include <algorithm>
#include <cmath>

#include "attention/policies.h"
#include "attention/scoring.h"
#include "attention/selection.h"

namespace esa::attention {

#ifdef ESA_WITH_CUDA
std::unique_ptr<DeviceSelector> make_infllm_selector(const DeviceContext& context, const PolicyOptions& options,
                                                     int64_t block, int64_t representatives);
#endif

namespace {

constexpr int64_t kInfllmBlock = 128;          // tokens per InfLLM memory block
constexpr int64_t kInfllmRepresentatives = 4;  // representative tokens per block and KV head

class InfllmPolicy final : public ScoringPolicy {
 public:
  explicit InfllmPolicy(PolicyOptions o) : ScoringPolicy(std::move(o)) {}

  std::unique_ptr<DeviceSelector> make_device_selector(const DeviceContext& context) const override {
#ifdef ESA_WITH_CUDA
    if (device_takes_options()) return make_infllm_selector(context, options_, kInfllmBlock, kInfllmRepresentatives);
#endif
    (void)context;
    return nullptr;
  }

  Selection select(const LayerInputs& in) override {
    const Step s = prepare(in, options_.budget, "infllm");
    Layer& st = layer_state(layers_, in.layer);
    accumulate_window_attention(in, s, st);
    update_blocks(in, s, st);
    if (s.middle() <= options_.budget.select) return all_middle(s);

    const int64_t select = options_.budget.select;
    const int64_t rem_begin = s.m0 + st.blocks * kInfllmBlock;  // tokens out of the window, no full block yet
    const int64_t rem = s.m1 - rem_begin;
    Selection sel;
    sel.local_begin = s.split.local_begin;
    if (rem >= select) {  // only with select < one block: the most recent ones
      sel.long_tokens.assign(size_t(lists(s)), long_list_all(s.split.init_end, s.m1 - select, s.m1));
      return sel;
    }
    const int64_t n_pick = (select - rem) / kInfllmBlock;
    // Block score = mean over the chunk's queries and the heads of q . block key, i.e. the
    // summed folded query (in the score space) against the block keys, over T * Hq.
    const Tensor q = score_queries(in, s);  // [T, Hkv, d]
    std::vector<float> qsum(size_t(s.width), 0.0f);
    for (int64_t t = 0; t < s.T; ++t) {
      for (int64_t i = 0; i < s.width; ++i) qsum[size_t(i)] += q.data()[t * s.width + i];
    }
    const float scale = 1.0f / float(s.T * s.hq);
    for (auto& v : qsum) v *= scale;
    std::vector<float> scores(static_cast<size_t>(st.blocks));
    for (int64_t g = 0; g < lists(s); ++g) {
      const int64_t off = individual() ? g * s.d : 0, dim = individual() ? s.d : s.width;
      dot_scores(qsum.data() + off, s.width, 1, st.block_keys.data() + off, s.width, st.blocks, dim, scores.data());
      const std::vector<int64_t> chosen = top_k_indices(scores, n_pick);
      std::vector<int64_t> list = long_list_all(s.split.init_end, 0, 0);
      for (int64_t b : chosen) {
        for (int64_t i = 0; i < kInfllmBlock; ++i) list.push_back(s.m0 + b * kInfllmBlock + i);
      }
      for (int64_t i = rem_begin; i < s.m1; ++i) list.push_back(i);
      sel.long_tokens.push_back(std::move(list));
    }
    return sel;
  }

 private:
  struct Layer {
    std::vector<float> received;    // [tokens, Hkv]: attention weight accumulated in the window
    std::vector<float> block_keys;  // [blocks, Hkv, d]: mean key of the representatives
    int64_t blocks = 0;
    int64_t origin = -1;            // first middle token when the blocks were cut
  };

  // See the file comment: the chunk's mean query attends to [local_begin, S), per KV head.
  static void accumulate_window_attention(const LayerInputs& in, const Step& s, Layer& st) {
    st.received.resize(size_t(s.S * s.hkv), 0.0f);
    const int64_t w0 = s.split.local_begin, n = s.S - w0;
    if (n <= 0 || s.T == 0) return;
    const int64_t group = s.hq / s.hkv;
    std::vector<float> qbar(size_t(s.width), 0.0f);  // [Hkv, d]
    for (int64_t t = 0; t < s.T; ++t) {
      for (int64_t h = 0; h < s.hq; ++h) {
        const float* src = in.q.data + (t * s.hq + h) * s.d;
        float* dst = qbar.data() + (h / group) * s.d;
        for (int64_t i = 0; i < s.d; ++i) dst[i] += src[i];
      }
    }
    const float scale = 1.0f / (float(s.T * group) * std::sqrt(float(s.d)));
    for (auto& v : qbar) v *= scale;
    const float* keys = in.cache->keys(in.layer).data + w0 * s.width;
    std::vector<float> logits(static_cast<size_t>(n));
    for (int64_t g = 0; g < s.hkv; ++g) {
      dot_scores(qbar.data() + g * s.d, s.width, 1, keys + g * s.d, s.width, n, s.d, logits.data());
      const float mx = *std::max_element(logits.begin(), logits.end());
      double sum = 0.0;
      for (auto& z : logits) sum += (z = std::exp(z - mx));
      const float inv = float(1.0 / sum);
      for (int64_t j = 0; j < n; ++j) st.received[size_t((w0 + j) * s.hkv + g)] += logits[size_t(j)] * inv;
    }
  }

  // Cuts every block that has wholly left the window; its key per KV head is the mean of the
  // keys (before RoPE) of its 4 tokens that received the most weight.
  static void update_blocks(const LayerInputs& in, const Step& s, Layer& st) {
    if (st.origin != s.m0) {
      st.blocks = 0;
      st.block_keys.clear();
      st.origin = s.m0;
    }
    const int64_t full = std::max<int64_t>(s.middle(), 0) / kInfllmBlock;
    if (st.blocks > full) {  // the cache was truncated
      st.blocks = full;
      st.block_keys.resize(size_t(full * s.width));
    }
    const float* keys = in.cache->keys(in.layer).data;
    std::vector<float> weight(static_cast<size_t>(kInfllmBlock));
    for (; st.blocks < full; ++st.blocks) {
      const int64_t b0 = s.m0 + st.blocks * kInfllmBlock;
      const size_t at = st.block_keys.size();
      st.block_keys.resize(at + size_t(s.width), 0.0f);
      float* bk = st.block_keys.data() + at;
      for (int64_t g = 0; g < s.hkv; ++g) {
        for (int64_t i = 0; i < kInfllmBlock; ++i) weight[size_t(i)] = st.received[size_t((b0 + i) * s.hkv + g)];
        const std::vector<int64_t> reps = top_k_indices(weight, kInfllmRepresentatives);
        for (int64_t r : reps) {
          const float* k = keys + (b0 + r) * s.width + g * s.d;
          for (int64_t i = 0; i < s.d; ++i) bk[g * s.d + i] += k[i];
        }
        for (int64_t i = 0; i < s.d; ++i) bk[g * s.d + i] /= float(reps.size());
      }
    }
  }

  std::vector<Layer> layers_;
};

}  // namespace

std::unique_ptr<Policy> make_infllm_policy(const PolicyOptions& options) {
  options.validate();
  return std::make_unique<InfllmPolicy>(options);
}

}  // namespace esa::attention
