// linear on the CPU: one Eigen GEMM over row-major maps (Eigen parallelises it with OpenMP).
#include <Eigen/Core>

#include "ops/linear.h"

namespace esa::ops {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

void linear_cpu(const float* x, const float* w, const float* bias, float* y, int64_t rows, int64_t in, int64_t out) {
  Eigen::Map<const RowMatrix> X(x, rows, in);   // [T, in]
  Eigen::Map<const RowMatrix> W(w, out, in);    // [out, in]
  Eigen::Map<RowMatrix> Y(y, rows, out);        // [T, out]
  Y.noalias() = X * W.transpose();
  if (bias != nullptr) {
    Eigen::Map<const Eigen::RowVectorXf> B(bias, out);
    Y.rowwise() += B;
  }
}

}  // namespace esa::ops
