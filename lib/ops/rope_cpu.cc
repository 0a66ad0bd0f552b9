#include <cmath>
#include <vector>

#include "ops/rope.h"

namespace esa::ops {

namespace {

// cos/sin of one position's pairs; float32 angle, as the reference computes position * inv_freq.
inline void angles_at(const RopeTable& table, int64_t position, float* cos_out, float* sin_out) {
  const int64_t half = table.dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float angle = float(position) * float(table.inv_freq[size_t(i)]);
    cos_out[i] = float(std::cos(double(angle)) * table.attention_factor);
    sin_out[i] = float(std::sin(double(angle)) * table.attention_factor);
  }
}

}  // namespace

void rope_angles_cpu(const RopeTable& table, int64_t first, int64_t n, float* cos_out, float* sin_out) {
  const int64_t half = table.dim / 2;
#pragma omp parallel for schedule(static) if (n > 64)
  for (int64_t p = 0; p < n; ++p) angles_at(table, first + p, cos_out + p * half, sin_out + p * half);
}

void rope_cpu(float* x, const int64_t* positions, int64_t tokens, int64_t heads, int64_t head_dim,
              const RopeTable& table, const RopeAngles* angles) {
  const int64_t half = table.dim / 2;
  const int64_t cached = angles == nullptr ? 0 : angles->positions();
#pragma omp parallel for schedule(static) if (tokens > 8)
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<float> own_cos, own_sin;
    const float* cos_t;
    const float* sin_t;
    if (positions[t] >= 0 && positions[t] < cached) {
      cos_t = angles->cos.data() + positions[t] * half;
      sin_t = angles->sin.data() + positions[t] * half;
    } else {
      own_cos.resize(size_t(half));
      own_sin.resize(size_t(half));
      angles_at(table, positions[t], own_cos.data(), own_sin.data());
      cos_t = own_cos.data();
      sin_t = own_sin.data();
    }
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + (t * heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const int64_t a = table.style == RopeStyle::adjacent_pairs ? 2 * i : i;
        const int64_t b = table.style == RopeStyle::adjacent_pairs ? 2 * i + 1 : i + half;
        const float x1 = v[a], x2 = v[b];
        v[a] = x1 * cos_t[i] - x2 * sin_t[i];
        v[b] = x2 * cos_t[i] + x1 * sin_t[i];
      }
    }
  }
}

}  // namespace esa::ops
