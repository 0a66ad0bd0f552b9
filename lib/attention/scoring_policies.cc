// The scoring policies oracle, esa, infllm and quest (see scoring_policies.h); the primitives
// they compose are in selection.h. References: PAPER.md sections 2, 3 and 5; thunlp/InfLLM
// (context_manager.py: blocks, representative keys, block top-k); mit-han-lab/Quest (page
// min/max metadata and the bound sum_i max(q_i min_i, q_i max_i)).
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
#include "attention/scoring_policies.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "attention/projection_file.h"
#include "attention/selection.h"
#include "core/error.h"

namespace esa::attention {
namespace {

// Geometry of one call, checked once.
struct Step {
  ContextSplit split;
  int64_t S = 0, T = 0, hq = 0, hkv = 0, d = 0, width = 0;
  int64_t m0 = 0, m1 = 0;  // middle tokens [m0, m1)
  int64_t middle() const { return m1 - m0; }
};

Step prepare(const LayerInputs& in, const Budget& budget, const char* who) {
  ESA_CHECK(in.cache != nullptr && in.rope != nullptr, "{}: layer inputs without a cache or a RoPE table", who);
  ESA_CHECK(in.layer >= 0 && in.layer < in.cache->n_layers(), "{}: layer {} out of range ({} layers)", who, in.layer,
            in.cache->n_layers());
  ESA_CHECK(in.q.shape.size() == 3, "{}: q {} must be [T, heads, head_dim]", who, in.q.shape_str());
  const TensorView keys = in.cache->keys(in.layer);
  Step s;
  s.S = keys.shape[0];
  s.T = in.q.shape[0];
  s.hq = in.q.shape[1];
  s.hkv = keys.shape[1];
  s.d = keys.shape[2];
  s.width = s.hkv * s.d;
  ESA_CHECK(in.q.shape[2] == s.d && s.hq % s.hkv == 0, "{}: q {} does not fit the cache's {} KV heads of dim {}", who,
            in.q.shape_str(), s.hkv, s.d);
  ESA_CHECK(s.T <= s.S, "{}: chunk of {} queries but only {} cached tokens in layer {}", who, s.T, s.S, in.layer);
  s.split = split_context(budget, in.chunk_begin());
  s.m0 = s.split.init_end;
  s.m1 = s.split.local_begin;
  return s;
}

class ScoringPolicy : public Policy {
 protected:
  explicit ScoringPolicy(PolicyOptions o) : Policy(std::move(o)) {}

  bool replaceable_on_device() const final { return true; }

  bool individual() const { return options_.heads == HeadMode::individual; }
  int64_t lists(const Step& s) const { return individual() ? s.hkv : 1; }

  // Every middle token, in each list.
  Selection all_middle(const Step& s) const {
    Selection sel;
    sel.local_begin = s.split.local_begin;
    sel.long_tokens.assign(size_t(lists(s)), long_list_all(s.split.init_end, s.m0, s.m1));
    return sel;
  }

  // q~ [T, Hkv, d] in the options' score space.
  Tensor score_queries(const LayerInputs& in, const Step& s) const {
    return score_space_queries(in, s.hkv, options_.score_space, options_.query_position());
  }

  // Per-layer state vectors, grown on first use.
  template <class V>
  static V& layer_state(std::vector<V>& states, int64_t layer) {
    if (int64_t(states.size()) <= layer) states.resize(size_t(layer + 1));
    return states[size_t(layer)];
  }
};

// ---- oracle ---------------------------------------------------------------------------------

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
};

// ---- esa ------------------------------------------------------------------------------------

class EsaPolicy final : public ScoringPolicy {
 public:
  EsaPolicy(PolicyOptions o, Projection projection) : ScoringPolicy(std::move(o)), proj_(std::move(projection)) {
    proj_.validate();
  }

  const Projection* esa_projection() const override { return &proj_; }

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

// ---- infllm ---------------------------------------------------------------------------------

class InfllmPolicy final : public ScoringPolicy {
 public:
  explicit InfllmPolicy(PolicyOptions o) : ScoringPolicy(std::move(o)) {}

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

// ---- quest ----------------------------------------------------------------------------------

class QuestPolicy final : public ScoringPolicy {
 public:
  explicit QuestPolicy(PolicyOptions o) : ScoringPolicy(std::move(o)) {}

