// Attention on the CPU: per query head, one GEMM for the scores and one for the output over
// strided Eigen maps (no copies of q, k, v); OpenMP over heads, Eigen single-threaded inside.
#include <Eigen/Core>

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
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t h = 0; h < hq; ++h) {
    const int64_t g = h / group;
    StridedConst Q(q + h * d, T, d, Eigen::OuterStride<>(hq * d));   // [T, d]
    StridedConst K(k + g * d, S, d, Eigen::OuterStride<>(hkv * d));  // [S, d]
    StridedConst V(v + g * d, S, d, Eigen::OuterStride<>(hkv * d));  // [S, d]
    Strided O(out + h * d, T, d, Eigen::OuterStride<>(hq * d));      // [T, d]
    RowMatrix P(T, S);                                               // [T, S]
    P.noalias() = (Q * K.transpose()) * args.scale;
    for (int64_t i = 0; i < T; ++i) {
      float* row = P.data() + i * S;
      float m = neg_inf;
      for (int64_t j = 0; j < S; ++j) {
        if (args.causal && k_pos[j] > q_pos[i]) row[j] = neg_inf;
        m = std::max(m, row[j]);
      }
      if (m == neg_inf) {  // sees no key
        for (int64_t j = 0; j < S; ++j) row[j] = 0.0f;
        if (lse != nullptr) lse[i * hq + h] = neg_inf;
        continue;
      }
      double sum = 0.0;
      for (int64_t j = 0; j < S; ++j) {
        row[j] = std::exp(row[j] - m);
        sum += row[j];
      }
      const float inv = float(1.0 / sum);
      for (int64_t j = 0; j < S; ++j) row[j] *= inv;
      if (lse != nullptr) lse[i * hq + h] = m + float(std::log(sum));
    }
    O.noalias() = P * V;
  }
}

}  // namespace esa::ops
