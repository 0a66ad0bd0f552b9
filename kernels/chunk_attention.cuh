// The pieces of a prefill chunk's attention that are not GEMMs. A chunk of T queries attends to
// C = n_rows + R key columns: the long branch's listed rows (keys as cached, before RoPE) and the
// local branch's range (keys rotated to their positions). model/llama_cuda.cc computes the scores
// [heads, T, C] and the output with cuBLAS bf16 GEMMs (tensor cores; the K/V rows are read once per
// chunk, not once per query as the split-K decode kernel would), around these kernels:
//   launch_rope_rows     the range's keys rotated into a bf16 scratch;
//   launch_gather_rows   the listed rows' keys and values into bf16 scratch;
//   launch_chunk_softmax the causal mask of the range, softmax per row (float), P in bf16, and the
//                        row log-sum-exp.
// Reference: esa::attention::two_branch_attention (the whole forward is compared with the CPU
// in tests/unit/test_cuda.cc).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "rope_tables.cuh"

namespace esa::cuda {

/// out[r - begin, :, :] = rows r in [begin, end) of `keys` [rows, heads, d] (before RoPE), rotated
/// to position r. Dimensions past 2 * rope.half are copied.
cudaError_t launch_rope_rows(const __nv_bfloat16* keys, int64_t begin, int64_t end, int heads, int d,
                             const RopeTables& rope, __nv_bfloat16* out, cudaStream_t stream);

/// k_out[i] = k[rows[i]], v_out[i] = v[rows[i]] for i < n, rows of `width` elements.
cudaError_t launch_gather_rows(const __nv_bfloat16* k, const __nv_bfloat16* v, const int* rows, int n, int width,
                               __nv_bfloat16* k_out, __nv_bfloat16* v_out, cudaStream_t stream);

struct ChunkSoftmaxParams {
  const float* scores = nullptr;  // [heads, T, columns], already scaled
  __nv_bfloat16* probs = nullptr; // out: [heads, T, columns]; masked columns 0
  int heads = 0, T = 0;
  int64_t columns = 0;            // n_rows + range length
  int64_t n_rows = 0;             // the first n_rows columns are always visible
  int64_t range_begin = 0;        // column n_rows + j is position range_begin + j
  int64_t first_query = 0;        // query t is at position first_query + t (causal over the range)
};
cudaError_t launch_chunk_softmax(const ChunkSoftmaxParams& p, cudaStream_t stream);

}  // namespace esa::cuda
