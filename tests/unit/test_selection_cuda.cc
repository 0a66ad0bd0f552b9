// The selection kernels against their CPU references (lib/attention/selection.h and the host
// halves of quest and infllm): top-k exactly, token importance on every path
// (attention/selection_cuda.h), quest's page bounds and infllm's blocks. The policies' device
// halves as a whole are tested per policy (tests/unit/test_<p>.cc, TEST_P over {cpu, cuda}).
// Skips without a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <set>

#include <cublas_v2.h>

#include "attention/policy.h"
#include "attention/selection.h"
#include "attention/selection_cuda.h"
#include "core/half.h"
#include "esa_select.cuh"
#include "infllm_select.cuh"
#include "ops/rope.h"
#include "quest_select.cuh"
#include "top_k.cuh"
#include "unit_rows.cuh"
#include "support/cuda_test.h"
#include "support/test_support.h"

namespace esa {
namespace {

using test::CudaTest;
using test::DeviceArray;
using test::to_bf16;

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

// The tensor-core chunk importance (launch_chunk_importance_tc: mma.sync tiles of 64 queries x
// 64 keys, d' padded to 16 ... 256, key splits merged by atomicMax), pooled as the forward does,
// against chunk_importance + proximity_max_pool: partial tiles on both sides, d' not a multiple
// of 16, one query, one key.
TEST_F(CudaTest, ChunkImportanceTensorCoreMatchesCpu) {
  std::mt19937_64 rng(test::test_seed(26));
  for (const auto& [dim, T] : {std::pair{8, 17}, std::pair{16, 1}, std::pair{24, 65}, std::pair{64, 64},
                               std::pair{72, 512}, std::pair{128, 512}, std::pair{200, 100}, std::pair{256, 1000}}) {
    for (int64_t n : {int64_t(1), int64_t(63), int64_t(65), int64_t(4097), int64_t(70001)}) {
      if (double(T) * dim * n > 3e9) continue;  // the double reference's cost
      const int eps = n % 2 == 0 ? 0 : 3;
      const int64_t begin = 11;
      const ImportanceCase c = importance_case(dim, T, begin, n, eps, rng, true);
      std::vector<uint16_t> q16(c.q.size());
      for (size_t i = 0; i < q16.size(); ++i) q16[i] = to_bf16(c.q[i]);
      const DeviceArray<uint16_t> d_q(q16), d_k(c.k_bits);
      DeviceArray<float> d_f{static_cast<size_t>(n)}, d_importance{static_cast<size_t>(n)};
      DeviceArray<unsigned int> d_max{static_cast<size_t>(T)};
      const cuda::ChunkImportanceTcParams tp{reinterpret_cast<const __nv_bfloat16*>(d_q.ptr),
                                             reinterpret_cast<const __nv_bfloat16*>(d_k.ptr), dim, T, begin, begin + n,
                                             d_max.ptr, d_f.ptr};
      ASSERT_EQ(cuda::launch_chunk_importance_tc(tp, nullptr), cudaSuccess);
      cuda::ImportanceParams ip{d_f.ptr, nullptr, 1, n, eps, d_importance.ptr};
      ASSERT_EQ(cuda::launch_importance_pool(ip, nullptr), cudaSuccess);
      EXPECT_LT(worst_scaled_error(d_importance.download(), c.cpu), importance_tolerance(4e-6, dim))
          << "dim " << dim << ", T " << T << ", n " << n << ", eps " << eps;
    }
  }
  const cuda::ChunkImportanceTcParams odd_dim{nullptr, nullptr, 12, 4, 0, 1, nullptr, nullptr};
  EXPECT_EQ(cuda::launch_chunk_importance_tc(odd_dim, nullptr), cudaErrorInvalidValue);
}

// esa's importance as the forward computes it (attention/selection_cuda.h), every path: decode (T <= 16),
// the two-pass chunk kernel, the tensor-core two passes (T * d' > kChunkScoreFloats) and the GEMM
// into a score matrix with its row maxima and a grouped pool (d' > 256), against the CPU's chunk_importance + proximity_max_pool.
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
        DeviceArray<float> d_scores(attention::importance_score_floats(T, dim, n)), d_importance(static_cast<size_t>(n));
        DeviceArray<uint16_t> d_q16(size_t(T * dim));
        DeviceArray<unsigned int> d_max(attention::importance_row_max_count(T));
        const attention::ImportanceScratch scratch{d_scores.ptr, reinterpret_cast<__nv_bfloat16*>(d_q16.ptr), d_max.ptr};
        attention::importance_cuda(cublas, nullptr, d_q.ptr, reinterpret_cast<const __nv_bfloat16*>(d_k.ptr), dim, T, begin,
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

      DeviceArray<float> d_scores(attention::chunk_max_dot_floats(T, pages)), d_importance(static_cast<size_t>(pages));
      attention::chunk_max_dot_cuda(cublas, nullptr, d_qs.ptr, d_bounds.ptr, 2 * width, T, pages, d_scores.ptr, d_importance.ptr);
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


}  // namespace
}  // namespace esa
