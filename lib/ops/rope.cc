#include "ops/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace esa {

const char* rope_style_name(RopeStyle style) {
  switch (style) {
    case RopeStyle::adjacent_pairs: return "adjacent_pairs";
    case RopeStyle::rotate_half: return "rotate_half";
  }
  return "?";
}

const char* rope_scaling_name(RopeScaling scaling) {
  switch (scaling) {
    case RopeScaling::none: return "none";
    case RopeScaling::linear: return "linear";
    case RopeScaling::llama3: return "llama3";
    case RopeScaling::yarn: return "yarn";
  }
  return "?";
}

RopeScaling parse_rope_scaling(const std::string& name) {
  if (name == "none" || name == "default") return RopeScaling::none;
  if (name == "linear") return RopeScaling::linear;
  if (name == "llama3") return RopeScaling::llama3;
  if (name == "yarn") return RopeScaling::yarn;
  ESA_FAIL("unknown rope scaling '{}' (expected none, default, linear, llama3, yarn)", name);
}

namespace ops {

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
      // In float32, operation by operation as transformers' _compute_llama3_parameters, so
      // that the table is bit-identical to the reference (angles at 100k positions amplify
      // one-ulp differences).
      ESA_CHECK(rope.original_context > 0, "rope: llama3 scaling needs the original context length");
      const float old_ctx = float(rope.original_context), fac = float(factor);
      const float low_wavelen = float(double(rope.original_context) / rope.low_freq_factor);
      const float high_wavelen = float(double(rope.original_context) / rope.high_freq_factor);
      const float low = float(rope.low_freq_factor), span = float(rope.high_freq_factor - rope.low_freq_factor);
      const float two_pi = float(2.0 * std::numbers::pi);
      for (int64_t i = 0; i < half; ++i) {
        const float f = base_inv[size_t(i)];
        const float wavelen = two_pi / f;
        float out = wavelen > low_wavelen ? f / fac : f;
        if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
          const float smooth = (old_ctx / wavelen - low) / span;
          out = (1.0f - smooth) * out / fac + smooth * out;
        }
        t.inv_freq[size_t(i)] = out;
      }
      break;
    }
    case RopeScaling::yarn: {
      // The correction range in double (transformers computes it with Python floats), the
      // table in float32 as _compute_yarn_parameters does.
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
      const float fac = float(factor);
      for (int64_t i = 0; i < half; ++i) {
        const float pos_freq = std::pow(float(rope.base), float(2 * i) / float(rope.dim));
        const float interpolation = 1.0f / (fac * pos_freq);
        const float extrapolation = 1.0f / pos_freq;
        const float ramp = std::clamp((float(i) - float(low)) / float(high - low), 0.0f, 1.0f);
        const float extrapolation_weight = 1.0f - ramp;
        t.inv_freq[size_t(i)] = interpolation * (1.0f - extrapolation_weight) + extrapolation * extrapolation_weight;
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

RopeSplitTables make_rope_split_tables(const RopeTable& table, int64_t positions) {
  ESA_CHECK(positions >= 0 && positions < (int64_t(1) << 24),
            "rope tables: {} positions (at most 2^24: positions are exact in float32)", positions);
  RopeSplitTables t;
  t.half = table.dim / 2;
  t.adjacent_pairs = table.style == RopeStyle::adjacent_pairs;
  t.inv_freq.resize(size_t(t.half));
  for (int64_t i = 0; i < t.half; ++i) t.inv_freq[size_t(i)] = float(table.inv_freq[size_t(i)]);
  const int64_t L = RopeSplitTables::low_positions;
  const int64_t high_rows = positions / L + 1;
  t.low.resize(size_t(L * t.half * 2));
  t.high.resize(size_t(high_rows * t.half * 2));
  for (int64_t lo = 0; lo < L; ++lo) {
    for (int64_t i = 0; i < t.half; ++i) {
      const double a = double(lo) * double(t.inv_freq[size_t(i)]);
      t.low[size_t((lo * t.half + i) * 2)] = float(std::cos(a) * table.attention_factor);
      t.low[size_t((lo * t.half + i) * 2 + 1)] = float(std::sin(a) * table.attention_factor);
    }
  }
  for (int64_t hi = 0; hi < high_rows; ++hi) {
    for (int64_t i = 0; i < t.half; ++i) {
      const double a = double(hi * L) * double(t.inv_freq[size_t(i)]);
      t.high[size_t((hi * t.half + i) * 2)] = float(std::cos(a));
      t.high[size_t((hi * t.half + i) * 2 + 1)] = float(std::sin(a));
    }
  }
  return t;
}

void RopeSplitTables::angle_at(int64_t position, int64_t i, float& cos_out, float& sin_out) const {
  const int64_t L = low_positions;
  const float* lo = low.data() + ((position % L) * half + i) * 2;
  const float* hi = high.data() + ((position / L) * half + i) * 2;
  const float c0 = lo[0] * hi[0] - lo[1] * hi[1], s0 = lo[1] * hi[0] + lo[0] * hi[1];
  const float p = float(position), f = inv_freq[size_t(i)];
  const float rounded = p * f;
  const float err = std::fma(p, f, -rounded);  // p * f - fl(p * f), exactly
  const float ce = std::cos(err), se = std::sin(err);  // err reaches ~1 rad near 2^24 positions
  cos_out = c0 * ce + s0 * se;
  sin_out = s0 * ce - c0 * se;
}

RopeAngles make_rope_angles(const RopeTable& table, int64_t n) {
  ESA_CHECK(n >= 0, "rope: negative position count {}", n);
  RopeAngles a;
  a.half = table.dim / 2;
  a.cos.resize(size_t(n * a.half));
  a.sin.resize(size_t(n * a.half));
  rope_angles_cpu(table, 0, n, a.cos.data(), a.sin.data());
  return a;
}

void rope(Tensor& x, const std::vector<int64_t>& positions, const RopeTable& table, const RopeAngles* angles) {
  ESA_CHECK(x.shape().size() == 3, "rope: x {} must be [T, heads, head_dim]", x.shape_str());
  ESA_CHECK(int64_t(positions.size()) == x.dim(0), "rope: {} positions for {} tokens", positions.size(), x.dim(0));
  ESA_CHECK(table.dim <= x.dim(2), "rope: rotary dimension {} exceeds head dimension {}", table.dim, x.dim(2));
  ESA_CHECK(angles == nullptr || angles->half == table.dim / 2, "rope: angle table for {} pairs, rotary table has {}",
            angles == nullptr ? 0 : angles->half, table.dim / 2);
  rope_cpu(x.data(), positions.data(), x.dim(0), x.dim(1), x.dim(2), table, angles);
}

}  // namespace ops
}  // namespace esa
