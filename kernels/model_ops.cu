// See model_ops.cuh. Simple, memory-bound kernels: a thread per element (grid-stride) or a block
// per row; the forward's time is in the GEMMs and the attention.
#include "model_ops.cuh"

#include "grid_stride.cuh"

namespace esa::cuda {
namespace {

__global__ void embed_rows_kernel(const __nv_bfloat16* table, const int* ids, int T, int hidden, float* out) {
  const int64_t n = int64_t(T) * hidden;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / hidden, c = i % hidden;
    out[i] = __bfloat162float(table[int64_t(ids[t]) * hidden + c]);
  }
}

__global__ void rms_norm_kernel(const float* x, const float* weight, int cols, float eps, __nv_bfloat16* out) {
  const float* xr = x + int64_t(blockIdx.x) * cols;
  __shared__ double warp_sums[kElementThreads / 32];
  __shared__ float inv;
  double ss = 0.0;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) ss += double(xr[c]) * double(xr[c]);
  for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
  if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int w = 0; w < kElementThreads / 32; ++w) total += warp_sums[w];
    inv = float(1.0 / sqrt(total / double(cols) + double(eps)));
  }
  __syncthreads();
  __nv_bfloat16* yr = out + int64_t(blockIdx.x) * cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = __float2bfloat16_rn(xr[c] * inv * weight[c]);
}

__global__ void add_bias_kernel(float* x, const float* bias, int64_t n, int cols) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    x[i] += bias[i % cols];
  }
}

// A thread per (token, head, dimension pair) for the rotated pairs, then the untouched tail.
__global__ void rope_kernel(const float* x, float* out, int T, int heads, int d, RopeTables rope,
                            int64_t first_position, int position_step) {
  const int64_t pairs = int64_t(T) * heads * rope.half;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < pairs; i += int64_t(gridDim.x) * blockDim.x) {
    const int pair = int(i % rope.half);
    const int64_t row = i / rope.half;  // token * heads + head
    const int t = int(row / heads);
    const int64_t position = first_position + int64_t(t) * position_step;
    const float2 cs = rope_angle(rope, position, pair);
    const int a = rope.adjacent_pairs ? 2 * pair : pair;
    const int b = rope.adjacent_pairs ? 2 * pair + 1 : pair + rope.half;
    const float x1 = x[row * d + a], x2 = x[row * d + b];
    out[row * d + a] = x1 * cs.x - x2 * cs.y;
    out[row * d + b] = x2 * cs.x + x1 * cs.y;
  }
  const int tail = d - 2 * rope.half;
  const int64_t rest = int64_t(T) * heads * tail;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rest; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / tail;
    const int c = 2 * rope.half + int(i % tail);
    out[row * d + c] = x[row * d + c];
  }
}

__global__ void store_kv_kernel(const float* k, const float* v, int64_t n, __nv_bfloat16* k_cache,
                                __nv_bfloat16* v_cache, int64_t offset) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    k_cache[offset + i] = __float2bfloat16_rn(k[i]);
    v_cache[offset + i] = __float2bfloat16_rn(v[i]);
  }
}

__global__ void swiglu_kernel(const float* gate, const float* up, int64_t n, __nv_bfloat16* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    out[i] = __float2bfloat16_rn(g / (1.0f + expf(-g)) * up[i]);
  }
}

__global__ void gqa_fold_kernel(const float* q, int T, int hq, int hkv, int d, float* out) {
  const int group = hq / hkv;
  const int64_t n = int64_t(T) * hkv * d;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / (int64_t(hkv) * d);
    const int g = int((i / d) % hkv), c = int(i % d);
    float sum = 0.0f;
    for (int h = 0; h < group; ++h) sum += q[(t * hq + g * group + h) * d + c];
    out[i] = sum;
  }
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    x[i] += y[i];
  }
}

__global__ void iota_kernel(int* out, int n, int first) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    out[i] = first + int(i);
  }
}

__global__ void to_bf16_kernel(const float* in, __nv_bfloat16* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    out[i] = __float2bfloat16_rn(in[i]);
  }
}

