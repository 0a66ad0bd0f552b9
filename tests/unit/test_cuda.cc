// CUDA kernels against their CPU references. Skips (with the reason) when no GPU is present,
// as on CI; scripts/gpu_check.sh runs it on the GPU machine.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <set>

#include "attention/policy.h"
#include "attention/selection.h"
#include "core/device.h"
#include "core/error.h"
#include "core/half.h"
#include "chunk_attention.cuh"
#include "esa_select.cuh"
#include "flash_attention.cuh"
#include "gathered_attention.cuh"
#include "block_select.cuh"
#include "model/esa_cuda.h"
#include "model/llama.h"
#include "ops/attention.h"
#include "ops/dequantize.h"
#include "ops/rope.h"
#include "support/test_support.h"

namespace esa {
namespace {

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (cuda_devices(&why).empty()) GTEST_SKIP() << "no CUDA device: " << why;
  }
};

struct DeviceBuffer {
  void* ptr = nullptr;
  explicit DeviceBuffer(size_t bytes) { EXPECT_EQ(cudaMalloc(&ptr, bytes > 0 ? bytes : 1), cudaSuccess); }
  ~DeviceBuffer() { cudaFree(ptr); }
};

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
      DeviceBuffer src(raw.size()), dst(size_t(n) * 4);
      ASSERT_EQ(cudaMemcpy(src.ptr, raw.data(), raw.size(), cudaMemcpyHostToDevice), cudaSuccess);
      ops::dequantize(Device::cuda, type, src.ptr, raw.size(), static_cast<float*>(dst.ptr), n);
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
  DeviceBuffer src(84), dst(256 * 4);
  EXPECT_THROW(ops::dequantize(Device::cuda, io::GgmlType::q2_k, src.ptr, 84, static_cast<float*>(dst.ptr), 256),
               Error);
}

// ---- ESA kernels (kernels/esa_select.cuh, kernels/gathered_attention.cuh) ---------------------

