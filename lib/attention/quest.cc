// quest (mit-han-lab/Quest): pages of 16 middle tokens with per-channel key min/max; the top pages
// by Quest's upper bound sum_i max(q_i min_i, q_i max_i). GPU half: quest_cuda.cc.
#include <algorithm>

#include "attention/policies.h"
#include "attention/scoring.h"
#include "attention/selection.h"

namespace esa::attention {

#ifdef ESA_WITH_CUDA
std::unique_ptr<DeviceSelector> make_quest_selector(const DeviceContext& context, const PolicyOptions& options,
                                                    int64_t page);
#endif

namespace {

constexpr int64_t kQuestPage = 16;  // tokens per Quest page

class QuestPolicy final : public ScoringPolicy {
 public:
  explicit QuestPolicy(PolicyOptions o) : ScoringPolicy(std::move(o)) {}

  std::unique_ptr<DeviceSelector> make_device_selector(const DeviceContext& context) const override {
#ifdef ESA_WITH_CUDA
    if (device_takes_options()) return make_quest_selector(context, options_, kQuestPage);
#endif
    (void)context;
    return nullptr;
  }

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

std::unique_ptr<Policy> make_quest_policy(const PolicyOptions& options) {
  options.validate();
  return std::make_unique<QuestPolicy>(options);
}

}  // namespace esa::attention
