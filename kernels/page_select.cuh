// Quest's page selection on the GPU (mit-han-lab/Quest; the host's QuestPolicy in
// lib/attention/scoring_policies.cc): per-channel key bounds of 16-token pages, the signed
// GQA fold of the queries that scores them, and the expansion of the chosen pages into the
// long branch's row list. The page scores themselves are one GEMM (model/esa_cuda.h:
// quest_importance_cuda): [pos | neg] . [max | min]^T = sum_i max(q_i min_i, q_i max_i).
// References: QuestPolicy's append_page, gqa_fold_signed (lib/attention/selection.h); compared in
// tests/unit/test_cuda.cc. No host synchronisation: a row count that depends on the chosen pages
// stays on the device (the attention kernels take it as `rows_valid`).
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

/// The long branch's rows of k chosen pages (ascending page indices, relative to `begin`):
/// rows[i * page + j] = begin + pages[i] * page + j, for i < k, j < page; a row at or past `end`
/// (the last page of the middle may be partial) is written as `begin` and not counted.
/// *rows_valid = base + the number of real rows (base: the rows before these, the initial tokens).
struct ExpandPagesParams {
  const int* pages = nullptr;
  int k = 0;
  int page = 16;
  int64_t begin = 0, end = 0;
  int base = 0;
  int* rows = nullptr;        // out: [k * page]
  int* rows_valid = nullptr;  // out: [1]
};
cudaError_t launch_expand_pages(const ExpandPagesParams& p, cudaStream_t stream);

}  // namespace esa::cuda
