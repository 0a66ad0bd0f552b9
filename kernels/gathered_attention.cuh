// Query tokens' attention over a gathered set of cached rows, GQA-aware, split-K (flash
// decoding): ESA's two branches in one pass — the long branch over listed rows (sink tokens and
// the top-k, keys as cached, before RoPE, with the query rotated to the branch's position) and
// the local branch over a contiguous range (keys rotated to their own positions: read from
// k_rotated, or rotated on the fly) —
// merged by log-sum-exp, which is exactly softmax over the union. With no listed rows and the
// whole cache as the range it is dense decode attention (`full`).
// Reference: esa::ops::attention_cpu per branch + merge_by_lse; compared in tests/unit/test_attention_cuda.cc.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "rope_tables.cuh"

namespace esa::cuda {

struct GatheredAttentionParams {
  const float* q_long = nullptr;   // [queries, hq, d] query for the listed rows
  const float* q_local = nullptr;  // [queries, hq, d] query for the range rows
  const __nv_bfloat16* k = nullptr;  // [n, hkv, d] cached keys (before RoPE)
  const __nv_bfloat16* v = nullptr;  // [n, hkv, d]
  const __nv_bfloat16* k_rotated = nullptr;  // optional [rows, hkv, d]: keys at their own positions;
                                             // the range reads these, not rotated again (the
                                             // forward keeps them: a decode step's local window
                                             // costs as much as its gathered rows)
  int64_t k_rotated_first_row = 0;  // k_rotated holds rows from this one on (a window of the cache)
  const int* rows = nullptr;       // [n_rows] listed rows (long branch)
  int n_rows = 0;
  const int* rows_valid = nullptr; // optional device [1]: listed rows at or past *rows_valid are
                                   // masked (they must still be valid row indices): a row count
                                   // that stays on the device (Quest's partial last page)
  int64_t range_begin = 0, range_end = 0;  // local rows; keys rotated to their positions when rope.low
  int queries = 1;                 // consecutive query tokens (a prefill chunk) sharing the rows
  bool causal = false;             // query t's range ends at range_end - (queries - 1 - t)
  RopeTables rope;
  int hq = 0, hkv = 0, d = 0;      // d is 64 or 128; hq / hkv at most 8
  float scale = 1.0f;
  float* partial = nullptr;        // scratch: gathered_attention_partial_floats(...)
  float* out = nullptr;            // [queries, hq, d]
  float* lse = nullptr;            // [queries, hq], natural log; -inf for a head that saw no row (out 0). Optional.
};

/// How many splits a call uses, and the scratch it needs (floats).
int gathered_attention_splits(int64_t total_rows, int hkv, int queries = 1);
size_t gathered_attention_partial_floats(int64_t total_rows, int hq, int hkv, int d, int queries = 1);

/// Two launches: the split pass and the LSE merge of the splits ("merge").
cudaError_t launch_gathered_attention(const GatheredAttentionParams& p, cudaStream_t stream);
/// The two halves separately (the benchmark times them apart).
cudaError_t launch_gathered_attention_splits(const GatheredAttentionParams& p, cudaStream_t stream);
cudaError_t launch_gathered_attention_merge(const GatheredAttentionParams& p, cudaStream_t stream);

}  // namespace esa::cuda
