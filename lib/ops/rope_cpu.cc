#include <cmath>
#include <vector>

#include "ops/rope.h"

namespace esa::ops {

void rope_cpu(float* x, const int64_t* positions, int64_t tokens, int64_t heads, int64_t head_dim,
              const RopeTable& table) {
  const int64_t half = table.dim / 2;
#pragma omp parallel for schedule(static) if (tokens > 8)
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<float> cos_t(static_cast<size_t>(half)), sin_t(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i) {
      // float32 angle, as the reference computes position * inv_freq.
      const float angle = float(positions[t]) * float(table.inv_freq[size_t(i)]);
      cos_t[size_t(i)] = float(std::cos(double(angle)) * table.attention_factor);
      sin_t[size_t(i)] = float(std::sin(double(angle)) * table.attention_factor);
    }
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + (t * heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const int64_t a = table.style == RopeStyle::adjacent_pairs ? 2 * i : i;
        const int64_t b = table.style == RopeStyle::adjacent_pairs ? 2 * i + 1 : i + half;
        const float x1 = v[a], x2 = v[b];
        v[a] = x1 * cos_t[size_t(i)] - x2 * sin_t[size_t(i)];
        v[b] = x2 * cos_t[size_t(i)] + x1 * sin_t[size_t(i)];
      }
    }
  }
}

}  // namespace esa::ops
