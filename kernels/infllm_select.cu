// See infllm_select.cuh.
#include "infllm_select.cuh"

#include "grid_stride.cuh"

namespace esa::cuda {
namespace {

__global__ void fold_mean_kernel(const float* q, int T, int hq, int hkv, int d, float scale, float* out) {
  const int group = hq / hkv;
  const int64_t n = int64_t(hkv) * d;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int g = int(i / d), c = int(i % d);
    float sum = 0.0f;
    for (int t = 0; t < T; ++t) {
      for (int h = 0; h < group; ++h) sum += q[(int64_t(t) * hq + g * group + h) * d + c];
    }
    out[i] = sum * scale;
  }
}

constexpr int kWindowThreads = 256;

__device__ float block_reduce(float v, bool take_max, float* shared) {
  for (int off = 16; off > 0; off >>= 1) {
    const float o = __shfl_xor_sync(0xffffffffu, v, off);
    v = take_max ? fmaxf(v, o) : v + o;
  }
  __syncthreads();  // `shared` may still be read from the previous reduction
  if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = v;
  __syncthreads();
  v = shared[0];
  for (int w = 1; w < kWindowThreads / 32; ++w) v = take_max ? fmaxf(v, shared[w]) : v + shared[w];
  return v;
}

// A block per KV head: the logits into scratch, their max, the sum of exponentials (in double,
// as the host), then each token's weight added.
__global__ void __launch_bounds__(kWindowThreads) window_weights_kernel(WindowWeightsParams p) {
  __shared__ float reduce[kWindowThreads / 32];
  __shared__ double dsum[kWindowThreads / 32];
  const int g = blockIdx.x;
  const int64_t n = p.end - p.begin, kw = int64_t(p.hkv) * p.d;
  const float* qbar = p.qbar + int64_t(g) * p.d;
  float* z = p.scratch + int64_t(g) * n;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    const __nv_bfloat16* k = p.keys + (p.begin + j) * kw + int64_t(g) * p.d;
    float dot = 0.0f;
    for (int c = 0; c < p.d; ++c) dot += qbar[c] * __bfloat162float(k[c]);
    z[j] = dot;
    mx = fmaxf(mx, dot);
  }
  mx = block_reduce(mx, true, reduce);
  double sum = 0.0;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) sum += double(expf(z[j] - mx));
  for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  if ((threadIdx.x & 31) == 0) dsum[threadIdx.x >> 5] = sum;
  __syncthreads();
  sum = 0.0;
  for (int w = 0; w < kWindowThreads / 32; ++w) sum += dsum[w];
  const float inv = float(1.0 / sum);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    p.received[(p.begin + j) * p.hkv + g] += expf(z[j] - mx) * inv;
  }
}

// A CTA per (block, KV head): the representatives picked by one thread from the block's weights
// in shared memory (reps passes of an argmax; ties to the lower position), then the mean key
// across the CTA's threads, summed in ascending position order as the host does.
__global__ void block_keys_kernel(BlockKeysParams p) {
  extern __shared__ float weight[];  // [block]
  __shared__ int reps[8];
  const int64_t b = p.block_from + blockIdx.x;
  const int g = blockIdx.y;
  const int64_t b0 = p.begin + b * p.block, kw = int64_t(p.hkv) * p.d;
  for (int i = threadIdx.x; i < p.block; i += blockDim.x) weight[i] = p.received[(b0 + i) * p.hkv + g];
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int r = 0; r < p.reps; ++r) {
      int best = -1;
      for (int i = 0; i < p.block; ++i) {
        bool taken = false;
        for (int s = 0; s < r; ++s) taken |= reps[s] == i;
        if (!taken && (best < 0 || weight[i] > weight[best])) best = i;
      }
      reps[r] = best;
    }
    for (int r = 1; r < p.reps; ++r) {  // ascending positions
      for (int s = r; s > 0 && reps[s - 1] > reps[s]; --s) {
        const int t = reps[s];
        reps[s] = reps[s - 1];
        reps[s - 1] = t;
      }
    }
  }
  __syncthreads();
  for (int c = threadIdx.x; c < p.d; c += blockDim.x) {
    float sum = 0.0f;
    for (int r = 0; r < p.reps; ++r) sum += __bfloat162float(p.keys[(b0 + reps[r]) * kw + int64_t(g) * p.d + c]);
    p.block_keys[b * kw + int64_t(g) * p.d + c] = sum / float(p.reps);
  }
}

}  // namespace

cudaError_t launch_fold_mean(const float* q, int T, int hq, int hkv, int d, float scale, float* out,
                             cudaStream_t stream) {
  if (T <= 0 || hkv <= 0 || hq % hkv != 0 || d <= 0 || q == nullptr || out == nullptr) return cudaErrorInvalidValue;
  fold_mean_kernel<<<element_blocks(int64_t(hkv) * d), kElementThreads, 0, stream>>>(q, T, hq, hkv, d, scale, out);
  return cudaGetLastError();
}

cudaError_t launch_window_weights(const WindowWeightsParams& p, cudaStream_t stream) {
  if (p.qbar == nullptr || p.keys == nullptr || p.scratch == nullptr || p.received == nullptr || p.hkv <= 0 ||
      p.d <= 0 || p.begin < 0 || p.end < p.begin) {
    return cudaErrorInvalidValue;
  }
  if (p.end == p.begin) return cudaSuccess;
  window_weights_kernel<<<unsigned(p.hkv), kWindowThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t launch_block_keys(const BlockKeysParams& p, cudaStream_t stream) {
  if (p.received == nullptr || p.keys == nullptr || p.block_keys == nullptr || p.hkv <= 0 || p.d <= 0 ||
      p.begin < 0 || p.block < 1 || p.block > 1024 || p.reps < 1 || p.reps > 8 || p.reps > p.block ||
      p.block_from < 0 || p.block_to < p.block_from || p.hkv > 65535) {
    return cudaErrorInvalidValue;
  }
  if (p.block_to == p.block_from) return cudaSuccess;
  const dim3 grid(unsigned(p.block_to - p.block_from), unsigned(p.hkv));
  block_keys_kernel<<<grid, 128, sizeof(float) * size_t(p.block), stream>>>(p);
  return cudaGetLastError();
}

}  // namespace esa::cuda
