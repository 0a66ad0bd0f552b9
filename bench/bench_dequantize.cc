// Dequantisation throughput per ggml type on the CPU (random blocks with finite scales).
// Floor: output bytes written (4 per element) over memory bandwidth.
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

#include "core/half.h"
#include "ops/dequantize.h"

namespace {

void BM_dequantize(benchmark::State& state, esa::io::GgmlType type) {
  const esa::io::GgmlTypeInfo& info = esa::io::ggml_type_info(type);
  const int64_t n = int64_t(1) << 22;  // 4M elements
  const int64_t n_blocks = n / info.block_size;
  std::vector<uint8_t> src(size_t(n_blocks * info.type_size));
  std::mt19937 rng(7);
  for (auto& b : src) b = uint8_t(rng());
  // Keep every fp16 field finite: overwrite the bytes that hold scales with 0x3c00 (1.0).
  if (info.block_size > 1) {
    for (int64_t b = 0; b < n_blocks; ++b) {
      uint8_t* blk = src.data() + b * info.type_size;
      for (int64_t k = 0; k + 1 < info.type_size; k += 2) {
        const uint16_t h = uint16_t(blk[k] | (blk[k + 1] << 8));
        if ((h & 0x7c00) == 0x7c00) blk[k + 1] &= 0x83;
      }
    }
  }
  std::vector<float> dst(static_cast<size_t>(n));
  for (auto _ : state) {
    esa::ops::dequantize(type, src.data(), src.size(), dst.data(), n);
    benchmark::DoNotOptimize(dst.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * (int64_t(src.size()) + n * 4));
  state.SetItemsProcessed(int64_t(state.iterations()) * n);
}

using esa::io::GgmlType;
BENCHMARK_CAPTURE(BM_dequantize, F16, GgmlType::f16);
BENCHMARK_CAPTURE(BM_dequantize, BF16, GgmlType::bf16);
BENCHMARK_CAPTURE(BM_dequantize, Q4_0, GgmlType::q4_0);
BENCHMARK_CAPTURE(BM_dequantize, Q4_1, GgmlType::q4_1);
BENCHMARK_CAPTURE(BM_dequantize, Q8_0, GgmlType::q8_0);
BENCHMARK_CAPTURE(BM_dequantize, Q4_K, GgmlType::q4_k);
BENCHMARK_CAPTURE(BM_dequantize, Q6_K, GgmlType::q6_k);

}  // namespace
