// ModelConfig: the architecture of a Llama-family model, filled from GGUF metadata or from a
// Hugging Face config.json, validated once so that the engine can trust it.
#pragma once

#include <cstdint>
#include <string>

namespace esa {
namespace io { class GgufFile; }

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

enum class Architecture { llama, mistral, qwen2 };
const char* architecture_name(Architecture arch);

struct ModelConfig {
  Architecture arch = Architecture::llama;
  std::string name;                     // free text (general.name or the folder name)
  int64_t n_layers = 0;
  int64_t hidden = 0;                   // d_model
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t ffn = 0;                      // intermediate size of the SwiGLU MLP
  int64_t vocab = 0;
  int64_t context = 0;                  // trained context length
  double rms_eps = 1e-5;
  bool tied_embeddings = false;         // LM head shares the token embedding
  bool qkv_bias = false;                // Qwen2
  int64_t sliding_window = 0;           // Mistral (0: none); informational, esa attends fully
  RopeConfig rope;

  /// Throws esa::Error naming `source` when a field is missing, non-positive or inconsistent
  /// (for example heads not divisible by KV heads).
  void validate(const std::string& source) const;
};

/// From GGUF metadata (`{arch}.block_count`, ...). Tied embeddings: no `output.weight` tensor.
ModelConfig config_from_gguf(const io::GgufFile& gguf);
/// From a Hugging Face config.json (Llama, Mistral, Qwen2 keys and rope_scaling).
ModelConfig config_from_hf_json(const std::string& config_json_path);

}  // namespace esa
