// The selecting policies' importance on the GPU for a decode step or a prefill chunk, shared by
// the model forward (model/llama_cuda.cc) and `esa bench attention --device cuda`, so that the
// benchmark times the forward's own path.
// esa (and oracle: the same with the identity projection, d' = the key width) picks among
// kernels/esa_select.cuh's ways by the chunk's size:
//   T <= kMaxScoreQueries, d' <= 256   compressed scores with the row maxima, pool;
//   T * d' <= kChunkScoreFloats        two passes over k' with no score matrix, pool;
//   longer chunks, or d' > 256         a tensor-core GEMM into a score matrix (query blocks of at
//                                      most 1 GiB of scores), its row maxima, the max over the
//                                      chunk per column, then one pool.
// quest and infllm score pages / blocks by one float32 GEMM and the max over the chunk
// (chunk_max_dot_cuda; kernels/block_select.cuh has the rest).
// Reference: attention::chunk_importance + proximity_max_pool (tests/unit/test_cuda.cc through
// the forward; the kernels each against the CPU). Include only in CUDA-enabled translation units.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/error.h"

#define ESA_CUBLAS_CHECK(expr)                                                                      \
  do {                                                                                              \
    const cublasStatus_t esa_status_ = (expr);                                                      \
    ESA_CHECK(esa_status_ == CUBLAS_STATUS_SUCCESS, "cuBLAS error in {}: {}", #expr,               \
              cublasGetStatusString(esa_status_));                                                  \
  } while (0)

namespace esa {

/// Y [T, out] = X [T, in] . W^T with W [out, in] row-major (bf16), float32 accumulation and output,
/// on the handle's stream.
void gemm_bf16(cublasHandle_t cublas, const __nv_bfloat16* w, int64_t out, int64_t in, const __nv_bfloat16* x,
               int64_t T, float* y);

/// Device scratch of esa_importance_cuda, sized by the functions below.
struct EsaImportanceScratch {
  float* scores = nullptr;         // esa_score_floats(T, dim, middle) (the GEMM path keeps its
                                   // unpooled importance in the last `middle` of them)
  __nv_bfloat16* q16 = nullptr;    // [T, dim]
  unsigned int* row_max = nullptr; // esa_row_max_count(T)
};
size_t esa_score_floats(int64_t T, int64_t dim, int64_t middle);
size_t esa_row_max_count(int64_t T);

/// importance [m1 - m0] = F pooled with half-width eps (PAPER.md section 2) for T compressed
/// queries qc [T, dim] (float, device) over the compressed keys kc [n, dim] rows [m0, m1).
/// Enqueues on `stream` (cublas must be bound to it); no host synchronisation.
void esa_importance_cuda(cublasHandle_t cublas, cudaStream_t stream, const float* qc, const __nv_bfloat16* kc,
                         int64_t dim, int64_t T, int64_t m0, int64_t m1, int eps, const EsaImportanceScratch& scratch,
                         float* importance);

/// out[j] = max over the T queries of q_t . rows_j, for q [T, k] and rows [n, k] (float, device),
/// by a float32 GEMM into `scores` (chunk_max_dot_floats; query blocks of at most 1 GiB) and the
/// max per column; no per-query maximum subtracted, no pooling. quest: q = [pos | neg] (signed
/// fold), rows = [max | min] page bounds; infllm: T = 1, the mean query against the block keys.
size_t chunk_max_dot_floats(int64_t T, int64_t n);
void chunk_max_dot_cuda(cublasHandle_t cublas, cudaStream_t stream, const float* q, const float* rows, int64_t k,
                        int64_t T, int64_t n, float* scores, float* out);

}  // namespace esa
