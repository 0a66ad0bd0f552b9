// ModelWeights: every tensor of a Llama-family model, dequantised once at load to float32 in
// the PyTorch layout ([out, in] for projections), with names and shapes checked against the
// config. Reads GGUF (llama.cpp names) and Hugging Face safetensors (transformers names).
#pragma once

#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace esa {
namespace io {
class GgufFile;
struct GgufTensorInfo;
}  // namespace io

struct LayerWeights {
  Tensor attn_norm;          // [hidden]
  Tensor wq, wk, wv, wo;     // [heads*hd, hidden], [kv*hd, hidden], [kv*hd, hidden], [hidden, heads*hd]
  Tensor bq, bk, bv;         // [heads*hd], [kv*hd], [kv*hd]; empty without QKV bias
  Tensor ffn_norm;           // [hidden]
  Tensor w_gate, w_up;       // [ffn, hidden]
  Tensor w_down;             // [hidden, ffn]
};

struct ModelWeights {
  Tensor token_embd;         // [vocab, hidden]
  Tensor output_norm;        // [hidden]
  Tensor lm_head;            // [vocab, hidden]; empty when tied to token_embd
  std::vector<float> rope_freqs;  // llama.cpp's rope_freqs.weight ([rope.dim / 2]); empty if absent
  std::vector<LayerWeights> layers;

  const Tensor& output() const { return lm_head.empty() ? token_embd : lm_head; }
  size_t bytes() const;
};

/// A GGUF tensor dequantised to float32 (row-major in GGUF order: shape[0] fastest); throws
/// esa::Error naming the file and tensor for a type esa cannot dequantise.
std::vector<float> dequantize_tensor(const io::GgufFile& file, const io::GgufTensorInfo& tensor);

/// Bytes of the fp32 weights load_weights() holds for `config`.
uint64_t weight_bytes(const ModelConfig& config);

/// Loads and checks the weights of the model at `path` (a .gguf file or a Hugging Face folder)
/// for `config`. A missing tensor or a shape that disagrees with the config is an esa::Error
/// naming the file, the tensor, the expected and the found shape.
/// Refuses before loading when they would not fit in --max-memory (core/memory_limit.h).
ModelWeights load_weights(const std::string& path, const ModelConfig& config);

}  // namespace esa
