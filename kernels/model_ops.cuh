// The elementwise and row kernels of the Llama forward pass on the GPU (engine/llama_cuda.cc):
// embedding lookup, RMSNorm, bias, RoPE, KV-cache store, SwiGLU, residual add, float -> bf16.
// Activations are float32; what feeds a cuBLAS GEMM is bf16 (weights are bf16 on the device).
// References: the ops of lib/ops (rms_norm_cpu, rope_cpu, swiglu_cpu); compared in
// tests/unit/test_cuda_ops.cc, and the whole forward against LlamaModel on the CPU.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "rope_tables.cuh"

namespace esa::cuda {

/// out[t, :] = float(table[ids[t], :]) for t < T.
cudaError_t launch_embed_rows(const __nv_bfloat16* table, const int* ids, int T, int hidden, float* out,
                              cudaStream_t stream);

/// y = x / sqrt(mean(x^2) + eps) * weight per row of x [rows, cols]; written as bf16 (the next
/// GEMM's input). Sums of squares in double, as rms_norm_cpu.
cudaError_t launch_rms_norm(const float* x, const float* weight, int rows, int cols, float eps, __nv_bfloat16* out,
                            cudaStream_t stream);

/// x[r, :] += bias for x [rows, cols].
cudaError_t launch_add_bias(float* x, const float* bias, int rows, int cols, cudaStream_t stream);

/// out = x [T, heads, d] with its first 2 * rope.half dimensions rotated: token t to position
/// first_position + t * position_step (step 0: every token at first_position). The remaining
/// dimensions are copied (partial rotary). rope_cpu's pairing and float arithmetic.
cudaError_t launch_rope(const float* x, float* out, int T, int heads, int d, const RopeTables& rope,
                        int64_t first_position, int position_step, cudaStream_t stream);

/// Rows [first_row, first_row + T) of the bf16 caches [rows, width] from float k, v [T, width].
cudaError_t launch_store_kv(const float* k, const float* v, int T, int width, __nv_bfloat16* k_cache,
                            __nv_bfloat16* v_cache, int64_t first_row, cudaStream_t stream);

/// out = silu(gate) * up, n elements, as bf16 (the down projection's input).
cudaError_t launch_swiglu(const float* gate, const float* up, int64_t n, __nv_bfloat16* out, cudaStream_t stream);

/// out [T, hkv, d] = the sum of each KV group's query heads of q [T, hq, d] (GQA fold, as
/// esa::attention::gqa_fold).
cudaError_t launch_gqa_fold(const float* q, int T, int hq, int hkv, int d, float* out, cudaStream_t stream);

/// x += y, n elements.
cudaError_t launch_add(float* x, const float* y, int64_t n, cudaStream_t stream);

/// out[i] = first + i for i < n (a policy's consecutive rows, written on the device: no upload).
cudaError_t launch_iota(int* out, int n, cudaStream_t stream, int first = 0);

/// out[r] = the index of the largest of row r of x [rows, cols] (greedy decoding on the device):
/// the first of equal values, as esa::argmax; NaN never wins (a row of NaN gives 0).
cudaError_t launch_argmax_rows(const float* x, int rows, int64_t cols, int* out, cudaStream_t stream);

/// out = bf16(in), round to nearest even, n elements.
cudaError_t launch_to_bf16(const float* in, __nv_bfloat16* out, int64_t n, cudaStream_t stream);

}  // namespace esa::cuda
