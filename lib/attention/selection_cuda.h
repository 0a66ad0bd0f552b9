// The GPU halves of the selection primitives (selection.h), shared by the policies' device
// selectors (attention/<p>_cuda.cc) and `esa bench attention --device cuda`, so that the benchmark
// times the forward's own path.
// Token importance (esa; oracle: the same with the identity projection, d' = the key width) picks
// among kernels/esa_select.cuh's ways by the chunk's size:
//   T <= kMaxScoreQueries, d' <= 256   compressed scores with the row maxima, pool;
//   T * d' <= kChunkScoreFloats        two passes over k' with no score matrix, pool;
//   longer chunks, d' <= 256           the same two passes on tensor cores (mma.sync, bf16
//                                      queries), no score matrix, then one pool;
//   d' > 256 (oracle's key rows)       a cuBLAS GEMM into a score matrix (query blocks of at
//                                      most 1 GiB of scores), its row maxima, the max over the
//                                      chunk per column, then one pool.
// Unit scores (quest's pages, infllm's blocks) are one float32 GEMM and the max over the chunk
// (chunk_max_dot_cuda). References: chunk_importance, proximity_max_pool, top_k_indices
// (selection.h); compared per policy in tests/unit/test_<p>.cc and per kernel in
// tests/unit/test_selection_cuda.cc. Include only in CUDA-enabled translation units.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "attention/device_selector.h"
#include "attention/policy.h"
#include "core/device_buffer.h"

namespace esa::attention {

/// Y [T, out] = X [T, in] . W^T with W [out, in] row-major (bf16), float32 accumulation and output,
/// on the handle's stream.
void gemm_bf16(cublasHandle_t cublas, const __nv_bfloat16* w, int64_t out, int64_t in, const __nv_bfloat16* x,
               int64_t T, float* y);

/// Device scratch of importance_cuda, sized by the functions below.
struct ImportanceScratch {
  float* scores = nullptr;         // importance_score_floats(T, dim, middle) (the GEMM path keeps
                                   // its unpooled importance in the last `middle` of them, the
                                   // two-pass ways in the first)
  __nv_bfloat16* q16 = nullptr;    // [T, dim]
  unsigned int* row_max = nullptr; // importance_row_max_count(T)
};
size_t importance_score_floats(int64_t T, int64_t dim, int64_t middle);
size_t importance_row_max_count(int64_t T);

/// importance [m1 - m0] = F pooled with half-width eps (PAPER.md section 2) for T queries
/// qc [T, dim] (float, device) over the key rows kc [n, dim] rows [m0, m1).
/// Enqueues on `stream` (cublas must be bound to it); no host synchronisation.
void importance_cuda(cublasHandle_t cublas, cudaStream_t stream, const float* qc, const __nv_bfloat16* kc, int64_t dim,
                     int64_t T, int64_t m0, int64_t m1, int eps, const ImportanceScratch& scratch, float* importance);

/// out[j] = max over the T queries of q_t . rows_j, for q [T, k] and rows [n, k] (float, device),
/// by a float32 GEMM into `scores` (chunk_max_dot_floats; query blocks of at most 1 GiB) and the
/// max per column; no per-query maximum subtracted, no pooling. quest: q = [pos | neg] (signed
/// fold), rows = [max | min] page bounds; infllm: T = 1, the mean query against the block keys.
size_t chunk_max_dot_floats(int64_t T, int64_t n);
void chunk_max_dot_cuda(cublasHandle_t cublas, cudaStream_t stream, const float* q, const float* rows, int64_t k,
                        int64_t T, int64_t n, float* scores, float* out);

/// indices [k] = the k largest of values [n] (ties: the lower index) + offset, ascending
/// (kernels/top_k.cuh), with its workspace kept between calls on one stream.
class DeviceTopK {
 public:
  void run(const float* values, int64_t n, int64_t k, int offset, int* indices, cudaStream_t stream);

 private:
  cuda::Buffer<char> workspace_;
};

/// The row list a selector hands the attention: room for `capacity` rows, the first n_init the
/// initial tokens 0 .. n_init - 1 (written on the stream).
class RowList {
 public:
  int* prepare(int64_t capacity, int64_t n_init, cudaStream_t stream);
  DeviceRows rows(int64_t n_rows, int64_t local_begin, const int* rows_valid = nullptr) const {
    return {rows_.get(), n_rows, rows_valid, local_begin};
  }
  int* get() const { return rows_.get(); }

 private:
  cuda::Buffer<int> rows_;
};

/// How every selector starts a chunk at `start`: the split of the context (middle tokens
/// [m0, m1)), and the row list prepared for init + select rows with the initial tokens in it, or,
/// when the middle fits the budget (`all`), every token before the local branch.
struct ChunkRows {
  int64_t m0 = 0, m1 = 0;
  bool all = false;
  int* rows = nullptr;  // rows[m0 ...] is where the chosen middle rows go
};
ChunkRows begin_chunk(RowList& rows, const PolicyOptions& options, int64_t start, cudaStream_t stream);

/// Token-granular selection (esa, oracle): importance_cuda over rows [m0, m1) of kc, pooled, and
/// the k best rows written ascending to rows[0, k) (as indices of kc).
class TokenTopK {
 public:
  void select(const DeviceContext& c, const float* qc, const __nv_bfloat16* kc, int64_t dim, int64_t T, int64_t m0,
              int64_t m1, int eps, int64_t k, int* rows);

 private:
  cuda::Buffer<float> scores_, importance_;
  cuda::Buffer<__nv_bfloat16> q16_;
  cuda::Buffer<unsigned int> row_max_;
  DeviceTopK top_k_;
};

/// Unit-granular selection (quest's pages, infllm's blocks): n_units units of `unit` middle
/// tokens from m0, each scored by the max over the T queries q [T, width] of q_t . meta_u
/// (meta [n_units, width]); the `pick` best expanded into rows[0, pick * unit). rows_valid
/// (optional, device) gets m0 (the initial rows before these) + the count of real rows (the last
/// unit may end past m1).
class UnitTopK {
 public:
  void select(const DeviceContext& c, const float* q, const float* meta, int64_t width, int64_t T, int64_t n_units,
              int64_t pick, int64_t unit, int64_t m0, int64_t m1, int* rows, int* rows_valid);

 private:
  cuda::Buffer<float> scores_, importance_;
  cuda::Buffer<int> units_;
  DeviceTopK top_k_;
};

}  // namespace esa::attention
