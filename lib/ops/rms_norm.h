// RMSNorm: y = x / sqrt(mean(x^2) + eps) * w, per row (the sum of squares is accumulated in
// double: rows are a few thousand wide and this is not a hot loop).
#pragma once

#include "core/tensor.h"

namespace esa::ops {

/// x [T, H], w [H]; y is resized to [T, H] (may not alias x).
void rms_norm(const TensorView& x, const TensorView& w, float eps, Tensor& y);
void rms_norm_cpu(const float* x, const float* w, float eps, float* y, int64_t rows, int64_t cols);

}  // namespace esa::ops
