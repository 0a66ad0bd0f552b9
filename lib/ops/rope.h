// Rotary position embedding. The table holds the per-pair inverse frequencies after the
// scaling the config asks for (none, linear, llama3, YaRN; llama.cpp's rope_freqs factors) and
// the YaRN attention factor; rope() rotates heads in place at given absolute positions, in
// either pairing convention (RopeStyle). References: transformers' modeling_rope_utils
// (_compute_*_parameters) and apply_rotary_pos_emb; checked in tests/unit/test_ops.cc.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "ops/rope_config.h"

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

/// cos and sin at any position from two small tables (the GPU kernels' form, kernels/
/// gathered_attention.cuh): position p = hi * low_positions + lo; the tables hold the exact
/// angles of lo * f and hi * low_positions * f (computed in double, f the float32 frequency),
/// and angle_at() combines them and corrects for the reference's float32 rounding of p * f.
/// One [positions]-long table would be 512 MB at 1M positions and a head dimension of 128.
struct RopeSplitTables {
  static constexpr int64_t low_positions = 1024;
  int64_t half = 0;
  bool adjacent_pairs = false;
  std::vector<float> inv_freq;  // [half]
  std::vector<float> low;       // [low_positions, half, 2] (cos, sin) times the attention factor
  std::vector<float> high;      // [positions / low_positions + 1, half, 2]
  /// (cos, sin) of pair `i` at `position`, with the kernel's float arithmetic.
  void angle_at(int64_t position, int64_t i, float& cos_out, float& sin_out) const;
};
RopeSplitTables make_rope_split_tables(const RopeTable& table, int64_t positions);

/// x [T, n_heads, head_dim] rotated in place; positions [T] absolute. Dimensions past
/// table.dim (partial rotary) are left alone. With `angles`, positions inside it are looked up.
void rope(Tensor& x, const std::vector<int64_t>& positions, const RopeTable& table, const RopeAngles* angles = nullptr);
void rope_cpu(float* x, const int64_t* positions, int64_t tokens, int64_t heads, int64_t head_dim,
              const RopeTable& table, const RopeAngles* angles = nullptr);

}  // namespace esa::ops