template <typename T>
struct DeviceArray {
  T* ptr = nullptr;
  size_t n = 0;
  explicit DeviceArray(size_t count) : n(count) {
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&ptr), std::max<size_t>(count, 1) * sizeof(T)), cudaSuccess);
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) {
    EXPECT_EQ(cudaMemcpy(ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DeviceArray() { cudaFree(ptr); }
  std::vector<T> download() const {
    std::vector<T> out(n);
    EXPECT_EQ(cudaMemcpy(out.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }
};

uint16_t to_bf16(float f) {  // round to nearest even
  const uint32_t u = std::bit_cast<uint32_t>(f);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Exact agreement with top_k_indices (same floats in): sizes around warp, block and tile edges,
// k = 1 and k = n, heavy ties (few distinct values), NaN and -inf, one workspace reused.
TEST_F(CudaTest, TopKMatchesCpuExactly) {
  std::mt19937_64 rng(test::test_seed(21));
  const int64_t largest = (int64_t(1) << 20) + 3;
  DeviceArray<uint8_t> workspace(cuda::top_k_workspace_bytes(largest));
  ASSERT_EQ(cudaMemset(workspace.ptr, 0, workspace.n), cudaSuccess);
  for (int64_t n : {int64_t(1), int64_t(31), int64_t(32), int64_t(33), int64_t(1023), int64_t(1024), int64_t(1025),
                    int64_t(4097), int64_t(65537), largest}) {
    for (int kind = 0; kind < 3; ++kind) {
      std::vector<float> values(static_cast<size_t>(n));
      std::normal_distribution<float> normal;
      std::uniform_int_distribution<int> few(0, 5);
      for (float& v : values) v = kind == 1 ? float(few(rng)) * 0.5f : normal(rng);
      if (kind == 2) {
        for (int64_t i = 0; i < n; i += 7) values[size_t(i)] = std::numeric_limits<float>::quiet_NaN();
        for (int64_t i = 3; i < n; i += 11) values[size_t(i)] = -std::numeric_limits<float>::infinity();
        if (n > 5) values[5] = -0.0f, values[4] = 0.0f;
      }
      const DeviceArray<float> d_values(values);
      for (int64_t k : {int64_t(1), std::min<int64_t>(n, 7), n / 2 + 1, std::min<int64_t>(n, 2048),
                        std::min<int64_t>(n, 4096), n}) {
        const std::vector<int64_t> cpu = attention::top_k_indices(values, k);
        DeviceArray<int> d_indices{static_cast<size_t>(k)};
        cuda::TopKParams p{d_values.ptr, n, int(k), 5, d_indices.ptr, workspace.ptr};
        ASSERT_EQ(cuda::launch_top_k(p, nullptr), cudaSuccess);
        const std::vector<int> gpu = d_indices.download();
        int64_t bad = 0;
        for (size_t i = 0; i < size_t(k); ++i) bad += gpu[i] != int(cpu[i]) + 5;
        EXPECT_EQ(bad, 0) << "n " << n << ", k " << k << ", values kind " << kind;
      }
    }
  }
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

// Compressed scores, the per-query max subtraction, the max over the chunk and the proximity
// max-pool against chunk_importance + proximity_max_pool on the same bf16 keys.
// Random bf16 compressed keys (rows [0, begin + n + 3)) and float queries [T, dim], and the CPU's
// pooled importance of rows [begin, begin + n): chunk_importance + proximity_max_pool, dots in double.
struct ImportanceCase {
  std::vector<uint16_t> k_bits;
  std::vector<float> q, cpu;
};

// `bf16_queries`: queries that are bf16 values (the GEMM path rounds them to bf16).
ImportanceCase importance_case(int dim, int T, int64_t begin, int64_t n, int eps, std::mt19937_64& rng,
                               bool bf16_queries = false) {
  std::normal_distribution<float> normal;
  ImportanceCase c;
  c.k_bits.resize(size_t((begin + n + 3) * dim));
  std::vector<float> k_float(c.k_bits.size());
  for (size_t i = 0; i < c.k_bits.size(); ++i) {
    c.k_bits[i] = to_bf16(normal(rng));
    k_float[i] = bf16_to_float(c.k_bits[i]);
  }
  c.q.resize(size_t(T * dim));
  for (float& x : c.q) x = bf16_queries ? bf16_to_float(to_bf16(normal(rng))) : normal(rng);
  const attention::ScoreBlockFn block = [&](int64_t m0, int64_t count, float* out) {
    for (int t = 0; t < T; ++t) {
      for (int64_t j = 0; j < count; ++j) {
        double dot = 0.0;
        for (int i = 0; i < dim; ++i) dot += double(c.q[size_t(t * dim + i)]) * k_float[size_t((begin + m0 + j) * dim + i)];
        out[t * count + j] = float(dot);
      }
    }
  };
  c.cpu = attention::proximity_max_pool(attention::chunk_importance(T, n, block), eps);
  return c;
}

// The kernels accumulate dot products in float32, the reference in double: the bound grows with d'.
double importance_tolerance(double base, int dim) { return base + 4e-8 * dim; }

// Largest difference relative to the largest |value| (at least 1).
double worst_scaled_error(const std::vector<float>& got, const std::vector<float>& want) {
  double worst = 0.0, scale = 1.0;
  for (float w : want) scale = std::max(scale, double(std::fabs(w)));
  for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(double(got[i]) - want[i]) / scale);
  return worst;
}

TEST_F(CudaTest, CompressedImportanceMatchesCpu) {
  std::mt19937_64 rng(test::test_seed(22));
  for (int dim : {8, 32, 96, 128}) {
    for (int T : {1, 3, 16}) {
      for (int64_t n : {int64_t(1), int64_t(33), int64_t(1025), int64_t(70001)}) {
        for (int eps : {0, 1, 3}) {
          const int64_t begin = 17;
          const ImportanceCase c = importance_case(dim, T, begin, n, eps, rng);
          const DeviceArray<float> d_q(c.q);
          const DeviceArray<uint16_t> d_k(c.k_bits);
          DeviceArray<float> d_scores{static_cast<size_t>(T * n)}, d_importance{static_cast<size_t>(n)};
          DeviceArray<unsigned int> d_max{static_cast<size_t>(T)};
          cuda::CompressedScoreParams sp{d_q.ptr, reinterpret_cast<const __nv_bfloat16*>(d_k.ptr), dim, T, begin,
                                         begin + n, d_scores.ptr, d_max.ptr};
          ASSERT_EQ(cuda::launch_compressed_scores(sp, nullptr), cudaSuccess);
          cuda::ImportanceParams ip{d_scores.ptr, d_max.ptr, T, n, eps, d_importance.ptr};
          ASSERT_EQ(cuda::launch_importance_pool(ip, nullptr), cudaSuccess);
          EXPECT_LT(worst_scaled_error(d_importance.download(), c.cpu), importance_tolerance(2e-6, dim)) << "dim " << dim << ", T " << T << ", n " << n << ", eps " << eps;
        }
      }
    }
  }
}

// A prefill chunk's importance in two passes (launch_chunk_importance), pooled by
// launch_importance_pool with T = 1 and no maxima, against chunk_importance + proximity_max_pool.
TEST_F(CudaTest, ChunkImportanceMatchesCpu) {
  std::mt19937_64 rng(test::test_seed(24));
  for (const auto& [dim, T] : {std::pair{8, 17}, std::pair{16, 512}, std::pair{16, 100}, std::pair{64, 128},
                               std::pair{256, 32}}) {
    for (int64_t n : {int64_t(1), int64_t(33), int64_t(1025), int64_t(70001)}) {
      for (int eps : {0, 3}) {
        const int64_t begin = 9;
        const ImportanceCase c = importance_case(dim, T, begin, n, eps, rng);
        const DeviceArray<float> d_q(c.q);
        const DeviceArray<uint16_t> d_k(c.k_bits);
        DeviceArray<float> d_f{static_cast<size_t>(n)}, d_importance{static_cast<size_t>(n)};
        DeviceArray<unsigned int> d_max{static_cast<size_t>(T)};
        cuda::ChunkImportanceParams cp{d_q.ptr, reinterpret_cast<const __nv_bfloat16*>(d_k.ptr), dim, T, begin,
                                       begin + n, d_max.ptr, d_f.ptr};
        ASSERT_EQ(cuda::launch_chunk_importance(cp, nullptr), cudaSuccess);
        cuda::ImportanceParams ip{d_f.ptr, nullptr, 1, n, eps, d_importance.ptr};
        ASSERT_EQ(cuda::launch_importance_pool(ip, nullptr), cudaSuccess);
        EXPECT_LT(worst_scaled_error(d_importance.download(), c.cpu), importance_tolerance(4e-6, dim)) << "dim " << dim << ", T " << T << ", n " << n << ", eps " << eps;
      }
    }
  }
  DeviceArray<float> d_q{size_t(1)};
  cuda::ChunkImportanceParams too_big{d_q.ptr, nullptr, 16, 513, 0, 1, nullptr, nullptr};  // T * dim > 8192
  EXPECT_EQ(cuda::launch_chunk_importance(too_big, nullptr), cudaErrorInvalidValue);
}

struct AttentionCase {
  int hq, hkv, d;
  RopeStyle style;
  int64_t n_rows, range_begin, range_end;
};

// Both branches against ops::attention_cpu (long: listed rows as cached; local: keys rotated by
// ops::rope_cpu to their positions) merged by log-sum-exp; positions up to ~300k exercise the
// kernel's two-table RoPE.
// esa's importance as the forward computes it (model/esa_cuda.h), every path: decode (T <= 16),
// the two-pass chunk kernel, and the GEMM into a score matrix with its row maxima and a grouped
// pool (T * d' > kChunkScoreFloats), against the CPU's chunk_importance + proximity_max_pool.
TEST_F(CudaTest, EsaImportanceMatchesCpu) {
  std::mt19937_64 rng(test::test_seed(25));
  cublasHandle_t cublas = nullptr;
  ASSERT_EQ(cublasCreate(&cublas), CUBLAS_STATUS_SUCCESS);
  for (const auto& [dim, T] : {std::pair{16, 1}, std::pair{64, 16}, std::pair{16, 512}, std::pair{128, 512},
                               std::pair{256, 40}, std::pair{8, 1100},
                               // oracle's whole key rows (SmolLM2's 3 x 64, Llama-3-8B's 8 x 128): by GEMM at any T
                               std::pair{576, 1}, std::pair{1024, 5}}) {
    for (int64_t n : {int64_t(1), int64_t(1025), int64_t(70001)}) {
      for (int eps : {0, 3}) {
        const int64_t begin = 5;
        const ImportanceCase c = importance_case(dim, T, begin, n, eps, rng, true);
        const DeviceArray<float> d_q(c.q);
        const DeviceArray<uint16_t> d_k(c.k_bits);
        DeviceArray<float> d_scores(esa_score_floats(T, dim, n)), d_importance(static_cast<size_t>(n));
        DeviceArray<uint16_t> d_q16(size_t(T * dim));
        DeviceArray<unsigned int> d_max(esa_row_max_count(T));
        const EsaImportanceScratch scratch{d_scores.ptr, reinterpret_cast<__nv_bfloat16*>(d_q16.ptr), d_max.ptr};
        esa_importance_cuda(cublas, nullptr, d_q.ptr, reinterpret_cast<const __nv_bfloat16*>(d_k.ptr), dim, T, begin,
                            begin + n, eps, scratch, d_importance.ptr);
        EXPECT_LT(worst_scaled_error(d_importance.download(), c.cpu), importance_tolerance(4e-6, dim))
            << "dim " << dim << ", T " << T << ", n " << n << ", eps " << eps;
      }
    }
  }
  cublasDestroy(cublas);
}

const std::vector<std::tuple<int, int, int>> kQuestHeads = {{9, 3, 64}, {32, 8, 128}, {8, 1, 64}};

// Quest's page selection on the device against the host's arithmetic (QuestPolicy): page bounds
// exactly (min/max of the same bf16 keys; built in two calls, as the forward extends them), the
// signed fold and the page scores by relative error, then the chosen pages' rows and their
// device-side count exactly, from the GPU's own scores (a near-tie cannot flip the comparison).
TEST_F(CudaTest, QuestPagesMatchCpu) {
  std::mt19937_64 rng(test::test_seed(37));
  std::normal_distribution<float> normal;
  cublasHandle_t cublas = nullptr;
  ASSERT_EQ(cublasCreate(&cublas), CUBLAS_STATUS_SUCCESS);
  constexpr int kPage = 16;
  for (const auto& [hq, hkv, d] : kQuestHeads) {
    for (const auto& [T, m0, m1] : {std::tuple<int, int64_t, int64_t>{1, 4, 5}, {1, 4, 35}, {5, 0, 32}, {5, 3, 36},
                                    {64, 64, 1087}, {64, 10, 1034}, {33, 1, 1025}, {600, 16, 5000}}) {
      const std::string what = fmt::format("hq {} hkv {} d {} T {} middle [{}, {})", hq, hkv, d, T, m0, m1);
      const int64_t width = int64_t(hkv) * d, n = m1 + 3, middle = m1 - m0;
      const int64_t full = middle / kPage, pages = (middle + kPage - 1) / kPage;
      std::vector<uint16_t> k_bits(size_t(n * width));
      for (auto& b : k_bits) b = to_bf16(normal(rng));
      Tensor q({int64_t(T), int64_t(hq), int64_t(d)});
      for (int64_t i = 0; i < q.numel(); ++i) q.data()[i] = normal(rng);
      const DeviceArray<uint16_t> d_k(k_bits);
      const DeviceArray<float> d_q(std::vector<float>(q.data(), q.data() + q.numel()));
      DeviceArray<float> d_bounds(size_t(pages * 2 * width)), d_qs(size_t(T * 2 * width));
      cuda::PageBoundsParams bp;
      bp.keys = reinterpret_cast<const __nv_bfloat16*>(d_k.ptr);
      bp.width = width;
      bp.begin = m0;
      bp.end = m1;
      bp.page = kPage;
      bp.bounds = d_bounds.ptr;
      for (const auto& [from, to] : {std::pair{int64_t(0), full}, std::pair{full, pages}}) {
        bp.page_from = from;
        bp.page_to = to;
        ASSERT_EQ(cuda::launch_page_bounds(bp, nullptr), cudaSuccess) << what;
      }
      const std::vector<float> bounds = d_bounds.download();
      int64_t bound_errors = 0;
      for (int64_t p = 0; p < pages; ++p) {
        for (int64_t c = 0; c < width; ++c) {
          float hi = -INFINITY, lo = INFINITY;
          for (int64_t r = m0 + p * kPage; r < std::min(m0 + (p + 1) * kPage, m1); ++r) {
            hi = std::max(hi, bf16_to_float(k_bits[size_t(r * width + c)]));
            lo = std::min(lo, bf16_to_float(k_bits[size_t(r * width + c)]));
          }
          bound_errors += bounds[size_t((p * 2) * width + c)] != hi || bounds[size_t((p * 2 + 1) * width + c)] != lo;
        }
      }
      EXPECT_EQ(bound_errors, 0) << what;

      ASSERT_EQ(cuda::launch_gqa_fold_signed(d_q.ptr, T, hq, hkv, d, d_qs.ptr, nullptr), cudaSuccess);
      const std::vector<float> qs = d_qs.download();
      Tensor pos, neg;
      attention::gqa_fold_signed(q.view(), hkv, pos, neg);
      double fold_error = 0.0;
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t i = 0; i < width; ++i) {
          fold_error = std::max({fold_error, std::fabs(qs[size_t(t * 2 * width + i)] - pos.data()[t * width + i]) /
                                                 (1.0 + std::fabs(pos.data()[t * width + i])),
                                 std::fabs(qs[size_t(t * 2 * width + width + i)] - neg.data()[t * width + i]) /
                                     (1.0 + std::fabs(neg.data()[t * width + i]))});
        }
      }
      EXPECT_LT(fold_error, 1e-6) << what;

      DeviceArray<float> d_scores(chunk_max_dot_floats(T, pages)), d_importance(static_cast<size_t>(pages));
      chunk_max_dot_cuda(cublas, nullptr, d_qs.ptr, d_bounds.ptr, 2 * width, T, pages, d_scores.ptr, d_importance.ptr);
      const std::vector<float> importance = d_importance.download();
      std::vector<double> want(static_cast<size_t>(pages), -INFINITY);
      double scale = 0.0;
      for (int64_t p = 0; p < pages; ++p) {
        for (int64_t t = 0; t < T; ++t) {
          double sum = 0.0;
          for (int64_t i = 0; i < width; ++i) {
            sum += double(pos.data()[t * width + i]) * bounds[size_t((p * 2) * width + i)] +
                   double(neg.data()[t * width + i]) * bounds[size_t((p * 2 + 1) * width + i)];
          }
          want[size_t(p)] = std::max(want[size_t(p)], sum);
        }
        scale = std::max(scale, std::fabs(want[size_t(p)]));
      }
      double score_error = 0.0;
      for (int64_t p = 0; p < pages; ++p) {
        score_error = std::max(score_error, std::fabs(importance[size_t(p)] - want[size_t(p)]) / (1.0 + scale));
      }
      EXPECT_LT(score_error, 1e-5) << what;

      for (int64_t k : {int64_t(1), (pages + 1) / 2, pages}) {
        DeviceArray<int> d_pages(static_cast<size_t>(k)), d_rows(size_t(k * kPage)), d_valid(1);
        DeviceArray<char> d_ws(cuda::top_k_workspace_bytes(pages));
        ASSERT_EQ(cudaMemset(d_ws.ptr, 0, d_ws.n), cudaSuccess);
        const cuda::TopKParams tp{d_importance.ptr, pages, int(k), 0, d_pages.ptr, d_ws.ptr};
        ASSERT_EQ(cuda::launch_top_k(tp, nullptr), cudaSuccess) << what;
        cuda::ExpandUnitsParams xp;
        xp.units = d_pages.ptr;
        xp.k = int(k);
        xp.unit = kPage;
        xp.begin = m0;
        xp.end = m1;
        xp.base = int(m0);
        xp.rows = d_rows.ptr;
        xp.rows_valid = d_valid.ptr;
        ASSERT_EQ(cuda::launch_expand_units(xp, nullptr), cudaSuccess) << what;
        std::vector<int> want_rows;
        for (int64_t p : attention::top_k_indices(importance, k)) {
          for (int64_t r = m0 + p * kPage; r < std::min(m0 + (p + 1) * kPage, m1); ++r) want_rows.push_back(int(r));
        }
        const std::vector<int> rows = d_rows.download();
        const int valid = d_valid.download()[0];
        ASSERT_EQ(valid, int(m0) + int(want_rows.size())) << what << " k " << k;
        EXPECT_EQ(std::vector<int>(rows.begin(), rows.begin() + int64_t(want_rows.size())), want_rows) << what << " k " << k;
        for (size_t i = want_rows.size(); i < rows.size(); ++i) EXPECT_EQ(rows[i], int(m0)) << what << " filler " << i;
      }
    }
  }
  cublasDestroy(cublas);
}

// InfLLM's block keys on the device against the host's arithmetic (InfllmPolicy): the chunk's mean
// query, the window's softmax weights added to what the tokens had, and the blocks' mean
// representative keys exactly (the same bf16 keys summed in the same order; the weights are
// drawn from a few levels, so that the lower-position tie rule decides).
TEST_F(CudaTest, InfllmBlocksMatchCpu) {
  std::mt19937_64 rng(test::test_seed(41));
  std::normal_distribution<float> normal;
  for (const auto& [hq, hkv, d] : kQuestHeads) {
    for (const auto& [T, begin, end] : {std::tuple<int, int64_t, int64_t>{1, 300, 301}, {5, 100, 1124}, {64, 0, 1087},
                                        {512, 2000, 3537}}) {
      const std::string what = fmt::format("hq {} hkv {} d {} T {} window [{}, {})", hq, hkv, d, T, begin, end);
      const int64_t kw = int64_t(hkv) * d, n = end + 2, group = hq / hkv;
      std::vector<uint16_t> k_bits(size_t(n * kw));
      for (auto& b : k_bits) b = to_bf16(normal(rng));
      std::vector<float> q(size_t(T) * hq * d), received(size_t(n * hkv));
      for (float& x : q) x = normal(rng);
      std::uniform_int_distribution<int> level(0, 3);
      for (float& x : received) x = 0.25f * float(level(rng));
      const DeviceArray<uint16_t> d_k(k_bits);
      const DeviceArray<float> d_q(q);
      DeviceArray<float> d_qbar(static_cast<size_t>(kw)), d_received(received), d_scratch(size_t(hkv * (end - begin)));
      const float scale = float(1.0 / (double(T * group) * std::sqrt(double(d))));
      ASSERT_EQ(cuda::launch_fold_mean(d_q.ptr, T, hq, hkv, d, scale, d_qbar.ptr, nullptr), cudaSuccess);
      const std::vector<float> qbar = d_qbar.download();
      double fold_error = 0.0;
      for (int64_t g = 0; g < hkv; ++g) {
        for (int64_t c = 0; c < d; ++c) {
          double sum = 0.0;
          for (int64_t t = 0; t < T; ++t) {
            for (int64_t h = g * group; h < (g + 1) * group; ++h) sum += q[size_t((t * hq + h) * d + c)];
          }
          fold_error = std::max(fold_error, std::fabs(qbar[size_t(g * d + c)] - sum * scale) / (1e-3 + std::fabs(sum * scale)));
        }
      }
      EXPECT_LT(fold_error, 1e-4) << what;

      cuda::WindowWeightsParams wp;
      wp.qbar = d_qbar.ptr;
      wp.keys = reinterpret_cast<const __nv_bfloat16*>(d_k.ptr);
      wp.hkv = hkv;
      wp.d = d;
      wp.begin = begin;
      wp.end = end;
      wp.scratch = d_scratch.ptr;
      wp.received = d_received.ptr;
      ASSERT_EQ(cuda::launch_window_weights(wp, nullptr), cudaSuccess) << what;
      std::vector<float> want = received;
      for (int64_t g = 0; g < hkv; ++g) {
        std::vector<double> z;
        for (int64_t j = begin; j < end; ++j) {
          double dot = 0.0;
          for (int64_t c = 0; c < d; ++c) dot += double(qbar[size_t(g * d + c)]) * bf16_to_float(k_bits[size_t(j * kw + g * d + c)]);
          z.push_back(dot);
        }
        const double mx = *std::max_element(z.begin(), z.end());
        double sum = 0.0;
        for (double& v : z) sum += (v = std::exp(v - mx));
        for (int64_t j = begin; j < end; ++j) want[size_t(j * hkv + g)] += float(z[size_t(j - begin)] / sum);
      }
      const std::vector<float> got = d_received.download();
      double weight_error = 0.0;
      for (size_t i = 0; i < got.size(); ++i) weight_error = std::max(weight_error, double(std::fabs(got[i] - want[i])));
      EXPECT_LT(weight_error, 1e-5) << what;  // weights in [0, 1] plus the levels' 0.75 at most

      // Blocks of the level weights (a fresh copy: ties), from row `first`.
      const int64_t first = begin % 7, blocks = (n - first) / 128;
      if (blocks == 0) continue;
      const DeviceArray<float> d_levels(received);
      DeviceArray<float> d_block_keys(size_t(blocks * kw));
      cuda::BlockKeysParams bp;
      bp.received = d_levels.ptr;
      bp.keys = reinterpret_cast<const __nv_bfloat16*>(d_k.ptr);
      bp.hkv = hkv;
      bp.d = d;
      bp.begin = first;
      for (const auto& [from, to] : {std::pair{int64_t(0), blocks / 2}, std::pair{blocks / 2, blocks}}) {
        bp.block_from = from;
        bp.block_to = to;
        bp.block_keys = d_block_keys.ptr;
        ASSERT_EQ(cuda::launch_block_keys(bp, nullptr), cudaSuccess) << what;
      }
      const std::vector<float> block_keys = d_block_keys.download();
      int64_t key_errors = 0;
      for (int64_t b = 0; b < blocks; ++b) {
        for (int64_t g = 0; g < hkv; ++g) {
          std::vector<float> weight(128);
          for (int64_t i = 0; i < 128; ++i) weight[size_t(i)] = received[size_t((first + b * 128 + i) * hkv + g)];
          const std::vector<int64_t> reps = attention::top_k_indices(weight, 4);
          for (int64_t c = 0; c < d; ++c) {
            float sum = 0.0f;
            for (int64_t r : reps) sum += bf16_to_float(k_bits[size_t((first + b * 128 + r) * kw + g * d + c)]);
            key_errors += block_keys[size_t(b * kw + g * d + c)] != sum / 4.0f;
          }
        }
      }
      EXPECT_EQ(key_errors, 0) << what;
    }
  }
}

TEST_F(CudaTest, GatheredAttentionMatchesCpu) {
  std::mt19937_64 rng(test::test_seed(23));
  std::normal_distribution<float> normal;
  std::vector<AttentionCase> cases;
  for (const auto& [hq, hkv, d] : {std::tuple{32, 8, 128}, std::tuple{9, 3, 64}, std::tuple{8, 8, 128}, std::tuple{16, 2, 64}}) {
    for (RopeStyle style : {RopeStyle::rotate_half, RopeStyle::adjacent_pairs}) {
      for (const auto& [rows, lb, le] : {std::tuple<int64_t, int64_t, int64_t>{0, 0, 1}, {1, 40, 40}, {33, 100, 131},
                                         {1025, 3000, 5048}, {4096 + 128, 9000, 9033}, {31, 299000, 300024}}) {
        cases.push_back({hq, hkv, d, style, rows, lb, le});
      }
    }
  }
  cases.push_back({32, 8, 128, RopeStyle::rotate_half, 0, 0, 0});  // no row at all: out 0, lse -inf
  for (const AttentionCase& c : cases) {
    const int64_t n = std::max<int64_t>(c.range_end, c.n_rows + 1);
    const int64_t width = int64_t(c.hkv) * c.d;
    std::vector<uint16_t> k_bits(size_t(n * width), 0), v_bits(size_t(n * width), 0);
    std::vector<int> rows(size_t(c.n_rows));
    std::uniform_int_distribution<int64_t> pick(0, std::max<int64_t>(c.range_begin, 1) - 1);
    for (int& r : rows) r = int(c.range_begin > 0 ? pick(rng) : 0);
    std::vector<char> used(size_t(n), 0);
    for (int r : rows) used[size_t(r)] = 1;
    for (int64_t r = c.range_begin; r < c.range_end; ++r) used[size_t(r)] = 1;
    for (int64_t r = 0; r < n; ++r) {
      if (!used[size_t(r)]) continue;
      for (int64_t i = 0; i < width; ++i) {
        k_bits[size_t(r * width + i)] = to_bf16(normal(rng));
        v_bits[size_t(r * width + i)] = to_bf16(normal(rng));
      }
    }
    std::vector<float> q_long(size_t(c.hq * c.d)), q_local(q_long.size());
    for (float& x : q_long) x = normal(rng);
    for (float& x : q_local) x = normal(rng);
    RopeConfig rope_cfg;
    rope_cfg.base = 500000.0;
    rope_cfg.dim = c.d;
    rope_cfg.style = c.style;
    const ops::RopeTable table = ops::make_rope_table(rope_cfg);
    const ops::RopeSplitTables split = ops::make_rope_split_tables(table, n);
    const float scale = 1.0f / std::sqrt(float(c.d));

    // CPU: each branch by the reference attention, then the LSE merge.
    auto gather = [&](const std::vector<int64_t>& which, std::vector<float>& kk, std::vector<float>& vv) {
      kk.resize(which.size() * size_t(width));
      vv.resize(kk.size());
      for (size_t j = 0; j < which.size(); ++j) {
        for (int64_t i = 0; i < width; ++i) {
          kk[j * size_t(width) + size_t(i)] = bf16_to_float(k_bits[size_t(which[j] * width + i)]);
          vv[j * size_t(width) + size_t(i)] = bf16_to_float(v_bits[size_t(which[j] * width + i)]);
        }
      }
    };
    std::vector<int64_t> long_rows(rows.begin(), rows.end()), local_rows;
    for (int64_t r = c.range_begin; r < c.range_end; ++r) local_rows.push_back(r);
    std::vector<float> k1, v1, k2, v2;
    gather(long_rows, k1, v1);
    gather(local_rows, k2, v2);
    ops::rope_cpu(k2.data(), local_rows.data(), int64_t(local_rows.size()), c.hkv, c.d, table);
    const std::vector<int64_t> q_pos{0}, zeros1(long_rows.size(), 0), zeros2(local_rows.size(), 0);
    ops::AttentionArgs args{scale, false};
    std::vector<float> o1(q_long.size()), o2(q_long.size()), l1(static_cast<size_t>(c.hq)), l2(static_cast<size_t>(c.hq));
    ops::attention_cpu(q_long.data(), k1.data(), v1.data(), q_pos.data(), zeros1.data(), 1, int64_t(long_rows.size()),
                       c.hq, c.hkv, c.d, args, o1.data(), l1.data());
    ops::attention_cpu(q_local.data(), k2.data(), v2.data(), q_pos.data(), zeros2.data(), 1,
                       int64_t(local_rows.size()), c.hq, c.hkv, c.d, args, o2.data(), l2.data());

    // GPU.
    const DeviceArray<float> d_q_long(q_long), d_q_local(q_local), d_freq(split.inv_freq);
    const DeviceArray<float> d_low(split.low), d_high(split.high);
    const DeviceArray<uint16_t> d_k(k_bits), d_v(v_bits);
    const DeviceArray<int> d_rows(rows);
    const int64_t total = c.n_rows + (c.range_end - c.range_begin);
    DeviceArray<float> d_partial(cuda::gathered_attention_partial_floats(total, c.hq, c.hkv, c.d));
    DeviceArray<float> d_out(q_long.size()), d_lse{static_cast<size_t>(c.hq)};
    cuda::GatheredAttentionParams p;
    p.q_long = d_q_long.ptr;
    p.q_local = d_q_local.ptr;
    p.k = reinterpret_cast<const __nv_bfloat16*>(d_k.ptr);
    p.v = reinterpret_cast<const __nv_bfloat16*>(d_v.ptr);
    p.rows = d_rows.ptr;
    p.n_rows = int(c.n_rows);
    p.range_begin = c.range_begin;
    p.range_end = c.range_end;
    p.rope = {d_freq.ptr, reinterpret_cast<const float2*>(d_low.ptr), reinterpret_cast<const float2*>(d_high.ptr),
              int(split.half), split.adjacent_pairs};
    p.hq = c.hq;
    p.hkv = c.hkv;
    p.d = c.d;
    p.scale = scale;
    p.partial = d_partial.ptr;
    p.out = d_out.ptr;
    p.lse = d_lse.ptr;
    ASSERT_EQ(cuda::launch_gathered_attention(p, nullptr), cudaSuccess);
    const std::vector<float> out = d_out.download(), lse = d_lse.download();

    const std::string what = fmt::format("hq {} hkv {} d {} {} rows {} range [{}, {})", c.hq, c.hkv, c.d,
                                         c.style == RopeStyle::rotate_half ? "rotate_half" : "adjacent", c.n_rows,
                                         c.range_begin, c.range_end);
    double worst = 0.0, worst_lse = 0.0;
    for (int h = 0; h < c.hq; ++h) {
      const double a = l1[size_t(h)], b = l2[size_t(h)];
      const double top = std::max(a, b);
      if (top == -std::numeric_limits<double>::infinity()) {
        EXPECT_TRUE(std::isinf(lse[size_t(h)]) && lse[size_t(h)] < 0) << what;
        for (int i = 0; i < c.d; ++i) EXPECT_EQ(out[size_t(h * c.d + i)], 0.0f) << what;
        continue;
      }
      const double wa = std::exp(a - top), wb = std::exp(b - top);
      worst_lse = std::max(worst_lse, std::fabs(lse[size_t(h)] - (top + std::log(wa + wb))) / (1.0 + std::fabs(top)));
      for (int i = 0; i < c.d; ++i) {
        const size_t at = size_t(h * c.d + i);
        const double ref = (wa * o1[at] + wb * o2[at]) / (wa + wb);
        worst = std::max(worst, std::fabs(out[at] - ref) / (1.0 + std::fabs(ref)));
      }
    }
    EXPECT_LT(worst, 2e-4) << what;
    EXPECT_LT(worst_lse, 1e-5) << what;
  }
}

// A chunk of consecutive queries (prefill): each attends to the listed rows and, causally, to the
// range up to its own position.
// A prefill chunk's two-branch attention: T queries at positions le - T ... over `rows` (long
// branch, keys as cached) and the range [lb, le) (causal), K/V bf16 values; the reference is
// the CPU's attention per branch merged by log-sum-exp (as two_branch_attention).
struct ChunkCase {
  int hq = 0, hkv = 0, d = 0, T = 0;
  int64_t lb = 0, le = 0, width = 0;
  std::vector<uint16_t> k_bits, v_bits;
  std::vector<int> rows;
  std::vector<float> q_long, q_local;
  ops::RopeTable table;
  std::vector<float> out, lse;  // the reference, [T, hq, d] and [T, hq]
  std::string what;
};

// `bf16_queries` rounds the queries to bf16 first (the flash kernel takes them so), so that the
// reference sees the same inputs.
ChunkCase chunk_case(int hq, int hkv, int d, int T, int n_rows, int64_t lb, int64_t le, bool bf16_queries,
                     std::mt19937_64& rng) {
  std::normal_distribution<float> normal;
  ChunkCase c;
  c.hq = hq, c.hkv = hkv, c.d = d, c.T = T, c.lb = lb, c.le = le, c.width = int64_t(hkv) * d;
  const int64_t n = le, width = c.width;
  c.k_bits.resize(size_t(n * width));
  c.v_bits.resize(c.k_bits.size());
  for (auto& b : c.k_bits) b = to_bf16(normal(rng));
  for (auto& b : c.v_bits) b = to_bf16(normal(rng));
  c.rows.resize(static_cast<size_t>(n_rows));
  std::uniform_int_distribution<int> pick(0, int(std::max<int64_t>(lb, 1)) - 1);
  for (int& r : c.rows) r = pick(rng);
  c.q_long.resize(size_t(T) * hq * d);
  c.q_local.resize(c.q_long.size());
  for (auto* q : {&c.q_long, &c.q_local}) {
    for (float& x : *q) x = bf16_queries ? bf16_to_float(to_bf16(normal(rng))) : normal(rng);
  }
  RopeConfig rope_cfg;
  rope_cfg.dim = d;
  c.table = ops::make_rope_table(rope_cfg);
  c.what = fmt::format("hq {} hkv {} d {} T {} rows {} range [{}, {})", hq, hkv, d, T, n_rows, lb, le);
  const float scale = 1.0f / std::sqrt(float(d));

  std::vector<float> k_all(c.k_bits.size()), v_all(c.v_bits.size());
  for (size_t i = 0; i < c.k_bits.size(); ++i) k_all[i] = bf16_to_float(c.k_bits[i]), v_all[i] = bf16_to_float(c.v_bits[i]);
  std::vector<float> k1, v1;
  for (int r : c.rows) {
    k1.insert(k1.end(), k_all.begin() + r * width, k_all.begin() + (r + 1) * width);
    v1.insert(v1.end(), v_all.begin() + r * width, v_all.begin() + (r + 1) * width);
  }
  std::vector<float> k2(k_all.begin() + lb * width, k_all.end()), v2(v_all.begin() + lb * width, v_all.end());
  std::vector<int64_t> k2_pos, q_pos, zeros_q(size_t(T), 0), zeros_k(c.rows.size(), 0);
  for (int64_t r = lb; r < le; ++r) k2_pos.push_back(r);
  for (int t = 0; t < T; ++t) q_pos.push_back(le - T + t);
  ops::rope_cpu(k2.data(), k2_pos.data(), int64_t(k2_pos.size()), hkv, d, c.table);
  std::vector<float> o1(c.q_long.size()), o2(c.q_long.size()), l1(size_t(T) * hq), l2(l1.size());
  ops::attention_cpu(c.q_long.data(), k1.data(), v1.data(), zeros_q.data(), zeros_k.data(), T, int64_t(c.rows.size()),
                     hq, hkv, d, {scale, false}, o1.data(), l1.data());
  ops::attention_cpu(c.q_local.data(), k2.data(), v2.data(), q_pos.data(), k2_pos.data(), T, int64_t(k2_pos.size()), hq,
                     hkv, d, {scale, true}, o2.data(), l2.data());
  c.out.resize(o1.size());
  c.lse.resize(l1.size());
  for (size_t r = 0; r < l1.size(); ++r) {
    const double a = l1[r], b = l2[r], top = std::max(a, b);
    const double wa = std::isinf(a) ? 0.0 : std::exp(a - top), wb = std::exp(b - top);
    c.lse[r] = float(top + std::log(wa + wb));
    for (int i = 0; i < d; ++i) {
      const size_t at = r * size_t(d) + size_t(i);
      c.out[at] = float((wa * o1[at] + wb * o2[at]) / (wa + wb));
    }
  }
  return c;
}

// The worst |got - want| / (1 + |want|) of the outputs, and of the log-sum-exps.
std::pair<double, double> chunk_errors(const ChunkCase& c, const std::vector<float>& out, const std::vector<float>& lse) {
  double worst = 0.0, worst_lse = 0.0;
  for (size_t i = 0; i < c.out.size(); ++i) worst = std::max(worst, std::fabs(out[i] - c.out[i]) / (1.0 + std::fabs(c.out[i])));
  for (size_t i = 0; i < c.lse.size(); ++i) {
    worst_lse = std::max(worst_lse, std::fabs(lse[i] - c.lse[i]) / (1.0 + std::fabs(c.lse[i])));
  }
  return {worst, worst_lse};
}

// Every other case lists its rows with filler rows after them and a device-side count of the
// real ones (rows_valid: quest's partial last page); the reference sees only the real rows.
struct ListedRows {
  std::vector<int> rows;  // what the kernel is given
  std::vector<int> valid; // [1] the real rows' count, or empty: no rows_valid
};
ListedRows listed_rows(const ChunkCase& c, bool padded, std::mt19937_64& rng) {
  ListedRows l{c.rows, {}};
  if (!padded || c.rows.empty()) return l;
  std::uniform_int_distribution<int> pick(0, int(std::max<int64_t>(c.lb, 1)) - 1);
  const size_t pad = 7 + c.rows.size() % 50;
  for (size_t i = 0; i < pad; ++i) l.rows.push_back(pick(rng));
  l.valid = {int(c.rows.size())};
  return l;
}

// Chunk shapes: one query, causal edges at 31/32/33 and 1023/1024/1025 columns, a tile's worth
// of listed rows, rows only, the range only.
const std::vector<std::tuple<int, int, int64_t, int64_t>> kChunkShapes = {
    {1, 0, 0, 1},      {5, 7, 50, 90},       {33, 0, 0, 33},    {31, 1, 1, 33},     {64, 100, 1000, 1600},
    {200, 31, 300, 500}, {17, 64, 100, 1124}, {3, 1025, 1100, 1103}, {65, 0, 0, 1025}, {32, 33, 2000, 3023}};
const std::vector<std::tuple<int, int, int>> kChunkHeads = {{9, 3, 64}, {32, 8, 128}, {8, 1, 64}, {4, 4, 128}};

TEST_F(CudaTest, GatheredAttentionChunkMatchesCpu) {
  std::mt19937_64 rng(test::test_seed(29));
  int case_index = 0;
  for (const auto& [hq, hkv, d] : kChunkHeads) {
    for (const auto& [T, n_rows, lb, le] : kChunkShapes) {
      const ChunkCase c = chunk_case(hq, hkv, d, T, n_rows, lb, le, false, rng);
      const ListedRows listed = listed_rows(c, ++case_index % 2 == 0, rng);
      const ops::RopeSplitTables split = ops::make_rope_split_tables(c.table, le);
      const DeviceArray<float> d_q_long(c.q_long), d_q_local(c.q_local), d_freq(split.inv_freq), d_low(split.low),
          d_high(split.high);
      const DeviceArray<uint16_t> d_k(c.k_bits), d_v(c.v_bits);
      const DeviceArray<int> d_rows(listed.rows.empty() ? std::vector<int>{0} : listed.rows);
      const DeviceArray<int> d_valid(listed.valid.empty() ? std::vector<int>{0} : listed.valid);
      const int64_t total = int64_t(listed.rows.size()) + (le - lb);
      DeviceArray<float> d_partial(cuda::gathered_attention_partial_floats(total, hq, hkv, d, T));
      DeviceArray<float> d_out(c.out.size()), d_lse(c.lse.size());
      cuda::GatheredAttentionParams p;
      p.q_long = d_q_long.ptr;
      p.q_local = d_q_local.ptr;
      p.k = reinterpret_cast<const __nv_bfloat16*>(d_k.ptr);
      p.v = reinterpret_cast<const __nv_bfloat16*>(d_v.ptr);
      p.rows = d_rows.ptr;
      p.n_rows = int(listed.rows.size());
      p.rows_valid = listed.valid.empty() ? nullptr : d_valid.ptr;
      p.range_begin = lb;
      p.range_end = le;
      p.queries = T;
      p.causal = true;
      p.rope = {d_freq.ptr, reinterpret_cast<const float2*>(d_low.ptr), reinterpret_cast<const float2*>(d_high.ptr),
                int(split.half), split.adjacent_pairs};
      // Every third case reads the range from keys rotated beforehand (as the forward keeps them),
      // rounded to bf16 after the rotation: the flash kernel's bound.
      const bool prerotated = case_index % 3 == 0;
      DeviceArray<uint16_t> d_k_rotated(prerotated ? size_t(le * c.width) : size_t(1));
      if (prerotated) {
        ASSERT_EQ(cuda::launch_rope_rows(reinterpret_cast<const __nv_bfloat16*>(d_k.ptr), 0, le, hkv, d, p.rope,
                                         reinterpret_cast<__nv_bfloat16*>(d_k_rotated.ptr), nullptr), cudaSuccess);
        p.k_rotated = reinterpret_cast<const __nv_bfloat16*>(d_k_rotated.ptr);
      }
      p.hq = hq;
      p.hkv = hkv;
      p.d = d;
      p.scale = 1.0f / std::sqrt(float(d));
      p.partial = d_partial.ptr;
      p.out = d_out.ptr;
      p.lse = d_lse.ptr;
      ASSERT_EQ(cuda::launch_gathered_attention(p, nullptr), cudaSuccess);
      const auto [worst, worst_lse] = chunk_errors(c, d_out.download(), d_lse.download());
      const std::string how = std::string(listed.valid.empty() ? "" : " (with filler rows)") +
                              (prerotated ? " (keys rotated beforehand)" : "");
      EXPECT_LT(worst, prerotated ? 1e-2 : 2e-4) << c.what << how;
      EXPECT_LT(worst_lse, prerotated ? 2e-3 : 1e-5) << c.what << how;
    }
  }
}

// The flash kernel as the forward uses it: listed rows gathered and the range's keys rotated on
// the device (launch_gather_rows, launch_rope_rows), queries in bf16. Its probabilities are bf16
// before the PV product (as flash attention's), hence a looser output bound than the split-K
// kernel's; a wrong mask or a lost tile moves outputs by O(1).
TEST_F(CudaTest, FlashChunkAttentionMatchesCpu) {
  std::mt19937_64 rng(test::test_seed(31));
  double worst_seen = 0.0;
  std::set<int> splits_seen;
  int case_index = 0;
  for (const auto& [hq, hkv, d] : kChunkHeads) {
    for (const auto& [T, n_rows, lb, le] : kChunkShapes) {
      const ChunkCase c = chunk_case(hq, hkv, d, T, n_rows, lb, le, true, rng);
      const ListedRows listed = listed_rows(c, ++case_index % 2 == 1, rng);
      const int n_listed = int(listed.rows.size());
      const ops::RopeSplitTables split = ops::make_rope_split_tables(c.table, le);
      std::vector<uint16_t> q_long(c.q_long.size()), q_local(c.q_local.size());
      for (size_t i = 0; i < q_long.size(); ++i) q_long[i] = to_bf16(c.q_long[i]), q_local[i] = to_bf16(c.q_local[i]);
      const DeviceArray<uint16_t> d_q_long(q_long), d_q_local(q_local), d_k(c.k_bits), d_v(c.v_bits);
      const DeviceArray<float> d_freq(split.inv_freq), d_low(split.low), d_high(split.high);
      const DeviceArray<int> d_rows(listed.rows.empty() ? std::vector<int>{0} : listed.rows);
      const DeviceArray<int> d_valid(listed.valid.empty() ? std::vector<int>{0} : listed.valid);
      DeviceArray<uint16_t> d_k_rows(std::max<size_t>(listed.rows.size() * c.width, 1)), d_v_rows(d_k_rows.n),
          d_k_range(size_t((le - lb) * c.width));
      DeviceArray<float> d_out(c.out.size()), d_lse(c.lse.size());
      auto bf = [](const DeviceArray<uint16_t>& a) { return reinterpret_cast<__nv_bfloat16*>(a.ptr); };
      const cuda::RopeTables rope{d_freq.ptr, reinterpret_cast<const float2*>(d_low.ptr),
                                  reinterpret_cast<const float2*>(d_high.ptr), int(split.half), split.adjacent_pairs};
      ASSERT_EQ(cuda::launch_gather_rows(bf(d_k), bf(d_v), d_rows.ptr, n_listed, int(c.width), bf(d_k_rows),
                                         bf(d_v_rows), nullptr), cudaSuccess);
      ASSERT_EQ(cuda::launch_rope_rows(bf(d_k), lb, le, hkv, d, rope, bf(d_k_range), nullptr), cudaSuccess);
      cuda::FlashChunkParams p;
      p.q_long = bf(d_q_long);
      p.q_local = bf(d_q_local);
      p.k_rows = bf(d_k_rows);
      p.v_rows = bf(d_v_rows);
      p.n_rows = n_listed;
      p.rows_valid = listed.valid.empty() ? nullptr : d_valid.ptr;
      p.k_range = bf(d_k_range);
      p.v_range = bf(d_v) + lb * c.width;
      p.range_begin = lb;
      p.range_len = le - lb;
      p.first_query = le - T;
      p.T = T;
      p.hq = hq;
      p.hkv = hkv;
      p.d = d;
      p.scale = 1.0f / std::sqrt(float(d));
      p.out = d_out.ptr;
      p.lse = d_lse.ptr;
      DeviceArray<float> d_partial(cuda::flash_chunk_partial_floats(p));
      p.partial = d_partial.ptr;
      splits_seen.insert(cuda::flash_chunk_splits(p));
      ASSERT_EQ(cuda::launch_flash_chunk_attention(p, nullptr), cudaSuccess);
      const auto [worst, worst_lse] = chunk_errors(c, d_out.download(), d_lse.download());
      worst_seen = std::max(worst_seen, worst);
      const char* filler = listed.valid.empty() ? "" : " (with filler rows)";
      EXPECT_LT(worst, 1e-2) << c.what << filler;  // keys rotated in bf16 and P in bf16: ~2^-8 of a row's scale
      EXPECT_LT(worst_lse, 2e-3) << c.what << filler;
    }
  }
  std::printf("flash chunk attention: worst relative error %.3g\n", worst_seen);
  // Both ways out: one split writing the output, and several merged.
  EXPECT_TRUE(splits_seen.count(1) == 1 && *splits_seen.rbegin() > 1) << "splits " << *splits_seen.rbegin();
}

// ---- the model forward on the GPU (model/llama_cuda.h) against LlamaModel on the CPU ----------

struct TinyShape {
  int64_t heads, kv_heads, head_dim, rope_dim;
  RopeStyle style;
  bool bias, tied;
};

// A random Llama-family model whose weights are bf16 values (the GPU keeps bf16), so that GPU
// and CPU differ only by the GPU's bf16 activations and cache.
LlamaModel random_model(const TinyShape& s, std::mt19937_64& rng) {
  ModelConfig c;
  c.name = "random";
  c.n_layers = 2;
  c.hidden = 128;
  c.n_heads = s.heads;
  c.n_kv_heads = s.kv_heads;
  c.head_dim = s.head_dim;
  c.ffn = 192;
  c.vocab = 256;
  c.context = 4096;
  c.tied_embeddings = s.tied;
  c.qkv_bias = s.bias;
  c.rope.dim = s.rope_dim;
  c.rope.style = s.style;
  std::normal_distribution<float> normal;
  auto tensor = [&](std::vector<int64_t> shape, float sd, float mean = 0.0f) {
    Tensor t(std::move(shape));
    for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = bf16_to_float(to_bf16(mean + sd * normal(rng)));
    return t;
  };
  const float sd = 1.0f / std::sqrt(float(c.hidden));
  ModelWeights w;
  w.token_embd = tensor({c.vocab, c.hidden}, 1.0f);
  w.output_norm = tensor({c.hidden}, 0.1f, 1.0f);
  if (!s.tied) w.lm_head = tensor({c.vocab, c.hidden}, sd);
  const int64_t qw = c.n_heads * c.head_dim, kw = c.n_kv_heads * c.head_dim;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    LayerWeights L;
    L.attn_norm = tensor({c.hidden}, 0.1f, 1.0f);
    L.ffn_norm = tensor({c.hidden}, 0.1f, 1.0f);
    L.wq = tensor({qw, c.hidden}, 2 * sd);
    L.wk = tensor({kw, c.hidden}, 2 * sd);
    L.wv = tensor({kw, c.hidden}, sd);
    L.wo = tensor({c.hidden, qw}, 1.0f / std::sqrt(float(qw)));
    if (s.bias) {
      L.bq = tensor({qw}, 0.2f);
      L.bk = tensor({kw}, 0.2f);
      L.bv = tensor({kw}, 0.2f);
    }
    L.w_gate = tensor({c.ffn, c.hidden}, sd);
    L.w_up = tensor({c.ffn, c.hidden}, sd);
    L.w_down = tensor({c.hidden, c.ffn}, 1.0f / std::sqrt(float(c.ffn)));
    w.layers.push_back(std::move(L));
  }
  return LlamaModel(c, std::move(w));
}

double relative_error(const Tensor& got, const Tensor& want) {
  double num = 0.0, den = 0.0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    num += std::pow(double(got.data()[i]) - want.data()[i], 2);
    den += std::pow(double(want.data()[i]), 2);
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// Replays recorded selections (one list per layer and chunk, in call order): the CPU attends to
// exactly what the GPU chose, so that logits compare by arithmetic alone (a top-k boundary that
// bf16 rounding flips changes the output by more than rounding does).
class ReplayPolicy final : public attention::Policy {
 public:
  ReplayPolicy(attention::PolicyOptions o, std::vector<std::vector<int64_t>> calls)
      : Policy(std::move(o)), calls_(std::move(calls)) {}
  attention::Selection select(const attention::LayerInputs& in) override {
    attention::Selection s;
    s.local_begin = attention::split_context(options_.budget, in.chunk_begin()).local_begin;
    EXPECT_LT(next_, calls_.size()) << "more selections asked for than the GPU made";
    s.long_tokens.push_back(next_ < calls_.size() ? calls_[next_] : std::vector<int64_t>{});
    ++next_;
    return s;
  }

 private:
  std::vector<std::vector<int64_t>> calls_;
  size_t next_ = 0;
};

// Records the long-branch rows of every layer and chunk ("long_rows" hook).
ForwardHook record_rows(std::vector<std::vector<int64_t>>& calls) {
  return [&calls](std::string_view name, int64_t, const TensorView& v) {
    if (name == "long_rows") calls.emplace_back(v.data, v.data + v.numel());
  };
}

// Of the rows `got` selected per call, the fraction that `want` selected too.
double overlap(const std::vector<std::vector<int64_t>>& got, const std::vector<std::vector<int64_t>>& want) {
  int64_t same = 0, total = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    for (int64_t r : got[i]) same += std::count(want[i].begin(), want[i].end(), r);
    total += int64_t(got[i].size());
  }
  return total == 0 ? 1.0 : double(same) / double(total);
}

// One policy, GPU against CPU: the GPU prefills ids[0, prompt) in chunks of 64 and decodes the
// rest one token at a time, recording what it selects; the CPU replays the same selection and
// its logits must agree; then the CPU policy selects on its own, and at least `least` of the
// GPU's long-branch rows must be its rows too.
void expect_forward_matches_cpu(const LlamaModel& cpu, const LlamaModel& gpu, const std::vector<int32_t>& ids,
                                size_t prompt_len, const attention::PolicyOptions& po, double least,
                                const std::string& what) {
  const std::span<const int32_t> prompt(ids.data(), prompt_len);
  const bool selective = po.kind != attention::PolicyKind::full;
  std::vector<std::vector<int64_t>> gpu_rows, cpu_rows;
  const std::unique_ptr<attention::Policy> gpu_policy = selective ? attention::make_policy(po, gpu.config()) : nullptr;
  ForwardOptions fg;
  fg.chunk = 64;
  fg.all_logits = true;
  fg.policy = gpu_policy.get();
  fg.hook = record_rows(gpu_rows);
  KvCache cache_g = gpu.make_cache();
  std::vector<Tensor> got{gpu.forward(prompt, cache_g, fg)};
  for (size_t i = prompt_len; i < ids.size(); ++i) got.push_back(gpu.forward(std::span(&ids[i], 1), cache_g, fg));

  ReplayPolicy replay(po, gpu_rows);
  ForwardOptions fc = fg;
  fc.policy = selective ? &replay : nullptr;
  fc.hook = nullptr;
  KvCache cache_c = cpu.make_cache();
  std::vector<Tensor> want{cpu.forward(prompt, cache_c, fc)};
  for (size_t i = prompt_len; i < ids.size(); ++i) want.push_back(cpu.forward(std::span(&ids[i], 1), cache_c, fc));
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].shape(), want[i].shape()) << what;
    EXPECT_LT(relative_error(got[i], want[i]), 2e-2) << what << (i == 0 ? " (prefill)" : " (decode step)") << i;
  }
  EXPECT_EQ(cache_g.size(), cache_c.size()) << what;
  if (!selective) return;
  // The GPU's selection against the CPU policy's own: equal but for top-k boundaries that bf16
  // keys and queries move.
  const std::unique_ptr<attention::Policy> own = attention::make_policy(po, cpu.config());
  ForwardOptions fo = fc;
  fo.policy = own.get();
  fo.hook = record_rows(cpu_rows);
  KvCache cache_o = cpu.make_cache();
  cpu.forward(prompt, cache_o, fo);
  for (size_t i = prompt_len; i < ids.size(); ++i) cpu.forward(std::span(&ids[i], 1), cache_o, fo);
  ASSERT_EQ(gpu_rows.size(), cpu_rows.size()) << what;
  const double agree = overlap(gpu_rows, cpu_rows);
  std::printf("%s: %.1f%% of the GPU's long-branch rows are the CPU's\n", what.c_str(), 100.0 * agree);
  EXPECT_GE(agree, least) << what;
}

