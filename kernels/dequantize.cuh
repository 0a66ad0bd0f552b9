// CUDA dequantisation of ggml blocks to float32 (the GPU loader's first step). Reference:
// esa::ops::dequantize_cpu (lib/ops/dequantize_cpu.cc); compared in tests/unit/test_dequantize_cuda.cc.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace esa::cuda {

struct DequantizeParams {
  uint32_t ggml_type;   // ggml type id (F16 = 1, Q4_0 = 2, ...)
  const uint8_t* src;   // device, n_blocks * block bytes, blocks contiguous
  float* dst;           // device, n_blocks * block elements
  int64_t n_blocks;
};

/// True when the kernel handles this ggml type id.
bool dequantize_supported(uint32_t ggml_type);
/// Enqueues the kernel on `stream`; returns the launch status.
cudaError_t launch_dequantize(const DequantizeParams& params, cudaStream_t stream);

}  // namespace esa::cuda
