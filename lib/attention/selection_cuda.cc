// See selection_cuda.h.
#include "attention/selection_cuda.h"

#include <algorithm>

#include "unit_rows.cuh"
#include "core/cuda_check.h"
#include "esa_select.cuh"
#include "model_ops.cuh"
#include "top_k.cuh"

namespace esa::attention {
namespace {

constexpr int64_t kScoreBytes = int64_t(1) << 30;  // the GEMM path's score matrix, at most

// The ways of importance_cuda (selection_cuda.h). The score kernels take d' up to 256; wider
// (oracle's whole key rows) always goes by GEMM.
enum class ImportanceWay { kScores, kTwoPass, kTensorCore, kGemm };
ImportanceWay importance_way(int64_t T, int64_t dim) {
  if (dim > 256) return ImportanceWay::kGemm;
  if (T <= cuda::kMaxScoreQueries) return ImportanceWay::kScores;
  if (T * dim <= cuda::kChunkScoreFloats) return ImportanceWay::kTwoPass;
  return ImportanceWay::kTensorCore;
}

// Queries per GEMM block: whole groups of kMaxScoreQueries, scores under kScoreBytes.
int64_t gemm_block(int64_t T, int64_t middle) {
  const int64_t groups = std::clamp<int64_t>(kScoreBytes / (std::max<int64_t>(middle, 1) * 4) / cuda::kMaxScoreQueries,
                                             1, (T + cuda::kMaxScoreQueries - 1) / cuda::kMaxScoreQueries);
  return std::min(groups * cuda::kMaxScoreQueries, T);
}

// Queries per block of chunk_max_dot_cuda's float32 GEMM: scores under kScoreBytes.
int64_t max_dot_block(int64_t T, int64_t n) {
  return std::clamp<int64_t>(kScoreBytes / (std::max<int64_t>(n, 1) * 4), 1, std::max<int64_t>(T, 1));
}

}  // namespace

void gemm_bf16(cublasHandle_t cublas, const __nv_bfloat16* w, int64_t out, int64_t in, const __nv_bfloat16* x,
               int64_t T, float* y) {
  const float alpha = 1.0f, beta = 0.0f;
  ESA_CUBLAS_CHECK(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(out), int(T), int(in), &alpha, w, CUDA_R_16BF,
                                int(in), x, CUDA_R_16BF, int(in), &beta, y, CUDA_R_32F, int(out), CUBLAS_COMPUTE_32F,
                                CUBLAS_GEMM_DEFAULT));
}

size_t importance_score_floats(int64_t T, int64_t dim, int64_t middle) {
  switch (importance_way(T, dim)) {
    case ImportanceWay::kGemm: return size_t(std::max<int64_t>((gemm_block(T, middle) + 1) * middle, 1));
    case ImportanceWay::kTensorCore:
    case ImportanceWay::kTwoPass: return size_t(std::max<int64_t>(middle, 1));
    case ImportanceWay::kScores: break;
  }
  return size_t(std::max<int64_t>(cuda::kMaxScoreQueries * middle, 1));
}

size_t importance_row_max_count(int64_t T) { return size_t(std::max<int64_t>(T, cuda::kMaxScoreQueries)); }

void importance_cuda(cublasHandle_t cublas, cudaStream_t stream, const float* qc, const __nv_bfloat16* kc,
                     int64_t dim, int64_t T, int64_t m0, int64_t m1, int eps, const ImportanceScratch& scratch,
                     float* importance) {
  const int64_t middle = m1 - m0;
  if (middle <= 0) return;
  const ImportanceWay way = importance_way(T, dim);
  if (way == ImportanceWay::kTensorCore) {
    ESA_CUDA_CHECK(cuda::launch_to_bf16(qc, scratch.q16, T * dim, stream));
    const cuda::ChunkImportanceTcParams tp{scratch.q16, kc, int(dim), int(T), m0, m1, scratch.row_max, scratch.scores};
    ESA_CUDA_CHECK(cuda::launch_chunk_importance_tc(tp, stream));
    const cuda::ImportanceParams ip{scratch.scores, nullptr, 1, middle, eps, importance};
    ESA_CUDA_CHECK(cuda::launch_importance_pool(ip, stream));
    return;
  }
  if (way == ImportanceWay::kGemm) {
    const int64_t block = gemm_block(T, middle);
    float* unpooled = scratch.scores + block * middle;
    ESA_CUDA_CHECK(cuda::launch_to_bf16(qc, scratch.q16, T * dim, stream));
    for (int64_t q0 = 0; q0 < T; q0 += block) {
      const int64_t qb = std::min(block, T - q0);
      gemm_bf16(cublas, kc + m0 * dim, middle, dim, scratch.q16 + q0 * dim, qb, scratch.scores);
      ESA_CUDA_CHECK(cuda::launch_score_row_max(scratch.scores, int(qb), middle, scratch.row_max, stream));
      ESA_CUDA_CHECK(cuda::launch_score_columns_importance(scratch.scores, int(qb), middle, scratch.row_max, q0 > 0,
                                                           unpooled, stream));
    }
    const cuda::ImportanceParams ip{unpooled, nullptr, 1, middle, eps, importance};
    ESA_CUDA_CHECK(cuda::launch_importance_pool(ip, stream));
    return;
  }
  if (way == ImportanceWay::kTwoPass) {
    const cuda::ChunkImportanceParams cp{qc, kc, int(dim), int(T), m0, m1, scratch.row_max, scratch.scores};
    ESA_CUDA_CHECK(cuda::launch_chunk_importance(cp, stream));
    const cuda::ImportanceParams ip{scratch.scores, nullptr, 1, middle, eps, importance};
    ESA_CUDA_CHECK(cuda::launch_importance_pool(ip, stream));
    return;
  }
  const cuda::CompressedScoreParams sp{qc, kc, int(dim), int(T), m0, m1, scratch.scores, scratch.row_max};
  ESA_CUDA_CHECK(cuda::launch_compressed_scores(sp, stream));
  const cuda::ImportanceParams ip{scratch.scores, scratch.row_max, int(T), middle, eps, importance};
  ESA_CUDA_CHECK(cuda::launch_importance_pool(ip, stream));
}

