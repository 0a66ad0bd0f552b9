// Benchmark-only (`esa bench attention --policy esa-rope`, the prefill-chunk table): the path the
// forward replaced by keeping rotated keys in the cache, kept to time the two in the same run.
// Reference: ops::rope_cpu (tests/unit/test_cuda_ops.cc).
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

}  // namespace esa::cuda
