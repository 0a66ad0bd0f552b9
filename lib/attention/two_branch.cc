#include "attention/two_branch.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "ops/attention.h"

namespace esa::attention {
namespace {

// Rows `tokens` of a [S, kv, d] cache view, for KV heads [g0, g0 + n) -> [count, n, d].
Tensor gather(const TensorView& src, const std::vector<int64_t>& tokens, int64_t g0, int64_t n) {
  const int64_t kv = src.shape[1], d = src.shape[2];
  Tensor out({int64_t(tokens.size()), n, d});
  for (size_t i = 0; i < tokens.size(); ++i) {
    std::memcpy(out.data() + int64_t(i) * n * d, src.data + (tokens[i] * kv + g0) * d, size_t(n * d) * sizeof(float));
  }
  return out;
}

// Heads [h0, h0 + n) of a [T, H, d] tensor -> [T, n, d].
Tensor heads_of(const Tensor& x, int64_t h0, int64_t n) {
  const int64_t T = x.dim(0), H = x.dim(1), d = x.dim(2);
  Tensor out({T, n, d});
  for (int64_t t = 0; t < T; ++t) {
    std::memcpy(out.data() + t * n * d, x.data() + (t * H + h0) * d, size_t(n * d) * sizeof(float));
  }
  return out;
}

}  // namespace

void merge_by_lse(Tensor& o1, Tensor& lse1, const Tensor& o2, const Tensor& lse2) {
  ESA_CHECK(o1.shape() == o2.shape() && lse1.shape() == lse2.shape(), "merge_by_lse: shapes differ");
  const int64_t rows = lse1.numel(), d = o1.numel() / std::max<int64_t>(rows, 1);
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (int64_t r = 0; r < rows; ++r) {
    const float l1 = lse1.data()[r], l2 = lse2.data()[r];
    if (l2 == neg_inf) continue;
    float* a = o1.data() + r * d;
    const float* b = o2.data() + r * d;
    if (l1 == neg_inf) {
      std::memcpy(a, b, size_t(d) * sizeof(float));
      lse1.data()[r] = l2;
      continue;
    }
    const float m = std::max(l1, l2);
    const double w1 = std::exp(double(l1 - m)), w2 = std::exp(double(l2 - m));
    const double inv = 1.0 / (w1 + w2);
    for (int64_t i = 0; i < d; ++i) a[i] = float((w1 * a[i] + w2 * b[i]) * inv);
    lse1.data()[r] = m + float(std::log(w1 + w2));
  }
}

void two_branch_attention(const LayerInputs& in, const Selection& sel, int64_t w, Tensor& out) {
  const KvCache& cache = *in.cache;
  const int64_t T = in.q.shape[0], hq = in.q.shape[1], d = in.q.shape[2];
  const int64_t S = cache.length(in.layer), begin = S - T;
  const TensorView keys = cache.keys(in.layer), keys_rot = cache.keys_rotated(in.layer), values = cache.values(in.layer);
  const int64_t hkv = keys.shape[1], group = hq / hkv;
  ESA_CHECK(sel.local_begin >= 0 && sel.local_begin <= begin, "attention policy: local branch starts at {}, chunk at {}",
            sel.local_begin, begin);
  ESA_CHECK(sel.long_tokens.size() == 1 || int64_t(sel.long_tokens.size()) == hkv,
            "attention policy: {} long-branch lists for {} KV heads", sel.long_tokens.size(), hkv);
  const float scale = float(1.0 / std::sqrt(double(d)));

  // Local branch: window + chunk at true positions, causal.
  Tensor q_true({T, hq, d}, std::vector<float>(in.q.data, in.q.data + in.q.numel()));
  std::vector<int64_t> q_pos(static_cast<size_t>(T)), k_pos(static_cast<size_t>(S - sel.local_begin));
  for (int64_t t = 0; t < T; ++t) q_pos[size_t(t)] = begin + t;
  for (int64_t s = sel.local_begin; s < S; ++s) k_pos[size_t(s - sel.local_begin)] = s;
  ops::rope(q_true, q_pos, *in.rope, in.angles);
  const int64_t n_local = S - sel.local_begin;
  const TensorView k_local{keys_rot.data + sel.local_begin * hkv * d, {n_local, hkv, d}, DType::f32, Device::cpu};
  const TensorView v_local{values.data + sel.local_begin * hkv * d, {n_local, hkv, d}, DType::f32, Device::cpu};
  Tensor lse;
  ops::attention(q_true.view(), k_local, v_local, q_pos, k_pos, {scale, true}, out, &lse);

  // Long branch: selected tokens with keys at position 0 (unrotated) and queries at w.
  bool any_long = false;
  for (const auto& list : sel.long_tokens) any_long = any_long || !list.empty();
  if (!any_long) return;
  for (const auto& list : sel.long_tokens) {
    for (int64_t t : list) {
      ESA_CHECK(t >= 0 && t < sel.local_begin, "attention policy: long-branch token {} is not before the local branch ({})",
                t, sel.local_begin);
    }
  }
  Tensor q_w({T, hq, d}, std::vector<float>(in.q.data, in.q.data + in.q.numel()));
  ops::rope(q_w, std::vector<int64_t>(size_t(T), w), *in.rope, in.angles);
  const std::vector<int64_t> zero_q(size_t(T), 0);
  Tensor o_long, lse_long;
  if (sel.long_tokens.size() == 1) {
    const std::vector<int64_t>& tokens = sel.long_tokens[0];
    const Tensor k = gather(keys, tokens, 0, hkv), v = gather(values, tokens, 0, hkv);
    ops::attention(q_w.view(), k.view(), v.view(), zero_q, std::vector<int64_t>(tokens.size(), 0), {scale, false}, o_long,
                   &lse_long);
  } else {
    // One list per KV head: each group of query heads attends to its own selection.
    o_long = Tensor({T, hq, d});
    lse_long = Tensor({T, hq});
    for (int64_t g = 0; g < hkv; ++g) {
      const std::vector<int64_t>& tokens = sel.long_tokens[size_t(g)];
      const Tensor k = gather(keys, tokens, g, 1), v = gather(values, tokens, g, 1);
      const Tensor qg = heads_of(q_w, g * group, group);
      Tensor og, lg;
      ops::attention(qg.view(), k.view(), v.view(), zero_q, std::vector<int64_t>(tokens.size(), 0), {scale, false}, og,
                     &lg);
      for (int64_t t = 0; t < T; ++t) {
        std::memcpy(o_long.data() + (t * hq + g * group) * d, og.data() + t * group * d, size_t(group * d) * sizeof(float));
        std::memcpy(lse_long.data() + t * hq + g * group, lg.data() + t * group, size_t(group) * sizeof(float));
      }
    }
  }
  merge_by_lse(out, lse, o_long, lse_long);
}

}  // namespace esa::attention
