// Block- and page-granular selection on the GPU: Quest's pages (mit-han-lab/Quest) and InfLLM's
// memory blocks (thunlp/InfLLM), as the host's QuestPolicy and InfllmPolicy do them
// (lib/attention/scoring_policies.cc, whose file comment says how InfLLM's representative tokens
// are approximated). The scores of pages or blocks are one float32 GEMM and a max over the chunk
// (model/esa_cuda.h: chunk_max_dot_cuda):
//   quest   [pos | neg]_t . [max | min]_p = sum_i max(q_i min_i, q_i max_i) per page;
//   infllm  the chunk's mean query . the block's mean representative key.
// References: QuestPolicy's append_page, gqa_fold_signed (lib/attention/selection.h),
// InfllmPolicy's accumulate_window_attention and update_blocks; compared in
// tests/unit/test_cuda.cc. No host synchronisation: a row count that depends on the chosen
// pages stays on the device (the attention kernels take it as `rows_valid`).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace esa::cuda {

// ---- quest ----------------------------------------------------------------------------------

/// bounds[p] = [max | min] over the rows of page p of keys [*, width] (bf16, before RoPE), per
/// channel: page p holds rows [begin + p * page, min(begin + (p + 1) * page, end)). Writes pages
/// [page_from, page_to); bounds is [pages, 2, width] floats.
struct PageBoundsParams {
  const __nv_bfloat16* keys = nullptr;
  int64_t width = 0;
  int64_t begin = 0, end = 0;  // the paged rows
  int page = 16;
  int64_t page_from = 0, page_to = 0;
  float* bounds = nullptr;
};
cudaError_t launch_page_bounds(const PageBoundsParams& p, cudaStream_t stream);

/// out [T, 2, hkv * d]: per query, the sums over each KV group's heads of max(q, 0), then of
/// min(q, 0), for q [T, hq, d] (gqa_fold_signed's pos and neg, side by side: one GEMM operand).
cudaError_t launch_gqa_fold_signed(const float* q, int T, int hq, int hkv, int d, float* out, cudaStream_t stream);

/// The long branch's rows of k chosen units (pages or blocks; ascending unit indices, relative to
/// `begin`): rows[i * unit + j] = begin + units[i] * unit + j, for i < k, j < unit; a row at or
/// past `end` (the last page of the middle may be partial) is written as `begin` and not counted.
/// *rows_valid = base + the number of real rows (base: the rows before these, the initial tokens).
struct ExpandUnitsParams {
  const int* units = nullptr;
  int k = 0;
  int unit = 16;
  int64_t begin = 0, end = 0;
  int base = 0;
  int* rows = nullptr;        // out: [k * unit]
  int* rows_valid = nullptr;  // out: [1], optional
};
cudaError_t launch_expand_units(const ExpandUnitsParams& p, cudaStream_t stream);

// ---- infllm ---------------------------------------------------------------------------------

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