std::string shape_name(const TinyShape& shape) {
  return fmt::format("heads {}/{} d {} rope {} {} bias {} tied {}", shape.heads, shape.kv_heads, shape.head_dim,
                     shape.rope_dim, shape.style == RopeStyle::rotate_half ? "rotate_half" : "adjacent", shape.bias,
                     shape.tied);
}

TEST_F(CudaTest, ForwardMatchesCpu) {
  std::mt19937_64 rng(test::test_seed(31));
  int shape_index = 0;
  for (const TinyShape& shape : {TinyShape{4, 2, 64, 64, RopeStyle::rotate_half, false, true},
                                 TinyShape{6, 2, 128, 128, RopeStyle::rotate_half, false, true},
                                 TinyShape{4, 2, 64, 64, RopeStyle::adjacent_pairs, false, true},
                                 TinyShape{4, 2, 64, 64, RopeStyle::rotate_half, true, true},
                                 TinyShape{4, 2, 64, 64, RopeStyle::rotate_half, false, false},
                                 TinyShape{6, 2, 128, 64, RopeStyle::adjacent_pairs, true, false},
                                 TinyShape{8, 1, 64, 32, RopeStyle::rotate_half, false, false},
                                 TinyShape{9, 3, 64, 64, RopeStyle::rotate_half, false, true}}) {  // SmolLM2's heads
    LlamaModel cpu = random_model(shape, rng);
    LlamaModel gpu(cpu.config(), cpu.weights());
    const bool offload = shape_index++ % 2 == 1;  // every other shape with its KV cache in host memory
    gpu.use_device(Placement(Device::cuda, offload));
    std::uniform_int_distribution<int32_t> token(0, int32_t(cpu.config().vocab) - 1);
    std::vector<int32_t> ids(133 + 4);  // a prompt in chunks of 64, 64 and 5 (flash kernel, then the split-K
    for (int32_t& id : ids) id = token(rng);  // kernel), then 4 decode steps
    // full, esa, oracle, quest, infllm: selected on the device; streaming: on the host.
    for (const char* policy_name : {"full", "esa", "streaming", "oracle", "quest", "infllm"}) {
      attention::PolicyOptions po;
      po.kind = attention::parse_policy(policy_name);
      po.budget = {4, 16, 24, 64};
      if (po.kind == attention::PolicyKind::quest) po.budget.select = 48;  // 3 pages of 16
      // Quest's choices are whole pages: one flipped near-tie moves 16 rows at once. infllm keeps
      // the most recent middle tokens here (no block of 128 is out of the window yet).
      const double least = po.kind == attention::PolicyKind::streaming || po.kind == attention::PolicyKind::infllm ? 1.0
                           : po.kind == attention::PolicyKind::quest                                           ? 0.8
                                                                                                               : 0.9;
      expect_forward_matches_cpu(cpu, gpu, ids, 133, po, least,
                                 fmt::format("{} policy {}{}", shape_name(shape), policy_name, offload ? " kv-offload" : ""));
    }
  }
}

