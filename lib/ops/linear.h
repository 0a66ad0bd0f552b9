// linear: y = x W^T (+ b), the projection of every transformer matmul. W is stored as PyTorch
// Linear weights [out, in] (GGUF's {in, out} is the same memory). Reference: a float64 loop in
// tests/unit/test_ops.cc.
#pragma once

#include "core/tensor.h"

namespace esa::ops {

/// x [T, in], w [out, in], bias [out] or empty (data == nullptr); y is resized to [T, out].
void linear(const TensorView& x, const TensorView& w, const TensorView& bias, Tensor& y);
void linear_cpu(const float* x, const float* w, const float* bias, float* y, int64_t rows, int64_t in, int64_t out);

}  // namespace esa::ops
