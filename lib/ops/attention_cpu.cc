// Attention on the CPU. Work is split into (query head, block of query rows) tasks over
// OpenMP; each task does one GEMM for the scores and one for the output over strided Eigen
// maps (no copies of q, k, v), with Eigen single-threaded inside. When keys are in ascending
// position order (the KV cache) and masking is causal, a block's GEMMs stop at the last key any
// of its rows can see, and each row's softmax runs over its visible prefix only; the softmax
// exponentials use Eigen's vectorised exp.
#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/attention.h"

namespace esa::ops {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using StridedConst = Eigen::Map<const RowMatrix, 0, Eigen::OuterStride<>>;
using Strided = Eigen::Map<RowMatrix, 0, Eigen::OuterStride<>>;

void attention_cpu(const float* q, const float* k, const float* v, const int64_t* q_pos, const int64_t* k_pos,
                   int64_t T, int64_t S, int64_t hq, int64_t hkv, int64_t d, const AttentionArgs& args, float* out,
                   float* lse) {
  const int64_t group = hq / hkv;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const bool keys_sorted = std::is_sorted(k_pos, k_pos + S);
  const bool prefix_mask = args.causal && keys_sorted;  // visible keys of a row form a prefix
  // Number of keys row i sees when they form a prefix.
  auto visible = [&](int64_t i) -> int64_t {
    if (!args.causal) return S;
    return int64_t(std::upper_bound(k_pos, k_pos + S, q_pos[i]) - k_pos);
  };
  const int64_t block = T <= 64 ? T : 64;
  const int64_t n_blocks = T == 0 ? 0 : (T + block - 1) / block;

#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t task = 0; task < hq * n_blocks; ++task) {
    const int64_t h = task / n_blocks, r0 = (task % n_blocks) * block, rows = std::min(block, T - r0);
    const int64_t g = h / group;
    int64_t s_lim = S;
    if (prefix_mask) {
      s_lim = 0;
      for (int64_t i = r0; i < r0 + rows; ++i) s_lim = std::max(s_lim, visible(i));
    }
    Strided O(out + r0 * hq * d + h * d, rows, d, Eigen::OuterStride<>(hq * d));  // [rows, d]
    if (s_lim == 0) {  // no row of this block sees a key
      O.setZero();
      if (lse != nullptr) for (int64_t i = r0; i < r0 + rows; ++i) lse[i * hq + h] = neg_inf;
      continue;
    }
    StridedConst Q(q + r0 * hq * d + h * d, rows, d, Eigen::OuterStride<>(hq * d));  // [rows, d]
    StridedConst K(k + g * d, s_lim, d, Eigen::OuterStride<>(hkv * d));              // [s_lim, d]
    StridedConst V(v + g * d, s_lim, d, Eigen::OuterStride<>(hkv * d));              // [s_lim, d]
    RowMatrix P(rows, s_lim);                                                        // [rows, s_lim]
    P.noalias() = (Q * K.transpose()) * args.scale;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = r0 + r;
      float* row = P.data() + r * s_lim;
      int64_t n = s_lim;
      if (prefix_mask) {
        n = visible(i);
      } else if (args.causal) {
        for (int64_t j = 0; j < s_lim; ++j) if (k_pos[j] > q_pos[i]) row[j] = neg_inf;
      }
      Eigen::Map<Eigen::ArrayXf> seen(row, n);
      const float m = n > 0 ? seen.maxCoeff() : neg_inf;
      if (m == neg_inf) {  // sees no key
        std::fill(row, row + s_lim, 0.0f);
        if (lse != nullptr) lse[i * hq + h] = neg_inf;
        continue;
      }
      seen = (seen - m).exp();
      if (!prefix_mask && args.causal) {
        for (int64_t j = 0; j < s_lim; ++j) if (k_pos[j] > q_pos[i]) row[j] = 0.0f;
      }
      std::fill(row + n, row + s_lim, 0.0f);
      const double sum = seen.cast<double>().sum();
      seen *= float(1.0 / sum);
      if (lse != nullptr) lse[i * hq + h] = m + float(std::log(sum));
    }
    O.noalias() = P * V;
  }
}

}  // namespace esa::ops