  Selection select(const LayerInputs& in) override {
    const Step s = prepare(in, options_.budget, "quest");
    if (s.middle() <= options_.budget.select) return all_middle(s);
    Layer& st = layer_state(layers_, in.layer);
    update_pages(in, s, st);
    // The last page of M may be partial: its metadata is computed now and dropped at the end.
    const int64_t full = st.pages, tail = s.middle() - full * kQuestPage;
    if (tail > 0) append_page(in, s, s.m0 + full * kQuestPage, tail, st);
    const int64_t pages = full + (tail > 0 ? 1 : 0);

    // Quest's bound per head h and channel i: max(q_i min_i, q_i max_i) = q+_i max_i + q-_i min_i,
    // so the sum over the heads of a group folds the positive and negative parts separately:
    // two GEMMs against the page maxima and minima.
    Tensor qr = options_.score_space == ScoreSpace::rotated
                    ? rotate_to_position(in.q, options_.query_position(), *in.rope, in.angles)
                    : Tensor(in.q.shape, std::vector<float>(in.q.data, in.q.data + in.q.numel()));
    Tensor pos, neg;  // [T, Hkv, d] each
    gqa_fold_signed(qr.view(), s.hkv, pos, neg);

    Selection sel;
    sel.local_begin = s.split.local_begin;
    std::vector<float> tmp;
    for (int64_t g = 0; g < lists(s); ++g) {
      const int64_t off = individual() ? g * s.d : 0, dim = individual() ? s.d : s.width;
      const std::vector<float> F = chunk_importance(
          s.T, pages,
          [&](int64_t p0, int64_t count, float* out) {
            tmp.resize(size_t(s.T * count));
            dot_scores(pos.data() + off, s.width, s.T, st.max.data() + p0 * s.width + off, s.width, count, dim, out);
            dot_scores(neg.data() + off, s.width, s.T, st.min.data() + p0 * s.width + off, s.width, count, dim,
                       tmp.data());
            for (int64_t i = 0; i < s.T * count; ++i) out[i] += tmp[size_t(i)];
          },
          /*subtract_row_max=*/false);
      const std::vector<int64_t> chosen = top_k_indices(F, options_.budget.select / kQuestPage);
      std::vector<int64_t> list = long_list_all(s.split.init_end, 0, 0);
      for (int64_t p : chosen) {
        const int64_t b = s.m0 + p * kQuestPage, e = std::min(b + kQuestPage, s.m1);
        for (int64_t i = b; i < e; ++i) list.push_back(i);
      }
      sel.long_tokens.push_back(std::move(list));
    }
    st.min.resize(size_t(full * s.width));
    st.max.resize(size_t(full * s.width));
    return sel;
  }

 private:
  struct Layer {
    std::vector<float> min, max;  // [pages, Hkv, d]: per channel, over the page's keys (before RoPE)
    int64_t pages = 0;            // full pages cached
    int64_t origin = -1;          // first middle token when the pages were cut
  };

  static void append_page(const LayerInputs& in, const Step& s, int64_t begin, int64_t count, Layer& st) {
    const float* keys = in.cache->keys(in.layer).data + begin * s.width;
    const size_t at = st.min.size();
    st.min.insert(st.min.end(), keys, keys + s.width);
    st.max.insert(st.max.end(), keys, keys + s.width);
    float* mn = st.min.data() + at;
    float* mx = st.max.data() + at;
    for (int64_t j = 1; j < count; ++j) {
      const float* k = keys + j * s.width;
      for (int64_t i = 0; i < s.width; ++i) {
        mn[i] = std::min(mn[i], k[i]);
        mx[i] = std::max(mx[i], k[i]);
      }
    }
  }

  static void update_pages(const LayerInputs& in, const Step& s, Layer& st) {
    if (st.origin != s.m0) {
      st.pages = 0;
      st.min.clear();
      st.max.clear();
      st.origin = s.m0;
    }
    const int64_t full = s.middle() / kQuestPage;
    if (st.pages > full) {  // the cache was truncated
      st.pages = full;
      st.min.resize(size_t(full * s.width));
      st.max.resize(size_t(full * s.width));
    }
    for (; st.pages < full; ++st.pages) append_page(in, s, s.m0 + st.pages * kQuestPage, kQuestPage, st);
  }

  std::vector<Layer> layers_;
};

}  // namespace

Tensor score_space_queries(const LayerInputs& in, int64_t n_kv_heads, ScoreSpace space, int64_t w) {
  // RoPE is linear and the same for every head: rotating the Hkv folded rows equals folding
  // the Hq rotated ones, at a fraction of the cost.
  Tensor q = gqa_fold(in.q, n_kv_heads);
  if (space == ScoreSpace::rotated) q = rotate_to_position(q.view(), w, *in.rope, in.angles);
  return q;
}

std::unique_ptr<Policy> make_esa_policy(const PolicyOptions& options, Projection projection) {
  options.validate();
  ESA_CHECK(options.kind == PolicyKind::esa, "make_esa_policy: policy '{}' is not esa", policy_name(options.kind));
  return std::make_unique<EsaPolicy>(options, std::move(projection));
}

std::unique_ptr<Policy> make_scoring_policy(const PolicyOptions& options, const ModelConfig& config) {
  options.validate();
  switch (options.kind) {
    case PolicyKind::oracle: return std::make_unique<OraclePolicy>(options);
    case PolicyKind::infllm: return std::make_unique<InfllmPolicy>(options);
    case PolicyKind::quest: return std::make_unique<QuestPolicy>(options);
    case PolicyKind::esa:
      if (!options.projection.empty()) {
        return make_esa_policy(options, read_projection(options.projection, config, options));
      }
      return make_esa_policy(options, Projection::identity(config.n_layers, config.n_kv_heads * config.head_dim));
    default:
      ESA_FAIL("make_scoring_policy: '{}' is not a scoring policy (oracle, esa, infllm, quest)",
               policy_name(options.kind));
  }
}

}  // namespace esa::attention
