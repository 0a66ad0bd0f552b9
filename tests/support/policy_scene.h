// Test scaffolding shared by the attention-policy suites: a small multi-layer KV cache of
// random keys and values, random chunk queries, the RoPE tables, and small budgets, so that
// policies can be exercised without a model.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "attention/policy.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "ops/rope.h"

namespace esa::test {

/// x rounded to the nearest bf16 value (ties to even), as a float.
inline float round_to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  u = ((u + 0x7fffu + ((u >> 16) & 1u)) >> 16) << 16;
  std::memcpy(&x, &u, sizeof(u));
  return x;
}

inline std::vector<float> gaussian(std::mt19937_64& gen, int64_t n, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = dist(gen);
  return v;
}

/// Two layers of random cached tokens (raw and "rotated" keys are the same: the policies score
/// raw keys) and queries drawn with standard deviation `q_scale`.
struct PolicyScene {
  int64_t layers = 2, hq, hkv, d;
  float q_scale;
  std::mt19937_64 gen;
  KvCache cache;
  ops::RopeTable rope;
  ops::RopeAngles angles;

  explicit PolicyScene(uint64_t seed, int64_t n_heads = 6, int64_t n_kv = 2, int64_t head_dim = 16,
                       float query_scale = 1.0f)
      : hq(n_heads), hkv(n_kv), d(head_dim), q_scale(query_scale), gen(seed), cache(2, n_kv, head_dim) {
    RopeConfig cfg;
    cfg.dim = d;
    cfg.base = 10000.0;
    rope = ops::make_rope_table(cfg);
    angles = ops::make_rope_angles(rope, 64);  // positions past it are computed on the fly
  }
  /// `bf16_exact`: keys rounded to bf16 values, so that a device half (bf16 keys) scores the same
  /// numbers as the host (device_selection.h).
  void append(int64_t tokens, bool bf16_exact = false) {
    for (int64_t l = 0; l < layers; ++l) {
      std::vector<float> k = gaussian(gen, tokens * hkv * d);
      const std::vector<float> v = gaussian(gen, tokens * hkv * d);
      if (bf16_exact) {
        for (float& x : k) x = round_to_bf16(x);
      }
      cache.append(l, k.data(), k.data(), v.data(), tokens);
    }
  }
  Tensor queries(int64_t T) { return Tensor({T, hq, d}, gaussian(gen, T * hq * d, q_scale)); }
  attention::LayerInputs inputs(int64_t layer, const Tensor& q) const {
    attention::LayerInputs in;
    in.layer = layer;
    in.q = q.view();
    in.cache = &cache;
    in.rope = &rope;
    in.angles = &angles;
    return in;
  }
  ModelConfig config() const {
    ModelConfig c;
    c.n_layers = layers;
    c.n_heads = hq;
    c.n_kv_heads = hkv;
    c.head_dim = d;
    c.hidden = hq * d;
    return c;
  }
};

/// Reference RoPE: x [heads, d] rotated to `position` in float64, adjacent pairs (the tests' RoPE style).
inline std::vector<double> ref_rotate(const float* x, int64_t heads, int64_t d, int64_t position, const ops::RopeTable& t) {
  std::vector<double> out(x, x + heads * d);
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < t.dim / 2; ++i) {
      const double angle = double(position) * t.inv_freq[size_t(i)];
      const double c = std::cos(angle), s = std::sin(angle);
      double& a = out[size_t(h * d + 2 * i)];
      double& b = out[size_t(h * d + 2 * i + 1)];
      const double x1 = a, x2 = b;
      a = x1 * c - x2 * s;
      b = x2 * c + x1 * s;
    }
  }
  return out;
}

/// Budgets small enough that a few dozen tokens exercise every part of the split.
inline attention::PolicyOptions small_options(attention::PolicyKind kind,
                                              attention::HeadMode heads = attention::HeadMode::uniform) {
  attention::PolicyOptions o;
  o.kind = kind;
  o.budget.init = 4;
  o.budget.local = 32;
  o.budget.select = 40;
  o.budget.chunk = 8;
  o.eps = 1;
  o.heads = heads;
  return o;
}

}  // namespace esa::test