// The block policies past their first blocks: a prompt of 700 tokens (5 InfLLM blocks, 40 Quest
// pages out of the window), budget 256, so that both score, choose and expand whole units.
TEST_F(CudaTest, ForwardBlockPoliciesMatchCpu) {
  std::mt19937_64 rng(test::test_seed(47));
  int shape_index = 0;
  for (const TinyShape& shape : {TinyShape{9, 3, 64, 64, RopeStyle::rotate_half, false, true},
                                 TinyShape{8, 2, 128, 128, RopeStyle::rotate_half, false, true}}) {
    LlamaModel cpu = random_model(shape, rng);
    LlamaModel gpu(cpu.config(), cpu.weights());
    const bool offload = shape_index++ % 2 == 1;
    gpu.use_device(Placement(Device::cuda, offload));
    std::uniform_int_distribution<int32_t> token(0, int32_t(cpu.config().vocab) - 1);
    std::vector<int32_t> ids(700 + 4);
    for (int32_t& id : ids) id = token(rng);
    for (const char* policy_name : {"quest", "infllm"}) {
      attention::PolicyOptions po;
      po.kind = attention::parse_policy(policy_name);
      po.budget = {4, 32, 256, 64};
      expect_forward_matches_cpu(cpu, gpu, ids, 700, po, 0.8,
                                 fmt::format("{} policy {}{}", shape_name(shape), policy_name, offload ? " kv-offload" : ""));
    }
  }
}

