// ModelConfig: the architecture of a Llama-family model, filled from GGUF metadata or from a
// Hugging Face config.json, validated once so that the engine can trust it.
#pragma once

#include <cstdint>
#include <string>

#include "ops/rope_config.h"

namespace esa {
namespace io { class GgufFile; }


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
