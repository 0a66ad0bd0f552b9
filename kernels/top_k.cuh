// Top-k on the GPU: a radix select on the float bits (three histogram passes, the last block of
// each pass picks the digit, no host sync), then an ordered compaction: the indices of the k
// largest values, ties to the lower index, sorted by index (NaN ranks as -inf).
// Reference: esa::attention::top_k_indices (lib/attention/selection.h), compared as sets and
// exactly in tests/unit/test_selection_cuda.cc. CUDA-graph safe: sizes are fixed at enqueue,
// state lives in the workspace.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace esa::cuda {

/// Scratch of the top-k: device memory of top_k_workspace_bytes(n), reused across calls on one
/// stream (a call leaves it ready for the next).
size_t top_k_workspace_bytes(int64_t n);

struct TopKParams {
  const float* values;           // [n]
  int64_t n;
  int k;                         // 1 .. n (k == n selects everything)
  int index_offset;              // added to every emitted index
  int* indices;                  // out: [k] ascending
  void* workspace;               // top_k_workspace_bytes(n), zeroed once with cudaMemset before first use
};
cudaError_t launch_top_k(const TopKParams& p, cudaStream_t stream);

}  // namespace esa::cuda
