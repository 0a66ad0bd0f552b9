// The long branch's listed rows gathered into contiguous bf16 rows for a prefill chunk's
// attention (kernels/flash_attention.cuh takes its two column segments so).
// Reference: plain indexing (tests/unit/test_cuda_ops.cc).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace esa::cuda {

/// k_out[i] = k[rows[i]], v_out[i] = v[rows[i]] for i < n, rows of `width` elements.
cudaError_t launch_gather_rows(const __nv_bfloat16* k, const __nv_bfloat16* v, const int* rows, int n, int width,
                               __nv_bfloat16* k_out, __nv_bfloat16* v_out, cudaStream_t stream);

}  // namespace esa::cuda