size_t chunk_max_dot_floats(int64_t T, int64_t n) { return size_t(std::max<int64_t>(max_dot_block(T, n) * n, 1)); }

void chunk_max_dot_cuda(cublasHandle_t cublas, cudaStream_t stream, const float* q, const float* rows, int64_t k,
                        int64_t T, int64_t n, float* scores, float* out) {
  if (n <= 0) return;
  const int64_t block = max_dot_block(T, n);
  const float alpha = 1.0f, beta = 0.0f;
  for (int64_t q0 = 0; q0 < T; q0 += block) {
    const int64_t qb = std::min(block, T - q0);
    // scores [qb, n] row-major = (rows [n, k] . q[q0:]^T) column-major.
    ESA_CUBLAS_CHECK(cublasSgemm(cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(qb), int(k), &alpha, rows, int(k),
                                 q + q0 * k, int(k), &beta, scores, int(n)));
    ESA_CUDA_CHECK(cuda::launch_score_columns_importance(scores, int(qb), n, nullptr, q0 > 0, out, stream));
  }
}

void DeviceTopK::run(const float* values, int64_t n, int64_t k, int offset, int* indices, cudaStream_t stream) {
  const size_t ws = cuda::top_k_workspace_bytes(n);
  if (ws > workspace_.size()) {  // a fresh workspace starts zeroed; each call leaves it so
    workspace_.resize(ws, "the top-k workspace");
    ESA_CUDA_CHECK(cudaMemsetAsync(workspace_.get(), 0, workspace_.size(), stream));
  }
  const cuda::TopKParams tp{values, n, int(k), offset, indices, workspace_.get()};
  ESA_CUDA_CHECK(cuda::launch_top_k(tp, stream));
}

int* RowList::prepare(int64_t capacity, int64_t n_init, cudaStream_t stream) {
  rows_.resize(size_t(std::max<int64_t>(capacity, 1)), "the selected rows");
  if (n_init > 0) ESA_CUDA_CHECK(cuda::launch_iota(rows_.get(), int(n_init), stream));
  return rows_.get();
}

ChunkRows begin_chunk(RowList& rows, const PolicyOptions& options, int64_t start, cudaStream_t stream) {
  const ContextSplit split = split_context(options.budget, start);
  ChunkRows c;
  c.m0 = split.init_end;
  c.m1 = split.local_begin;
  c.all = c.m1 - c.m0 <= options.budget.select;
  c.rows = rows.prepare(options.budget.init + options.budget.select, c.all ? c.m1 : c.m0, stream);
  return c;
}

void TokenTopK::select(const DeviceContext& c, const float* qc, const __nv_bfloat16* kc, int64_t dim, int64_t T,
                       int64_t m0, int64_t m1, int eps, int64_t k, int* rows) {
  const int64_t middle = m1 - m0;
  scores_.resize(importance_score_floats(T, dim, middle), "selection scores");
  importance_.resize(size_t(middle), "selection scores");
  row_max_.resize(importance_row_max_count(T), "selection scores");
  q16_.resize(size_t(T * dim), "selection scratch");
  const ImportanceScratch scratch{scores_.get(), q16_.get(), row_max_.get()};
  importance_cuda(c.cublas, c.stream, qc, kc, dim, T, m0, m1, eps, scratch, importance_.get());
  top_k_.run(importance_.get(), middle, k, int(m0), rows, c.stream);
}

void UnitTopK::select(const DeviceContext& c, const float* q, const float* meta, int64_t width, int64_t T,
                      int64_t n_units, int64_t pick, int64_t unit, int64_t m0, int64_t m1, int* rows, int* rows_valid) {
  scores_.resize(chunk_max_dot_floats(T, n_units), "selection scores");
  importance_.resize(size_t(n_units), "selection scores");
  chunk_max_dot_cuda(c.cublas, c.stream, q, meta, width, T, n_units, scores_.get(), importance_.get());
  units_.resize(size_t(pick), "selection scratch");
  top_k_.run(importance_.get(), n_units, pick, 0, units_.get(), c.stream);
  cuda::ExpandUnitsParams xp;
  xp.units = units_.get();
  xp.k = int(pick);
  xp.unit = int(unit);
  xp.begin = m0;
  xp.end = m1;
  xp.base = int(m0);
  xp.rows = rows;
  xp.rows_valid = rows_valid;
  ESA_CUDA_CHECK(cuda::launch_expand_units(xp, c.stream));
}

}  // namespace esa::attention
