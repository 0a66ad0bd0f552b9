// What a model says about its rotary position embedding (RopeConfig), read by model/config.cc
// from GGUF metadata or config.json and turned into frequencies by ops/rope.h. Here, below
// model/, so that the RoPE op does not depend on the model's config.
#pragma once

#include <cstdint>
#include <string>

namespace esa {

/// Which pairs of a head's dimensions RoPE rotates together.
enum class RopeStyle {
  /// (x[2i], x[2i+1]): llama.cpp / GGUF llama. The GGUF converter permutes the rows of the Q and
  /// K projections so that this equals HF's rotate_half on the original weights.
  adjacent_pairs,
  /// (x[i], x[i + d/2]): Hugging Face transformers' rotate_half on unpermuted weights.
  rotate_half,
};
const char* rope_style_name(RopeStyle style);

enum class RopeScaling { none, linear, llama3, yarn };
const char* rope_scaling_name(RopeScaling scaling);
/// Parses "none", "linear", "llama3", "yarn" (also "default"); throws esa::Error otherwise.
RopeScaling parse_rope_scaling(const std::string& name);

struct RopeConfig {
  double base = 10000.0;
  int64_t dim = 0;                      // rotated dimensions per head (== head_dim for Llama)
  RopeStyle style = RopeStyle::adjacent_pairs;
  RopeScaling scaling = RopeScaling::none;
  double factor = 1.0;                  // linear / llama3 / yarn
  int64_t original_context = 0;         // llama3 / yarn: the pre-scaling training context
  double low_freq_factor = 1.0;         // llama3
  double high_freq_factor = 4.0;        // llama3
  double yarn_beta_fast = 32.0;         // yarn
  double yarn_beta_slow = 1.0;          // yarn
  bool yarn_truncate = true;            // yarn: round the correction range to whole dims (transformers' default)
  /// yarn: the final multiplier of cos/sin (mscale). HF: rope_scaling.attention_factor when
  /// given, else 0.1 * ln(factor) + 1; GGUF: rope.scaling.attn_factor (default 1) times that.
  double yarn_attn_factor = 1.0;
  /// GGUF only: the file holds a `rope_freqs.weight` tensor of rotated_dim/2 per-frequency
  /// divisors. This is how llama.cpp's converter stores llama3 scaling (its metadata then says
  /// no scaling), so the engine must divide the RoPE frequencies by that tensor.
  bool freq_factors_tensor = false;
};

}  // namespace esa
