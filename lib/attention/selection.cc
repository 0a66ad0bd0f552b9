// Selection primitives; see selection.h. References: the float64 brute forces of
// tests/unit/test_selection.cc.
#include "attention/selection.h"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <numeric>

#include "core/error.h"

namespace esa::attention {

namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using StridedMap = Eigen::Map<const RowMatrix, 0, Eigen::OuterStride<>>;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// NaN ranks below every number, so that one bad score cannot break the strict weak order.
inline float rank_value(float s) { return std::isnan(s) ? kNegInf : s; }

}  // namespace

std::vector<float> proximity_max_pool(std::span<const float> scores, int64_t eps) {
  ESA_CHECK(eps >= 0, "proximity_max_pool: eps {} must be >= 0", eps);
  const int64_t n = int64_t(scores.size());
  std::vector<float> out(scores.begin(), scores.end());
  if (eps == 0 || n == 0) return out;
  // Sliding-window maximum with a monotone deque of indices: O(n) for any eps.
  std::deque<int64_t> window;
  int64_t next = 0;
  for (int64_t j = 0; j < n; ++j) {
    const int64_t hi = std::min(n - 1, j + eps);
    for (; next <= hi; ++next) {
      const float v = rank_value(scores[size_t(next)]);
      while (!window.empty() && rank_value(scores[size_t(window.back())]) <= v) window.pop_back();
      window.push_back(next);
    }
    while (window.front() < j - eps) window.pop_front();
    out[size_t(j)] = scores[size_t(window.front())];
  }
  return out;
}

std::vector<int64_t> top_k_indices(std::span<const float> scores, int64_t k) {
  ESA_CHECK(k >= 0, "top_k_indices: k {} must be >= 0", k);
  const int64_t n = int64_t(scores.size());
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), int64_t(0));
  if (k < n) {
    auto better = [&](int64_t a, int64_t b) {
      const float sa = rank_value(scores[size_t(a)]), sb = rank_value(scores[size_t(b)]);
      return sa > sb || (sa == sb && a < b);
    };
    std::nth_element(idx.begin(), idx.begin() + k, idx.end(), better);
    idx.resize(size_t(k));
    std::sort(idx.begin(), idx.end());
  }
  return idx;
}

Tensor gqa_fold(const TensorView& q, int64_t n_kv_heads) {
  ESA_CHECK(q.shape.size() == 3, "gqa_fold: q {} must be [T, heads, head_dim]", q.shape_str());
  const int64_t T = q.shape[0], hq = q.shape[1], d = q.shape[2];
  ESA_CHECK(n_kv_heads > 0 && hq % n_kv_heads == 0, "gqa_fold: {} query heads do not split into {} KV groups", hq,
            n_kv_heads);
  const int64_t group = hq / n_kv_heads;
  Tensor out({T, n_kv_heads, d});
  float* o = out.data();
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t h = 0; h < hq; ++h) {
      const float* src = q.data + (t * hq + h) * d;
      float* dst = o + (t * n_kv_heads + h / group) * d;
      for (int64_t i = 0; i < d; ++i) dst[i] += src[i];
    }
  }
  return out;
}

void gqa_fold_signed(const TensorView& q, int64_t n_kv_heads, Tensor& pos, Tensor& neg) {
  ESA_CHECK(q.shape.size() == 3, "gqa_fold_signed: q {} must be [T, heads, head_dim]", q.shape_str());
  const int64_t T = q.shape[0], hq = q.shape[1], d = q.shape[2];
  ESA_CHECK(n_kv_heads > 0 && hq % n_kv_heads == 0, "gqa_fold_signed: {} query heads do not split into {} KV groups",
            hq, n_kv_heads);
  const int64_t group = hq / n_kv_heads;
  pos = Tensor({T, n_kv_heads, d});
  neg = Tensor({T, n_kv_heads, d});
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t h = 0; h < hq; ++h) {
      const float* src = q.data + (t * hq + h) * d;
      const int64_t off = (t * n_kv_heads + h / group) * d;
      float* p = pos.data() + off;
      float* m = neg.data() + off;
      for (int64_t i = 0; i < d; ++i) {
        p[i] += std::max(src[i], 0.0f);
        m[i] += std::min(src[i], 0.0f);
      }
    }
  }
}

Tensor rotate_to_position(const TensorView& x, int64_t position, const ops::RopeTable& rope,
                          const ops::RopeAngles* angles) {
  ESA_CHECK(x.shape.size() == 3, "rotate_to_position: x {} must be [T, heads, head_dim]", x.shape_str());
  Tensor out(x.shape, std::vector<float>(x.data, x.data + x.numel()));
  ops::rope(out, std::vector<int64_t>(size_t(x.shape[0]), position), rope, angles);
  return out;
}

