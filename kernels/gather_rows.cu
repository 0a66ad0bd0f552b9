// See gather_rows.cuh.
#include "gather_rows.cuh"

#include "grid_stride.cuh"

namespace esa::cuda {
namespace {

__global__ void gather_rows_kernel(const __nv_bfloat16* k, const __nv_bfloat16* v, const int* rows, int n, int width,
                                   __nv_bfloat16* k_out, __nv_bfloat16* v_out) {
  const int64_t total = int64_t(n) * width;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / width, c = i % width;
    const int64_t src = int64_t(rows[r]) * width + c;
    k_out[i] = k[src];
    v_out[i] = v[src];
  }
}

}  // namespace

cudaError_t launch_gather_rows(const __nv_bfloat16* k, const __nv_bfloat16* v, const int* rows, int n, int width,
                               __nv_bfloat16* k_out, __nv_bfloat16* v_out, cudaStream_t stream) {
  if (n < 0 || width <= 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  gather_rows_kernel<<<element_blocks(int64_t(n) * width), kElementThreads, 0, stream>>>(k, v, rows, n, width, k_out, v_out);
  return cudaGetLastError();
}

}  // namespace esa::cuda
