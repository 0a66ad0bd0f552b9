#include <cmath>

#include "ops/rms_norm.h"

namespace esa::ops {

void rms_norm_cpu(const float* x, const float* w, float eps, float* y, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows > 16)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    double ss = 0.0;
    for (int64_t c = 0; c < cols; ++c) ss += double(xr[c]) * xr[c];
    const float inv = float(1.0 / std::sqrt(ss / double(cols) + double(eps)));
    for (int64_t c = 0; c < cols; ++c) yr[c] = xr[c] * inv * w[c];
  }
}

}  // namespace esa::ops