// Every named intermediate of a prefill (full attention), GPU against CPU: where the logits
// differ, this says which op.
TEST_F(CudaTest, ForwardIntermediatesMatchCpu) {
  std::mt19937_64 rng(test::test_seed(43));
  for (const TinyShape& shape : {TinyShape{4, 2, 64, 64, RopeStyle::rotate_half, false, true},
                                 TinyShape{6, 2, 128, 128, RopeStyle::rotate_half, false, true},
                                 TinyShape{8, 8, 128, 128, RopeStyle::rotate_half, false, true}}) {
    LlamaModel cpu = random_model(shape, rng);
    LlamaModel gpu(cpu.config(), cpu.weights());
    gpu.use_device(Device::cuda);
    std::uniform_int_distribution<int32_t> token(0, int32_t(cpu.config().vocab) - 1);
    std::vector<int32_t> ids(40);
    for (int32_t& id : ids) id = token(rng);
    std::map<std::string, Tensor> seen[2];
    for (int which = 0; which < 2; ++which) {
      ForwardOptions f;
      f.chunk = 64;
      f.hook = [&](std::string_view name, int64_t layer, const TensorView& v) {
        Tensor t(v.shape);
        std::memcpy(t.data(), v.data, size_t(v.numel()) * sizeof(float));
        seen[which][fmt::format("{}:{}", layer, name)] = std::move(t);
      };
      KvCache cache = (which == 0 ? cpu : gpu).make_cache();
      (which == 0 ? cpu : gpu).forward(ids, cache, f);
    }
    for (const auto& [name, want] : seen[0]) {
      ASSERT_TRUE(seen[1].count(name)) << name;
      const Tensor& got = seen[1].at(name);
      ASSERT_EQ(got.shape(), want.shape()) << name;
      const double err = relative_error(got, want);
      EXPECT_LT(err, 2e-2) << "heads " << shape.heads << "/" << shape.kv_heads << " d " << shape.head_dim << ": " << name;
    }
  }
}

