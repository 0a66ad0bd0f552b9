// LlamaModel: the forward pass of Llama-family models (Llama-2/3, Mistral, Qwen2, SmolLM) on
// the CPU in float32: embedding, per layer RMSNorm -> Q/K/V (+bias) -> RoPE -> grouped-query
// causal attention over the KV cache -> output projection -> residual -> RMSNorm -> SwiGLU MLP
// -> residual, then the final norm and the (tied or untied) LM head. Prefill runs in chunks.
// Reference: Hugging Face transformers (tests/unit/test_llama.cc, fixtures from
// scripts/reference/hf_logits.py).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

#include "core/device.h"
#include "core/tensor.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/weights.h"
#include "ops/rope.h"

namespace esa {
namespace attention { class Policy; }
class CudaForward;

/// Observes a named intermediate of the forward pass; `layer` is -1 outside the layers.
/// Names, with shapes for a chunk of T tokens:
///   "embed" [T, hidden]; per layer: "attn_norm" [T, hidden], "q" [T, heads, hd] and "k", "v"
///   [T, kv_heads, hd] before RoPE, "q_rope" [T, heads, hd], "k_rope" [T, kv_heads, hd] (the
///   chunk's keys at their true positions), "long_rows" [n] (with a policy that selects one list for all
///   heads: the long branch's tokens, as floats), "attn" [T, heads, hd] (before the output
///   projection), "attn_out" [T, hidden], "mlp_out" [T, hidden], "hidden" [T, hidden] (the
///   residual stream after the layer); "final_norm" [rows, hidden] for the rows that get logits.
/// The views are valid only during the call.
using ForwardHook = std::function<void(std::string_view name, int64_t layer, const TensorView& view)>;

/// Where a forward's time goes (ForwardOptions::profile, `esa bench model --profile`): seconds
/// per stage summed over chunks and layers. The GPU forward times them by CUDA events between
/// stages on its stream (so a stage's figure includes the GPU's idle time waiting for the host to
/// launch it); the CPU forward does not profile.
struct StageTimes {
  enum Stage : int { kProjections, kKvWrite, kSelection, kHostSelection, kAttention, kOther, kCount };
  static const char* name(int stage);  // "projections", ...
  double seconds[kCount] = {};
  double total() const;
};

struct ForwardOptions {
  int64_t chunk = 512;        // prefill chunk (tokens per pass through the layers)
  bool all_logits = false;    // logits for every token instead of the last only
  ForwardHook hook;           // optional observer of intermediates
  /// Which cached tokens each chunk attends to (attention/policy.h); null: exact causal
  /// attention over the whole cache (the `full` policy's arithmetic, without the split).
  attention::Policy* policy = nullptr;
  StageTimes* profile = nullptr;  // optional: adds this forward's time per stage
  /// GPU decode_greedy: replay each step as a CUDA graph (off: the same launches, one by one).
  bool cuda_graphs = true;
};

class LlamaModel {
 public:
  /// Reads the config and weights of a .gguf file or a Hugging Face folder (validated), and
  /// moves the model to `placement`.
  static LlamaModel load(const std::string& path, Placement placement = {});
  LlamaModel(ModelConfig config, ModelWeights weights);

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  /// Runs the forward pass on `device` from now on: for cuda, uploads the weights as bf16 to the
  /// current GPU (engine/llama_cuda.h); placement.kv_offload puts the caches made from now on in
  /// host memory. Caches made before do not carry over.
  void use_device(Placement placement);
  Device device() const { return placement_.device; }
  const Placement& placement() const { return placement_; }
  /// An empty cache for this model on its device.
  KvCache make_cache() const;

  /// Runs `ids` at positions cache.size() ... through the model, appending their keys and
  /// values to `cache`. Returns the logits of the last token ([1, vocab]) or of every token
  /// ([T, vocab]) with options.all_logits.
  Tensor forward(std::span<const int32_t> ids, KvCache& cache, const ForwardOptions& options = {}) const;

  /// Greedy decoding: feeds `first` at position cache.size(), then each token it produces, for
  /// at most `steps` steps; `on_token` gets every produced token in order and returns false to
  /// stop (that token is not fed). Returns the tokens accepted. The cache ends holding exactly
  /// the fed tokens. On the GPU with no hook and a policy with a GPU half (or none), the loop
  /// runs on the device (CudaForward::decode_greedy); otherwise forward() and esa::argmax.
  int64_t decode_greedy(int32_t first, int64_t steps, KvCache& cache, const ForwardOptions& options,
                        const std::function<bool(int32_t)>& on_token) const;

 private:
  /// One pass of a chunk through every layer; logits for its last `logit_rows` tokens.
  void forward_chunk(std::span<const int32_t> ids, KvCache& cache, const ForwardOptions& options, int64_t logit_rows,
                     Tensor& logits) const;

  /// The RoPE angles of positions [0, n) with n >= `positions`, grown (doubling) on demand.
  /// Thread-safe: a grown table replaces the old one, which callers holding it keep.
  std::shared_ptr<const ops::RopeAngles> angles_for(int64_t positions) const;

  ModelConfig config_;
  ModelWeights weights_;
  Placement placement_;
  std::shared_ptr<const CudaForward> cuda_;
  ops::RopeTable rope_;
  struct AngleCache {
    std::mutex mutex;
    std::shared_ptr<const ops::RopeAngles> angles;
  };
  std::shared_ptr<AngleCache> angle_cache_ = std::make_shared<AngleCache>();
};

}  // namespace esa
