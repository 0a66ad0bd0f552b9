// The GPU dequantizer (kernels/dequantize.cuh through ops::dequantize) against the CPU's, every
// block type at block counts around the launch geometry's edges. Skips without a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <set>

#include "core/error.h"
#include "io/ggml_type.h"
#include "ops/dequantize.h"
#include "support/cuda_test.h"
#include "support/test_support.h"

namespace esa {
namespace {

using test::CudaTest;
using test::DeviceArray;
using test::to_bf16;

// Random blocks whose fp16 fields are finite (scales anywhere in the block are rewritten when
// they would decode to inf/NaN), so the CPU and GPU results are comparable element-wise.
std::vector<uint8_t> random_blocks(const io::GgmlTypeInfo& info, int64_t n_blocks, std::mt19937_64& rng) {
  std::vector<uint8_t> raw(size_t(n_blocks * info.type_size));
  for (auto& b : raw) b = uint8_t(rng());
  for (int64_t b = 0; b < n_blocks; ++b) {
    uint8_t* blk = raw.data() + b * info.type_size;
    for (int64_t k = 0; k + 1 < info.type_size; k += 2) {
      if (((blk[k + 1] << 8) & 0x7c00) == 0x7c00) blk[k + 1] &= 0x83;
    }
  }
  return raw;
}

TEST_F(CudaTest, DequantizeMatchesCpu) {
  std::mt19937_64 rng(test::test_seed(11));
  using io::GgmlType;
  for (GgmlType type : {GgmlType::f16, GgmlType::bf16, GgmlType::q4_0, GgmlType::q4_1, GgmlType::q5_0,
                        GgmlType::q5_1, GgmlType::q8_0, GgmlType::q4_k, GgmlType::q6_k}) {
    const io::GgmlTypeInfo& info = io::ggml_type_info(type);
    for (int64_t n_blocks : {1, 31, 32, 33, 1023, 1024, 1025, 70001}) {
      const std::vector<uint8_t> raw = random_blocks(info, n_blocks, rng);
      const int64_t n = n_blocks * info.block_size;
      std::vector<float> cpu(static_cast<size_t>(n)), gpu(static_cast<size_t>(n));
      ops::dequantize(type, raw.data(), raw.size(), cpu.data(), n);
      DeviceArray<uint8_t> src(raw.size());
      DeviceArray<float> dst(static_cast<size_t>(n));
      ASSERT_EQ(cudaMemcpy(src.ptr, raw.data(), raw.size(), cudaMemcpyHostToDevice), cudaSuccess);
      ops::dequantize(Device::cuda, type, src.ptr, raw.size(), dst.ptr, n);
      ASSERT_EQ(cudaMemcpy(gpu.data(), dst.ptr, size_t(n) * 4, cudaMemcpyDeviceToHost), cudaSuccess);
      int64_t bad = 0;
      for (int64_t i = 0; i < n; ++i) {
        const float c = cpu[size_t(i)], g = gpu[size_t(i)];
        const bool ok = std::isnan(c) ? std::isnan(g) : std::fabs(g - c) <= 1e-6f * std::fabs(c) + 1e-30f;
        if (!ok && ++bad <= 3) ADD_FAILURE() << info.name << " x" << n_blocks << " [" << i << "]: " << g << " vs " << c;
      }
      EXPECT_EQ(bad, 0) << info.name << " with " << n_blocks << " blocks";
    }
  }
}

TEST_F(CudaTest, DequantizeRejectsUnsupportedType) {
  DeviceArray<uint8_t> src(84);
  DeviceArray<float> dst(256);
  EXPECT_THROW(ops::dequantize(Device::cuda, io::GgmlType::q2_k, src.ptr, 84, dst.ptr, 256),
               Error);
}


}  // namespace
}  // namespace esa
