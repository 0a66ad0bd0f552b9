// Attention on the CPU. Work is split into (KV head, block of tokens) tasks over OpenMP; each
// task stacks its group's query heads and does one GEMM for the scores and one for the output
// against strided Eigen maps of k and v (read once per group), Eigen single-threaded inside. When keys are in ascending
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
  // Number of keys token i sees when they form a prefix.
  auto visible = [&](int64_t i) -> int64_t {
    if (!args.causal) return S;
    return int64_t(std::upper_bound(k_pos, k_pos + S, q_pos[i]) - k_pos);
  };
  // A task is one KV head and a block of tokens: the group's query heads are stacked so that
  // each key and value row is read once for all of them (GQA), which is what bounds decoding.
  // About 64 stacked rows per task: the [rows, keys] score block then stays in L2 at long contexts.
  const int64_t block = std::max<int64_t>(1, std::min<int64_t>(T, 64 / group));
  const int64_t n_blocks = T == 0 ? 0 : (T + block - 1) / block;

#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t task = 0; task < hkv * n_blocks; ++task) {
    const int64_t g = task / n_blocks, r0 = (task % n_blocks) * block, tokens = std::min(block, T - r0);
    const int64_t rows = tokens * group;  // row (t, j): token r0 + t, query head g * group + j
    int64_t s_lim = S;
    if (prefix_mask) {
      s_lim = 0;
      for (int64_t i = r0; i < r0 + tokens; ++i) s_lim = std::max(s_lim, visible(i));
    }
    RowMatrix Q(rows, d);  // [rows, d]
    for (int64_t t = 0; t < tokens; ++t) {
      std::copy_n(q + ((r0 + t) * hq + g * group) * d, group * d, Q.data() + t * group * d);
    }
    RowMatrix O(rows, d);  // [rows, d]
    if (s_lim == 0) {
      O.setZero();
      if (lse != nullptr) {
        for (int64_t t = 0; t < tokens; ++t) std::fill_n(lse + (r0 + t) * hq + g * group, group, neg_inf);
      }
    } else {
      StridedConst K(k + g * d, s_lim, d, Eigen::OuterStride<>(hkv * d));  // [s_lim, d]
      StridedConst V(v + g * d, s_lim, d, Eigen::OuterStride<>(hkv * d));  // [s_lim, d]
      RowMatrix P(rows, s_lim);                                            // [rows, s_lim]
      P.noalias() = (Q * K.transpose()) * args.scale;
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = r0 + r / group;
        const int64_t h = g * group + r % group;
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
    for (int64_t t = 0; t < tokens; ++t) {
      std::copy_n(O.data() + t * group * d, group * d, out + ((r0 + t) * hq + g * group) * d);
    }
  }
}

}  // namespace esa::ops
