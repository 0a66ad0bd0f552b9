// Counter-based pseudo-random bf16 / float fill on the device (benchmarks fill gigabytes of
// caches; generating them on the host and copying would dominate a benchmark's run time).
// Values: approximately standard normal (sum of four uniforms, rescaled), times `scale`.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace esa::cuda {

cudaError_t launch_random_fill_bf16(__nv_bfloat16* out, int64_t n, uint64_t seed, float scale, cudaStream_t stream);
cudaError_t launch_random_fill_f32(float* out, int64_t n, uint64_t seed, float scale, cudaStream_t stream);

}  // namespace esa::cuda
