// linear on the CPU: one Eigen GEMM over row-major maps (Eigen parallelises it with OpenMP).
// For a few rows (decoding) Eigen's matrix-vector path runs on one thread, so the output
// features are split across threads instead: decoding reads every weight once per token and
// is bound by memory bandwidth, which one core cannot saturate.
#include <Eigen/Core>

#include <algorithm>

#include "ops/linear.h"

namespace esa::ops {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

void linear_cpu(const float* x, const float* w, const float* bias, float* y, int64_t rows, int64_t in, int64_t out) {
  Eigen::Map<const RowMatrix> X(x, rows, in);   // [T, in]
  Eigen::Map<const RowMatrix> W(w, out, in);    // [out, in]
  Eigen::Map<RowMatrix> Y(y, rows, out);        // [T, out]
  constexpr int64_t kFewRows = 8, kBlock = 256;
  if (rows <= kFewRows && out >= 2 * kBlock) {
#pragma omp parallel for schedule(static)
    for (int64_t o0 = 0; o0 < out; o0 += kBlock) {
      const int64_t n = std::min(kBlock, out - o0);
      Eigen::Map<const RowMatrix> Wb(w + o0 * in, n, in);                                       // [n, in]
      Eigen::Map<RowMatrix, 0, Eigen::OuterStride<>> Yb(y + o0, rows, n, Eigen::OuterStride<>(out));  // [T, n]
      Yb.noalias() = X * Wb.transpose();
    }
  } else {
    Y.noalias() = X * W.transpose();
  }
  if (bias != nullptr) {
    Eigen::Map<const Eigen::RowVectorXf> B(bias, out);
    Y.rowwise() += B;
  }
}

}  // namespace esa::ops
