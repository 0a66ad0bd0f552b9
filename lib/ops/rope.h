// Rotary position embedding. The table holds the per-pair inverse frequencies after the
// scaling the config asks for (none, linear, llama3, YaRN; llama.cpp's rope_freqs factors) and
// the YaRN attention factor; rope() rotates heads in place at given absolute positions, in
// either pairing convention (RopeStyle). References: transformers' modeling_rope_utils
// (_compute_*_parameters) and apply_rotary_pos_emb; checked in tests/unit/test_ops.cc.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace esa::ops {

struct RopeTable {
  RopeStyle style = RopeStyle::adjacent_pairs;
  int64_t dim = 0;                 // rotated dimensions per head (even)
  std::vector<double> inv_freq;    // [dim / 2]
  double attention_factor = 1.0;   // multiplies cos and sin (YaRN mscale)
};

/// Builds the table from the config; `freq_factors` (llama.cpp's rope_freqs.weight, [dim/2])
/// divides the frequencies when non-empty.
RopeTable make_rope_table(const RopeConfig& rope, const std::vector<float>& freq_factors = {});

/// cos and sin (attention factor included) of every rotary pair at positions [0, n), so that
/// rotating the whole KV cache at every step is a lookup, not n * dim/2 trigonometric calls.
/// Values are bit-identical to what rope() computes on the fly.
struct RopeAngles {
  int64_t half = 0;
  std::vector<float> cos, sin;  // [n, half] each
  int64_t positions() const { return half == 0 ? 0 : int64_t(cos.size()) / half; }
};
RopeAngles make_rope_angles(const RopeTable& table, int64_t n);
void rope_angles_cpu(const RopeTable& table, int64_t first, int64_t n, float* cos_out, float* sin_out);

/// x [T, n_heads, head_dim] rotated in place; positions [T] absolute. Dimensions past
/// table.dim (partial rotary) are left alone. With `angles`, positions inside it are looked up.
void rope(Tensor& x, const std::vector<int64_t>& positions, const RopeTable& table, const RopeAngles* angles = nullptr);
void rope_cpu(float* x, const int64_t* positions, int64_t tokens, int64_t heads, int64_t head_dim,
              const RopeTable& table, const RopeAngles* angles = nullptr);

}  // namespace esa::ops
