#include "ops/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace esa::ops {

RopeTable make_rope_table(const RopeConfig& rope, const std::vector<float>& freq_factors) {
  ESA_CHECK(rope.dim > 0 && rope.dim % 2 == 0, "rope: rotary dimension {} must be positive and even", rope.dim);
  ESA_CHECK(rope.base > 1.0, "rope: base {} must be > 1", rope.base);
  RopeTable t;
  t.style = rope.style;
  t.dim = rope.dim;
  const int64_t half = rope.dim / 2;
  t.inv_freq.resize(size_t(half));
  // As transformers computes it, in float32: 1 / base^(2i/dim). Matching its rounding keeps
  // angles at long positions within an ulp of the reference.
  std::vector<float> base_inv(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    const float exponent = float(2 * i) / float(rope.dim);
    base_inv[size_t(i)] = 1.0f / std::pow(float(rope.base), exponent);
  }
  const double factor = rope.factor;
  switch (rope.scaling) {
    case RopeScaling::none:
      for (int64_t i = 0; i < half; ++i) t.inv_freq[size_t(i)] = base_inv[size_t(i)];
      break;
    case RopeScaling::linear:
      ESA_CHECK(factor > 0, "rope: linear scaling factor {} must be positive", factor);
      for (int64_t i = 0; i < half; ++i) t.inv_freq[size_t(i)] = float(base_inv[size_t(i)] / factor);
      break;
    case RopeScaling::llama3: {
      ESA_CHECK(rope.original_context > 0, "rope: llama3 scaling needs the original context length");
      const double old_ctx = double(rope.original_context);
      const double low_wavelen = old_ctx / rope.low_freq_factor;
      const double high_wavelen = old_ctx / rope.high_freq_factor;
      for (int64_t i = 0; i < half; ++i) {
        const double f = base_inv[size_t(i)];
        const double wavelen = 2.0 * std::numbers::pi / f;
        double out;
        if (wavelen < high_wavelen) {
          out = f;  // high frequencies: unchanged
        } else if (wavelen > low_wavelen) {
          out = f / factor;  // low frequencies: interpolated
        } else {
          const double smooth = (old_ctx / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor);
          out = (1.0 - smooth) * f / factor + smooth * f;
        }
        t.inv_freq[size_t(i)] = float(out);
      }
      break;
    }
    case RopeScaling::yarn: {
      ESA_CHECK(rope.original_context > 0, "rope: yarn scaling needs the original context length");
      const double dim = double(rope.dim);
      auto correction_dim = [&](double rotations) {
        return dim * std::log(double(rope.original_context) / (rotations * 2.0 * std::numbers::pi)) /
               (2.0 * std::log(rope.base));
      };
      double low = correction_dim(rope.yarn_beta_fast), high = correction_dim(rope.yarn_beta_slow);
      if (rope.yarn_truncate) {
        low = std::floor(low);
        high = std::ceil(high);
      }
      low = std::max(low, 0.0);
      high = std::min(high, dim - 1);
      if (low == high) high += 0.001;
      for (int64_t i = 0; i < half; ++i) {
        const double ramp = std::clamp((double(i) - low) / (high - low), 0.0, 1.0);
        const double extrapolation_weight = 1.0 - ramp;
        const double f = base_inv[size_t(i)];
        t.inv_freq[size_t(i)] = float(f / factor * (1.0 - extrapolation_weight) + f * extrapolation_weight);
      }
      t.attention_factor = rope.yarn_attn_factor;
      break;
    }
  }
  if (!freq_factors.empty()) {
    ESA_CHECK(int64_t(freq_factors.size()) == half, "rope: {} frequency factors for {} frequencies",
              freq_factors.size(), half);
    for (int64_t i = 0; i < half; ++i) {
      ESA_CHECK(freq_factors[size_t(i)] > 0.0f, "rope: frequency factor {} is {}", i, freq_factors[size_t(i)]);
      t.inv_freq[size_t(i)] = float(float(t.inv_freq[size_t(i)]) / freq_factors[size_t(i)]);
    }
  }
  return t;
}

void rope(Tensor& x, const std::vector<int64_t>& positions, const RopeTable& table) {
  ESA_CHECK(x.shape().size() == 3, "rope: x {} must be [T, heads, head_dim]", x.shape_str());
  ESA_CHECK(int64_t(positions.size()) == x.dim(0), "rope: {} positions for {} tokens", positions.size(), x.dim(0));
  ESA_CHECK(table.dim <= x.dim(2), "rope: rotary dimension {} exceeds head dimension {}", table.dim, x.dim(2));
  rope_cpu(x.data(), positions.data(), x.dim(0), x.dim(1), x.dim(2), table);
}

}  // namespace esa::ops
