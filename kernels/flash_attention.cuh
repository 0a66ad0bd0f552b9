// A prefill chunk's attention in one pass (flash attention: online softmax over key tiles, the
// score matrix never leaves registers), over ESA's two column segments:
//   the listed rows  (long branch: sink tokens and the top-k, already gathered, keys as cached
//                     before RoPE; queries q_long, rotated to the branch's position), always visible;
//   the range        (local branch, or the whole prefix for `full`: keys already rotated to their
//                     positions; queries q_local), causal by position.
// GQA-aware: a block's 64 tile rows are (query, head) pairs of one KV group, so a K/V tile is read
// once for all of the group's heads. bf16 tensor cores (mma.sync, as FlashAttention-2), float32 softmax and
// accumulation.
// Reference: esa::ops::attention_cpu per branch + the log-sum-exp merge (tests/unit/test_attention_cuda.cc).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace esa::cuda {

struct FlashChunkParams {
  const __nv_bfloat16* q_long = nullptr;   // [T, hq, d]; unused when n_rows == 0
  const __nv_bfloat16* q_local = nullptr;  // [T, hq, d]
  const __nv_bfloat16* k_rows = nullptr;   // [n_rows, hkv * d] the listed rows' keys
  const __nv_bfloat16* v_rows = nullptr;   // [n_rows, hkv * d]
  int64_t n_rows = 0;
  const int* rows_valid = nullptr;         // optional device [1]: listed rows at or past *rows_valid
                                           // are masked (a row count that stays on the device)
  const __nv_bfloat16* k_range = nullptr;  // [range_len, hkv * d] rotated keys of positions range_begin ...
  const __nv_bfloat16* v_range = nullptr;  // [range_len, hkv * d]
  int64_t range_begin = 0, range_len = 0;
  int64_t first_query = 0;  // query t is at position first_query + t and sees range positions <= it
  int T = 0, hq = 0, hkv = 0, d = 0;  // d is 64 or 128; hq a multiple of hkv
  float scale = 1.0f;
  float* out = nullptr;  // [T, hq, d]; 0 for a (query, head) that sees no column
  float* lse = nullptr;  // [T, hq] natural log, -inf where nothing is seen. Optional.
  float* partial = nullptr;  // scratch of flash_chunk_partial_floats(*this) floats (when that is > 0)
};

/// Key splits per block (split-KV, as flash decoding): a short chunk over a long prefix has few
/// query blocks, so the columns are cut into splits that run in parallel and merge by
/// log-sum-exp. 1 when the blocks fill the GPU or the columns are few.
int flash_chunk_splits(const FlashChunkParams& p);
/// The scratch the splits need (0 with one split): [splits, T * hq, d + 2] floats.
size_t flash_chunk_partial_floats(const FlashChunkParams& p);

/// The split pass and (with more than one split) the merge.
cudaError_t launch_flash_chunk_attention(const FlashChunkParams& p, cudaStream_t stream);

}  // namespace esa::cuda
