// See chunk_attention.cuh.
#include "chunk_attention.cuh"

#include <cfloat>

#include "grid_stride.cuh"

namespace esa::cuda {
namespace {

// A thread per (row, head, pair), then the unrotated tail.
__global__ void rope_rows_kernel(const __nv_bfloat16* keys, int64_t begin, int64_t n, int heads, int d,
                                 RopeTables rope, __nv_bfloat16* out) {
  const int64_t pairs = n * heads * rope.half;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < pairs; i += int64_t(gridDim.x) * blockDim.x) {
    const int pair = int(i % rope.half);
    const int64_t row_head = i / rope.half;  // local row * heads + head
    const int64_t position = begin + row_head / heads;
    const float2 cs = rope_angle(rope, position, pair);
    const int a = rope.adjacent_pairs ? 2 * pair : pair;
    const int b = rope.adjacent_pairs ? 2 * pair + 1 : pair + rope.half;
    const __nv_bfloat16* src = keys + (begin * heads + row_head) * d;
    const float x1 = __bfloat162float(src[a]), x2 = __bfloat162float(src[b]);
    out[row_head * d + a] = __float2bfloat16_rn(x1 * cs.x - x2 * cs.y);
    out[row_head * d + b] = __float2bfloat16_rn(x2 * cs.x + x1 * cs.y);
  }
  const int tail = d - 2 * rope.half;
  const int64_t rest = n * heads * tail;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rest; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row_head = i / tail;
    const int c = 2 * rope.half + int(i % tail);
    out[row_head * d + c] = keys[(begin * heads + row_head) * d + c];
  }
}

__global__ void gather_rows_kernel(const __nv_bfloat16* k, const __nv_bfloat16* v, const int* rows, int n, int width,
                                   __nv_bfloat16* k_out, __nv_bfloat16* v_out) {
  const int64_t total = int64_t(n) * width;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / width, c = i % width;
    const int64_t src = int64_t(rows[r]) * width + c;
    k_out[i] = k[src];
    v_out[i] = v[src];
  }
}

__device__ float block_reduce(float v, bool is_max, float* shared) {
  for (int off = 16; off > 0; off >>= 1) {
    const float o = __shfl_xor_sync(0xffffffffu, v, off);
    v = is_max ? fmaxf(v, o) : v + o;
  }
  if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float r = shared[0];
    for (int w = 1; w < kElementThreads / 32; ++w) r = is_max ? fmaxf(r, shared[w]) : r + shared[w];
    shared[kElementThreads / 32] = r;
  }
  __syncthreads();
  const float r = shared[kElementThreads / 32];
  __syncthreads();
  return r;
}

// One block per (query, head) row: max, sum of exp, then the normalised probabilities.
__global__ void __launch_bounds__(kElementThreads) chunk_softmax_kernel(ChunkSoftmaxParams p) {
  __shared__ float shared[kElementThreads / 32 + 1];
  const int t = blockIdx.x, h = blockIdx.y;
  const int64_t row = int64_t(h) * p.T + t;
  const float* s = p.scores + row * p.columns;
  __nv_bfloat16* out = p.probs + row * p.columns;
  // Columns past `visible` are the range's future positions.
  const int64_t visible = p.n_rows + (p.first_query + t - p.range_begin + 1);
  const int64_t end = visible < p.columns ? visible : p.columns;
  float m = -FLT_MAX;
  for (int64_t c = threadIdx.x; c < end; c += blockDim.x) m = fmaxf(m, s[c]);
  m = block_reduce(m, true, shared);
  float l = 0.0f;
  for (int64_t c = threadIdx.x; c < end; c += blockDim.x) l += __expf(s[c] - m);
  l = block_reduce(l, false, shared);
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  for (int64_t c = threadIdx.x; c < p.columns; c += blockDim.x) {
    out[c] = __float2bfloat16_rn(c < end ? __expf(s[c] - m) * inv : 0.0f);
  }
}

}  // namespace

cudaError_t launch_rope_rows(const __nv_bfloat16* keys, int64_t begin, int64_t end, int heads, int d,
                             const RopeTables& rope, __nv_bfloat16* out, cudaStream_t stream) {
  if (end < begin || begin < 0 || heads <= 0 || rope.half <= 0 || 2 * rope.half > d) return cudaErrorInvalidValue;
  if (end == begin) return cudaSuccess;
  rope_rows_kernel<<<element_blocks((end - begin) * heads * rope.half), kElementThreads, 0, stream>>>(keys, begin, end - begin,
                                                                                          heads, d, rope, out);
  return cudaGetLastError();
}

cudaError_t launch_gather_rows(const __nv_bfloat16* k, const __nv_bfloat16* v, const int* rows, int n, int width,
                               __nv_bfloat16* k_out, __nv_bfloat16* v_out, cudaStream_t stream) {
  if (n < 0 || width <= 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  gather_rows_kernel<<<element_blocks(int64_t(n) * width), kElementThreads, 0, stream>>>(k, v, rows, n, width, k_out, v_out);
  return cudaGetLastError();
}

cudaError_t launch_chunk_softmax(const ChunkSoftmaxParams& p, cudaStream_t stream) {
  if (p.T <= 0 || p.heads <= 0 || p.columns <= 0 || p.n_rows < 0 || p.n_rows > p.columns) return cudaErrorInvalidValue;
  if (p.T > 65535 * 1024 || p.heads > 65535) return cudaErrorInvalidValue;
  chunk_softmax_kernel<<<dim3(unsigned(p.T), unsigned(p.heads)), kElementThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace esa::cuda
