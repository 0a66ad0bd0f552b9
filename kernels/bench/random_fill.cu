// See random_fill.cuh. splitmix64 of (seed, index): any element is reproducible on its own.
#include "bench/random_fill.cuh"

namespace esa::cuda {
namespace {

__device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

__device__ __forceinline__ float normalish(uint64_t seed, int64_t i) {
  const uint64_t r = splitmix64(seed ^ splitmix64(uint64_t(i)));
  float sum = 0.0f;
  for (int j = 0; j < 4; ++j) sum += float((r >> (16 * j)) & 0xffff) * (1.0f / 65536.0f);
  return (sum - 2.0f) * 1.7320508f;  // four uniforms: mean 2, variance 1/3
}

template <typename T>
__global__ void fill_kernel(T* out, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    out[i] = T(normalish(seed, i) * scale);
  }
}

}  // namespace

cudaError_t launch_random_fill_bf16(__nv_bfloat16* out, int64_t n, uint64_t seed, float scale, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  fill_kernel<<<1024, 256, 0, stream>>>(out, n, seed, scale);
  return cudaGetLastError();
}

cudaError_t launch_random_fill_f32(float* out, int64_t n, uint64_t seed, float scale, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  fill_kernel<<<1024, 256, 0, stream>>>(out, n, seed, scale);
  return cudaGetLastError();
}

}  // namespace esa::cuda
