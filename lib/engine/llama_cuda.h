// The Llama forward pass on a CUDA GPU (LlamaModel::use_device(Device::cuda)): the same
// arithmetic as the CPU path with bf16 weights and a bf16 KV cache in device memory, float32
// activations and accumulation; GEMMs by cuBLAS, the rest by kernels/model_ops.cuh; attention of
// prefill chunks by kernels/flash_attention.cuh, of decode steps by kernels/gathered_attention.cuh
// (both of a policy's branches in one pass; `full` is the local branch over the whole cache).
// With Placement::kv_offload the KV cache is mapped host memory and the kernels read only the
// rows they attend to over the bus. The policy's GPU half (Policy::make_device_selector,
// attention/device_selector.h) chooses the long branch's rows on the device; a policy without one
// (a wrapper such as --diag's) selects on the host from a host copy of the keys, kept only then
// (KvCache::mirrored_rows). Reference: LlamaModel on the CPU (tests/unit/test_forward_cuda.cc,
// scripts/gpu_check.sh end to end).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "core/tensor.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/weights.h"
#include "ops/rope.h"

namespace esa {
struct ForwardOptions;

class CudaForward {
 public:
  /// Uploads the weights (converted to bf16) to the current CUDA device. Throws esa::Error when
  /// they do not fit or the model's shape is outside what the kernels take (head_dim 64 or 128,
  /// at most 8 query heads per KV head).
  CudaForward(const ModelConfig& config, const ModelWeights& weights, const ops::RopeTable& rope);
  ~CudaForward();
  CudaForward(const CudaForward&) = delete;
  CudaForward& operator=(const CudaForward&) = delete;

  /// The device half of a new cache (KvCache::set_device_storage); `kv_offload`: its keys and
  /// values in mapped page-locked host memory (Placement::kv_offload).
  std::shared_ptr<DeviceKvStorage> make_storage(bool kv_offload = false) const;

  /// LlamaModel::forward_chunk on the GPU: `cache` must carry storage from make_storage().
  void forward_chunk(std::span<const int32_t> ids, KvCache& cache, const ForwardOptions& options,
                     const ops::RopeAngles* angles, int64_t logit_rows, Tensor& logits) const;

  /// Whether decode_greedy can run `options` on `cache` without the host in the loop: no hook,
  /// and no policy or one with a GPU half.
  bool decodes_on_device(const ForwardOptions& options, KvCache& cache) const;
  /// LlamaModel::decode_greedy on the device: the argmax stays there and feeds the next step;
  /// each step after the first is one CUDA graph (ForwardOptions::cuda_graphs, not while
  /// profiling), captured while the previous step runs.
  int64_t decode_greedy(int32_t first, int64_t steps, KvCache& cache, const ForwardOptions& options,
                        const std::function<bool(int32_t)>& on_token) const;

  /// Device memory the weights take.
  size_t weight_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace esa
