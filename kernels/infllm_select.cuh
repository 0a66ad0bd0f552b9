// InfLLM's memory blocks on the GPU (thunlp/InfLLM), as the host's InfllmPolicy does them
// (lib/attention/infllm.cc, whose file comment says how the representative tokens are
// approximated): the chunk's mean query, the window weights it spreads, and each block's key (the
// mean of its most-weighted tokens' keys); the blocks are scored by one GEMM
// (attention/selection_cuda.h). References: InfllmPolicy's accumulate_window_attention and
// update_blocks; compared in tests/unit/test_infllm.cc.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace esa::cuda {

/// out [hkv * d] = scale * the sum over the T queries and each KV group's heads of q [T, hq, d]:
/// the chunk's mean query per KV head (with scale 1 / (T * group), times 1 / sqrt(d) for logits).
cudaError_t launch_fold_mean(const float* q, int T, int hq, int hkv, int d, float scale, float* out,
                             cudaStream_t stream);

/// The weight each token of the window [begin, end) receives from the chunk's mean query, added to
/// received [*, hkv]: per KV head g, softmax_j(qbar_g . k_j,g) over the window's keys (bf16, before
/// RoPE; qbar already scaled). scratch: [hkv, end - begin] floats.
struct WindowWeightsParams {
  const float* qbar = nullptr;  // [hkv, d]
  const __nv_bfloat16* keys = nullptr;
  int hkv = 0, d = 0;
  int64_t begin = 0, end = 0;
  float* scratch = nullptr;
  float* received = nullptr;
};
cudaError_t launch_window_weights(const WindowWeightsParams& p, cudaStream_t stream);

/// The keys of blocks [block_from, block_to) of `block` tokens from row `begin`: per block and KV
/// head, the mean key (bf16 keys, before RoPE) of its `reps` tokens with the most received weight
/// (ties: lower position), written to block_keys [blocks, hkv * d] (float).
struct BlockKeysParams {
  const float* received = nullptr;  // [*, hkv]
  const __nv_bfloat16* keys = nullptr;
  int hkv = 0, d = 0;
  int64_t begin = 0;
  int block = 128, reps = 4;        // block <= 1024, reps <= 8
  int64_t block_from = 0, block_to = 0;
  float* block_keys = nullptr;
};
cudaError_t launch_block_keys(const BlockKeysParams& p, cudaStream_t stream);

}  // namespace esa::cuda