void dot_scores(const float* q, int64_t q_stride, int64_t T, const float* k, int64_t k_stride, int64_t n, int64_t dim,
                float* out) {
  if (T == 0 || n == 0) return;
  StridedMap Q(q, T, dim, Eigen::OuterStride<>(q_stride));  // [T, dim]
  StridedMap K(k, n, dim, Eigen::OuterStride<>(k_stride));  // [n, dim]
  Eigen::Map<RowMatrix> O(out, T, n);                       // [T, n]
  O.noalias() = Q * K.transpose();
}

Tensor exact_scores(const TensorView& q_folded, const TensorView& keys, int64_t begin, int64_t end, int64_t head) {
  ESA_CHECK(q_folded.shape.size() == 3 && keys.shape.size() == 3, "exact_scores: q {} and keys {} must be 3-d",
            q_folded.shape_str(), keys.shape_str());
  const int64_t T = q_folded.shape[0], hkv = keys.shape[1], d = keys.shape[2];
  ESA_CHECK(q_folded.shape[1] == hkv && q_folded.shape[2] == d, "exact_scores: folded q {} does not match keys {}",
            q_folded.shape_str(), keys.shape_str());
  ESA_CHECK(0 <= begin && begin <= end && end <= keys.shape[0], "exact_scores: range [{}, {}) outside {} keys", begin,
            end, keys.shape[0]);
  ESA_CHECK(head >= -1 && head < hkv, "exact_scores: head {} out of range ({} KV heads)", head, hkv);
  const int64_t width = hkv * d, n = end - begin;
  Tensor out({T, n});
  if (head < 0) {
    dot_scores(q_folded.data, width, T, keys.data + begin * width, width, n, width, out.data());
  } else {
    dot_scores(q_folded.data + head * d, width, T, keys.data + begin * width + head * d, width, n, d, out.data());
  }
  return out;
}

std::vector<float> chunk_importance(int64_t T, int64_t n, const ScoreBlockFn& score_block, bool subtract_row_max,
                                    int64_t max_buffer) {
  std::vector<float> F(size_t(std::max<int64_t>(n, 0)), kNegInf);
  if (n <= 0 || T <= 0) return F;
  const int64_t block = T * n <= max_buffer ? n : std::max<int64_t>(1, max_buffer / T);
  std::vector<float> buf(static_cast<size_t>(T * std::min(block, n)));
  std::vector<float> row_max(size_t(T), subtract_row_max ? kNegInf : 0.0f);
  auto rows_max = [&](int64_t count) {
    for (int64_t c = 0; c < T; ++c) {
      const float* r = buf.data() + c * count;
      float m = row_max[size_t(c)];
      for (int64_t j = 0; j < count; ++j) m = std::max(m, r[j]);
      row_max[size_t(c)] = m;
    }
  };
  auto fold_columns = [&](int64_t m0, int64_t count) {
    float* f = F.data() + m0;
    for (int64_t c = 0; c < T; ++c) {
      const float* r = buf.data() + c * count;
      const float sub = row_max[size_t(c)];
      for (int64_t j = 0; j < count; ++j) f[j] = std::max(f[j], r[j] - sub);
    }
  };
  if (block >= n) {
    score_block(0, n, buf.data());
    if (subtract_row_max) rows_max(n);
    fold_columns(0, n);
    return F;
  }
  // Too large to hold: one pass for the row maxima, a second for F (recomputing the scores).
  if (subtract_row_max) {
    for (int64_t m0 = 0; m0 < n; m0 += block) {
      const int64_t count = std::min(block, n - m0);
      score_block(m0, count, buf.data());
      rows_max(count);
    }
  }
  for (int64_t m0 = 0; m0 < n; m0 += block) {
    const int64_t count = std::min(block, n - m0);
    score_block(m0, count, buf.data());
    fold_columns(m0, count);
  }
  return F;
}

std::vector<int64_t> select_top(std::span<const float> importance, int64_t eps, int64_t k) {
  const std::vector<float> pooled = proximity_max_pool(importance, eps);
  return top_k_indices(pooled, k);
}

std::vector<int64_t> long_list(int64_t init_end, int64_t first, const std::vector<int64_t>& chosen) {
  std::vector<int64_t> out;
  out.reserve(size_t(init_end) + chosen.size());
  for (int64_t i = 0; i < init_end; ++i) out.push_back(i);
  for (int64_t c : chosen) out.push_back(first + c);
  return out;
}

std::vector<int64_t> long_list_all(int64_t init_end, int64_t begin, int64_t end) {
  std::vector<int64_t> out;
  out.reserve(size_t(init_end + std::max<int64_t>(end - begin, 0)));
  for (int64_t i = 0; i < init_end; ++i) out.push_back(i);
  for (int64_t i = begin; i < end; ++i) out.push_back(i);
  return out;
}

}  // namespace esa::attention
