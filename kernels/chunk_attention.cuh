// The data movement around a prefill chunk's attention (kernels/flash_attention.cuh), which takes
// its two column segments as contiguous bf16 rows:
//   launch_rope_rows    the range's keys (cached before RoPE) rotated to their positions;
//   launch_gather_rows  the long branch's listed rows' keys and values.
// Reference: ops::rope_cpu and plain indexing (tests/unit/test_cuda.cc: FlashChunkAttentionMatchesCpu
// runs the two with the flash kernel against the CPU's attention).
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

}  // namespace esa::cuda
