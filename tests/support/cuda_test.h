// What the CUDA test files share (include only where ESA_WITH_CUDA): the fixture that skips
// cleanly without a GPU, device arrays built on the one device-buffer type (cuda::Buffer) with
// the tests' host-vector upload and download, and bf16 rounding.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/device_buffer.h"

namespace esa::test {

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (cuda_devices(&why).empty()) GTEST_SKIP() << "no CUDA device: " << why;
  }
};

/// A cuda::Buffer of n elements, or a copy of a host vector; `ptr` for kernel parameters.
template <typename T>
struct DeviceArray {
  cuda::Buffer<T> buffer;
  T* ptr = nullptr;
  size_t n = 0;
  explicit DeviceArray(size_t count) : buffer(count, "test data"), ptr(buffer.get()), n(count) {}
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) {
    EXPECT_EQ(cudaMemcpy(ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<T> download() const {
    std::vector<T> out(n);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(out.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }
};

inline uint16_t to_bf16(float f) {  // round to nearest even
  const uint32_t u = std::bit_cast<uint32_t>(f);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

}  // namespace esa::test