// The embedded model (SmolLM2-135M, Q4_1 dequantised; bf16 on the GPU): last-token logits of
// random prompts with full and esa attention, GPU against CPU.
TEST_F(CudaTest, EmbeddedModelMatchesCpu) {
  ESA_REQUIRE_MODEL_OR_SKIP();
  const LlamaModel cpu = LlamaModel::load(test::default_model_path());
  LlamaModel gpu(cpu.config(), cpu.weights());
  gpu.use_device(Device::cuda);
  std::mt19937_64 rng(test::test_seed(41));
  std::uniform_int_distribution<int32_t> token(0, int32_t(cpu.config().vocab) - 1);
  for (int64_t length : {700, 1500}) {
    std::vector<int32_t> prompt(static_cast<size_t>(length));
    for (int32_t& id : prompt) id = token(rng);
    for (const char* policy_name : {"full", "esa"}) {
      attention::PolicyOptions po;
      po.kind = attention::parse_policy(policy_name);
      po.budget = {16, 256, 128, 256};
      std::unique_ptr<attention::Policy> pc, pg;
      if (po.kind != attention::PolicyKind::full) {
        pc = attention::make_policy(po, cpu.config());
        pg = attention::make_policy(po, gpu.config());
      }
      ForwardOptions fc, fg;
      fc.chunk = fg.chunk = 256;
      fc.policy = pc.get();
      fg.policy = pg.get();
      KvCache cc = cpu.make_cache(), cg = gpu.make_cache();
      const Tensor want = cpu.forward(prompt, cc, fc), got = gpu.forward(prompt, cg, fg);
      const std::string what = fmt::format("{} tokens, {}", length, policy_name);
      const double err = relative_error(got, want);
      std::printf("embedded model, %s: relative error of the logits %.3g\n", what.c_str(), err);
      EXPECT_LT(err, 5e-2) << what;
      // The top token agrees unless the CPU's top two are within bf16 noise.
      std::vector<float> sorted(want.data(), want.data() + want.numel());
      std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
      const auto top = [](const Tensor& t) { return std::max_element(t.data(), t.data() + t.numel()) - t.data(); };
      if (sorted[0] - sorted[1] > 0.5f) {
        EXPECT_EQ(top(got), top(want)) << what;
      }
    }
  }
}

TEST_F(CudaTest, ForwardRefusesAForeignCache) {
  std::mt19937_64 rng(test::test_seed(37));
  LlamaModel gpu = random_model({4, 2, 64, 64, RopeStyle::rotate_half, false, true}, rng);
  KvCache cpu_cache = gpu.make_cache();
  gpu.use_device(Device::cuda);
  const std::vector<int32_t> ids{1, 2, 3};
  EXPECT_THROW(gpu.forward(ids, cpu_cache), Error);
  KvCache gpu_cache = gpu.make_cache();
  EXPECT_NO_THROW(gpu.forward(ids, gpu_cache));
}

}  // namespace
}  // namespace esa
