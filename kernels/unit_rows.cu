// See unit_rows.cuh.
#include "unit_rows.cuh"

#include "grid_stride.cuh"

namespace esa::cuda {
namespace {

__global__ void expand_units_kernel(ExpandUnitsParams p) {
  const int64_t n = int64_t(p.k) * p.unit;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = p.begin + int64_t(p.units[i / p.unit]) * p.unit + i % p.unit;
    p.rows[i] = int(row < p.end ? row : p.begin);
  }
  if (p.rows_valid != nullptr && blockIdx.x == 0 && threadIdx.x == 0) {
    // Units are ascending, so only the last can reach past the end.
    const int64_t last_end = p.begin + (int64_t(p.units[p.k - 1]) + 1) * p.unit;
    const int64_t cut = last_end > p.end ? last_end - p.end : 0;
    *p.rows_valid = int(p.base + n - cut);
  }
}

}  // namespace

cudaError_t launch_expand_units(const ExpandUnitsParams& p, cudaStream_t stream) {
  if (p.units == nullptr || p.rows == nullptr || p.k <= 0 || p.unit <= 0 ||
      p.end <= p.begin || p.base < 0) {
    return cudaErrorInvalidValue;
  }
  expand_units_kernel<<<element_blocks(int64_t(p.k) * p.unit), kElementThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace esa::cuda
