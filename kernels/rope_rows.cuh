// RoPE on cached bf16 key rows, each row turned by its own index: to its position (the local
// branch's keys, from a cache that holds keys before RoPE) or back from it (a cache that held
// rotated keys for dense attention, turned back when a selecting policy takes the sequence over).
// Reference: ops::rope_cpu (tests/unit/test_cuda_ops.cc).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "rope_tables.cuh"

namespace esa::cuda {

enum class RopeTurn { to_position, from_position };

/// out[r - begin, :, :] = rows r in [begin, end) of `keys` [rows, heads, d], turned by the angle
/// of position r (from_position: by its inverse). Dimensions past 2 * rope.half are copied. In
/// place when out == keys + begin * heads * d (each element is read and written by one thread).
cudaError_t launch_rope_rows(const __nv_bfloat16* keys, int64_t begin, int64_t end, int heads, int d,
                             const RopeTables& rope, __nv_bfloat16* out, cudaStream_t stream,
                             RopeTurn turn = RopeTurn::to_position);

}  // namespace esa::cuda
