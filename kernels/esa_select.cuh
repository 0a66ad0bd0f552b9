// ESA's token selection on the GPU (PAPER.md section 2), one layer, one decode step or chunk:
//   1. compressed scores s[c][m] = q'_c . k'_m over the middle tokens with the per-query maxima
//      (reads k' once: the memory-bound step);
//   2. importance F(m) = max_c (s[c][m] - max_m' s[c][m']), proximity max-pool of half-width eps;
//   3. top-k: kernels/top_k.cuh.
// References: esa::attention::chunk_importance, proximity_max_pool (lib/attention/selection.h);
// compared in tests/unit/test_selection_cuda.cc. Every launch is
// CUDA-graph safe: sizes are fixed at enqueue, state lives in the workspace.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace esa::cuda {

constexpr int kMaxScoreQueries = 16;  // queries of one chunk scored together (decode: 1)

struct CompressedScoreParams {
  const float* q;                // [T, dim] compressed queries
  const __nv_bfloat16* k;        // [n_total, dim] compressed keys (row-major, rows contiguous)
  int dim;                       // d', a multiple of 8, at most 512
  int T;                         // 1 .. kMaxScoreQueries
  int64_t begin, end;            // scored rows [begin, end)
  float* scores;                 // out: [T, end - begin]
  unsigned int* row_max;         // out: [T] order-preserving bits of max_m s[c][m]; set by launch
};
cudaError_t launch_compressed_scores(const CompressedScoreParams& p, cudaStream_t stream);

/// A prefill chunk's importance without a score matrix: F[m] = max_c (q'_c . k'_m - max_m'
/// q'_c . k'_m') over rows [begin, end), unpooled, in two passes over k' (the per-query maxima,
/// then F). For T * dim <= kChunkScoreFloats (a 512-query chunk at d' = 16); pool F with
/// launch_importance_pool (T = 1, row_max = nullptr).
constexpr int kChunkScoreFloats = 8192;

struct ChunkImportanceParams {
  const float* q;                // [T, dim] compressed queries
  const __nv_bfloat16* k;        // [n_total, dim] compressed keys
  int dim;                       // d', a multiple of 8, at most 256
  int T;                         // 1 .. kChunkScoreFloats / dim
  int64_t begin, end;            // scored rows [begin, end)
  unsigned int* row_max;         // scratch [T]
  float* importance;             // out: [end - begin], unpooled F
};
cudaError_t launch_chunk_importance(const ChunkImportanceParams& p, cudaStream_t stream);

/// The same importance for a chunk of any size, on tensor cores (mma.sync, bf16 in, f32
/// accumulation): both passes stream k' once in 64-row tiles and never write a T x n score
/// matrix. Queries in bf16 (as the GEMM path takes them). Pool F with launch_importance_pool.
struct ChunkImportanceTcParams {
  const __nv_bfloat16* q;        // [T, dim] compressed queries
  const __nv_bfloat16* k;        // [n_total, dim] compressed keys
  int dim;                       // d', a multiple of 8, at most 256
  int T;                         // >= 1
  int64_t begin, end;            // scored rows [begin, end)
  unsigned int* row_max;         // scratch [T]
  float* importance;             // out: [end - begin], unpooled F
};
cudaError_t launch_chunk_importance_tc(const ChunkImportanceTcParams& p, cudaStream_t stream);

/// For a score matrix computed elsewhere (a long chunk's scores by a tensor-core GEMM,
/// attention/selection_cuda.h): row_max[r] = the order-preserving bits of max_m scores[r][m] (as
/// launch_compressed_scores writes them), then the unpooled importance
/// f[m] = max_r (scores[r][m] - max of row r), or max(f[m], that) with `accumulate` (query blocks);
/// row_max null: nothing is subtracted (Quest's page scores, the plain max over the chunk).
/// Pool f with launch_importance_pool (T = 1, row_max = nullptr).
cudaError_t launch_score_row_max(const float* scores, int rows, int64_t n, unsigned int* row_max, cudaStream_t stream);
cudaError_t launch_score_columns_importance(const float* scores, int rows, int64_t n, const unsigned int* row_max,
                                            bool accumulate, float* f, cudaStream_t stream);

struct ImportanceParams {
  const float* scores;           // [T, n]
  const unsigned int* row_max;   // [T] from launch_compressed_scores; null: every maximum is 0
  int T;
  int64_t n;
  int eps;                       // max-pool half-width, 0 .. 1024
  float* importance;             // out: [n] pooled F
  bool accumulate = false;       // importance = max(importance, pooled F): a chunk of more than
                                 // kMaxScoreQueries queries, scored a group at a time
};
cudaError_t launch_importance_pool(const ImportanceParams& p, cudaStream_t stream);

}  // namespace esa::cuda
