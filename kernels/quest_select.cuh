// Quest's pages on the GPU (mit-han-lab/Quest), as the host's QuestPolicy does them
// (lib/attention/quest.cc): per-channel key bounds of each page, and the signed GQA fold of the
// queries, so that one float32 GEMM + a max over the chunk scores the pages
// (attention/selection_cuda.h: [pos | neg]_t . [max | min]_p = sum_i max(q_i min_i, q_i max_i)).
// References: QuestPolicy's append_page, gqa_fold_signed (lib/attention/selection.h); compared in
// tests/unit/test_quest.cc.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace esa::cuda {

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

}  // namespace esa::cuda
