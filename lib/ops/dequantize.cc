// Checks and dispatch for dequantize (CPU only until the CUDA loader of the GPU path).
#include "ops/dequantize.h"

#include "core/error.h"

#ifdef ESA_WITH_CUDA
#include "core/cuda_check.h"
#include "dequantize.cuh"
#endif

namespace esa::ops {

std::string dequantizable_types() {
  std::string out;
  for (uint32_t id = 0; id < 64; ++id) {
    const io::GgmlTypeInfo* info = io::ggml_type_info(id);
    if (info != nullptr && info->dequantizable) out += (out.empty() ? "" : ", ") + std::string(info->name);
  }
  return out;
}

void dequantize(io::GgmlType type, const void* src, size_t src_bytes, float* dst, int64_t n) {
  dequantize(Device::cpu, type, src, src_bytes, dst, n);
}

void dequantize(Device device, io::GgmlType type, const void* src, size_t src_bytes, float* dst, int64_t n) {
  const io::GgmlTypeInfo* info = io::ggml_type_info(static_cast<uint32_t>(type));
  ESA_CHECK(info != nullptr, "dequantize: unknown ggml type {}", static_cast<uint32_t>(type));
  ESA_CHECK(info->dequantizable, "dequantize: type {} is not supported (supported: {})", info->name,
            dequantizable_types());
  ESA_CHECK(n >= 0 && n % info->block_size == 0, "dequantize: {} elements is not a whole number of {} blocks of {}",
            n, info->name, info->block_size);
  const int64_t n_blocks = n / info->block_size;
  ESA_CHECK(src_bytes >= size_t(n_blocks) * size_t(info->type_size),
            "dequantize: {} blocks of {} need {} bytes, got {}", n_blocks, info->name,
            n_blocks * info->type_size, src_bytes);
  if (device == Device::cpu) {
    dequantize_cpu(type, static_cast<const uint8_t*>(src), dst, n_blocks);
    return;
  }
#ifdef ESA_WITH_CUDA
  const uint32_t id = static_cast<uint32_t>(type);
  ESA_CHECK(cuda::dequantize_supported(id), "dequantize: type {} is not supported on cuda", info->name);
  ESA_CUDA_CHECK(cuda::launch_dequantize({id, static_cast<const uint8_t*>(src), dst, n_blocks}, nullptr));
  ESA_CUDA_CHECK(cudaStreamSynchronize(nullptr));
#else
  ESA_FAIL("dequantize on cuda: this esa was built without CUDA");
#endif
}

}  // namespace esa::ops