// A block per row: each thread keeps its best (value, index) over a stride, then the block
// reduces; "better" is a larger value, or an equal one at a lower index.
constexpr int kArgmaxThreads = 1024;
__device__ bool argmax_better(float a, int64_t ia, float b, int64_t ib) {
  if (ia < 0) return false;
  if (ib < 0) return true;
  return a > b || (a == b && ia < ib);
}
__global__ void argmax_rows_kernel(const float* x, int64_t cols, int* out) {
  const float* row = x + int64_t(blockIdx.x) * cols;
  float best = 0.0f;
  int64_t at = -1;  // none yet (every value seen was NaN)
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float v = row[c];
    if (!isnan(v) && argmax_better(v, c, best, at)) best = v, at = c;
  }
  for (int off = 16; off > 0; off >>= 1) {
    const float ob = __shfl_xor_sync(0xffffffffu, best, off);
    const int64_t oa = __shfl_xor_sync(0xffffffffu, at, off);
    if (argmax_better(ob, oa, best, at)) best = ob, at = oa;
  }
  __shared__ float warp_best[kArgmaxThreads / 32];
  __shared__ int64_t warp_at[kArgmaxThreads / 32];
  if ((threadIdx.x & 31) == 0) warp_best[threadIdx.x >> 5] = best, warp_at[threadIdx.x >> 5] = at;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < int(blockDim.x) / 32; ++w) {
      if (argmax_better(warp_best[w], warp_at[w], best, at)) best = warp_best[w], at = warp_at[w];
    }
    out[blockIdx.x] = at < 0 ? 0 : int(at);
  }
}

}  // namespace

cudaError_t launch_argmax_rows(const float* x, int rows, int64_t cols, int* out, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0 || cols > INT32_MAX) return cudaErrorInvalidValue;
  argmax_rows_kernel<<<rows, kArgmaxThreads, 0, stream>>>(x, cols, out);
  return cudaGetLastError();
}

cudaError_t launch_embed_rows(const __nv_bfloat16* table, const int* ids, int T, int hidden, float* out,
                              cudaStream_t stream) {
  if (T <= 0 || hidden <= 0) return cudaErrorInvalidValue;
  embed_rows_kernel<<<element_blocks(int64_t(T) * hidden), kElementThreads, 0, stream>>>(table, ids, T, hidden, out);
  return cudaGetLastError();
}

cudaError_t launch_rms_norm(const float* x, const float* weight, int rows, int cols, float eps, __nv_bfloat16* out,
                            cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaErrorInvalidValue;
  rms_norm_kernel<<<unsigned(rows), kElementThreads, 0, stream>>>(x, weight, cols, eps, out);
  return cudaGetLastError();
}

cudaError_t launch_add_bias(float* x, const float* bias, int rows, int cols, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaErrorInvalidValue;
  const int64_t n = int64_t(rows) * cols;
  add_bias_kernel<<<element_blocks(n), kElementThreads, 0, stream>>>(x, bias, n, cols);
  return cudaGetLastError();
}

cudaError_t launch_rope(const float* x, float* out, int T, int heads, int d, const RopeTables& rope,
                        int64_t first_position, int position_step, cudaStream_t stream) {
  if (T <= 0 || heads <= 0 || rope.half <= 0 || 2 * rope.half > d || first_position < 0) return cudaErrorInvalidValue;
  rope_kernel<<<element_blocks(int64_t(T) * heads * rope.half), kElementThreads, 0, stream>>>(x, out, T, heads, d, rope,
                                                                                   first_position, position_step);
  return cudaGetLastError();
}

cudaError_t launch_store_kv(const float* k, const float* v, int T, int width, __nv_bfloat16* k_cache,
                            __nv_bfloat16* v_cache, int64_t first_row, cudaStream_t stream) {
  if (T <= 0 || width <= 0 || first_row < 0) return cudaErrorInvalidValue;
  const int64_t n = int64_t(T) * width;
  store_kv_kernel<<<element_blocks(n), kElementThreads, 0, stream>>>(k, v, n, k_cache, v_cache, first_row * width);
  return cudaGetLastError();
}

cudaError_t launch_swiglu(const float* gate, const float* up, int64_t n, __nv_bfloat16* out, cudaStream_t stream) {
  if (n <= 0) return cudaErrorInvalidValue;
  swiglu_kernel<<<element_blocks(n), kElementThreads, 0, stream>>>(gate, up, n, out);
  return cudaGetLastError();
}

cudaError_t launch_gqa_fold(const float* q, int T, int hq, int hkv, int d, float* out, cudaStream_t stream) {
  if (T <= 0 || hkv <= 0 || hq % hkv != 0 || d <= 0) return cudaErrorInvalidValue;
  gqa_fold_kernel<<<element_blocks(int64_t(T) * hkv * d), kElementThreads, 0, stream>>>(q, T, hq, hkv, d, out);
  return cudaGetLastError();
}

cudaError_t launch_add(float* x, const float* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaErrorInvalidValue;
  add_kernel<<<element_blocks(n), kElementThreads, 0, stream>>>(x, y, n);
  return cudaGetLastError();
}

cudaError_t launch_iota(int* out, int n, cudaStream_t stream, int first) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  iota_kernel<<<element_blocks(n), kElementThreads, 0, stream>>>(out, n, first);
  return cudaGetLastError();
}

cudaError_t launch_to_bf16(const float* in, __nv_bfloat16* out, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaErrorInvalidValue;
  to_bf16_kernel<<<element_blocks(n), kElementThreads, 0, stream>>>(in, out, n);
  return cudaGetLastError();
}

}  // namespace esa::cuda
